package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"homemq/auth"
	"homemq/broker"
	"homemq/envelope"
	"homemq/registry"
	"homemq/tokenapi"
)

// tokCLI runs the built homemq against a data folder, through the running
// broker at server (or offline when server is ""). It returns stdout, and
// an error holding stderr when the command failed.
func tokCLI(t *testing.T, data, server string, args ...string) (string, error) {
	t.Helper()
	args = append(args, "--data", data)
	if server != "" {
		args = append(args, "--server", server)
	}
	cmd := exec.Command(homemqBinary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.New(strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func mustCLI(t *testing.T, data, server string, args ...string) string {
	t.Helper()
	out, err := tokCLI(t, data, server, args...)
	if err != nil {
		t.Fatalf("homemq %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// tokAnswer is an answer of POST /api/token.
type tokAnswer struct {
	status int
	body   map[string]any
	header http.Header
}

func (a tokAnswer) token() string { s, _ := a.body["access_token"].(string); return s }

func (a tokAnswer) desc() string { s, _ := a.body["error_description"].(string); return s }

func tokExchange(t *testing.T, b *testBroker, typ, subject string) tokAnswer {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"grant_type": auth.GrantTokenExchange, "subject_token": subject, "subject_token_type": typ})
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}}
	res, err := cl.Post("https://"+b.Addrs()["https"]+"/api/token", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /api/token: %v", err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	a := tokAnswer{status: res.StatusCode, header: res.Header}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		t.Fatalf("POST /api/token answered %d with no JSON: %q", res.StatusCode, raw)
	}
	return a
}

// tokClaims checks a 200 answer and returns the verified claims of its token.
func tokClaims(t *testing.T, b *testBroker, a tokAnswer) *auth.Claims {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("exchange answered %d %v, want 200", a.status, a.body)
	}
	c, err := b.Verifier.Verify(a.token())
	if err != nil {
		t.Fatalf("exchanged token does not verify: %v", err)
	}
	if want := envelope.EncodeKey(b.MessageKey(c.ID)); a.body["msg_key"] != want {
		t.Fatalf("msg_key %v is not the message key of jti %s", a.body["msg_key"], c.ID)
	}
	return c
}

func kidOf(t *testing.T, token string) string {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := tok.Header["kid"].(string)
	return kid
}

// TestAgentCredentialGetsATokenForItsOwnCommands: a credential from
// `homemq agent add` is exchanged for an agent token that connects and reads
// its own cmd topics and nothing else; registry.db never holds the secret.
func TestAgentCredentialGetsATokenForItsOwnCommands(t *testing.T) {
	b := startBroker(t)
	srv := b.Addrs()["https"]
	mustCLI(t, b.Data, srv, "home", "add", "h1")
	mustCLI(t, b.Data, srv, "home", "add", "h2")
	cred := strings.TrimSpace(mustCLI(t, b.Data, srv, "agent", "add", "--home", "h1", "--id", "pi", "--device", "door", "--device", "lamp"))
	mustCLI(t, b.Data, srv, "agent", "add", "--home", "h1", "--id", "other", "--device", "door")
	if _, err := tokCLI(t, b.Data, srv, "agent", "add", "--home", "h2", "--id", "pi"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("a second agent pi: %v", err)
	}

	a := tokExchange(t, b, auth.TokenTypeAgentCredential, cred)
	c := tokClaims(t, b, a)
	if c.Subject != "agent:pi" || !reflect.DeepEqual(c.Homes, map[string]string{"h1": "agent"}) || !reflect.DeepEqual(c.Devices, []string{"door", "lamp"}) {
		t.Fatalf("agent token: sub %s homes %v devices %v", c.Subject, c.Homes, c.Devices)
	}
	if exp, _ := a.body["expires_in"].(float64); exp < 3500 || exp > 3600 {
		t.Fatalf("expires_in %v, want about an hour", a.body["expires_in"])
	}

	agent := b.mustV5(overTLS, "agent:pi", a.token())
	for filter, want := range map[string]byte{
		"homes/h1/agents/pi/devices/+/cmd":      1,
		"homes/h1/agents/other/devices/+/cmd":   0x87,
		"homes/h1/agents/pi/devices/door/state": 0x87,
		"homes/h1/#":                            0x87,
		"homes/h2/agents/pi/devices/door/cmd":   0x87,
	} {
		if got := agent.subscribe(t, filter, 1); got != want {
			t.Errorf("agent subscribes %s: 0x%02X, want 0x%02X", filter, got, want)
		}
	}
	ownerTok, owner := b.mintSpec(auth.Spec{Sub: "user:owner", Homes: map[string]string{"h1": "admin"}})
	ownerConn := b.mustV5(overTLS, "user:owner", ownerTok)
	key := b.MessageKey(owner.ID)
	for _, topic := range []string{"homes/h1/agents/other/devices/door/cmd", "homes/h1/agents/pi/devices/door/cmd"} {
		env, err := envelope.Seal(key, topic, owner.ID, `{"action":"on"}`, time.Now(), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if pr := ownerConn.publish(t, topic, env, 1, false); pr.ReasonCode != 0 {
			t.Fatalf("owner's command on %s: PUBACK 0x%02X", topic, pr.ReasonCode)
		}
	}
	eventually(t, 5*time.Second, "the agent receives its command", func() bool { return len(agent.received()) > 0 })
	never(t, 300*time.Millisecond, "the agent receives another agent's command", func() bool { return len(agent.received()) > 1 })
	if got := agent.received()[0].Topic; got != "homes/h1/agents/pi/devices/door/cmd" {
		t.Fatalf("agent received %s", got)
	}

	db, err := os.ReadFile(filepath.Join(b.Data, registry.File))
	if err != nil {
		t.Fatal(err)
	}
	p, err := auth.ParseAgentCredential(cred)
	if err != nil {
		t.Fatal(err)
	}
	for name, form := range map[string]string{
		"credential": cred, "raw secret": string(p.Secret), "base64url": base64.RawURLEncoding.EncodeToString(p.Secret),
		"base64": base64.StdEncoding.EncodeToString(p.Secret), "base64 unpadded": base64.RawStdEncoding.EncodeToString(p.Secret),
		"hex": hex.EncodeToString(p.Secret),
	} {
		if bytes.Contains(db, []byte(form)) {
			t.Errorf("registry.db holds the credential's secret (%s)", name)
		}
	}
}

// TestWrongOrRemovedCredentialIsRefusedAndRateLimited: an old (rotated) or
// removed credential gets 401; the agent's live token is revoked at once;
// repeated failures get 429 per address, a right credential excepted.
func TestWrongOrRemovedCredentialIsRefusedAndRateLimited(t *testing.T) {
	b := startBroker(t)
	srv := b.Addrs()["https"]
	mustCLI(t, b.Data, srv, "home", "add", "h1")
	first := strings.TrimSpace(mustCLI(t, b.Data, srv, "agent", "add", "--home", "h1", "--id", "pi"))
	live := b.mustV5(overTLS, "agent:pi", tokExchange(t, b, auth.TokenTypeAgentCredential, first).token())

	second := strings.TrimSpace(mustCLI(t, b.Data, srv, "agent", "rotate", "--home", "h1", "--id", "pi"))
	if a := tokExchange(t, b, auth.TokenTypeAgentCredential, first); a.status != 401 || a.body["error"] != "invalid_client" {
		t.Fatalf("rotated-away credential: %d %v", a.status, a.body)
	}
	select {
	case d := <-live.disconnect:
		if d.ReasonCode != 0x87 {
			t.Errorf("the old token's connection got DISCONNECT 0x%02X, want 0x87", d.ReasonCode)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the agent's connection with a token of the rotated credential is still open")
	}
	tokClaims(t, b, tokExchange(t, b, auth.TokenTypeAgentCredential, second))

	mustCLI(t, b.Data, srv, "agent", "remove", "--home", "h1", "--id", "pi")
	if a := tokExchange(t, b, auth.TokenTypeAgentCredential, second); a.status != 401 || !strings.Contains(a.desc(), "not accepted") {
		t.Fatalf("removed agent's credential: %d %v", a.status, a.body)
	}
	if out, err := tokCLI(t, b.Data, srv, "agent", "list", "--home", "h1"); err != nil || strings.Contains(out, "pi") {
		t.Fatalf("agent list after remove: %q %v", out, err)
	}

	// Failures are limited per address: once this address has failed too
	// often, its attempts get 429, except a right agent credential.
	fresh := strings.TrimSpace(mustCLI(t, b.Data, srv, "agent", "add", "--home", "h1", "--id", "pi2"))
	limited := false
	for i := 0; i < 11 && !limited; i++ {
		limited = tokExchange(t, b, auth.TokenTypeAgentCredential, "hmq1.h1.nobody.garbage").status == 429
	}
	if !limited {
		t.Fatal("repeated failures from one address are never rate-limited")
	}
	a := tokExchange(t, b, auth.TokenTypeJWT, b.mint("user:ann"))
	if a.status != 429 || a.body["error"] != "slow_down" || a.header.Get("Retry-After") == "" {
		t.Fatalf("a token refresh from an address that failed too often: %d %v %v", a.status, a.body, a.header)
	}
	tokClaims(t, b, tokExchange(t, b, auth.TokenTypeAgentCredential, fresh))
}

// testIdentityProvider is an OpenID provider for tests: an ES256 key and a
// JWKS endpoint on loopback.
type testIdentityProvider struct {
	iss string
	key *ecdsa.PrivateKey
}

func newTestIdentityProvider(t *testing.T) *testIdentityProvider {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "k1", ALG: jwkset.AlgES256, USE: jwkset.UseSig}})
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
	return &testIdentityProvider{iss: srv.URL, key: key}
}

func (p *testIdentityProvider) config(name string) tokenapi.IdentityProvider {
	return tokenapi.IdentityProvider{Name: name, Issuer: p.iss, JWKSURL: p.iss + "/.well-known/jwks.json", Audiences: []string{"homemq-app"}, Algorithms: []string{"ES256"}}
}

func (p *testIdentityProvider) idToken(t *testing.T, sub, aud string) string {
	t.Helper()
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": p.iss, "aud": aud, "sub": sub, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()})
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(p.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestIDTokenExchangeGivesExactlyTheMemberships: an ID token of a trusted
// provider becomes a user token with the registry's memberships, no more;
// a wrong aud or an unknown issuer is refused; removing a membership shows
// in the next exchange and on the wire.
func TestIDTokenExchangeGivesExactlyTheMemberships(t *testing.T) {
	idp := newTestIdentityProvider(t)
	stranger := newTestIdentityProvider(t)
	b := startBroker(t, func(c *broker.Config) {
		c.TokenAPI.IdentityProviders = []tokenapi.IdentityProvider{idp.config("test")}
	})
	srv := b.Addrs()["https"]
	for _, h := range []string{"h1", "h2", "h3"} {
		mustCLI(t, b.Data, srv, "home", "add", h)
	}
	mustCLI(t, b.Data, srv, "member", "add", "--home", "h1", "--user", "user:test|alice", "--role", "admin")
	mustCLI(t, b.Data, srv, "member", "add", "--home", "h2", "--user", "test|alice", "--role", "viewer")
	mustCLI(t, b.Data, srv, "member", "add", "--home", "h3", "--user", "test|bob", "--role", "admin")
	if _, err := tokCLI(t, b.Data, srv, "member", "add", "--home", "h1", "--user", "user:test|alice", "--role", "viewer"); err == nil || !strings.Contains(err.Error(), "already admin") {
		t.Fatalf("a duplicate membership: %v", err)
	}

	a := tokExchange(t, b, auth.TokenTypeIDToken, idp.idToken(t, "alice", "homemq-app"))
	c := tokClaims(t, b, a)
	if c.Subject != "user:test|alice" || !reflect.DeepEqual(c.Homes, map[string]string{"h1": "admin", "h2": "viewer"}) {
		t.Fatalf("user token: sub %s homes %v, want exactly h1=admin h2=viewer", c.Subject, c.Homes)
	}
	if exp, _ := a.body["expires_in"].(float64); exp < 850 || exp > 900 {
		t.Fatalf("expires_in %v, want about 15 minutes", a.body["expires_in"])
	}
	for name, tok := range map[string]string{
		"wrong aud":      idp.idToken(t, "alice", "another-app"),
		"unknown issuer": stranger.idToken(t, "alice", "homemq-app"),
	} {
		if a := tokExchange(t, b, auth.TokenTypeIDToken, tok); a.status != 400 || a.body["error"] != "invalid_grant" || a.token() != "" {
			t.Errorf("%s: %d %v, want 400 invalid_grant", name, a.status, a.body)
		}
	}

	user := b.mustV5(overTLS, "user:test|alice/phone", a.token())
	if got := user.subscribe(t, "homes/h2/agents/+/devices/+/state", 0); got != 0 {
		t.Fatalf("viewer of h2 subscribes to its state: 0x%02X", got)
	}
	if got := user.subscribe(t, "homes/h3/agents/+/devices/+/state", 0); got != 0x87 {
		t.Fatalf("alice subscribes to h3, where she is no member: 0x%02X", got)
	}

	// member remove revokes the user's current tokens (their homes are in
	// them): the old token no longer refreshes, a new sign-in gets what the
	// registry says now.
	mustCLI(t, b.Data, srv, "member", "remove", "--home", "h2", "--user", "user:test|alice")
	if r := tokExchange(t, b, auth.TokenTypeJWT, a.token()); r.status != 400 || r.body["error"] != "invalid_grant" || !strings.Contains(fmt.Sprint(r.body["error_description"]), "revoked") {
		t.Fatalf("refreshing the token of before the removal: %d %v, want 400 invalid_grant (revoked)", r.status, r.body)
	}
	a = tokExchange(t, b, auth.TokenTypeIDToken, idp.idToken(t, "alice", "homemq-app"))
	if c := tokClaims(t, b, a); !reflect.DeepEqual(c.Homes, map[string]string{"h1": "admin"}) {
		t.Fatalf("new sign-in after removing h2: homes %v", c.Homes)
	}
	again := b.mustV5(overTLS, "user:test|alice/again", a.token())
	if got := again.subscribe(t, "homes/h2/agents/+/devices/+/state", 0); got != 0x87 {
		t.Fatalf("the new sign-in still reads h2: 0x%02X", got)
	}
	if r := tokExchange(t, b, auth.TokenTypeJWT, a.token()); tokClaims(t, b, r).Homes["h1"] != "admin" {
		t.Fatalf("refreshing the new sign-in: %d %v", r.status, r.body)
	}
}

// TestKeysRotateKeepsOldTokensAndSignsWithTheNewKid: after `homemq keys
// rotate` on a running broker, tokens of the old key connect until they
// expire (also after a restart), and new tokens carry the new kid.
func TestKeysRotateKeepsOldTokensAndSignsWithTheNewKid(t *testing.T) {
	b := startBroker(t, shortLeeway)
	srv := b.Addrs()["https"]
	mustCLI(t, b.Data, srv, "home", "add", "h1")
	cred := strings.TrimSpace(mustCLI(t, b.Data, srv, "agent", "add", "--home", "h1", "--id", "pi"))
	oldTok := tokExchange(t, b, auth.TokenTypeAgentCredential, cred).token()
	shortTok, short := b.mintSpec(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h1": "admin"}, TTL: 3 * time.Second})
	oldKid := kidOf(t, oldTok)

	out := mustCLI(t, b.Data, srv, "keys", "rotate")
	m := regexp.MustCompile(`new signing key (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keys rotate printed %q", out)
	}
	newKid := m[1]
	if newKid == oldKid {
		t.Fatal("keys rotate kept the kid")
	}
	newTok := tokExchange(t, b, auth.TokenTypeAgentCredential, cred).token()
	if got := kidOf(t, newTok); got != newKid {
		t.Fatalf("a token exchanged after the rotation has kid %s, want %s", got, newKid)
	}
	res, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}}).Get("https://" + srv + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !bytes.Contains(jwks, []byte(`"`+oldKid+`"`)) || !bytes.Contains(jwks, []byte(`"`+newKid+`"`)) {
		t.Fatalf("JWKS after rotation lacks a kid: %s", jwks)
	}
	b.mustV5(overTLS, "agent:pi/old", oldTok)
	b.mustV5(overTLS, "agent:pi/new", newTok)
	shortConn := b.mustV5(overTLS, "user:alice/short", shortTok)
	// The broker cuts the short token's connection off at its exp: from
	// then on the token must be refused at CONNECT too.
	select {
	case d := <-shortConn.disconnect:
		if d.ReasonCode != 0xA0 {
			t.Fatalf("the old-key token's connection was closed with 0x%02X %s, want 0xA0 at exp", d.ReasonCode, d.Properties.ReasonString)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the old-key token's connection is still open after its exp %v", short.ExpiresAtTime())
	}
	if _, ca, err := b.v5(overTLS, "user:alice/late", shortTok); err == nil || ca == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("an old-key token after its exp: %v %+v", err, ca)
	}

	b.Close()
	b2 := startBrokerIn(t, b.Data, shortLeeway)
	b2.mustV5(overTLS, "agent:pi/old-after-restart", oldTok)
	if got := kidOf(t, b2.mint("user:alice", "h1=admin")); got != newKid {
		t.Fatalf("after a restart the broker signs with %s, want %s", got, newKid)
	}
}

// TestRegistryCLIWithTheBrokerStopped: the same commands work on the data
// folder directly while no broker runs, with the same clear errors, and the
// broker started afterwards honours them.
func TestRegistryCLIWithTheBrokerStopped(t *testing.T) {
	data := t.TempDir()
	startBrokerIn(t, data).Close() // makes the keys and certificates
	mustCLI(t, data, "", "home", "add", "h1")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"home", "add", "h1"}, `home "h1" already exists`},
		{[]string{"home", "add", "Bad.Home"}, "invalid"},
		{[]string{"agent", "add", "--home", "h9", "--id", "pi"}, "homemq home add h9"},
		{[]string{"agent", "add", "--home", "h1", "--id", "pi", "--device", "Door"}, `device id "Door"`},
		{[]string{"member", "add", "--home", "h1", "--user", "alice", "--role", "owner"}, `role "owner"`},
		{[]string{"agent", "rotate", "--home", "h1", "--id", "ghost"}, `agent "ghost" does not exist`},
	} {
		if _, err := tokCLI(t, data, "", tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("homemq %s: %v, want an error with %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	cred := strings.TrimSpace(mustCLI(t, data, "", "agent", "add", "--home", "h1", "--id", "pi", "--device", "door"))
	m := regexp.MustCompile(`new signing key (\S+)`).FindStringSubmatch(mustCLI(t, data, "", "keys", "rotate"))
	if m == nil {
		t.Fatal("keys rotate printed no kid")
	}
	if _, err := tokCLI(t, data, "127.0.0.1:1", "keys", "rotate"); err != nil {
		t.Fatalf("--server is not needed while the broker is stopped: %v", err)
	}
	newest := regexp.MustCompile(`new signing key (\S+)`).FindStringSubmatch(mustCLI(t, data, "", "keys", "rotate"))[1]

	b := startBrokerIn(t, data)
	a := tokExchange(t, b, auth.TokenTypeAgentCredential, cred)
	c := tokClaims(t, b, a)
	if c.Subject != "agent:pi" || kidOf(t, a.token()) != newest {
		t.Fatalf("after offline set-up: sub %s kid %s, want agent:pi and %s", c.Subject, kidOf(t, a.token()), newest)
	}
	if _, err := tokCLI(t, data, "127.0.0.1:1", "home", "add", "h2"); err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("a running broker that cannot be reached: %v", err)
	}
}
