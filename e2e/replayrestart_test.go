package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"homemq/broker"
)

// TestCommandReplayedAcrossAFastRestartIsRefused: the replay cache lives in
// memory. An envelope with iat a few seconds in the future (within the
// allowed skew) was accepted before a restart; played again right after
// it, it must be refused, after a clean stop (the broker recorded the newest
// iat it accepted and the commands of that second: a new command of that
// same second still passes) and after a crash (no record: the broker refuses
// commands issued up to its start plus the skew). A fresh command soon
// passes again.
func TestCommandReplayedAcrossAFastRestartIsRefused(t *testing.T) {
	data := t.TempDir()
	lock := "homes/h1/agents/pi/devices/lock/cmd"
	noRefusalLimit := func(c *broker.Config) { c.Limits.RefusalLimit = 0 } // the test polls with refused commands
	b := startBrokerIn(t, data, noRefusalLimit)
	owner := newSealer(b, "user:owner")
	aheadIat := time.Now().Add(3 * time.Second)
	ahead := owner.seal(t, lock, `{"action":"unlock"}`, aheadIat, 30*time.Second)
	c := b.mustV5(overTLS, "user:owner", owner.token)
	if pr := c.publish(t, lock, ahead, 1, false); pr.ReasonCode != 0 {
		t.Fatalf("the command before the restart: 0x%02X %+v", pr.ReasonCode, pr.Properties)
	}
	replayed := func(t *testing.T, b *testBroker) {
		t.Helper()
		c := b.mustV5(overTLS, "user:owner", owner.token)
		pr := c.publish(t, lock, ahead, 1, false)
		if pr.ReasonCode != 0x87 || pr.Properties == nil ||
			!(strings.Contains(pr.Properties.ReasonString, "(re)started") || strings.Contains(pr.Properties.ReasonString, "replayed")) {
			t.Fatalf("the same envelope after the restart: 0x%02X %+v, want 0x87 (re)started or replayed", pr.ReasonCode, pr.Properties)
		}
		eventually(t, 15*time.Second, "a freshly sealed command to pass after the restart", func() bool {
			fresh := owner.seal(t, lock, `{"action":"lock"}`, time.Now(), 30*time.Second)
			return c.publish(t, lock, fresh, 1, false).ReasonCode == 0
		})
	}

	b.Close() // a clean stop
	t.Run("after a clean stop", func(t *testing.T) {
		b := startBrokerIn(t, data, noRefusalLimit)
		// a new command issued in the same second as the replayed one passes
		c := b.mustV5(overTLS, "user:owner/2", owner.token)
		sibling := owner.seal(t, lock, `{"action":"lock"}`, aheadIat, 30*time.Second)
		if pr := c.publish(t, lock, sibling, 1, false); pr.ReasonCode != 0 {
			t.Fatalf("a new command with the same iat after a clean stop: 0x%02X %+v", pr.ReasonCode, pr.Properties)
		}
		replayed(t, b)
	})

	b2 := startBrokerIn(t, data, noRefusalLimit)
	running, err := os.ReadFile(filepath.Join(data, broker.IssuedFile))
	if err != nil || !strings.Contains(string(running), `"running":true`) {
		t.Fatalf("a running broker's %s is %q (%v), want its running mark: a crash would reuse the last record", broker.IssuedFile, running, err)
	}
	b2.Close()
	// as after a crash: the running mark is what the next start finds
	if err := os.WriteFile(filepath.Join(data, broker.IssuedFile), running, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("after a crash", func(t *testing.T) { replayed(t, startBrokerIn(t, data, noRefusalLimit)) })
}
