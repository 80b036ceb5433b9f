package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"homemq/auth"
)

// TestMalformedTokensAreRefusedAtConnect: a token with bytes after it (a
// newline pasted along) or with a date claim written as a string is not a
// well-formed JWT, however good its signature: CONNACK 0x86 with a reason.
func TestMalformedTokensAreRefusedAtConnect(t *testing.T) {
	b := startBroker(t)
	good := b.mint("user:ann", "h1=admin")
	now := time.Now().Unix()
	claims := func(exp, iat any) jwt.MapClaims {
		return jwt.MapClaims{"iss": auth.DefaultIssuer, "aud": []string{auth.DefaultAudience}, "sub": "user:ann",
			"jti": "strict-1", "iat": iat, "exp": exp, "homes": map[string]string{"h1": "admin"}}
	}
	sign := func(c jwt.MapClaims) string {
		tok, err := b.Keys.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if _, _, err := b.v5(overTLS, "user:ann", sign(claims(now+60, now))); err != nil {
		t.Fatalf("the well-formed hand-signed token is refused: %v", err)
	}
	for _, tc := range []struct {
		name, token, want string
	}{
		{"trailing newline", good + "\n", "base64url and dots"},
		{"trailing CRLF", good + "\r\n", "base64url and dots"},
		{"exp as a string", sign(claims(strconv.FormatInt(now+60, 10), now)), "exp must be a number"},
		{"iat as a string", sign(claims(now+60, strconv.FormatInt(now, 10))), "iat must be a number"},
	} {
		_, ca, err := b.v5(overTLS, "user:ann", tc.token)
		if err == nil || ca == nil {
			t.Errorf("%s: connected (%v)", tc.name, err)
			continue
		}
		reason := ""
		if ca.Properties != nil {
			reason = ca.Properties.ReasonString
		}
		if ca.ReasonCode != 0x86 || !strings.Contains(reason, tc.want) {
			t.Errorf("%s: CONNACK 0x%02X %q, want 0x86 with %q", tc.name, ca.ReasonCode, reason, tc.want)
		}
	}
}
