package hooks

import (
	"log/slog"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
	"homemq/envelope"
)

// testGuard returns a Guard on a server that never listens, and an issuer.
func testGuard(t testing.TB) (*Guard, *mqtt.Server, *auth.Issuer) {
	t.Helper()
	keys := auth.NewMemoryKeys()
	revs, _ := auth.LoadRevocations("")
	v := auth.NewVerifier(auth.Config{}, keys, revs)
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	g, err := New(srv, v, make([]byte, 32), DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddHook(g, nil); err != nil {
		t.Fatal(err)
	}
	return g, srv, auth.NewIssuer(auth.Config{}, keys)
}

// connect runs the Guard's CONNECT decision for a client with token.
func connect(t testing.TB, g *Guard, srv *mqtt.Server, clientID, token string) (*mqtt.Client, error) {
	t.Helper()
	cl := srv.NewClient(nil, "test", "", false)
	pk := packets.Packet{ProtocolVersion: 5, Connect: packets.ConnectParams{ClientIdentifier: clientID, Password: []byte(token), PasswordFlag: true, Keepalive: 30}}
	cl.ParseConnect("test", pk)
	return cl, g.OnConnect(cl, pk)
}

func TestConnectDecisions(t *testing.T) {
	g, srv, is := testGuard(t)
	tok, _, err := is.Mint(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h1": "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, clientID, token string
		code                  byte
	}{
		{"own sub", "user:alice", tok, 0},
		{"own namespace", "user:alice/phone", tok, 0},
		{"assigned", "", tok, 0},
		{"other sub: keyed under user:alice/", "user:bob", tok, 0},
		{"prefix without slash: keyed under user:alice/", "user:alicebob", tok, 0},
		{"garbage token", "user:alice", "x.y.z", 0x86},
		{"no token", "user:alice", "", 0x86},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := connect(t, g, srv, tc.clientID, tc.token)
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !g.OnConnectAuthenticate(cl, packets.Packet{}) {
					t.Fatal("accepted in OnConnect but not authenticated")
				}
				return
			}
			code, ok := err.(packets.Code)
			if !ok || code.Code != tc.code {
				t.Fatalf("got %v, want code 0x%02X", err, tc.code)
			}
			if g.OnConnectAuthenticate(cl, packets.Packet{}) {
				t.Fatal("refused client authenticated")
			}
		})
	}
}

func TestRefusalWindow(t *testing.T) {
	g, _, _ := testGuard(t)
	g.cfg.RefusalLimit = 3
	s := &session{}
	for i, want := range []bool{false, false, true, true} {
		if got := g.refuse(s); got != want {
			t.Fatalf("refusal %d: over limit = %v, want %v", i+1, got, want)
		}
	}
	clock := time.Now().Add(2 * time.Minute)
	g.now = func() time.Time { return clock }
	if g.refuse(s) {
		t.Fatal("refusals older than the window still count")
	}
}

func TestAliveFollowsDeadlineAndFlags(t *testing.T) {
	s := &session{}
	if _, ok := s.alive(0); ok {
		t.Fatal("a session without a grant is alive")
	}
	s.grant.Store(&grant{deadline: 100})
	if _, ok := s.alive(99); !ok {
		t.Fatal("dead before its deadline")
	}
	if _, ok := s.alive(100); ok {
		t.Fatal("alive at its deadline")
	}
	s.closed.Store(true)
	if _, ok := s.alive(0); ok {
		t.Fatal("alive after being closed")
	}
}

// BenchmarkAlive is the per-PUBLISH/SUBSCRIBE token check.
func BenchmarkAlive(b *testing.B) {
	s := &session{}
	s.grant.Store(&grant{deadline: time.Now().Add(time.Hour).UnixNano()})
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.alive(time.Now().UnixNano()); !ok {
			b.Fatal("dead")
		}
	}
}

// BenchmarkOnPublishState is the whole Guard cost of a state publish:
// session lookup, token check and topic rules.
func BenchmarkOnPublishState(b *testing.B) {
	g, srv, is := testGuard(b)
	tok, _, _ := is.Mint(auth.Spec{Sub: "agent:pi", Homes: map[string]string{"h1": "agent"}})
	cl, err := connect(b, g, srv, "agent:pi", tok)
	if err != nil {
		b.Fatal(err)
	}
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "homes/h1/agents/pi/devices/lamp/state", Payload: []byte("on")}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.OnPublish(cl, pk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOnPublishCommand is the Guard cost of a signed command: rules,
// envelope parse and verify, replay record.
func BenchmarkOnPublishCommand(b *testing.B) {
	g, srv, is := testGuard(b)
	g.cfg.CommandRate, g.cfg.CommandBurst = 1e9, 1e9
	g.replay = envelope.NewReplayCache(g.cfg.Replay.ReplayCache, g.cfg.Envelope.Horizon(), envelope.OwnerQuota(1<<30)) // one sub sends them all
	tok, c, _ := is.Mint(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h1": "admin"}})
	cl, err := connect(b, g, srv, "user:alice", tok)
	if err != nil {
		b.Fatal(err)
	}
	topic := "homes/h1/agents/pi/devices/lock/cmd"
	key := envelope.DeriveKey(make([]byte, 32), c.ID)
	payloads := make([][]byte, 4096)
	for i := range payloads {
		payloads[i], _ = envelope.Seal(key, topic, c.ID, `{"action":"on"}`, time.Now(), 30*time.Second)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%len(payloads) == 0 {
			b.StopTimer()
			for j := range payloads {
				payloads[j], _ = envelope.Seal(key, topic, c.ID, `{"action":"on"}`, time.Now(), 30*time.Second)
			}
			b.StartTimer()
		}
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic, Payload: payloads[i%len(payloads)]}
		if _, err := g.OnPublish(cl, pk); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCommandIssuedBeforeStartIsRefused: the replay cache is in memory, so
// after a restart a command issued before it may have been seen already.
func TestCommandIssuedBeforeStartIsRefused(t *testing.T) {
	g, srv, is := testGuard(t)
	tok, c, _ := is.Mint(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h1": "admin"}})
	cl, err := connect(t, g, srv, "user:alice", tok)
	if err != nil {
		t.Fatal(err)
	}
	topic := "homes/h1/agents/pi/devices/lock/cmd"
	key := envelope.DeriveKey(make([]byte, 32), c.ID)
	now := time.Now()
	old, _ := envelope.SealNonce(key, topic, c.ID, `{"action":"unlock"}`, "AAAAAAAAAAAAAAAAAAAAAA", now.Unix()-2, now.Unix()+20)
	fresh, _ := envelope.Seal(key, topic, c.ID, `{"action":"unlock"}`, now, 20*time.Second)
	g.started = now.Unix()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic, Payload: old}
	if _, err := g.OnPublish(cl, pk); err != packets.ErrRejectPacket {
		t.Fatalf("command issued before start: %v, want refused", err)
	}
	pk.Payload = fresh
	if _, err := g.OnPublish(cl, pk); err != nil {
		t.Fatalf("command issued after start: %v", err)
	}
}

// TestOfflineSessionKeepsItsRights: deliveries to a persistent session
// whose connection ended are judged by its last token's rights, and a
// revocation ends them.
func TestOfflineSessionKeepsItsRights(t *testing.T) {
	g, srv, is := testGuard(t)
	tok, c, _ := is.Mint(auth.Spec{Sub: "agent:pi", Homes: map[string]string{"h1": "agent"}})
	cl, err := connect(t, g, srv, "agent:pi", tok)
	if err != nil {
		t.Fatal(err)
	}
	own, other := "homes/h1/agents/pi/devices/lamp/cmd", "homes/h1/agents/pi2/devices/lamp/cmd"
	g.OnDisconnect(cl, nil, false)
	if !g.OnACLCheck(cl, own, false) || g.OnACLCheck(cl, other, false) {
		t.Fatal("offline session: own cmd must be queued, another agent's not")
	}
	g.Revoked(auth.Revocation{JTI: c.ID})
	if g.OnACLCheck(cl, own, false) {
		t.Fatal("revoked offline session still gets deliveries")
	}
	cl2, _ := connect(t, g, srv, "agent:pi2", mustMint(t, is, "agent:pi2"))
	g.OnDisconnect(cl2, nil, true)
	if g.OnACLCheck(cl2, "homes/h1/agents/pi2/devices/lamp/cmd", false) {
		t.Fatal("a session that ended with its connection still gets deliveries")
	}
}

func mustMint(t *testing.T, is *auth.Issuer, sub string) string {
	t.Helper()
	tok, _, err := is.Mint(auth.Spec{Sub: sub, Homes: map[string]string{"h1": "agent"}})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
