package hooks

import (
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
)

// recordingStore records what the Guard tells the store.
type recordingStore struct {
	dropped []uint16
	unsubs  []string
}

func (r *recordingStore) OnQosDropped(_ *mqtt.Client, pk packets.Packet) {
	r.dropped = append(r.dropped, pk.PacketID)
}

func (r *recordingStore) OnUnsubscribed(_ *mqtt.Client, pk packets.Packet) {
	for _, f := range pk.Filters {
		r.unsubs = append(r.unsubs, f.Filter)
	}
}

func publishTo(id uint16, topic string) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: id, TopicName: topic}
}

// TestDropUnreadable: what the token may not read leaves the session and
// the store; the rest stays.
func TestDropUnreadable(t *testing.T) {
	g, srv, is := testGuard(t)
	st := &recordingStore{}
	g.UseStore(st)
	tok, _, _ := is.Mint(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h2": "admin"}})
	cl, err := connect(t, g, srv, "user:alice", tok)
	if err != nil {
		t.Fatal(err)
	}
	cl.State.Inflight.Set(publishTo(1, "homes/h1/agents/pi/devices/lamp/state"))
	cl.State.Inflight.Set(publishTo(2, "homes/h2/agents/pi/devices/lamp/state"))
	cl.State.Inflight.Set(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: 3})
	for _, f := range []string{"homes/h1/#", "homes/h2/#"} {
		cl.State.Subscriptions.Add(f, packets.Subscription{Filter: f, Qos: 1})
		srv.Topics.Subscribe(cl.ID, packets.Subscription{Filter: f, Qos: 1})
	}
	s := g.session(cl)
	g.dropUnreadable(cl, s, s.grant.Load())
	if _, ok := cl.State.Inflight.Get(1); ok {
		t.Error("a message of h1 stayed in flight")
	}
	for _, id := range []uint16{2, 3} {
		if _, ok := cl.State.Inflight.Get(id); !ok {
			t.Errorf("packet %d was dropped", id)
		}
	}
	if _, ok := cl.State.Subscriptions.Get("homes/h1/#"); ok || len(srv.Topics.Subscribers("homes/h1/agents/pi/status").Subscriptions) != 0 {
		t.Error("the h1 subscription stayed")
	}
	if _, ok := cl.State.Subscriptions.Get("homes/h2/#"); !ok {
		t.Error("the h2 subscription was dropped")
	}
	if len(st.dropped) != 1 || st.dropped[0] != 1 || len(st.unsubs) != 1 || st.unsubs[0] != "homes/h1/#" {
		t.Errorf("store told dropped %v, unsubscribed %v", st.dropped, st.unsubs)
	}
}

// TestCheckDelivery: a PUBLISH the receiver may not read is replaced by a
// PINGRESP and dropped from flight; one it may read passes unchanged.
func TestCheckDelivery(t *testing.T) {
	g, srv, is := testGuard(t)
	tok, _, _ := is.Mint(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h2": "admin"}})
	cl, err := connect(t, g, srv, "user:alice", tok)
	if err != nil {
		t.Fatal(err)
	}
	stranger := srv.NewClient(nil, "test", "user:bob", false)
	tests := []struct {
		name     string
		cl       *mqtt.Client
		pk       packets.Packet
		withheld bool
	}{
		{"readable", cl, publishTo(1, "homes/h2/agents/pi/devices/lamp/state"), false},
		{"another home", cl, publishTo(2, "homes/h1/agents/pi/devices/lamp/state"), true},
		{"alias learnt", cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "homes/h2/agents/pi/status",
			Properties: packets.Properties{TopicAlias: 3}}, false},
		{"alias of a readable topic", cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, Properties: packets.Properties{TopicAlias: 3}}, false},
		{"unknown alias", cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, Properties: packets.Properties{TopicAlias: 4}}, true},
		{"no session", stranger, publishTo(1, "homes/h2/agents/pi/devices/lamp/state"), true},
		{"alias set by a withheld publish", cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "homes/h1/agents/pi/status",
			Properties: packets.Properties{TopicAlias: 5}}, true},
		{"alias of an unreadable topic", cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, Properties: packets.Properties{TopicAlias: 5}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cl.State.Inflight.Set(tc.pk)
			out := g.OnPacketEncode(tc.cl, tc.pk)
			if withheld := out.FixedHeader.Type == packets.Pingresp; withheld != tc.withheld {
				t.Fatalf("withheld %v, want %v", withheld, tc.withheld)
			}
			if _, inflight := tc.cl.State.Inflight.Get(tc.pk.PacketID); tc.withheld && tc.pk.FixedHeader.Qos > 0 && tc.cl == cl && inflight {
				t.Error("a withheld message stayed in flight")
			}
			tc.cl.State.Inflight.Delete(tc.pk.PacketID)
		})
	}
}

// TestWithheldAliasIsTaughtLater: when the PUBLISH that set a topic alias
// was withheld and the rights come back, the first one written with that
// alias carries the topic name again.
func TestWithheldAliasIsTaughtLater(t *testing.T) {
	g, srv, is := testGuard(t)
	tok, _, _ := is.Mint(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h2": "admin"}})
	cl, err := connect(t, g, srv, "user:alice", tok)
	if err != nil {
		t.Fatal(err)
	}
	const h1 = "homes/h1/agents/pi/status"
	first := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: h1, Properties: packets.Properties{TopicAlias: 1}}
	if out := g.OnPacketEncode(cl, first); out.FixedHeader.Type != packets.Pingresp {
		t.Fatal("a PUBLISH of h1 was written to a token without h1")
	}
	more, _, _ := is.Mint(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h1": "admin", "h2": "admin"}})
	c, err := g.verifier.Verify(more)
	if err != nil {
		t.Fatal(err)
	}
	g.session(cl).setGrant(g.newGrant(c)) // as OnAuthPacket does
	later := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, Properties: packets.Properties{TopicAlias: 1}}
	if out := g.OnPacketEncode(cl, later); out.FixedHeader.Type != packets.Publish || out.TopicName != h1 {
		t.Fatalf("first written PUBLISH with the alias: type %d topic %q, want the topic name %s", out.FixedHeader.Type, out.TopicName, h1)
	}
	if out := g.OnPacketEncode(cl, later); out.TopicName != "" {
		t.Fatalf("the alias was taught twice: topic %q", out.TopicName)
	}
}
