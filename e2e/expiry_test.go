package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"homemq/auth"
	"homemq/broker"
)

// shortLeeway makes exp exact in tests (the default leeway is 2s).
func shortLeeway(c *broker.Config) { c.Tokens.Leeway = time.Millisecond }

// TestPublisherIsCutOffAtExpiry reproduces the original failure on every
// transport: a client with a 2-second token publishes in a loop; nothing it
// sends after exp reaches the subscriber, and MQTT 5 is told why.
//
// After the DISCONNECT a fence message from another agent follows on the
// subscriber's connection: once it has arrived, so has everything the
// publisher got through before it.
func TestPublisherIsCutOffAtExpiry(t *testing.T) {
	b := startBroker(t, shortLeeway)
	sub := b.mustV5(overTLS, "user:owner", b.mint("user:owner", "h1=admin"))
	sub.subscribe(t, "homes/h1/agents/+/devices/+/state", 0)
	fence := b.mustV5(overTLS, "agent:fence", b.mint("agent:fence", "h1=agent"))
	const fenceTopic = "homes/h1/agents/fence/devices/lamp/state"
	for _, tr := range allTransports {
		t.Run(string(tr), func(t *testing.T) {
			tok, claims := b.mintSpec(auth.Spec{Sub: "agent:pi-" + string(tr), Homes: map[string]string{"h1": "agent"}, TTL: 2 * time.Second})
			exp := claims.ExpiresAtTime()
			pub := b.mustV5(tr, "agent:pi-"+string(tr), tok)
			topic := "homes/h1/agents/pi-" + string(tr) + "/devices/lamp/state"
			var d *paho.Disconnect
			for d == nil && time.Now().Before(exp.Add(5*time.Second)) {
				payload := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
				_, _ = pub.Publish(context.Background(), &paho.Publish{Topic: topic, Payload: payload})
				select {
				case d = <-pub.disconnect:
				case <-time.After(20 * time.Millisecond):
				}
			}
			if d == nil {
				t.Fatal("publisher was never disconnected")
			}
			if d.ReasonCode != 0xA0 || !strings.Contains(d.Properties.ReasonString, "token expired") {
				t.Errorf("DISCONNECT 0x%02X %q, want 0xA0 'token expired'", d.ReasonCode, d.Properties.ReasonString)
			}
			marker := []byte("after the cut-off over " + string(tr))
			fence.publish(t, fenceTopic, marker, 1, false)
			eventually(t, 5*time.Second, "the fence message", func() bool {
				return slices.ContainsFunc(sub.received(), func(p *paho.Publish) bool {
					return p.Topic == fenceTopic && bytes.Equal(p.Payload, marker)
				})
			})
			n := 0
			for _, p := range sub.received() {
				if p.Topic != topic {
					continue
				}
				n++
				sent := time.Unix(0, int64(binary.BigEndian.Uint64(p.Payload)))
				if sent.After(exp.Add(10 * time.Millisecond)) {
					t.Fatalf("a message sent %v after exp reached the subscriber", sent.Sub(exp))
				}
			}
			if n == 0 {
				t.Fatal("nothing was delivered before exp either; the test proves nothing")
			}
		})
	}
}

// TestIdleSubscriberIsDisconnectedAtExpiry: a subscriber that sends nothing
// is closed at exp, MQTT 5 with 0xA0 and MQTT 3.1.1 by closing the socket,
// so it stops receiving commands.
func TestIdleSubscriberIsDisconnectedAtExpiry(t *testing.T) {
	b := startBroker(t, shortLeeway)
	for _, tr := range allTransports {
		t.Run(string(tr)+"/v5", func(t *testing.T) {
			tok, claims := b.mintSpec(auth.Spec{Sub: "agent:idle", Homes: map[string]string{"h1": "agent"}, TTL: 2 * time.Second})
			c := b.mustV5(tr, "agent:idle", tok)
			c.subscribe(t, "homes/h1/agents/idle/devices/+/cmd", 1)
			select {
			case d := <-c.disconnect:
				if time.Now().Before(claims.ExpiresAtTime()) {
					t.Fatal("disconnected before exp")
				}
				if d.ReasonCode != 0xA0 || !strings.Contains(d.Properties.ReasonString, "token expired") {
					t.Errorf("DISCONNECT 0x%02X %q", d.ReasonCode, d.Properties.ReasonString)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("idle subscriber still connected long after exp")
			}
		})
		t.Run(string(tr)+"/v3", func(t *testing.T) {
			tok, claims := b.mintSpec(auth.Spec{Sub: "agent:idle3", Homes: map[string]string{"h1": "agent"}, TTL: 2 * time.Second})
			lost := make(chan time.Time, 1)
			b.mustV3(tr, "agent:idle3", tok, func(o *pahov3.ClientOptions) {
				o.SetConnectionLostHandler(func(pahov3.Client, error) { lost <- time.Now() })
			})
			select {
			case at := <-lost:
				if at.Before(claims.ExpiresAtTime()) {
					t.Fatal("disconnected before exp")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("idle v3 subscriber still connected long after exp")
			}
		})
	}
}

// TestReauthenticationExtendsAndReplacesRights: an MQTT 5 client
// re-authenticates three times on one connection, keeps publishing past the
// first token's expiry, and loses rights the last token no longer names.
//
// A twin connection holds a token that expires at the same instant as the
// first one: the broker cutting the twin off is the sign that the first
// token's expiry has passed, without the test guessing how long to sleep.
func TestReauthenticationExtendsAndReplacesRights(t *testing.T) {
	b := startBroker(t, shortLeeway)
	watcher := b.mustV5(overTLS, "user:owner", b.mint("user:owner", "h1=admin", "h2=admin"))
	watcher.subscribe(t, "homes/h1/agents/pi/devices/lamp/state", 1)
	watcher.subscribe(t, "homes/h2/#", 1)

	first, firstClaims := b.mintSpec(auth.Spec{Sub: "agent:pi", Homes: map[string]string{"h1": "agent", "h2": "agent"}, TTL: 2 * time.Second})
	twinTok, twinClaims := b.mintSpec(auth.Spec{Sub: "agent:twin", Homes: map[string]string{"h1": "agent"}, TTL: 2 * time.Second, NotAfter: firstClaims.ExpiresAtTime()})
	if !twinClaims.ExpiresAtTime().Equal(firstClaims.ExpiresAtTime()) {
		t.Fatalf("the twin token expires at %v, the first at %v", twinClaims.ExpiresAtTime(), firstClaims.ExpiresAtTime())
	}
	twin := b.mustV5(overTLS, "agent:twin", twinTok)
	c := b.mustV5(overWSS, "agent:pi", first, func(cp *paho.Connect) {
		cp.Properties = &paho.ConnectProperties{AuthMethod: auth.MQTTMethod, AuthData: []byte(first), RequestProblemInfo: false}
	})
	for i := 0; i < 3; i++ {
		homes := map[string]string{"h1": "agent", "h2": "agent"}
		if i == 2 {
			homes = map[string]string{"h1": "agent"} // the last token drops h2
		}
		tok, _ := b.mintSpec(auth.Spec{Sub: "agent:pi", Homes: homes, TTL: 3 * time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ar, err := c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19, Properties: &paho.AuthProperties{AuthMethod: auth.MQTTMethod, AuthData: []byte(tok)}})
		cancel()
		if err != nil || !ar.Success || ar.ReasonCode != 0 {
			t.Fatalf("re-auth %d: %v %+v", i, err, ar)
		}
		if i == 0 {
			select {
			case d := <-twin.disconnect:
				if d.ReasonCode != 0xA0 {
					t.Fatalf("the twin was cut off with 0x%02X %s, want 0xA0", d.ReasonCode, d.Properties.ReasonString)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the twin of the first token was not cut off at its exp")
			}
		}
		select {
		case d := <-c.disconnect:
			t.Fatalf("disconnected after re-auth %d: 0x%02X %s", i, d.ReasonCode, d.Properties.ReasonString)
		case err := <-c.clientError:
			t.Fatalf("client error after re-auth %d: %v", i, err)
		default:
		}
		if pr := c.publish(t, "homes/h1/agents/pi/devices/lamp/state", []byte{byte(i)}, 1, false); pr.ReasonCode != 0 {
			t.Fatalf("publish after re-auth %d: 0x%02X", i, pr.ReasonCode)
		}
	}
	if !time.Now().After(firstClaims.ExpiresAtTime()) {
		t.Fatal("test did not run past the first token's expiry")
	}
	pr := c.publish(t, "homes/h2/agents/pi/devices/lamp/state", []byte("x"), 1, false)
	if pr.ReasonCode != 0x87 {
		t.Fatalf("publish to h2 after the token dropped it: 0x%02X, want 0x87", pr.ReasonCode)
	}
	eventually(t, 3*time.Second, "three publishes delivered", func() bool { return len(watcher.received()) == 3 })

	// a token for another sub is refused with a DISCONNECT that says why
	other := b.mint("agent:intruder", "h1=agent")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ar, _ := c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19, Properties: &paho.AuthProperties{AuthMethod: auth.MQTTMethod, AuthData: []byte(other)}})
	if ar == nil || ar.Success || ar.ReasonCode != 0x87 || !strings.Contains(ar.Properties.ReasonString, "agent:intruder") {
		t.Fatalf("re-auth with another sub's token: %+v", ar)
	}
}

// TestRevokedTokenIsCutOffAndStaysOut: revoking a jti closes its
// connection within a second, refuses reconnects, and survives a restart.
func TestRevokedTokenIsCutOffAndStaysOut(t *testing.T) {
	data := t.TempDir()
	b := startBrokerIn(t, data)
	tok, claims := b.mintSpec(auth.Spec{Sub: "user:thief", Homes: map[string]string{"h1": "admin"}, TTL: time.Hour})
	keep := b.mint("user:owner", "h1=admin")
	victim := b.mustV5(overWSS, "user:thief", tok)
	bystander := b.mustV5(overWSS, "user:owner", keep)
	start := time.Now()
	if _, err := b.Revoke(broker.RevokeRequest{JTI: claims.ID, Until: claims.ExpiresAtTime().Unix()}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-victim.disconnect:
		if d.ReasonCode != 0x87 || !strings.Contains(d.Properties.ReasonString, "revoked") {
			t.Errorf("DISCONNECT 0x%02X %q", d.ReasonCode, d.Properties.ReasonString)
		}
		if time.Since(start) > time.Second {
			t.Errorf("closed after %v, want within a second", time.Since(start))
		}
	case <-time.After(2 * time.Second):
		t.Fatal("revoked connection still open")
	}
	_, ca, err := b.v5(overTLS, "user:thief", tok)
	if err == nil || ca == nil || ca.ReasonCode != 0x87 {
		t.Fatalf("reconnect with a revoked token: %v %+v", err, ca)
	}
	if code := bystander.subscribe(t, "homes/h1/#", 0); code != 0 {
		t.Fatalf("another token was affected: 0x%02X", code)
	}
	b.Close()

	b2 := startBrokerIn(t, data)
	_, ca, err = b2.v5(overTLS, "user:thief", tok)
	if err == nil || ca == nil || ca.ReasonCode != 0x87 {
		t.Fatalf("after restart, reconnect with a revoked token: %v %+v", err, ca)
	}
	b2.mustV5(overTLS, "user:owner", keep)
}

// TestRevokeSubClosesEveryConnectionOfIt: revoking a sub closes all of its
// connections; a token minted afterwards works again.
func TestRevokeSubClosesEveryConnectionOfIt(t *testing.T) {
	b := startBroker(t)
	phone := b.mustV5(overTLS, "user:alice/phone", b.mint("user:alice", "h1=admin"))
	tablet := b.mustV5(overWSS, "user:alice/tablet", b.mint("user:alice", "h1=viewer"))
	rev, err := b.Revoke(broker.RevokeRequest{Sub: "user:alice"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*v5client{phone, tablet} {
		select {
		case <-c.disconnect:
		case <-time.After(2 * time.Second):
			t.Fatal("a connection of the revoked sub is still open")
		}
	}
	// The revocation covers every token issued up to its second (tokens
	// carry whole seconds): the user's next token is one the issuer stamps
	// with a later second.
	var tok string
	eventually(t, 3*time.Second, "a token issued after the revocation", func() bool {
		var c *auth.Claims
		tok, c = b.mintSpec(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h1": "admin"}})
		return c.IssuedAt.Unix() > rev.At
	})
	b.mustV5(overTLS, "user:alice/phone", tok)
}
