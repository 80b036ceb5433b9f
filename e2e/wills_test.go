package e2e

import (
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
	"homemq/broker"
)

const (
	doorState = "homes/h1/agents/pi/devices/door/state"
	piStatus  = "homes/h1/agents/pi/status"
	lockedMsg = `{"state":"locked"}`
)

// on returns what c received on topic, oldest first.
func (c *v5client) on(topic string) []*paho.Publish {
	var out []*paho.Publish
	for _, p := range c.received() {
		if p.Topic == topic {
			out = append(out, p)
		}
	}
	return out
}

// homeWatcher is a live admin of h1 subscribed to all of it.
func homeWatcher(t *testing.T, b *testBroker) *v5client {
	t.Helper()
	w := b.mustV5(overTLS, "user:watch", b.mint("user:watch", "h1=admin"))
	if code := w.subscribe(t, "homes/h1/#", 1); code != 1 {
		t.Fatalf("watcher subscribe: 0x%02X", code)
	}
	return w
}

// withWill sets a retained QoS 1 will, with a delay if delay > 0 and a
// session that outlives the connection.
func withWill(topic, payload string, delay uint32) func(*paho.Connect) {
	return func(c *paho.Connect) {
		c.WillMessage = &paho.WillMessage{Topic: topic, Payload: []byte(payload), Retain: true, QoS: 1}
		if delay > 0 {
			c.WillProperties = &paho.WillProperties{WillDelayInterval: &delay}
			persistent(c)
		}
	}
}

// TestRevokedAgentsWillIsNeverPublished: an agent whose token is revoked
// while it is connected is cut off, and its will, a retained "locked" door
// state, is neither published nor retained.
func TestRevokedAgentsWillIsNeverPublished(t *testing.T) {
	b := startBroker(t)
	w := homeWatcher(t, b)
	pi := b.mustV5(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"), withWill(doorState, lockedMsg, 0))
	if _, err := b.Revoke(broker.RevokeRequest{Sub: "agent:pi"}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-pi.disconnect:
		if d.ReasonCode != 0x87 {
			t.Fatalf("DISCONNECT 0x%02X, want 0x87", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked agent was not cut off")
	}
	never(t, 1500*time.Millisecond, "the revoked agent's will was published", func() bool { return len(w.on(doorState)) > 0 })
	if got := retained(t, b, doorState); got != "" {
		t.Fatalf("retained door state %q after the revoked agent's will, want none", got)
	}
}

// TestRevokedDelayedWillIsNeverPublished: an agent with a delayed will
// vanishes and is revoked within the delay; the will never comes.
func TestRevokedDelayedWillIsNeverPublished(t *testing.T) {
	b := startBroker(t)
	w := homeWatcher(t, b)
	pi := b.mustV5(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"), withWill(doorState, lockedMsg, 2))
	pi.conn.Close() // the network dies: the will is due in 2 s
	eventually(t, 5*time.Second, "the broker noticed the agent is gone", func() bool {
		cl, ok := b.Server.Clients.Get("agent:pi")
		return ok && cl.Closed()
	})
	if _, err := b.Revoke(broker.RevokeRequest{Sub: "agent:pi"}); err != nil {
		t.Fatal(err)
	}
	never(t, 4*time.Second, "the revoked agent's delayed will was published", func() bool { return len(w.on(doorState)) > 0 })
}

// TestExpiredClientsWill: a connection cut off because its token expired
// sends only a will that is true then, the agent's own status "offline";
// a will that claims a device state is dropped.
func TestExpiredClientsWill(t *testing.T) {
	b := startBroker(t, shortLeeway)
	w := homeWatcher(t, b)
	short := func(sub string) string {
		tok, _ := b.mintSpec(auth.Spec{Sub: sub, Homes: map[string]string{"h1": "agent"}, TTL: 2 * time.Second})
		return tok
	}
	b.mustV5(overTLS, "agent:pi", short("agent:pi"), withWill(doorState, lockedMsg, 0))
	b.mustV5(overTLS, "agent:pi2", short("agent:pi2"), withWill("homes/h1/agents/pi2/status", "offline", 0))
	eventually(t, 10*time.Second, "the expired agent's status will", func() bool { return len(w.on("homes/h1/agents/pi2/status")) == 1 })
	never(t, time.Second, "an expired agent's state will was published", func() bool { return len(w.on(doorState)) > 0 })
	if got := retained(t, b, "homes/h1/agents/pi2/status"); got != "offline" {
		t.Fatalf("retained status %q, want offline", got)
	}
}

// TestUncleanDisconnectSendsWill: a vanished agent's will is published
// and retained, with its properties; DISCONNECT 0x04 sends it too and
// DISCONNECT 0x00 does not; a delayed will comes after its delay, and not
// at all when the client is back within the delay.
func TestUncleanDisconnectSendsWill(t *testing.T) {
	b := startBroker(t)
	w := homeWatcher(t, b)
	// paho.golang does not send a will's content type: a raw CONNECT does
	raw := b.silentConnect("agent:pi", b.mint("agent:pi", "h1=agent"), func(pk *packets.Packet) {
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, piStatus, []byte("offline")
		pk.Connect.WillQos, pk.Connect.WillRetain = 1, true
		pk.Connect.WillProperties = packets.Properties{ContentType: "text/plain", MessageExpiryInterval: 3600,
			User: []packets.UserProperty{{Key: "origin", Val: "will"}}}
	})
	eventually(t, 5*time.Second, "the agent connected", func() bool { _, ok := b.Server.Clients.Get("agent:pi"); return ok })
	raw.conn.Close()
	eventually(t, 5*time.Second, "the will of a vanished agent", func() bool { return len(w.on(piStatus)) == 1 })
	got := w.on(piStatus)[0]
	if p := got.Properties; string(got.Payload) != "offline" || p == nil || p.ContentType != "text/plain" ||
		p.User.Get("origin") != "will" || p.MessageExpiry == nil || *p.MessageExpiry == 0 {
		t.Fatalf("will %q with properties %+v, want offline with content type, user property and message expiry", got.Payload, got.Properties)
	}
	if r := retained(t, b, piStatus); r != "offline" {
		t.Fatalf("retained status %q, want offline", r)
	}

	pi := b.mustV5(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"), withWill(piStatus, "offline", 0))
	_ = pi.Disconnect(&paho.Disconnect{ReasonCode: 0x04})
	eventually(t, 5*time.Second, "the will after DISCONNECT 0x04", func() bool { return len(w.on(piStatus)) == 2 })
	pi = b.mustV5(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"), withWill(piStatus, "offline", 0))
	_ = pi.Disconnect(&paho.Disconnect{ReasonCode: 0})
	never(t, time.Second, "a will after DISCONNECT 0x00", func() bool { return len(w.on(piStatus)) > 2 })

	pi = b.mustV5(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"), withWill(piStatus, "offline", 1))
	pi.conn.Close()
	eventually(t, 5*time.Second, "the delayed will", func() bool { return len(w.on(piStatus)) == 3 })

	pi = b.mustV5(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"), withWill(piStatus, "offline", 2))
	pi.conn.Close()
	eventually(t, 5*time.Second, "the broker noticed the agent is gone", func() bool {
		cl, ok := b.Server.Clients.Get("agent:pi")
		return ok && cl.Closed()
	})
	back := b.mustV5(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"), func(c *paho.Connect) { persistent(c) })
	never(t, 3*time.Second, "a delayed will of a client that came back", func() bool { return len(w.on(piStatus)) > 3 })
	_ = back.Disconnect(&paho.Disconnect{})
}
