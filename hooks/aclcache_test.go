package hooks

import (
	"fmt"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
)

// TestACLCacheForgetsAtEveryRightsChange: a delivery decision remembered
// while a session could read a topic is never used after its rights
// changed: re-authentication with fewer homes, revocation of its token,
// of its sub (how registry and membership changes reach the Guard),
// expiry and cut-off. A revocation of someone else forgets the cache too
// but changes no decision.
func TestACLCacheForgetsAtEveryRightsChange(t *testing.T) {
	const h1 = "homes/h1/agents/pi/devices/lamp/state"
	tests := []struct {
		name   string
		change func(t *testing.T, g *Guard, s *session, is *auth.Issuer, c *auth.Claims)
		allow  bool // reading h1 after the change
	}{
		{"re-authentication for another home", func(t *testing.T, g *Guard, s *session, is *auth.Issuer, _ *auth.Claims) {
			_, c2, err := is.Mint(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h2": "admin"}})
			if err != nil {
				t.Fatal(err)
			}
			s.setGrant(g.newGrant(c2)) // what OnAuthPacket does with the verified token
		}, false},
		{"revocation of the token", func(_ *testing.T, g *Guard, _ *session, _ *auth.Issuer, c *auth.Claims) {
			g.Revoked(auth.Revocation{JTI: c.ID})
		}, false},
		{"revocation of the sub (member removed)", func(_ *testing.T, g *Guard, _ *session, _ *auth.Issuer, _ *auth.Claims) {
			g.Revoked(auth.Revocation{Sub: "user:alice", At: time.Now().Add(time.Minute).Unix()})
		}, false},
		{"expiry", func(_ *testing.T, g *Guard, _ *session, _ *auth.Issuer, _ *auth.Claims) {
			later := time.Now().Add(48 * time.Hour)
			g.now = func() time.Time { return later }
		}, false},
		{"cut-off", func(_ *testing.T, g *Guard, s *session, _ *auth.Issuer, _ *auth.Claims) {
			g.startCutOff(s)
		}, false},
		{"revocation of someone else", func(_ *testing.T, g *Guard, _ *session, _ *auth.Issuer, _ *auth.Claims) {
			g.Revoked(auth.Revocation{Sub: "user:bob", At: time.Now().Add(time.Minute).Unix()})
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, srv, is := testGuard(t)
			tok, c, err := is.Mint(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h1": "admin"}})
			if err != nil {
				t.Fatal(err)
			}
			cl, err := connect(t, g, srv, "user:alice/phone", tok)
			if err != nil {
				t.Fatal(err)
			}
			s := g.session(cl)
			for range 2 { // the second one is answered from the cache
				if !g.OnACLCheck(cl, h1, false) {
					t.Fatal("refused before the change")
				}
			}
			if snap := s.acl.Load(); snap == nil || !snap.read[h1] {
				t.Fatal("the decision was not remembered")
			}
			before := s.rights.Load()
			tc.change(t, g, s, is, c)
			if s.rights.Load() == before && tc.name != "expiry" {
				t.Error("the change did not start a new rights generation")
			}
			if got := g.OnACLCheck(cl, h1, false); got != tc.allow {
				t.Errorf("OnACLCheck after the change = %v, want %v", got, tc.allow)
			}
			pk := publishTo(1, h1)
			cl.State.Inflight.Set(pk)
			if withheld := g.OnPacketEncode(cl, pk).FixedHeader.Type == packets.Pingresp; withheld == tc.allow {
				t.Errorf("delivery withheld = %v after the change, want %v", withheld, !tc.allow)
			}
		})
	}
}

// TestACLCacheIsBounded: a session that reads more topics than the cache
// holds keeps the first ones and judges the rest without remembering them,
// the same way every time.
func TestACLCacheIsBounded(t *testing.T) {
	g, srv, is := testGuard(t)
	tok, _, _ := is.Mint(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h1": "viewer"}})
	cl, err := connect(t, g, srv, "user:alice/phone", tok)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		for i := range aclCacheSize + 50 {
			topic := fmt.Sprintf("homes/h%d/agents/pi/devices/d%d/state", 1+i%2, i)
			if got, want := g.OnACLCheck(cl, topic, false), i%2 == 0; got != want {
				t.Fatalf("round %d, %s: allowed %v, want %v", round, topic, got, want)
			}
		}
	}
	if n := len(g.session(cl).acl.Load().read); n != aclCacheSize {
		t.Fatalf("the cache holds %d topics, want %d", n, aclCacheSize)
	}
}

// TestACLCacheKeepsNoOlderGeneration: a decision made with rights that
// changed meanwhile is not stored over the newer generation's cache.
func TestACLCacheKeepsNoOlderGeneration(t *testing.T) {
	s := &session{}
	s.remember(nil, 2, "a", true)
	s.remember(s.acl.Load(), 1, "b", true) // a goroutine that loaded generation 1 before the change
	snap := s.acl.Load()
	if snap.gen != 2 || len(snap.read) != 1 || !snap.read["a"] {
		t.Fatalf("cache after an older generation's decision: gen %d, %v", snap.gen, snap.read)
	}
}

// BenchmarkACLCheckCached is OnACLCheck for a topic the session read
// before.
func BenchmarkACLCheckCached(b *testing.B) {
	g, srv, is := testGuard(b)
	tok, _, _ := is.Mint(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h1": "viewer"}})
	cl, err := connect(b, g, srv, "user:alice/phone", tok)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !g.OnACLCheck(cl, "homes/h1/agents/pi/devices/lamp/state", false) {
			b.Fatal("refused")
		}
	}
}

// TestLendRights: a session a cluster node installs for a connecting
// client (a placeholder of the same id, unknown to the Guard) is refused
// everything until the client lends it its rights; then it may read what
// the client may read, and nothing else.
func TestLendRights(t *testing.T) {
	const mine, other = "homes/h1/agents/pi/devices/lamp/cmd", "homes/h2/agents/pi/devices/lamp/cmd"
	g, srv, is := testGuard(t)
	tok, _, err := is.Mint(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h1": "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := connect(t, g, srv, "user:alice/phone", tok)
	if err != nil {
		t.Fatal(err)
	}
	placeholder := srv.NewClient(nil, "t", cl.ID, false)
	if g.OnACLCheck(placeholder, mine, false) {
		t.Fatal("a session the Guard never saw may read before any rights were lent")
	}
	g.LendRights(cl)
	if !g.OnACLCheck(placeholder, mine, false) {
		t.Errorf("the placeholder may not read %s with the client's rights", mine)
	}
	if g.OnACLCheck(placeholder, other, false) {
		t.Errorf("the placeholder may read %s, outside the client's rights", other)
	}
}

// TestRestoreRights: a session restored from the store is refused
// everything until it gets the rights its cluster record kept; then it
// may read what those claims allow, and OfflineClaims returns them for
// the next record.
func TestRestoreRights(t *testing.T) {
	const mine, other = "homes/h1/agents/pi/devices/lamp/cmd", "homes/h2/agents/pi/devices/lamp/cmd"
	g, srv, is := testGuard(t)
	_, c, err := is.Mint(auth.Spec{Sub: "agent:pi", Homes: map[string]string{"h1": "agent"}})
	if err != nil {
		t.Fatal(err)
	}
	restored := srv.NewClient(nil, "t", "agent:pi", false)
	if g.OnACLCheck(restored, mine, false) {
		t.Fatal("a restored session may read before it has rights")
	}
	g.RestoreRights(restored.ID, c)
	if !g.OnACLCheck(restored, mine, false) || g.OnACLCheck(restored, other, false) {
		t.Errorf("restored rights: read %s %v, %s %v; want true, false", mine, g.OnACLCheck(restored, mine, false),
			other, g.OnACLCheck(restored, other, false))
	}
	if got, ok := g.OfflineClaims(restored.ID); !ok || got.ID != c.ID {
		t.Errorf("OfflineClaims = %v, %v; want the restored claims", got, ok)
	}
}
