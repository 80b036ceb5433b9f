package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func testClaims(mod func(*Claims)) *Claims {
	now := time.Now()
	c := &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: DefaultIssuer, Audience: jwt.ClaimStrings{DefaultAudience}, Subject: "user:alice",
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)), ID: "j1",
		},
		Homes: map[string]string{"h1": "admin"},
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func TestVerify(t *testing.T) {
	keys := NewMemoryKeys()
	revs, _ := LoadRevocations("")
	v := NewVerifier(Config{}, keys, revs)
	sign := func(mod func(*Claims)) string {
		s, err := keys.Sign(testClaims(mod))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	_, foreign, _ := ed25519.GenerateKey(rand.Reader)
	foreignTok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, testClaims(nil))
	foreignTok.Header["kid"] = keys.Current().Kid
	foreignSigned, _ := foreignTok.SignedString(foreign)
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, testClaims(nil))
	hs.Header["kid"] = keys.Current().Kid
	confused, _ := hs.SignedString([]byte(keys.Current().Public()))
	noKid := jwt.NewWithClaims(jwt.SigningMethodEdDSA, testClaims(nil))
	noKidSigned, _ := noKid.SignedString(keys.Current().private)

	tests := []struct {
		name  string
		token string
		want  Reason
	}{
		{"valid", sign(nil), ""},
		{"empty", "", ReasonEmpty},
		{"too large", strings.Repeat("a", DefaultMaxTokenSize+1), ReasonTooLarge},
		{"garbage", "abc", ReasonMalformed},
		{"expired", sign(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Minute)) }), ReasonExpired},
		{"within leeway", sign(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Second)) }), ""},
		{"no exp", sign(func(c *Claims) { c.ExpiresAt = nil }), ReasonMissingClaim},
		{"not yet valid", sign(func(c *Claims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour)) }), ReasonNotYetValid},
		{"issued in the future", sign(func(c *Claims) { c.IssuedAt = jwt.NewNumericDate(time.Now().Add(time.Hour)) }), ReasonNotYetValid},
		{"wrong issuer", sign(func(c *Claims) { c.Issuer = "x" }), ReasonIssuer},
		{"wrong audience", sign(func(c *Claims) { c.Audience = jwt.ClaimStrings{"x"} }), ReasonAudience},
		{"no jti", sign(func(c *Claims) { c.ID = "" }), ReasonMissingClaim},
		{"no iat", sign(func(c *Claims) { c.IssuedAt = nil }), ReasonMissingClaim},
		{"no sub", sign(func(c *Claims) { c.Subject = "" }), ReasonMissingClaim},
		{"bad sub kind", sign(func(c *Claims) { c.Subject = "robot:r2" }), ReasonBadClaim},
		{"bad agent id", sign(func(c *Claims) { c.Subject = "agent:Pi" }), ReasonBadClaim},
		{"bad home id", sign(func(c *Claims) { c.Homes = map[string]string{"H1": "admin"} }), ReasonBadClaim},
		{"unknown role", sign(func(c *Claims) { c.Homes = map[string]string{"h1": "owner"} }), ReasonBadClaim},
		{"foreign key", foreignSigned, ReasonSignature},
		{"algorithm confusion", confused, ReasonAlgorithm},
		{"no kid", noKidSigned, ReasonUnknownKey},
		{"trailing newline", sign(nil) + "\n", ReasonMalformed},
		{"trailing CRLF", sign(nil) + "\r\n", ReasonMalformed},
		{"newline inside", func() string { s := sign(nil); return s[:10] + "\n" + s[10:] }(), ReasonMalformed},
		{"trailing space", sign(nil) + " ", ReasonMalformed},
		{"padding", sign(nil) + "==", ReasonMalformed},
		{"exp as a string", signRaw(t, keys, `{"iss":"homemq","aud":["homemq"],"sub":"user:alice","iat":%d,"exp":"%d","jti":"j1"}`), ReasonMalformed},
		{"iat as a string", signRaw(t, keys, `{"iss":"homemq","aud":["homemq"],"sub":"user:alice","iat":"%d","exp":%d,"jti":"j1"}`), ReasonMalformed},
		{"nbf as a string", signRaw(t, keys, `{"iss":"homemq","aud":["homemq"],"sub":"user:alice","iat":%d,"exp":%d,"nbf":"0","jti":"j1"}`), ReasonMalformed},
		{"exp null", signRaw(t, keys, `{"iss":"homemq","aud":["homemq"],"sub":"user:alice","iat":%d,"exp":null,"jti":"j1","x":%d}`), ReasonMalformed},
		{"numbers as numbers", signRaw(t, keys, `{"iss":"homemq","aud":["homemq"],"sub":"user:alice","iat":%d,"exp":%d,"nbf":0,"jti":"j1"}`), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(tc.token)
			if got := ReasonOf(err); got != tc.want {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.want)
			}
			if tc.want == "" && (c == nil || c.Subject != "user:alice") {
				t.Fatalf("claims %+v", c)
			}
		})
	}
}

// signRaw signs a claims JSON given as a format with two %d: iat (now)
// and exp (a minute later), so tests can shape claims golang-jwt's types
// would never write.
func signRaw(t *testing.T, keys *KeySet, format string) string {
	t.Helper()
	now := time.Now().Unix()
	payload := fmt.Sprintf(format, now, now+60)
	header := `{"alg":"EdDSA","typ":"JWT","kid":"` + keys.Current().Kid + `"}`
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	sig, err := jwt.SigningMethodEdDSA.Sign(input, keys.Current().private)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestRevocationRefusesUntilPruned(t *testing.T) {
	keys := NewMemoryKeys()
	revs, err := LoadRevocations(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(Config{}, keys, revs)
	is := NewIssuer(Config{}, keys)
	tok, c, err := is.Mint(Spec{Sub: "user:alice", Homes: map[string]string{"h1": "viewer"}})
	if err != nil {
		t.Fatal(err)
	}
	var told []Revocation
	revs.OnRevoke(func(r Revocation) { told = append(told, r) })
	if err := revs.Add(Revocation{JTI: c.ID, Until: c.ExpiresAtTime().Unix()}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); ReasonOf(err) != ReasonRevoked {
		t.Fatalf("revoked token: %v", err)
	}
	if len(told) != 1 {
		t.Fatalf("listeners told %d times", len(told))
	}
	if err := revs.Prune(c.ExpiresAtTime().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if len(revs.List()) != 1 {
		t.Fatalf("a jti entry was pruned at the token's exp; tokens refreshed from it live on: %+v", revs.List())
	}
	if err := revs.Prune(time.Now().Add(familyKeep + time.Minute)); err != nil {
		t.Fatal(err)
	}
	if len(revs.List()) != 0 {
		t.Fatalf("entry past its expiry not pruned: %+v", revs.List())
	}
	if err := revs.Add(Revocation{JTI: "a", Sub: "user:b"}); err == nil {
		t.Fatal("a revocation naming both jti and sub was accepted")
	}
}

func TestMintRefusesBadSpecs(t *testing.T) {
	is := NewIssuer(Config{}, NewMemoryKeys())
	for _, s := range []Spec{
		{Sub: "alice"},
		{Sub: "user:alice", Homes: map[string]string{"h 1": "admin"}},
		{Sub: "user:alice", Homes: map[string]string{"h1": "root"}},
		{Sub: "user:alice", TTL: 25 * time.Hour},
	} {
		if _, _, err := is.Mint(s); err == nil {
			t.Errorf("Mint(%+v) succeeded", s)
		}
	}
}

// FuzzVerify: no input panics the verifier, and nothing is accepted that
// the broker's key did not sign.
func FuzzVerify(f *testing.F) {
	keys := NewMemoryKeys()
	v := NewVerifier(Config{}, keys, nil)
	good, _ := keys.Sign(testClaims(nil))
	f.Add(good)
	f.Add("")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyOmEifQ.")
	f.Add(good[:len(good)-2])
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(tok)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("refusal without a reason: %v", err)
			}
			return
		}
		parts := strings.Split(tok, ".")
		if len(parts) != 3 || jwt.SigningMethodEdDSA.Verify(parts[0]+"."+parts[1], mustDecode(t, parts[2]), keys.Current().Public()) != nil {
			t.Fatalf("accepted a token the key did not sign: %q (%+v)", tok, c)
		}
	})
}

func mustDecode(t *testing.T, s string) []byte {
	b, err := jwt.NewParser().DecodeSegment(s)
	if err != nil {
		t.Fatalf("accepted token has a bad signature segment: %v", err)
	}
	return b
}
