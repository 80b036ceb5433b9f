package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	poll "homemq/internal/eventually"
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

func TestClientsLateWrite(t *testing.T) {
	c, taken := testClients(t)
	key := ownerKey("user:alice/phone")
	cl := &mqtt.Client{ID: "user:alice/phone"}
	c.local[key] = localConn{cl: cl, gen: "g1", rev: 3} // the write timed out
	c.apply(put(key, 4, owner{Node: "a", Gen: "g1", Sub: "user:alice"}), time.Now())
	if l := c.local[key]; !l.written || l.rev != 4 || len(taken) > 0 {
		t.Fatalf("after its own write arrived: %+v, taken %d; want written at revision 4", l, len(taken))
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

// jetStream runs a one-server JetStream for a test and returns a node
// named name on it.
func jetStream(t *testing.T) func(name string) *Node {
	t.Helper()
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	t.Cleanup(ns.Shutdown)
	return func(name string) *Node {
		nc, err := nats.Connect("", nats.InProcessServer(ns))
		if err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		n := &Node{name: name, log: slog.New(slog.DiscardHandler), done: make(chan struct{}), nc: nc, js: js}
		t.Cleanup(n.Close)
		return n
	}
}

func TestClientsOwnership(t *testing.T) {
	node := jetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := func(n *Node) (*Clients, chan *mqtt.Client) {
		c, err := newClients(ctx, n, 1)
		if err != nil {
			t.Fatal(err)
		}
		taken := make(chan *mqtt.Client, 4)
		c.onTake = func(cl *mqtt.Client) { taken <- cl }
		return c, taken
	}
	a, takenA := start(node("a"))
	b, takenB := start(node("b"))
	const id = "user:alice/phone"
	key := ownerKey(id)
	ownerNode := func() string {
		e, err := a.kv.Get(ctx, key)
		if err != nil {
			return ""
		}
		var o owner
		_ = json.Unmarshal(e.Value(), &o)
		return o.Node
	}

	onA, onB := &mqtt.Client{ID: id}, &mqtt.Client{ID: id}
	a.OnSessionEstablished(onA, packets.Packet{})
	poll.That(t, 5*time.Second, "b counts alice's connection on a", func() bool { return b.Elsewhere("user:alice") == 1 })
	b.OnSessionEstablished(onB, packets.Packet{})
	select {
	case cl := <-takenA:
		if cl != onA {
			t.Fatalf("a took over %p, want its connection %p", cl, onA)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a did not disconnect its connection after b took the id")
	}
	if len(takenB) > 0 {
		t.Fatal("b disconnected the connection that took over")
	}
	a.OnDisconnect(onA, nil, true)
	if got := ownerNode(); got != "b" {
		t.Fatalf("after the old connection ended the owner is %q, want b", got)
	}
	poll.That(t, 5*time.Second, "a counts alice's connection on b", func() bool {
		return a.Elsewhere("user:alice") == 1 && b.Elsewhere("user:alice") == 0
	})

	// an entry older than refreshAfter is written again
	b.mu.Lock()
	l := b.local[key]
	l.at = l.at.Add(-refreshAfter)
	b.local[key] = l
	b.mu.Unlock()
	b.refresh(ctx, time.Now())
	b.mu.Lock()
	fresh := b.local[key]
	b.mu.Unlock()
	if fresh.rev <= l.rev || time.Since(fresh.at) > time.Minute {
		t.Fatalf("refresh left the entry at revision %d (was %d), written %v", fresh.rev, l.rev, fresh.at)
	}
	if len(takenB) > 0 {
		t.Fatal("b's refresh disconnected its own connection")
	}

	b.OnDisconnect(onB, nil, true)
	if got := ownerNode(); got != "" {
		t.Fatalf("after its connection ended the owner is %q, want none", got)
	}
	poll.That(t, 5*time.Second, "a stops counting it", func() bool { return a.Elsewhere("user:alice") == 0 })

	// a restarted node deletes the keys of its earlier run
	gone := &mqtt.Client{ID: "user:bob/hub"}
	a.OnSessionEstablished(gone, packets.Packet{})
	start(node("a"))
	if _, err := a.kv.Get(ctx, ownerKey(gone.ID)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("the key of a connection of a's earlier run: %v, want deleted", err)
	}
}
