package cluster

import (
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/nats-io/nats.go/jetstream"
)

// entry is a ClientsBucket entry as a watch delivers it.
type entry struct {
	key string
	val []byte
	rev uint64
	op  jetstream.KeyValueOp
}

func (e entry) Bucket() string                  { return ClientsBucket }
func (e entry) Key() string                     { return e.key }
func (e entry) Value() []byte                   { return e.val }
func (e entry) Revision() uint64                { return e.rev }
func (e entry) Created() time.Time              { return time.Now() }
func (e entry) Delta() uint64                   { return 0 }
func (e entry) Operation() jetstream.KeyValueOp { return e.op }

func put(key string, rev uint64, o owner) entry {
	b, _ := json.Marshal(o)
	return entry{key: key, val: b, rev: rev, op: jetstream.KeyValuePut}
}

func del(key string, rev uint64) entry {
	return entry{key: key, rev: rev, op: jetstream.KeyValueDelete}
}

// testClients is node a's Clients without NATS; taken receives what it
// takes over.
func testClients(t *testing.T) (*Clients, chan *mqtt.Client) {
	t.Helper()
	n := &Node{name: "a", log: slog.New(slog.DiscardHandler), done: make(chan struct{})}
	c := &Clients{n: n, owners: map[string]ownerEntry{}, local: map[string]localConn{},
		subs: map[string]map[string]int{}, beats: map[string]time.Time{}}
	taken := make(chan *mqtt.Client, 4)
	c.onTake = func(cl *mqtt.Client) { taken <- cl }
	return c, taken
}

func TestClientsTakeover(t *testing.T) {
	key, other := ownerKey("user:alice/phone"), ownerKey("user:bob/phone")
	tests := []struct {
		name  string
		apply entry
		taken bool
	}{
		{"a newer owner on another node", put(key, 6, owner{Node: "b", Gen: "g2", Sub: "user:alice"}), true},
		{"a newer connection on this node", put(key, 6, owner{Node: "a", Gen: "g2", Sub: "user:alice"}), true},
		{"its own entry, seen late", put(key, 5, owner{Node: "a", Gen: "g1", Sub: "user:alice"}), false},
		{"an older owner, seen late", put(key, 4, owner{Node: "b", Gen: "g0", Sub: "user:alice"}), false},
		{"a delete", del(key, 7), false},
		{"another identity's id", put(other, 6, owner{Node: "b", Gen: "g2", Sub: "user:bob"}), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, taken := testClients(t)
			cl := &mqtt.Client{ID: "user:alice/phone"}
			c.local[key] = localConn{cl: cl, gen: "g1", rev: 5, written: true}
			c.apply(tc.apply, time.Now())
			select {
			case got := <-taken:
				if !tc.taken || got != cl {
					t.Fatalf("took over %v, want taken %v", got.ID, tc.taken)
				}
				if _, ok := c.local[key]; ok {
					t.Fatal("a connection taken over is still registered")
				}
			case <-time.After(100 * time.Millisecond):
				if tc.taken {
					t.Fatal("the connection was not taken over")
				}
			}
		})
	}
}

func TestClientsElsewhere(t *testing.T) {
	c, _ := testClients(t)
	now := time.Now()
	c.apply(put(nodePrefix+"b", 1, owner{}), now)
	c.apply(put(nodePrefix+"c", 2, owner{}), now.Add(-time.Minute)) // c stopped beating
	steps := []struct {
		apply entry
		want  int // Elsewhere("user:carol") after it
	}{
		{put(ownerKey("user:carol/1"), 3, owner{Node: "a", Gen: "1", Sub: "user:carol"}), 0}, // this node's own
		{put(ownerKey("user:carol/2"), 4, owner{Node: "b", Gen: "2", Sub: "user:carol"}), 1},
		{put(ownerKey("user:carol/3"), 5, owner{Node: "b", Gen: "3", Sub: "user:carol"}), 2},
		{put(ownerKey("user:carol/4"), 6, owner{Node: "c", Gen: "4", Sub: "user:carol"}), 2}, // c is down
		{put(ownerKey("user:dave/1"), 7, owner{Node: "b", Gen: "5", Sub: "user:dave"}), 2},   // another sub
		{put(ownerKey("user:carol/2"), 8, owner{Node: "a", Gen: "6", Sub: "user:carol"}), 1}, // moved to this node
		{del(ownerKey("user:carol/3"), 9), 0},
		{del(ownerKey("user:carol/3"), 10), 0}, // a delete of nothing
	}
	for i, s := range steps {
		c.apply(s.apply, now)
		if got := c.Elsewhere("user:carol"); got != s.want {
			t.Fatalf("step %d: Elsewhere = %d, want %d", i, got, s.want)
		}
	}
	c.apply(put(nodePrefix+"c", 11, owner{}), now)
	if got := c.Elsewhere("user:carol"); got != 1 {
		t.Fatalf("after c's heartbeat: Elsewhere = %d, want 1", got)
	}
	c.apply(del(ownerKey("user:carol/4"), 12), now)
	c.apply(del(ownerKey("user:dave/1"), 13), now)
	c.apply(del(ownerKey("user:carol/1"), 14), now)
	c.apply(del(ownerKey("user:carol/2"), 15), now)
	if len(c.subs) != 0 || len(c.owners) != 0 {
		t.Fatalf("all deleted, yet subs %v owners %d remain", c.subs, len(c.owners))
	}
}
