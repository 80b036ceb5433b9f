package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// brokerAcks returns the acks with by = "broker" that c received.
func brokerAcks(c *v5client) []string {
	var out []string
	for _, p := range c.received() {
		var a struct{ By, Error, Nonce string }
		if json.Unmarshal(p.Payload, &a) == nil && a.By == "broker" {
			out = append(out, a.Nonce+":"+a.Error)
		}
	}
	return out
}

// TestExpiredAckOnlyFromTheAgentsQueue: a command that expires in the
// queue of an admin's offline homes/h1/# session (three of them here) gets
// no "expired" ack from the broker, since the agent, online, received it;
// a command that expires in the offline agent's own queue gets exactly one.
func TestExpiredAckOnlyFromTheAgentsQueue(t *testing.T) {
	b := startBroker(t)
	const lamp = "homes/h1/agents/pi/devices/lamp/cmd"
	watcher := b.mustV5(overTLS, "user:watch", b.mint("user:watch", "h1=member"))
	if code := watcher.subscribe(t, "homes/h1/agents/pi/devices/+/ack", 1); code != 1 {
		t.Fatalf("watcher subscribe: 0x%02X", code)
	}
	for _, id := range []string{"user:a1", "user:a2", "user:a3"} {
		admin := b.mustV5(overTLS, id, b.mint(id, "h1=admin"), persistent)
		if code := admin.subscribe(t, "homes/h1/#", 1); code != 1 {
			t.Fatalf("%s subscribe: 0x%02X", id, code)
		}
		_ = admin.Disconnect(&paho.Disconnect{})
	}
	agent := b.mustV5(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"), persistent)
	agent.subscribe(t, "homes/h1/agents/pi/devices/+/cmd", 1)

	s := newSealer(b, "user:owner")
	owner := b.mustV5(overTLS, "user:owner", s.token)
	if pr := owner.publish(t, lamp, s.seal(t, lamp, `{"action":"on"}`, time.Now(), time.Second), 1, false); pr.ReasonCode != 0 {
		t.Fatalf("command refused: 0x%02X", pr.ReasonCode)
	}
	eventually(t, 5*time.Second, "the agent receives the command", func() bool { return len(agent.received()) == 1 })
	never(t, 4*time.Second, "an expired ack for a command the agent received", func() bool { return len(brokerAcks(watcher)) > 0 })

	_ = agent.Disconnect(&paho.Disconnect{})
	if pr := owner.publish(t, lamp, s.seal(t, lamp, `{"action":"off"}`, time.Now(), time.Second), 1, false); pr.ReasonCode != 0 {
		t.Fatalf("command refused: 0x%02X", pr.ReasonCode)
	}
	eventually(t, 10*time.Second, "one expired ack from the agent's queue", func() bool { return len(brokerAcks(watcher)) > 0 })
	never(t, 2*time.Second, "a second expired ack", func() bool { return len(brokerAcks(watcher)) > 1 })
}
