package e2e

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"homemq/auth"
	"homemq/envelope"
)

// sealer mints a token for an admin of h1 and seals commands with its key.
type sealer struct {
	token  string
	claims *auth.Claims
	key    []byte
}

func newSealer(b *testBroker, sub string) sealer {
	tok, c := b.mintSpec(auth.Spec{Sub: sub, Homes: map[string]string{"h1": "admin"}})
	return sealer{token: tok, claims: c, key: b.MessageKey(c.ID)}
}

func (s sealer) seal(t *testing.T, topic, msg string, iat time.Time, ttl time.Duration) []byte {
	t.Helper()
	env, err := envelope.SealNonce(s.key, topic, s.claims.ID, msg, freshNonce(t), iat.Unix(), iat.Add(ttl).Unix())
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func freshNonce(t *testing.T) string {
	t.Helper()
	var e struct{ Nonce string }
	env, err := envelope.Seal(make([]byte, 32), "homes/x/agents/x/devices/x/cmd", "k", "m", time.Now(), time.Minute)
	if err != nil || json.Unmarshal(env, &e) != nil {
		t.Fatal(err)
	}
	return e.Nonce
}

// TestCommandEnvelopeOnTheWire: a signed command is delivered once; every
// way of replaying, moving, altering, stretching, back-dating or forging it
// is refused with PUBACK 0x87/0x99 and never delivered.
func TestCommandEnvelopeOnTheWire(t *testing.T) {
	b := startBroker(t)
	lock := "homes/h1/agents/pi/devices/lock/cmd"
	lamp := "homes/h1/agents/pi/devices/lamp/cmd"
	agent := b.mustV5(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"))
	agent.subscribe(t, "homes/h1/agents/pi/devices/+/cmd", 1)

	owner := newSealer(b, "user:owner")
	other := newSealer(b, "user:other")
	c := b.mustV5(overWSS, "user:owner", owner.token)

	good := owner.seal(t, lock, `{"action":"unlock"}`, time.Now(), 30*time.Second)
	if pr := c.publish(t, lock, good, 1, false); pr.ReasonCode != 0 {
		t.Fatalf("good command refused: 0x%02X %s", pr.ReasonCode, pr.Properties.ReasonString)
	}
	eventually(t, 5*time.Second, "the good command delivered", func() bool { return len(agent.received()) == 1 })
	if got := agent.received()[0]; !bytes.Equal(got.Payload, good) || got.Properties.MessageExpiry == nil || *got.Properties.MessageExpiry > 31 {
		t.Fatalf("delivered %s with message expiry %v, want the same bytes expiring with the envelope", got.Payload, got.Properties.MessageExpiry)
	}

	altered := bytes.Replace(good, []byte("unlock"), []byte("lock!!"), 1)
	now := time.Now()
	otherKid := func() []byte { // signed with our key but naming another token's jti
		env, _ := envelope.SealNonce(owner.key, lock, other.claims.ID, `{"action":"unlock"}`, freshNonce(t), now.Unix(), now.Add(30*time.Second).Unix())
		return env
	}()
	foreignKey := func() []byte { // our kid, but signed with another token's key
		env, _ := envelope.SealNonce(other.key, lock, owner.claims.ID, `{"action":"unlock"}`, freshNonce(t), now.Unix(), now.Add(30*time.Second).Unix())
		return env
	}()
	refused := []struct {
		name    string
		topic   string
		payload []byte
		code    byte
		reason  string
	}{
		{"replay of the same bytes", lock, good, 0x87, "replay"},
		{"moved to another device", lamp, good, 0x87, "signature"},
		{"altered msg", lock, altered, 0x87, "signature"},
		{"expired", lock, owner.seal(t, lock, `{"action":"unlock"}`, now.Add(-40*time.Second), 30*time.Second), 0x87, "expired"},
		{"lifetime too long", lock, owner.seal(t, lock, `{"action":"unlock"}`, now, 10*time.Minute), 0x87, "lifetime"},
		{"from the future", lock, owner.seal(t, lock, `{"action":"unlock"}`, now.Add(time.Minute), 30*time.Second), 0x87, "future"},
		{"signed with another token's key", lock, foreignKey, 0x87, "signature"},
		{"another token's envelope", lock, other.seal(t, lock, `{"action":"unlock"}`, now, 30*time.Second), 0x87, "key id"},
		{"kid of another token", lock, otherKid, 0x87, "key id"},
		{"plain payload", lock, []byte(`{"action":"unlock"}`), 0x99, "malformed"},
		{"not JSON at all", lock, []byte("unlock"), 0x99, "malformed"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			pr := c.publish(t, tc.topic, tc.payload, 1, false)
			if pr.ReasonCode != tc.code || !strings.Contains(pr.Properties.ReasonString, tc.reason) {
				t.Fatalf("PUBACK 0x%02X %q, want 0x%02X saying %q", pr.ReasonCode, pr.Properties.ReasonString, tc.code, tc.reason)
			}
		})
	}
	never(t, 500*time.Millisecond, "a refused command was delivered", func() bool { return len(agent.received()) > 1 })

	// state and event topics need no envelope
	st := agent.publish(t, "homes/h1/agents/pi/devices/lock/state", []byte("locked"), 1, true)
	ev := agent.publish(t, "homes/h1/agents/pi/devices/lock/event", []byte(`{"door":"opened"}`), 1, false)
	if st.ReasonCode != 0 || ev.ReasonCode != 0 {
		t.Fatalf("state 0x%02X, event 0x%02X: they need no envelope", st.ReasonCode, ev.ReasonCode)
	}
}

// TestReplayAcrossConnectionsAndTransports: the same envelope replayed by
// the same token on a second connection, over another transport, is refused.
func TestReplayAcrossConnectionsAndTransports(t *testing.T) {
	b := startBroker(t)
	topic := "homes/h1/agents/pi/devices/lock/cmd"
	s := newSealer(b, "user:owner")
	env := s.seal(t, topic, `{"action":"unlock"}`, time.Now(), 30*time.Second)
	first := b.mustV5(overTLS, "user:owner/a", s.token)
	if pr := first.publish(t, topic, env, 1, false); pr.ReasonCode != 0 {
		t.Fatalf("0x%02X", pr.ReasonCode)
	}
	second := b.mustV5(overPlain, "user:owner/b", s.token)
	if pr := second.publish(t, topic, env, 1, false); pr.ReasonCode != 0x87 || !strings.Contains(pr.Properties.ReasonString, "replay") {
		t.Fatalf("replay on a second connection: 0x%02X %q", pr.ReasonCode, pr.Properties.ReasonString)
	}
}

// TestJavaScriptSealedCommand: a command sealed by clients/js/envelope.mjs
// and sent with MQTT.js over WSS is delivered; the same bytes again are
// refused as a replay and never delivered.
func TestJavaScriptSealedCommand(t *testing.T) {
	b := startBroker(t)
	topic := "homes/h1/agents/pi/devices/lamp/cmd"
	agent := b.mustV5(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"))
	agent.subscribe(t, "homes/h1/agents/pi/devices/+/cmd", 1)
	s := newSealer(b, "user:web")
	p := startNode(t, "jsenvelope.mjs", map[string]string{
		"URL": b.url(overWSS), "NODE_EXTRA_CA_CERTS": b.CAFile,
		"TOKEN": s.token, "MSG_KEY": envelope.EncodeKey(s.key), "KID": s.claims.ID, "SUB": "user:web", "TOPIC": topic,
	})
	var res struct {
		Payload string
		First   struct{ Code int }
		Again   struct {
			Code   int
			Reason string
		}
	}
	p.wait(20*time.Second, &res)
	if res.First.Code != 0 {
		t.Fatalf("the JS-sealed command was refused: %+v", res.First)
	}
	if res.Again.Code != 0x87 { // MQTT.js drops the reason string; Go clients see "replay"
		t.Fatalf("the same bytes again: %+v, want 135 (not authorized: replay)", res.Again)
	}
	eventually(t, 5*time.Second, "the JS-sealed command delivered", func() bool { return len(agent.received()) >= 1 })
	never(t, 300*time.Millisecond, "the replay delivered", func() bool { return len(agent.received()) > 1 })
	if got := string(agent.received()[0].Payload); got != res.Payload {
		t.Fatalf("delivered %s, sealed %s", got, res.Payload)
	}
}
