package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"homemq/broker"
)

// persistentFor asks for a session that outlives the connection by d.
func persistentFor(d uint32) func(*paho.Connect) {
	return func(cp *paho.Connect) {
		cp.CleanStart = false
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &d}
	}
}

// TestDisconnectCannotRaiseSessionExpiryPastTheCap: mochi copies the session
// expiry of a DISCONNECT without the cap it applies at CONNECT, so a client
// could leave a session and its queue behind for 136 years. The broker caps
// it: with a 2 s cap, a session left with 4294967295 s is gone within
// seconds. A DISCONNECT may not raise the expiry from 0 either (0x82).
func TestDisconnectCannotRaiseSessionExpiryPastTheCap(t *testing.T) {
	b := startBroker(t, func(c *broker.Config) { c.Limits.MaxSessionExpiry = 2 * time.Second })
	tok := b.mint("user:a", "h1=admin")
	forever := uint32(0xFFFFFFFF)

	c := b.mustV5(overTLS, "user:a/forever", tok, persistentFor(1))
	c.subscribe(t, "homes/h1/agents/+/devices/+/cmd", 1)
	if err := c.Disconnect(&paho.Disconnect{Properties: &paho.DisconnectProperties{SessionExpiryInterval: &forever}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the offline session to expire at the 2 s cap", func() bool {
		_, ok := b.Server.Clients.Get("user:a/forever")
		return !ok
	})

	z := b.mustV5(overTLS, "user:a/zero", tok, persistentFor(0))
	hour := uint32(3600)
	_ = z.Disconnect(&paho.Disconnect{Properties: &paho.DisconnectProperties{SessionExpiryInterval: &hour}})
	eventually(t, 10*time.Second, "a session that began with expiry 0 to end with its connection", func() bool {
		_, ok := b.Server.Clients.Get("user:a/zero")
		return !ok
	})
}

// TestPersistentSessionsPerSubAreCapped: every persistent session, online
// or offline, holds a queue for each of its subscriptions. One sub may hold
// limits.sessions_per_sub of them; a new one beyond gets CONNACK 0x97 with
// a reason string, while a reconnect to an existing session, a clean
// connection and another sub still get in.
func TestPersistentSessionsPerSubAreCapped(t *testing.T) {
	b := startBroker(t, func(c *broker.Config) { c.Limits.SessionsPerSub = 3 })
	tok := b.mint("user:x", "h1=admin")
	for i := 1; i <= 3; i++ {
		c := b.mustV5(overTLS, fmt.Sprintf("user:x/%d", i), tok, persistentFor(600))
		c.subscribe(t, "homes/h1/agents/+/devices/+/cmd", 1)
		if i < 3 {
			_ = c.Disconnect(&paho.Disconnect{}) // offline sessions count too
		}
	}
	_, ca, err := b.v5(overTLS, "user:x/4", tok, persistentFor(600))
	if err == nil || ca == nil || ca.ReasonCode != 0x97 || !strings.Contains(ca.Properties.ReasonString, "too many persistent sessions for user:x") {
		t.Fatalf("a fourth persistent session of one sub: %v %+v", err, ca)
	}
	if _, err := b.v3(overPlain, "user:x/v3", tok, func(o *pahov3.ClientOptions) { o.SetCleanSession(false) }); err == nil {
		t.Fatal("a fourth persistent session over MQTT 3.1.1 was accepted")
	}

	again := b.mustV5(overTLS, "user:x/1", tok, persistentFor(600)) // not a new session
	_ = again.Disconnect(&paho.Disconnect{})
	b.mustV5(overTLS, "user:x/clean", tok) // no session kept
	if _, ca, err := b.v5(overTLS, "user:x/clean", tok, persistentFor(600)); err == nil || ca == nil || ca.ReasonCode != 0x97 {
		t.Fatalf("taking over a clean connection with a new persistent session: %v %+v, want 0x97", err, ca)
	}
	b.mustV5(overTLS, "user:y/1", b.mint("user:y", "h1=admin"), persistentFor(600)) // another sub

	// ending a session with expiry 0 makes room for a new one
	zero := uint32(0)
	c2 := b.mustV5(overTLS, "user:x/2", tok, persistentFor(600))
	_ = c2.Disconnect(&paho.Disconnect{Properties: &paho.DisconnectProperties{SessionExpiryInterval: &zero}})
	eventually(t, 10*time.Second, "a new session once one ended", func() bool {
		c, _, err := b.v5(overTLS, "user:x/4", tok, persistentFor(600))
		if err == nil {
			_ = c.Disconnect(&paho.Disconnect{})
		}
		return err == nil
	})
}
