package e2e

import (
	"strings"
	"testing"
	"time"

	"homemq/auth"
)

// TestRevokingATokenCutsTokensRefreshedFromIt: an agent trades its token
// for a fresh one through POST /api/token, and that one for another; `homemq
// revoke --jti` of the FIRST token closes the live connections of the
// refreshed ones at once, and they are refused afterwards, at CONNECT and
// at the token API.
func TestRevokingATokenCutsTokensRefreshedFromIt(t *testing.T) {
	b := startBroker(t)
	srv := b.Addrs()["https"]
	mustCLI(t, b.Data, srv, "home", "add", "h1")
	cred := strings.TrimSpace(mustCLI(t, b.Data, srv, "agent", "add", "--home", "h1", "--id", "pi"))
	first := tokExchange(t, b, auth.TokenTypeAgentCredential, cred)
	firstClaims := tokClaims(t, b, first)
	second := tokExchange(t, b, auth.TokenTypeJWT, first.token())
	tokClaims(t, b, second)
	third := tokExchange(t, b, auth.TokenTypeJWT, second.token())
	tokClaims(t, b, third)

	live2 := b.mustV5(overTLS, "agent:pi/2", second.token())
	live3 := b.mustV5(overTLS, "agent:pi/3", third.token())
	mustCLI(t, b.Data, srv, "revoke", "--jti", firstClaims.ID)
	for name, c := range map[string]*v5client{"second": live2, "third": live3} {
		select {
		case d := <-c.disconnect:
			if d.ReasonCode != 0x87 {
				t.Errorf("%s token's connection: DISCONNECT 0x%02X, want 0x87", name, d.ReasonCode)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("the connection with the %s token, refreshed from the revoked one, is still open", name)
		}
	}
	for name, a := range map[string]tokAnswer{"second": second, "third": third} {
		if _, ca, err := b.v5(overTLS, "agent:pi", a.token()); err == nil || ca == nil || ca.ReasonCode != 0x87 {
			t.Errorf("CONNECT with the %s token after revoking the first: %v %+v", name, err, ca)
		}
		if r := tokExchange(t, b, auth.TokenTypeJWT, a.token()); r.status != 400 || !strings.Contains(r.desc(), "revoked") {
			t.Errorf("refreshing the %s token after revoking the first: %d %v", name, r.status, r.body)
		}
	}
	// The agent's credential still works: it starts a new family.
	fresh := tokClaims(t, b, tokExchange(t, b, auth.TokenTypeAgentCredential, cred))
	b.mustV5(overTLS, "agent:pi", tokExchange(t, b, auth.TokenTypeJWT, tokExchange(t, b, auth.TokenTypeAgentCredential, cred).token()).token())
	if fresh.Root != "" {
		t.Errorf("a token from the credential belongs to family %q", fresh.Root)
	}
}
