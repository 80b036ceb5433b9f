package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/golang-jwt/jwt/v5"

	"homemq/auth"
)

// badToken is a token the broker must refuse, with the CONNACK it must send.
type badToken struct {
	name   string
	token  string
	code   byte   // MQTT 5 CONNACK reason code
	reason string // a word the reason string must contain
}

func claimsFor(sub string, mod func(*auth.Claims)) *auth.Claims {
	now := time.Now()
	c := &auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: "homemq", Audience: jwt.ClaimStrings{"homemq"}, Subject: sub,
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), ID: "jti-" + sub,
		},
		Homes: map[string]string{"h1": "admin"},
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func badTokens(t *testing.T, b *testBroker) []badToken {
	sign := func(mod func(*auth.Claims)) string {
		tok, err := b.Keys.Sign(claimsFor("user:mallory", mod))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := sign(nil)
	parts := strings.Split(good, ".")

	// alg none
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claimsFor("user:mallory", nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	// algorithm confusion: HS256 with the Ed25519 public key bytes as the secret
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claimsFor("user:mallory", nil))
	hs.Header["kid"] = b.Keys.Current().Kid
	confused, _ := hs.SignedString([]byte(b.Keys.Current().Public()))
	// tampered payload: admin of h2 instead
	tp := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(mustB64(t, parts[1]), `"h1"`, `"h2"`, 1)))
	tampered := parts[0] + "." + tp + "." + parts[2]
	// unknown kid
	uk := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claimsFor("user:mallory", nil))
	uk.Header["kid"] = "no-such-kid"
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	unknownKid, _ := uk.SignedString(otherKey)
	// another broker's key under our kid
	ob := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claimsFor("user:mallory", nil))
	ob.Header["kid"] = b.Keys.Current().Kid
	otherBroker, _ := ob.SignedString(otherKey)

	return []badToken{
		{"expired", sign(func(c *auth.Claims) {
			c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-2 * time.Hour))
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
		}), 0x86, "expired"},
		{"not yet valid", sign(func(c *auth.Claims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour)) }), 0x86, "not valid yet"},
		{"wrong iss", sign(func(c *auth.Claims) { c.Issuer = "evil" }), 0x86, "issuer"},
		{"wrong aud", sign(func(c *auth.Claims) { c.Audience = jwt.ClaimStrings{"other"} }), 0x86, "audience"},
		{"alg none", none, 0x86, "token"},
		{"HS256 with the public key (algorithm confusion)", confused, 0x86, "token"},
		{"tampered payload", tampered, 0x86, "signature"},
		{"unknown kid", unknownKid, 0x86, "kid"},
		{"another broker's key", otherBroker, 0x86, "signature"},
		{"garbage", "not-a-jwt-at-all", 0x86, "token"},
		{"empty password", "", 0x86, "no token"},
		{"64 KiB token", strings.Repeat("a", 64<<10), 0x86, "bytes"},
		{"no jti", sign(func(c *auth.Claims) { c.ID = "" }), 0x86, "jti"},
		{"bad role", sign(func(c *auth.Claims) { c.Homes = map[string]string{"h1": "king"} }), 0x86, "role"},
	}
}

func mustB64(t *testing.T, s string) string {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBadTokensAreRefusedWithReason checks every bad token over MQTT 5 on
// each transport: CONNACK with the right reason code and a reason string
// that says what was wrong, and the broker keeps serving.
func TestBadTokensAreRefusedWithReason(t *testing.T) {
	b := startBroker(t)
	for _, tr := range allTransports {
		for _, bt := range badTokens(t, b) {
			t.Run(string(tr)+"/"+bt.name, func(t *testing.T) {
				_, ca, err := b.v5(tr, "user:mallory", bt.token)
				if err == nil {
					t.Fatal("connected with a bad token")
				}
				if ca == nil {
					t.Fatalf("no CONNACK: %v", err)
				}
				if ca.ReasonCode != bt.code {
					t.Errorf("CONNACK reason code 0x%02X, want 0x%02X (%s)", ca.ReasonCode, bt.code, ca.Properties.ReasonString)
				}
				if !strings.Contains(ca.Properties.ReasonString, bt.reason) {
					t.Errorf("reason string %q does not say %q", ca.Properties.ReasonString, bt.reason)
				}
			})
		}
	}
	// the broker still serves good clients
	c := b.mustV5(overTLS, "user:alice", b.mint("user:alice", "h1=admin"))
	if code := c.subscribe(t, "homes/h1/#", 1); code != 1 {
		t.Fatalf("good client's subscribe got 0x%02X", code)
	}
}

// TestBadTokensV3ReturnCodes checks MQTT 3.1.1 clients get return code 4.
func TestBadTokensV3ReturnCodes(t *testing.T) {
	b := startBroker(t)
	for _, bt := range badTokens(t, b) {
		for _, tr := range []transport{overTLS, overWSS} {
			t.Run(string(tr)+"/"+bt.name, func(t *testing.T) {
				_, err := b.v3(tr, "user:mallory", bt.token)
				if err == nil {
					t.Fatal("connected with a bad token")
				}
				if !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
					t.Errorf("v3 CONNECT error %v, want return code 4 (bad user name or password)", err)
				}
			})
		}
	}
}

// TestGoodTokenPublishesAndSubscribes: v3 over TLS and WSS, v5 over TLS.
func TestGoodTokenPublishesAndSubscribes(t *testing.T) {
	b := startBroker(t)
	got := make(chan string, 10)
	sub := b.mustV3(overWSS, "user:alice/phone", b.mint("user:alice", "h1=admin"))
	if tk := sub.Subscribe("homes/h1/agents/pi/devices/lamp/state", 1, func(_ pahov3.Client, m pahov3.Message) {
		got <- string(m.Payload())
	}); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("subscribe: %v", tk.Error())
	}
	pub := b.mustV3(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"))
	if tk := pub.Publish("homes/h1/agents/pi/devices/lamp/state", 1, true, "on"); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("publish: %v", tk.Error())
	}
	select {
	case m := <-got:
		if m != "on" {
			t.Fatalf("got %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber over WSS got nothing")
	}
	// the retained state reaches a later MQTT 5 subscriber over TLS
	v5 := b.mustV5(overTLS, "user:alice/tablet", b.mint("user:alice", "h1=viewer"))
	v5.subscribe(t, "homes/h1/agents/+/devices/+/state", 1)
	eventually(t, 5*time.Second, "retained state delivered", func() bool {
		r := v5.received()
		return len(r) == 1 && string(r[0].Payload) == "on" && r[0].Retain
	})
}

// TestClientIDTakeoverIsRefused is now
// TestStockClientIDCannotReachAnotherIdentitysSession (integration_test.go):
// a client ID outside the identity's namespace is keyed by identity
// instead of refused.

// TestEmptyClientIDIsAssignedInOwnNamespace: MQTT 5 gets sub/… in CONNACK.
func TestEmptyClientIDIsAssignedInOwnNamespace(t *testing.T) {
	b := startBroker(t)
	c, ca, err := b.v5(overTLS, "", b.mint("user:alice", "h1=admin"))
	if err != nil {
		t.Fatal(err)
	}
	_ = c
	if !strings.HasPrefix(ca.Properties.AssignedClientID, "user:alice/") {
		t.Fatalf("assigned client ID %q, want user:alice/…", ca.Properties.AssignedClientID)
	}
}

// TestOperatorTokenUsesAnyTopic: a conformance suite can use the broker.
func TestOperatorTokenUsesAnyTopic(t *testing.T) {
	b := startBroker(t)
	tok, _ := b.mintSpec(auth.Spec{Sub: "service:conformance", Operator: true})
	c := b.mustV5(overPlain, "service:conformance", tok)
	for _, f := range []string{"#", "$SYS/#", "test/+/x", "homes/+/agents/+/status"} {
		if code := c.subscribe(t, f, 1); code != 1 {
			t.Errorf("operator subscribe %q: 0x%02X", f, code)
		}
	}
	if pr := c.publish(t, "test/topic", []byte("x"), 1, false); pr.ReasonCode != 0 {
		t.Errorf("operator publish: 0x%02X", pr.ReasonCode)
	}
	eventually(t, 5*time.Second, "own message via #", func() bool {
		for _, p := range c.received() {
			if p.Topic == "test/topic" {
				return true
			}
		}
		return false
	})
	_ = paho.Connect{}
}
