package cluster

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

func TestSessionRecordExpired(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	for _, tc := range []struct {
		name string
		rec  sessionRecord
		want bool
	}{
		{"connected", sessionRecord{Expiry: 1}, false},
		{"offline within its expiry", sessionRecord{Expiry: 3600, Gone: now.Unix() - 60}, false},
		{"offline past its expiry", sessionRecord{Expiry: 60, Gone: now.Unix() - 61}, true},
		{"longest expiry", sessionRecord{Expiry: ^uint32(0), Gone: 1}, false},
	} {
		if got := tc.rec.expired(now); got != tc.want {
			t.Errorf("%s: expired = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSessionSubjects(t *testing.T) {
	for _, tc := range []struct{ a, b string }{{"a", "b"}, {"node-a", "node-b"}, {"x.y", "x*y"}} {
		ta, tb := nodeToken(tc.a), nodeToken(tc.b)
		if ta == tb || len(ta) != 16 || !hexOnly(ta) {
			t.Errorf("node tokens %q %q for %q %q: want distinct 16-hex tokens", ta, tb, tc.a, tc.b)
		}
		if sessionKey(tc.a) == sessionKey(tc.b) || len(sessionKey(tc.a)) != 64 {
			t.Errorf("session keys of %q and %q collide or are not 64 hex", tc.a, tc.b)
		}
	}
}

func hexOnly(s string) bool {
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

func TestPersistentSession(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version byte
		clean   bool
		expiry  uint32
		want    bool
	}{
		{"MQTT 5, expiry", 5, false, 3600, true},
		{"MQTT 5, no expiry", 5, false, 0, false},
		{"MQTT 5, clean start and expiry", 5, true, 60, true},
		{"3.1.1 persistent", 4, false, 0, true},
		{"3.1.1 clean", 4, true, 0, false},
	} {
		cl := &mqtt.Client{Properties: mqtt.ClientProperties{ProtocolVersion: tc.version, Clean: tc.clean,
			Props: packets.Properties{SessionExpiryInterval: tc.expiry}}}
		if got := persistentSession(cl); got != tc.want {
			t.Errorf("%s: persistent = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A take reply carries a queued command intact: its expiry, packet id and
// properties survive the JSON between nodes.
func TestTakeReplyRoundTrip(t *testing.T) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "homes/h1/agents/a1/devices/d1/cmd",
		Payload: []byte(`{"v":1}`), PacketID: 7, Expiry: 1_000_060, Created: 1_000_000, ProtocolVersion: 5,
		Properties: packets.Properties{MessageExpiryInterval: 60, User: []packets.UserProperty{{Key: "k", Val: "v"}}}}
	in := takeReply{Found: true, Session: sessionRecord{Node: "a", Client: "agent:a1", Expiry: 3600,
		Subs: []packets.Subscription{{Filter: "homes/h1/agents/a1/devices/+/cmd", Qos: 1, NoLocal: true}}}, Queue: []packets.Packet{pk}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out takeReply
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	got := out.Queue[0]
	if got.PacketID != 7 || got.Expiry != pk.Expiry || string(got.Payload) != `{"v":1}` || got.Properties.User[0].Val != "v" ||
		got.FixedHeader.Qos != 1 || out.Session.Subs[0].Filter != in.Session.Subs[0].Filter || !out.Session.Subs[0].NoLocal {
		t.Fatalf("round trip changed the session: %+v", out)
	}
}

// TestSessionsHandOver: on a one-server JetStream, a session offline on
// node a (a subscription, a live and an expired queued command) is handed
// to node b when its client connects there: b holds the subscription and
// the live command only, a holds nothing of it. With a gone, a third node
// c starts the session from the record and the copy of b's queue.
func TestSessionsHandOver(t *testing.T) {
	node := jetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := func(name string) *Sessions {
		n := node(name)
		n.d.Server = mqtt.New(nil)
		s, err := newSessions(ctx, n, 1)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := start("a"), start("b")
	const id = "agent:a1"
	const filter = "homes/h1/agents/a1/devices/+/cmd"
	hour := uint32(3600)
	connecting := func(srv *mqtt.Server) *mqtt.Client {
		cl := srv.NewClient(nil, "t", id, false)
		cl.Properties.ProtocolVersion = 5
		cl.Properties.Props.SessionExpiryInterval = hour
		return cl
	}

	old := connecting(a.n.d.Server)
	old.Stop(packets.ErrServerShuttingDown)
	sub := packets.Subscription{Filter: filter, Qos: 1}
	a.n.d.Server.Topics.Subscribe(id, sub)
	old.State.Subscriptions.Add(filter, sub)
	now := time.Now().Unix()
	for i, exp := range []int64{now + 60, now - 1} {
		old.State.Inflight.Set(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
			TopicName: "homes/h1/agents/a1/devices/d1/cmd", Payload: []byte{byte(i)}, PacketID: uint16(i + 1), Expiry: exp,
			Created: now - 5, ProtocolVersion: 5})
	}
	a.n.d.Server.Clients.Add(old)
	a.record(old, now)

	cl := connecting(b.n.d.Server)
	b.OnSessionEstablish(cl, packets.Packet{})
	got, ok := b.n.d.Server.Clients.Get(id)
	if !ok {
		t.Fatal("b holds no session after the hand-over")
	}
	if got.State.Subscriptions.Len() != 1 || len(b.n.d.Server.Topics.Subscribers("homes/h1/agents/a1/devices/d1/cmd").Subscriptions) != 1 {
		t.Fatalf("b has %d subscriptions, want the one from a", got.State.Subscriptions.Len())
	}
	if q := got.State.Inflight.GetAll(false); len(q) != 1 || q[0].Payload[0] != 0 {
		t.Fatalf("b queued %+v, want the live command only", q)
	}
	if _, ok := a.n.d.Server.Clients.Get(id); ok || len(a.n.d.Server.Topics.Subscribers("homes/h1/agents/a1/devices/d1/cmd").Subscriptions) != 0 {
		t.Fatal("a still holds the session it handed over")
	}
	b.OnSessionEstablished(got, packets.Packet{}) // mochi's inheritance gives the connection got's state

	// mochi's inheritance: the connection takes got's state; the agent
	// goes away from b, which queues (and copies) a command
	onB := connecting(b.n.d.Server)
	onB.State.Subscriptions = got.State.Subscriptions
	b.n.d.Server.Clients.Add(onB)
	onB.Stop(packets.ErrServerShuttingDown)
	queued := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName: "homes/h1/agents/a1/devices/d1/cmd", Payload: []byte("queued on b"), PacketID: 7,
		Created: now, Expiry: now + 60, ProtocolVersion: 5}
	onB.State.Inflight.Set(queued)
	b.OnQosPublish(onB, queued, now, 0)

	c := start("c")
	b.n.Close() // b is gone: no responder
	cl = connecting(c.n.d.Server)
	c.OnSessionEstablish(cl, packets.Packet{})
	got, ok = c.n.d.Server.Clients.Get(id)
	if !ok || got.State.Subscriptions.Len() != 1 {
		t.Fatalf("c after b died: session %v %+v, want the recorded subscription", ok, got)
	}
	if q := got.State.Inflight.GetAll(false); len(q) != 1 || string(q[0].Payload) != "queued on b" {
		t.Fatalf("c after b died queued %+v, want the command b queued", q)
	}
	if _, keys, err := c.queue.load(ctx, id); err != nil || len(keys) != 0 {
		t.Fatalf("the copy of the queue is still there after c took it: %v %v", keys, err)
	}
}
