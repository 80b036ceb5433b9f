package cluster

import (
	"bytes"
	"log/slog"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go/jetstream"
)

func TestRetainedKey(t *testing.T) {
	for _, tc := range []struct {
		topic, key string
		ok         bool
	}{
		{"homes/h1/agents/a1/devices/d1/state", "homes.h1.agents.a1.devices.d1.state", true},
		{"homes/h-1/agents/a_1/status", "homes.h-1.agents.a_1.status", true},
		{"a/b=c", "a.b=c", true},
		{"$SYS/broker/uptime", "", false}, // never crosses nodes
		{"homes/h1/a.b", "", false},       // "." is the level separator of a key
		{"homes//x", "", false},           // an empty level
		{"homes/h1/é", "", false},         // a subject token, not a key
		{"homes/h1/a:b", "", false},
		{"homes/+/x", "", false},
	} {
		key, ok := retainedKey(tc.topic)
		if key != tc.key || ok != tc.ok {
			t.Errorf("retainedKey(%q) = %q, %v; want %q, %v", tc.topic, key, ok, tc.key, tc.ok)
		}
		if ok && retainedTopic(key) != tc.topic {
			t.Errorf("retainedTopic(%q) = %q, want %q", key, retainedTopic(key), tc.topic)
		}
	}
}

func TestRetainedEncoding(t *testing.T) {
	pf := byte(1)
	m := meta{Node: "a", Topic: "homes/h1/x", QoS: 1, Retain: true, Expiry: 42, ContentType: "text/plain\nx",
		PayloadFormat: &pf, Correlation: []byte("c\n"), User: []packets.UserProperty{{Key: "k", Val: "v\n"}}}
	for _, payload := range [][]byte{[]byte("on"), []byte("a\nb\n"), {0, '\n', 0xff}} {
		got, p, err := decodeRetained(encodeRetained(m, payload))
		if err != nil || !bytes.Equal(p, payload) || got.Topic != m.Topic || got.ContentType != m.ContentType ||
			*got.PayloadFormat != pf || got.User[0] != m.User[0] || got.Expiry != 42 {
			t.Errorf("round trip of %q: %+v %q %v", payload, got, p, err)
		}
	}
	if _, _, err := decodeRetained([]byte("no attributes")); err == nil {
		t.Error("a value without attributes decodes")
	}
}

// retainedEntry is an entry of the retained bucket.
type retainedEntry struct {
	key   string
	value []byte
	rev   uint64
	op    jetstream.KeyValueOp
}

func (e retainedEntry) Bucket() string                  { return RetainedBucket }
func (e retainedEntry) Key() string                     { return e.key }
func (e retainedEntry) Value() []byte                   { return e.value }
func (e retainedEntry) Revision() uint64                { return e.rev }
func (e retainedEntry) Created() time.Time              { return time.Now() }
func (e retainedEntry) Delta() uint64                   { return 0 }
func (e retainedEntry) Operation() jetstream.KeyValueOp { return e.op }

func retainedPut(topic, payload string, rev uint64, expiry int64) retainedEntry {
	key, _ := retainedKey(topic)
	return retainedEntry{key: key, rev: rev, op: jetstream.KeyValuePut,
		value: encodeRetained(meta{Node: "b", Topic: topic, Retain: true, Expiry: expiry}, []byte(payload))}
}

func retainedDel(topic string, rev uint64) retainedEntry {
	key, _ := retainedKey(topic)
	return retainedEntry{key: key, rev: rev, op: jetstream.KeyValueDelete}
}

// TestRetainedApply: the local store follows the bucket's entries in
// revision order; an older retainedEntry arriving late, or one this node wrote,
// changes nothing; an expired message is not retained; loading replaces
// what the node's own store held.
func TestRetainedApply(t *testing.T) {
	const topic = "homes/h1/agents/a1/devices/d1/state"
	for _, tc := range []struct {
		name    string
		local   string // retained before load ("" none)
		entries []retainedEntry
		want    string // retained after ("" none)
	}{
		{"a put", "", []retainedEntry{retainedPut(topic, "on", 1, 0)}, "on"},
		{"newer wins", "", []retainedEntry{retainedPut(topic, "on", 1, 0), retainedPut(topic, "off", 2, 0)}, "off"},
		{"older arriving late loses", "", []retainedEntry{retainedPut(topic, "off", 2, 0), retainedPut(topic, "on", 1, 0)}, "off"},
		{"a delete", "", []retainedEntry{retainedPut(topic, "on", 1, 0), retainedDel(topic, 2)}, ""},
		{"a late put after a delete", "", []retainedEntry{retainedDel(topic, 2), retainedPut(topic, "on", 1, 0)}, ""},
		{"expired", "", []retainedEntry{retainedPut(topic, "on", 1, time.Now().Unix()-1)}, ""},
		{"not yet expired", "", []retainedEntry{retainedPut(topic, "on", 1, time.Now().Unix()+60)}, "on"},
		{"the bucket replaces the node's store", "stale", []retainedEntry{retainedPut(topic, "fresh", 3, 0)}, "fresh"},
		{"cleared while away", "stale", nil, ""},
		{"cleared while away, with a delete marker", "stale", []retainedEntry{retainedPut(topic, "x", 1, 0), retainedDel(topic, 2)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
			n := &Node{d: Deps{Server: s}, log: slog.New(slog.DiscardHandler)}
			r := &retained{n: n, revs: map[string]revisions{}, initial: map[string]jetstream.KeyValueEntry{}, seen: make(chan struct{})}
			if tc.local != "" {
				s.Topics.RetainMessage(packets.Packet{TopicName: topic, Payload: []byte(tc.local), FixedHeader: packets.FixedHeader{Retain: true}})
			}
			s.Topics.RetainMessage(packets.Packet{TopicName: "$SYS/x", Payload: []byte("local")})
			half := len(tc.entries) / 2
			for _, e := range tc.entries[:half] { // before load: into initial
				r.apply(e)
			}
			close(r.seen)
			if err := r.load(); err != nil {
				t.Fatal(err)
			}
			for _, e := range tc.entries[half:] { // after: into mochi
				r.apply(e)
			}
			pk, ok := s.Topics.Retained.Get(topic)
			if got := string(pk.Payload); got != tc.want || ok != (tc.want != "") {
				t.Fatalf("retained %q (%v), want %q", got, ok, tc.want)
			}
			if ok && (!pk.FixedHeader.Retain || pk.ProtocolVersion != 5 || pk.Created == 0) {
				t.Fatalf("retained packet %+v lacks its retain flag, version or creation time", pk)
			}
			if _, ok := s.Topics.Retained.Get("$SYS/x"); !ok {
				t.Fatal("load removed a topic the bucket does not hold")
			}
		})
	}
}

// TestRetainedOwnWrite: a write of this node, read back by its watch,
// is not applied again.
func TestRetainedOwnWrite(t *testing.T) {
	const topic = "homes/h1/x"
	s := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	r := &retained{n: &Node{d: Deps{Server: s}}, revs: map[string]revisions{"homes.h1.x": {applied: 5, own: 5}}, ready: true}
	r.apply(retainedPut(topic, "echo", 5, 0))
	if _, ok := s.Topics.Retained.Get(topic); ok {
		t.Fatal("the node applied its own write again")
	}
	r.apply(retainedPut(topic, "newer", 6, 0))
	if pk, _ := s.Topics.Retained.Get(topic); string(pk.Payload) != "newer" {
		t.Fatalf("a newer write of another node was not applied: %q", pk.Payload)
	}
	if rv := r.revs["homes.h1.x"]; rv.applied != 6 || rv.own != 5 {
		t.Fatalf("revisions %+v, want applied 6 own 5", rv)
	}
}

// TestRetainedInject: a retained message from another node reaches the
// local subscribers, but the local retained store stays the bucket's: a
// message arriving late never replaces a newer one, nor revives a cleared
// topic.
func TestRetainedInject(t *testing.T) {
	const topic = "homes/h1/agents/a1/devices/d1/state"
	for _, tc := range []struct {
		name   string
		bucket []retainedEntry
		want   string
	}{
		{"late, over a newer state", []retainedEntry{retainedPut(topic, "new", 2, 0)}, "new"},
		{"late, over a cleared topic", []retainedEntry{retainedPut(topic, "x", 1, 0), retainedDel(topic, 3)}, ""},
		{"before the watch", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
			n := &Node{d: Deps{Server: s}, log: slog.New(slog.DiscardHandler)}
			n.retained = &retained{n: n, revs: map[string]revisions{}, ready: true}
			h := &Hook{n: n, injector: s.NewClient(nil, "local", injectorID, true)}
			h.injector.Properties.ProtocolVersion = 5
			var got []packets.Packet
			if err := s.Subscribe("homes/#", 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) { got = append(got, pk) }); err != nil {
				t.Fatal(err)
			}
			for _, e := range tc.bucket {
				n.retained.apply(e)
			}
			late := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}, TopicName: topic, Payload: []byte("old")}
			if err := h.inject(late); err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || string(got[0].Payload) != "old" || !got[0].FixedHeader.Retain {
				t.Fatalf("subscribers got %+v, want the late message with its retain flag", got)
			}
			pk, ok := s.Topics.Retained.Get(topic)
			if string(pk.Payload) != tc.want || ok != (tc.want != "") {
				t.Fatalf("retained %q (%v) after a late message, want %q", pk.Payload, ok, tc.want)
			}
		})
	}
}
