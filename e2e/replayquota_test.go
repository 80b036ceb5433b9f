package e2e

import (
	"strings"
	"testing"
	"time"

	"homemq/broker"
)

// TestReplayQuotaFillsPerIdentity: the replay cache remembers every live
// command. Its capacity was global, so a few identities sending long-lived
// commands could fill it and have every command broker-wide refused. Each
// sub now has its share (envelope.replay_quota): the sub that fills its
// share gets PUBACK 0x97 with a reason string, another sub's command passes.
func TestReplayQuotaFillsPerIdentity(t *testing.T) {
	b := startBroker(t, func(c *broker.Config) {
		c.Envelope.ReplayQuota = 5
		c.Limits.CommandRate, c.Limits.CommandBurst = 100, 100
	})
	lock := "homes/h1/agents/pi/devices/lock/cmd"
	flood := newSealer(b, "user:flood")
	fc := b.mustV5(overTLS, "user:flood", flood.token)
	for i := 0; i < 5; i++ {
		env := flood.seal(t, lock, `{"action":"unlock"}`, time.Now(), 60*time.Second)
		if pr := fc.publish(t, lock, env, 1, false); pr.ReasonCode != 0 {
			t.Fatalf("command %d within the quota: 0x%02X %+v", i, pr.ReasonCode, pr.Properties)
		}
	}
	env := flood.seal(t, lock, `{"action":"unlock"}`, time.Now(), 60*time.Second)
	pr := fc.publish(t, lock, env, 1, false)
	if pr.ReasonCode != 0x97 || pr.Properties == nil || !strings.Contains(pr.Properties.ReasonString, "too many live commands") {
		t.Fatalf("a command over the quota: 0x%02X %+v, want 0x97 with a reason", pr.ReasonCode, pr.Properties)
	}

	other := newSealer(b, "user:other")
	oc := b.mustV5(overTLS, "user:other", other.token)
	if pr := oc.publish(t, lock, other.seal(t, lock, `{"action":"lock"}`, time.Now(), 30*time.Second), 1, false); pr.ReasonCode != 0 {
		t.Fatalf("another identity's command: 0x%02X %+v, want it accepted", pr.ReasonCode, pr.Properties)
	}
}
