package hooks

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
)

func TestCapDisconnectExpiry(t *testing.T) {
	g, srv, _ := testGuard(t)
	srv.Options.Capabilities.MaximumSessionExpiryInterval = 86400
	for _, tc := range []struct {
		flag      bool
		got, want uint32
	}{{true, 0xFFFFFFFF, 86400}, {true, 86401, 86400}, {true, 600, 600}, {true, 0, 0}, {false, 0, 0}} {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
			Properties: packets.Properties{SessionExpiryInterval: tc.got, SessionExpiryIntervalFlag: tc.flag}}
		if out := g.capDisconnectExpiry(pk); out.Properties.SessionExpiryInterval != tc.want {
			t.Errorf("DISCONNECT with %d: %d, want %d", tc.got, out.Properties.SessionExpiryInterval, tc.want)
		}
	}
}

// TestSessionsPerSub: persistent sessions count per sub until the cap; a
// reconnect of an existing one and clean connections do not.
func TestSessionsPerSub(t *testing.T) {
	g, srv, is := testGuard(t)
	g.cfg.Quotas.SessionsPerSub = 2
	tok, _, _ := is.Mint(auth.Spec{Sub: "user:a", Homes: map[string]string{"h1": "admin"}})
	persistent := func(id string) error {
		cl := srv.NewClient(nil, "test", "", false)
		pk := packets.Packet{ProtocolVersion: 5, Connect: packets.ConnectParams{ClientIdentifier: id, Password: []byte(tok), PasswordFlag: true, Keepalive: 30},
			Properties: packets.Properties{SessionExpiryInterval: 600, SessionExpiryIntervalFlag: true}}
		cl.ParseConnect("test", pk)
		err := g.OnConnect(cl, pk)
		if err == nil {
			srv.Clients.Add(cl) // as mochi does after OnConnect
		}
		return err
	}
	for _, step := range []struct {
		id   string
		want bool
	}{{"user:a/1", true}, {"user:a/2", true}, {"user:a/3", false}, {"user:a/1", true}} {
		if err := persistent(step.id); (err == nil) != step.want {
			t.Fatalf("persistent session %s: %v, want ok=%v", step.id, err, step.want)
		}
	}
	if _, err := connect(t, g, srv, "user:a/clean", tok); err != nil {
		t.Fatalf("a clean connection: %v", err)
	}
	srv.Clients.Delete("user:a/2") // expired
	if err := persistent("user:a/3"); err != nil {
		t.Fatalf("after one expired: %v", err)
	}
}
