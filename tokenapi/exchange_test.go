package tokenapi_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"homemq/auth"
	"homemq/registry"
	"homemq/tokenapi"
)

// testIdP is an OpenID provider: an ECDSA key and a JWKS endpoint.
type testIdP struct {
	iss string
	key *ecdsa.PrivateKey
	kid string
}

func newTestIdP(t testing.TB) *testIdP {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := &testIdP{key: key, kid: "idp-key-1"}
	jwk, err := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: p.kid, ALG: jwkset.AlgES256, USE: jwkset.UseSig}})
	if err != nil {
		t.Fatal(err)
	}
	store := jwkset.NewMemoryStorage()
	if err := store.KeyWrite(context.Background(), jwk); err != nil {
		t.Fatal(err)
	}
	raw, err := store.JSONPublic(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(raw)
	}))
	t.Cleanup(srv.Close)
	p.iss = srv.URL
	return p
}

func (p *testIdP) provider(name string) tokenapi.IdentityProvider {
	return tokenapi.IdentityProvider{Name: name, Issuer: p.iss, JWKSURL: p.iss + "/jwks", Audiences: []string{"homemq-app"}}
}

// idToken signs claims over sensible defaults (nil values delete a claim).
func (p *testIdP) idToken(t *testing.T, over jwt.MapClaims) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"iss": p.iss, "aud": "homemq-app", "sub": "alice", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["kid"] = p.kid
	s, err := tok.SignedString(p.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type fixture struct {
	x        *tokenapi.Exchange
	reg      *registry.Registry
	verifier *auth.Verifier
	issuer   *auth.Issuer
	revoked  *auth.Revocations
	idp      *testIdP
	cred     string // agent pi of h1
	logs     *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func msgKey(jti string) []byte { s := sha256.Sum256([]byte("k" + jti)); return s[:] }

func newFixture(t testing.TB, edit ...func(*tokenapi.Config)) *fixture {
	t.Helper()
	reg, err := registry.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	f := &fixture{reg: reg, idp: newTestIdP(t), logs: &syncBuffer{}}
	keys := auth.NewMemoryKeys()
	f.revoked, _ = auth.LoadRevocations("")
	f.verifier = auth.NewVerifier(auth.Config{}, keys, f.revoked)
	f.issuer = auth.NewIssuer(auth.Config{}, keys)
	cfg := tokenapi.Config{IdentityProviders: []tokenapi.IdentityProvider{f.idp.provider("idp")}}
	for _, e := range edit {
		e(&cfg)
	}
	f.x, err = tokenapi.NewExchange(tokenapi.ExchangeOptions{
		Issuer: f.issuer, Verifier: f.verifier, Directory: reg,
		MsgKey: msgKey, Config: cfg, Logger: slog.New(slog.NewTextHandler(f.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.x.Close)
	for _, h := range []string{"h1", "h2"} {
		if _, err := reg.AddHome(h); err != nil {
			t.Fatal(err)
		}
	}
	_, c, err := reg.AddAgent("h1", "pi", []string{"door", "lamp"})
	if err != nil {
		t.Fatal(err)
	}
	f.cred = c.Encode()
	if _, err := reg.AddMember("h1", "user:idp|alice", "admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.AddMember("h2", "user:idp|alice", "viewer"); err != nil {
		t.Fatal(err)
	}
	return f
}

type answer struct {
	status int
	body   map[string]any
	header http.Header
}

func (f *fixture) post(t *testing.T, from, typ, token string) answer {
	t.Helper()
	b, _ := json.Marshal(auth.ExchangeRequest{GrantType: auth.GrantTokenExchange, SubjectToken: token, SubjectTokenType: typ})
	return f.raw(t, from, "application/json", string(b))
}

func (f *fixture) raw(t *testing.T, from, contentType, body string) answer {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/api/token", strings.NewReader(body))
	r.Header.Set("Content-Type", contentType)
	r.RemoteAddr = from + ":40000"
	w := httptest.NewRecorder()
	f.x.ServeHTTP(w, r)
	a := answer{status: w.Code, header: w.Header()}
	if err := json.Unmarshal(w.Body.Bytes(), &a.body); err != nil {
		t.Fatalf("answer is not JSON: %q", w.Body.String())
	}
	return a
}

// claims verifies the answer's token and checks its msg_key.
func (f *fixture) claims(t *testing.T, a answer) *auth.Claims {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("status %d %v, want 200", a.status, a.body)
	}
	tok, _ := a.body["access_token"].(string)
	c, err := f.verifier.Verify(tok)
	if err != nil {
		t.Fatalf("issued token does not verify: %v", err)
	}
	if a.body["msg_key"] != base64.RawURLEncoding.EncodeToString(msgKey(c.ID)) {
		t.Fatalf("msg_key %v is not the key of jti %s", a.body["msg_key"], c.ID)
	}
	if a.body["token_type"] != "Bearer" || a.body["issued_token_type"] != auth.TokenTypeJWT {
		t.Fatalf("token_type/issued_token_type: %v", a.body)
	}
	if a.header.Get("Cache-Control") != "no-store" {
		t.Fatal("a token answer may be cached")
	}
	return c
}

func TestExchangeAgentCredential(t *testing.T) {
	f := newFixture(t)
	a := f.post(t, "192.0.2.1", auth.TokenTypeAgentCredential, f.cred)
	c := f.claims(t, a)
	if c.Subject != "agent:pi" || !reflect.DeepEqual(c.Homes, map[string]string{"h1": "agent"}) || !reflect.DeepEqual(c.Devices, []string{"door", "lamp"}) {
		t.Fatalf("agent token claims: sub %s homes %v devices %v", c.Subject, c.Homes, c.Devices)
	}
	if exp := a.body["expires_in"].(float64); exp < 3590 || exp > 3600 {
		t.Fatalf("expires_in %v, want the agent TTL of 1h", exp)
	}
	form := url.Values{"grant_type": {auth.GrantTokenExchange}, "subject_token": {f.cred}, "subject_token_type": {auth.TokenTypeAgentCredential}}
	f.claims(t, f.raw(t, "192.0.2.1", "application/x-www-form-urlencoded", form.Encode()))
}

func TestExchangeRefusals(t *testing.T) {
	f := newFixture(t)
	_, other, _ := f.reg.AddAgent("h2", "gone", nil)
	if err := f.reg.RemoveAgent("h2", "gone"); err != nil {
		t.Fatal(err)
	}
	wrong := tamperedCredential(f.cred)
	tests := []struct {
		name, typ, token string
		status           int
		code, phrase     string
	}{
		{"wrong secret", auth.TokenTypeAgentCredential, wrong, 401, "invalid_client", "not accepted"},
		{"removed agent", auth.TokenTypeAgentCredential, other.Encode(), 401, "invalid_client", "not accepted"},
		{"not a credential", auth.TokenTypeAgentCredential, "letmein", 401, "invalid_client", "starts with"},
		{"no subject token", auth.TokenTypeAgentCredential, "", 400, "invalid_request", "missing"},
		{"no type", "", f.cred, 400, "invalid_request", "subject_token_type is missing"},
		{"unknown type", "urn:x", f.cred, 400, "invalid_request", "must be one of"},
		{"credential as a JWT", auth.TokenTypeJWT, f.cred, 400, "invalid_grant", "not a JWT"},
		{"ID token wrong aud", auth.TokenTypeIDToken, f.idp.idToken(t, jwt.MapClaims{"aud": "other-app"}), 400, "invalid_grant", "audience"},
		{"ID token expired", auth.TokenTypeIDToken, f.idp.idToken(t, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()}), 400, "invalid_grant", "expired"},
		{"ID token without exp", auth.TokenTypeIDToken, f.idp.idToken(t, jwt.MapClaims{"exp": nil}), 400, "invalid_grant", "exp"},
		{"ID token unknown issuer", auth.TokenTypeIDToken, f.idp.idToken(t, jwt.MapClaims{"iss": "https://evil.example"}), 400, "invalid_grant", "not a trusted identity provider"},
		{"ID token unknown kid", auth.TokenTypeIDToken, resign(t, f.idp, "other-kid"), 400, "invalid_grant", "no key"},
		{"ID token HS256", auth.TokenTypeIDToken, hs256(t, f.idp.iss), 400, "invalid_grant", "algorithm"},
		{"ID token of a user without homes", auth.TokenTypeIDToken, f.idp.idToken(t, jwt.MapClaims{"sub": "mallory"}), 400, "invalid_grant", "homemq member add --home HOME --user 'user:idp|mallory'"},
		{"ID token as a homemq token", auth.TokenTypeJWT, f.idp.idToken(t, nil), 400, "invalid_grant", ""},
		{"ID token with a trailing newline", auth.TokenTypeIDToken, f.idp.idToken(t, nil) + "\n", 400, "invalid_grant", "base64url and dots"},
		{"ID token with exp as a string", auth.TokenTypeIDToken, f.idp.idToken(t, jwt.MapClaims{"exp": fmt.Sprint(time.Now().Add(time.Hour).Unix())}), 400, "invalid_grant", "claims are invalid"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := f.post(t, fmt.Sprintf("192.0.2.%d", 10+i), tc.typ, tc.token)
			if a.status != tc.status || a.body["error"] != tc.code || !strings.Contains(a.body["error_description"].(string), tc.phrase) {
				t.Fatalf("got %d %v, want %d %s with %q", a.status, a.body, tc.status, tc.code, tc.phrase)
			}
			if a.body["access_token"] != nil {
				t.Fatal("a refusal carries a token")
			}
		})
	}
	a := f.raw(t, "192.0.2.3", "application/json", `{"grant_type":"password","subject_token":"x","subject_token_type":"y"}`)
	if a.status != 400 || a.body["error"] != "unsupported_grant_type" {
		t.Fatalf("password grant: %d %v", a.status, a.body)
	}
	if s := f.logs.String(); strings.Contains(s, f.cred) || strings.Contains(s, wrong) || strings.Contains(s, f.cred[len(f.cred)-43:]) {
		t.Fatal("the log holds a credential")
	}
}

func resign(t *testing.T, p *testIdP, kid string) string {
	q := *p
	q.kid = kid
	return q.idToken(t, nil)
}

func hs256(t *testing.T, iss string) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": iss, "aud": "homemq-app", "sub": "alice", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix()})
	tok.Header["kid"] = "idp-key-1"
	s, err := tok.SignedString([]byte("guess"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestExchangeIDTokenFollowsMemberships: the user token's homes are the
// registry's memberships at the time of each exchange, also on refresh.
func TestExchangeIDTokenFollowsMemberships(t *testing.T) {
	f := newFixture(t)
	a := f.post(t, "192.0.2.1", auth.TokenTypeIDToken, f.idp.idToken(t, nil))
	c := f.claims(t, a)
	if c.Subject != "user:idp|alice" || !reflect.DeepEqual(c.Homes, map[string]string{"h1": "admin", "h2": "viewer"}) {
		t.Fatalf("user token: sub %s homes %v", c.Subject, c.Homes)
	}
	if exp := a.body["expires_in"].(float64); exp < 890 || exp > 900 {
		t.Fatalf("expires_in %v, want the user TTL of 15m", exp)
	}
	if err := f.reg.RemoveMember("h2", "user:idp|alice"); err != nil {
		t.Fatal(err)
	}
	refreshed := f.claims(t, f.post(t, "192.0.2.1", auth.TokenTypeJWT, a.body["access_token"].(string)))
	if refreshed.Subject != c.Subject || refreshed.ID == c.ID || !reflect.DeepEqual(refreshed.Homes, map[string]string{"h1": "admin"}) {
		t.Fatalf("refreshed token: sub %s jti %s homes %v", refreshed.Subject, refreshed.ID, refreshed.Homes)
	}
	if err := f.reg.RemoveMember("h1", "user:idp|alice"); err != nil {
		t.Fatal(err)
	}
	if a := f.post(t, "192.0.2.1", auth.TokenTypeJWT, a.body["access_token"].(string)); a.status != 400 || a.body["error"] != "invalid_grant" {
		t.Fatalf("refresh without memberships: %d %v", a.status, a.body)
	}
}

func TestExchangeRefreshesAgentsFromTheRegistry(t *testing.T) {
	f := newFixture(t)
	tok := f.post(t, "192.0.2.1", auth.TokenTypeAgentCredential, f.cred).body["access_token"].(string)
	c := f.claims(t, f.post(t, "192.0.2.1", auth.TokenTypeJWT, tok))
	if c.Subject != "agent:pi" || c.Homes["h1"] != "agent" {
		t.Fatalf("refreshed agent token: %s %v", c.Subject, c.Homes)
	}
	if err := f.reg.RemoveAgent("h1", "pi"); err != nil {
		t.Fatal(err)
	}
	if a := f.post(t, "192.0.2.1", auth.TokenTypeJWT, tok); a.status != 400 || !strings.Contains(a.body["error_description"].(string), "no longer registered") {
		t.Fatalf("refresh of a removed agent: %d %v", a.status, a.body)
	}
}

func TestExchangeRefusesOperatorAndServiceRefresh(t *testing.T) {
	f := newFixture(t)
	for _, spec := range []auth.Spec{
		{Sub: "service:homemq-cli", Operator: true},
		{Sub: "service:backup", Homes: map[string]string{"h1": "service"}},
	} {
		tok, _, err := f.issuer.Mint(spec)
		if err != nil {
			t.Fatal(err)
		}
		a := f.post(t, "192.0.2.1", auth.TokenTypeJWT, tok)
		if a.status != 400 || a.body["error"] != "invalid_grant" || !strings.Contains(a.body["error_description"].(string), "homemq token mint") {
			t.Errorf("refresh of %+v: %d %v", spec, a.status, a.body)
		}
	}
}

// TestExchangeAfterRevocationInTheSameSecond: an agent whose tokens were
// revoked a moment ago (agent rotate) gets a token that is not born revoked.
func TestExchangeAfterRevocationInTheSameSecond(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	if err := f.revoked.Add(auth.Revocation{Sub: "agent:pi", At: now.Unix(), Until: now.Add(time.Hour).Unix()}); err != nil {
		t.Fatal(err)
	}
	f.claims(t, f.post(t, "192.0.2.1", auth.TokenTypeAgentCredential, f.cred))
}

// TestExchangeRateLimits: failures are limited per address only. Once an
// address has spent its budget, its attempts are answered 429 before any
// signature is checked, except a correct agent credential, which always
// gets its token; guesses at one agent from many addresses never lock the
// agent out.
func TestExchangeRateLimits(t *testing.T) {
	f := newFixture(t, func(c *tokenapi.Config) {
		c.RateLimit = tokenapi.RateLimitConfig{AddressBurst: 3, AddressPerMinute: 1}
	})
	wrong := tamperedCredential(f.cred)
	for i := 0; i < 3; i++ {
		if a := f.post(t, "198.51.100.1", auth.TokenTypeAgentCredential, "garbage"); a.status != 401 {
			t.Fatalf("failure %d: %d %v", i+1, a.status, a.body)
		}
	}
	for name, subject := range map[string][2]string{
		"a wrong credential": {auth.TokenTypeAgentCredential, wrong},
		"an ID token":        {auth.TokenTypeIDToken, f.idp.idToken(t, nil)},
		"garbage":            {auth.TokenTypeJWT, "x.y.z"},
	} {
		a := f.post(t, "198.51.100.1", subject[0], subject[1])
		if a.status != 429 || a.body["error"] != "slow_down" || a.header.Get("Retry-After") == "" {
			t.Fatalf("%s after 3 failures from one address: %d %v (Retry-After %q)", name, a.status, a.body, a.header.Get("Retry-After"))
		}
	}
	f.claims(t, f.post(t, "198.51.100.1", auth.TokenTypeAgentCredential, f.cred))
	f.claims(t, f.post(t, "198.51.100.2", auth.TokenTypeIDToken, f.idp.idToken(t, nil)))

	// one agent, guessed at from many addresses: never locked out
	for i := 0; i < 20; i++ {
		if a := f.post(t, fmt.Sprintf("203.0.113.%d", i), auth.TokenTypeAgentCredential, wrong); a.status != 401 {
			t.Fatalf("guess %d: %d %v", i+1, a.status, a.body)
		}
	}
	f.claims(t, f.post(t, "203.0.113.100", auth.TokenTypeAgentCredential, f.cred))
}

// TestExchangeEmailUserClaim: with user_claim email the user id is the
// verified email; an unverified one is refused.
func TestExchangeEmailUserClaim(t *testing.T) {
	f := newFixture(t, func(c *tokenapi.Config) { c.IdentityProviders[0].UserClaim = "email" })
	if _, err := f.reg.AddMember("h2", "user:idp|alice@example.com", "member"); err != nil {
		t.Fatal(err)
	}
	c := f.claims(t, f.post(t, "192.0.2.1", auth.TokenTypeIDToken, f.idp.idToken(t, jwt.MapClaims{"email": "alice@example.com", "email_verified": true})))
	if c.Subject != "user:idp|alice@example.com" || !reflect.DeepEqual(c.Homes, map[string]string{"h2": "member"}) {
		t.Fatalf("sub %s homes %v", c.Subject, c.Homes)
	}
	a := f.post(t, "192.0.2.1", auth.TokenTypeIDToken, f.idp.idToken(t, jwt.MapClaims{"email": "alice@example.com"}))
	if a.status != 400 || !strings.Contains(a.body["error_description"].(string), "not verified") {
		t.Fatalf("unverified email: %d %v", a.status, a.body)
	}
}

func TestTokenAPIConfigValidate(t *testing.T) {
	good := tokenapi.IdentityProvider{Name: "google", Issuer: "https://accounts.google.com", JWKSURL: "https://www.googleapis.com/oauth2/v3/certs", Audiences: []string{"app"}}
	tests := []struct {
		name   string
		edit   func(*tokenapi.IdentityProvider)
		phrase string
	}{
		{"good", func(*tokenapi.IdentityProvider) {}, ""},
		{"bad name", func(p *tokenapi.IdentityProvider) { p.Name = "Google!" }, "identity_providers[0].name"},
		{"no issuer", func(p *tokenapi.IdentityProvider) { p.Issuer = "" }, ".issuer"},
		{"http jwks", func(p *tokenapi.IdentityProvider) { p.JWKSURL = "http://example.com/jwks" }, "must be https"},
		{"http loopback jwks", func(p *tokenapi.IdentityProvider) { p.JWKSURL = "http://127.0.0.1:9/jwks" }, ""},
		{"no audience", func(p *tokenapi.IdentityProvider) { p.Audiences = nil }, ".audiences"},
		{"HS256", func(p *tokenapi.IdentityProvider) { p.Algorithms = []string{"RS256", "HS256"} }, `"HS256" is not allowed`},
		{"none", func(p *tokenapi.IdentityProvider) { p.Algorithms = []string{"none"} }, "not allowed"},
	}
	for _, tc := range tests {
		p := good
		tc.edit(&p)
		err := tokenapi.Config{IdentityProviders: []tokenapi.IdentityProvider{p}}.Validate()
		if (tc.phrase == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.phrase)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.phrase)
		}
	}
	err := tokenapi.Config{IdentityProviders: []tokenapi.IdentityProvider{good, good}}.Validate()
	if err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Errorf("a provider listed twice: %v", err)
	}
	err = tokenapi.Config{RateLimit: tokenapi.RateLimitConfig{MaxTracked: 3}}.Validate()
	if err == nil || !strings.Contains(err.Error(), "max_tracked") {
		t.Errorf("max_tracked 3: %v", err)
	}
}

// FuzzExchangeRequest: whatever body arrives, the exchange never panics,
// never issues a token for a subject it cannot check, and always answers an
// RFC 6749 error code in JSON.
func FuzzExchangeRequest(f *testing.F) {
	fx := newFixture(f, func(c *tokenapi.Config) {
		c.RateLimit = tokenapi.RateLimitConfig{AddressBurst: 1 << 30, AddressPerMinute: 1}
	})
	f.Add("application/json", `{"grant_type":"`+auth.GrantTokenExchange+`","subject_token":"hmq1.h1.pi.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","subject_token_type":"`+auth.TokenTypeAgentCredential+`"}`)
	f.Add("application/x-www-form-urlencoded", "grant_type="+url.QueryEscape(auth.GrantTokenExchange)+"&subject_token=x.y.z&subject_token_type="+url.QueryEscape(auth.TokenTypeJWT))
	f.Add("application/json", `{"grant_type":"`+auth.GrantTokenExchange+`","subject_token":"eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.","subject_token_type":"`+auth.TokenTypeIDToken+`"}`)
	f.Add("text/plain", "")
	f.Add("", "[1,2]")
	codes := map[string]bool{"invalid_request": true, "invalid_client": true, "invalid_grant": true, "unsupported_grant_type": true, "slow_down": true}
	f.Fuzz(func(t *testing.T, contentType, body string) {
		r := httptest.NewRequest(http.MethodPost, "/api/token", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		w := httptest.NewRecorder()
		fx.x.ServeHTTP(w, r)
		var ans map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &ans); err != nil {
			t.Fatalf("answer is not JSON: %q", w.Body.String())
		}
		if w.Code == http.StatusOK || ans["access_token"] != nil {
			t.Fatalf("a token for %q", body)
		}
		if code, _ := ans["error"].(string); !codes[code] {
			t.Fatalf("error code %q for %q", code, body)
		}
	})
}

// tamperedCredential returns cred with one character of its secret changed,
// so it never decodes to the secret it came from.
func tamperedCredential(cred string) string {
	b := []byte(cred)
	i := len(b) - 5
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
