package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"homemq/auth"
)

// TestKnownTokenRefusedOnceRevokedOrExpired: a client reconnects with the
// token it connected with before, which the broker's verified-token cache
// now holds; once that token is revoked (by jti or by sub) or has expired,
// the reconnect is refused at CONNECT, at once, with the reason on the
// wire.
func TestKnownTokenRefusedOnceRevokedOrExpired(t *testing.T) {
	tests := []struct {
		name   string
		ttl    time.Duration
		change func(t *testing.T, b *testBroker, c *auth.Claims)
		code   byte
		reason string
	}{
		{name: "jti revoked", code: 0x87, reason: "revoked", change: func(t *testing.T, b *testBroker, c *auth.Claims) {
			if err := b.Revoked.Add(auth.Revocation{JTI: c.ID}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "sub revoked", code: 0x87, reason: "revoked", change: func(t *testing.T, b *testBroker, c *auth.Claims) {
			if err := b.Revoked.Add(auth.Revocation{Sub: c.Subject, At: c.IssuedAtTime().Unix()}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "expired", ttl: 2 * time.Second, code: 0x86, reason: "token expired", change: func(t *testing.T, b *testBroker, c *auth.Claims) {
			past := c.ExpiresAtTime().Add(b.Config().Tokens.WithDefaults().Leeway + 500*time.Millisecond)
			eventually(t, 15*time.Second, "the token's exp and leeway to pass", func() bool { return time.Now().After(past) })
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t)
			tok, claims := b.mintSpec(auth.Spec{Sub: "agent:known", Homes: map[string]string{"h1": "agent"}, TTL: tc.ttl})
			for i := range 2 { // the first verifies in full, the second is a cache hit
				c, ca, err := b.v5(overTLS, "agent:known", tok)
				if err != nil {
					t.Fatalf("connect %d with a valid token: %v %+v", i, err, ca)
				}
				_ = c.Disconnect(&paho.Disconnect{})
			}
			tc.change(t, b, claims)
			_, ca, err := b.v5(overTLS, "agent:known", tok)
			if err == nil || ca == nil {
				t.Fatalf("reconnect with the known token after %s: accepted (%v)", tc.name, err)
			}
			if ca.ReasonCode != tc.code || !strings.Contains(ca.Properties.ReasonString, tc.reason) {
				t.Fatalf("CONNACK 0x%02X %q, want 0x%02X %q", ca.ReasonCode, ca.Properties.ReasonString, tc.code, tc.reason)
			}
		})
	}
}
