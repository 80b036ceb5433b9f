package hooks

import (
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
)

func TestTakeWillKeepsPropertiesAndClearsMochis(t *testing.T) {
	_, srv, _ := testGuard(t)
	cl := srv.NewClient(nil, "test", "", false)
	pk := packets.Packet{ProtocolVersion: 5, Connect: packets.ConnectParams{ClientIdentifier: "agent:pi",
		WillFlag: true, WillTopic: "homes/h1/agents/pi/status", WillPayload: []byte("offline"), WillQos: 1, WillRetain: true,
		WillProperties: packets.Properties{WillDelayInterval: 5, ContentType: "text/plain", MessageExpiryInterval: 60,
			User: []packets.UserProperty{{Key: "k", Val: "v"}}}}}
	cl.ParseConnect("test", pk)
	w := takeWill(cl, pk)
	if cl.Properties.Will.Flag != 0 || cl.Properties.Will.TopicName != "" {
		t.Fatalf("mochi still holds the will: %+v", cl.Properties.Will)
	}
	p := w.pk
	if p.TopicName != "homes/h1/agents/pi/status" || string(p.Payload) != "offline" || p.FixedHeader.Qos != 1 || !p.FixedHeader.Retain ||
		p.PacketID == 0 || p.Properties.ContentType != "text/plain" || p.Properties.MessageExpiryInterval != 60 ||
		len(p.Properties.User) != 1 || w.delay != 5 {
		t.Fatalf("kept will %+v delay %d", p, w.delay)
	}
	if takeWill(cl, packets.Packet{ProtocolVersion: 5}) != nil {
		t.Fatal("a CONNECT without a will gave one")
	}
}

func TestWillVerdict(t *testing.T) {
	g, _, is := testGuard(t)
	_, c, err := is.Mint(auth.Spec{Sub: "agent:pi", Homes: map[string]string{"h1": "agent"}, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	willOn := func(topic, payload string) *will {
		return &will{pk: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}, TopicName: topic, Payload: []byte(payload)}}
	}
	const status, state = "homes/h1/agents/pi/status", "homes/h1/agents/pi/devices/door/state"
	alive, expired := time.Now(), time.Now().Add(time.Hour)
	tests := []struct {
		name    string
		w       *will
		now     time.Time
		revoked bool
		ok      bool
	}{
		{"status, alive", willOn(status, "offline"), alive, false, true},
		{"state, alive", willOn(state, `{"state":"locked"}`), alive, false, true},
		{"status, revoked", willOn(status, "offline"), alive, true, false},
		{"state, revoked", willOn(state, `{"state":"locked"}`), alive, true, false},
		{"own status offline, expired", willOn(status, "offline"), expired, false, true},
		{"own status online, expired", willOn(status, "online"), expired, false, false},
		{"state, expired", willOn(state, `{"state":"locked"}`), expired, false, false},
		{"another agent's status, expired", willOn("homes/h1/agents/pi2/status", "offline"), expired, false, false},
		{"another home, alive", willOn("homes/h2/agents/pi/status", "offline"), alive, false, false},
		{"cmd, alive", willOn("homes/h1/agents/pi/devices/door/cmd", "{}"), alive, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &session{}
			s.grant.Store(g.newGrant(c))
			s.revoked.Store(tc.revoked)
			g.now = func() time.Time { return tc.now }
			if why := g.willVerdict(s, s.grant.Load(), tc.w); (why == "") != tc.ok {
				t.Fatalf("verdict %q, want ok=%v", why, tc.ok)
			}
		})
	}
}
