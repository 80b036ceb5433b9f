package hooks

import (
	"bytes"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
	"homemq/envelope"
)

// TestCommandStateIsMadeAtTheFirstCommand: a connection that sends no
// command holds neither a command rate limiter nor a message key; its
// first command makes both, with the limits of the configuration and the
// key of its token, and a re-authenticated grant derives its own key.
func TestCommandStateIsMadeAtTheFirstCommand(t *testing.T) {
	g, srv, is := testGuard(t)
	g.cfg.CommandRate, g.cfg.CommandBurst = 1, 1
	tok, c, _ := is.Mint(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h1": "admin"}})
	cl, err := connect(t, g, srv, "user:alice", tok)
	if err != nil {
		t.Fatal(err)
	}
	s := g.session(cl)
	gr := s.grant.Load()
	if s.commands.Load() != nil || gr.key.Load() != nil {
		t.Fatal("command state made at CONNECT")
	}
	const topic = "homes/h1/agents/pi/devices/lock/cmd"
	seal := func(jti string) []byte {
		p, err := envelope.Seal(envelope.DeriveKey(make([]byte, 32), jti), topic, jti, `{"action":"unlock"}`, time.Now(), 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	g.started = time.Now().Unix() - 5
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic, Payload: seal(c.ID)}
	if _, err := g.OnPublish(cl, pk); err != nil {
		t.Fatalf("first command: %v", err)
	}
	if k := gr.key.Load(); k == nil || !bytes.Equal(*k, envelope.DeriveKey(make([]byte, 32), c.ID)) {
		t.Fatal("the first command did not keep its token's message key")
	}
	if l := s.commands.Load(); l == nil || l.Burst() != 1 {
		t.Fatal("the first command did not make the configured rate limiter")
	}
	pk.Payload = seal(c.ID)
	if _, err := g.OnPublish(cl, pk); err != packets.ErrRejectPacket {
		t.Fatalf("second command within the burst of 1: %v, want refused", err)
	}
	tok2, c2, _ := is.Mint(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h1": "admin"}})
	c2v, err := g.verifier.Verify(tok2)
	if err != nil {
		t.Fatal(err)
	}
	gr2 := g.newGrant(c2v)
	if !bytes.Equal(g.messageKey(gr2), envelope.DeriveKey(make([]byte, 32), c2.ID)) {
		t.Fatal("a new grant uses another token's key")
	}
}
