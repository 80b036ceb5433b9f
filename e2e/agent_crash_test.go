package e2e

import (
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"homemq/agent"
	"homemq/agent/gpiosim"
)

// TestAgentCrashBeforePubackActsOnce: the agent drives the pin for a
// command and dies before its PUBACK reaches the broker (its writes are
// frozen, then its network and the agent itself go away). A new agent on
// the same state folder and the same pins gets the command again from its
// persistent session (QoS 1): it does not drive the pin a second time, and
// acks the command as taken on before the restart.
func TestAgentCrashBeforePubackActsOnce(t *testing.T) {
	b := startBroker(t)
	h := watchHome(t, b)
	cfg := agentConfig(t, b)
	cfg.StateDir = t.TempDir()
	bank := gpiosim.New()
	first := startAgent(t, cfg, agent.Options{Pins: bank})
	h.waitOnline(10 * time.Second)

	first.net.freeze()
	n := h.send("lamp", `{"action":"toggle"}`, time.Minute)
	eventually(t, 5*time.Second, "the toggle to drive the lamp pin", func() bool { return bank.Get(lampPin).Level() == gpio.High })
	if len(h.acks("lamp", n)) != 0 {
		t.Fatal("an ack got out through a frozen connection")
	}
	// The crash: the connection dies with the PUBACK unsent and the agent
	// is gone, with everything it held in memory.
	first.net.cut()
	first.stop()
	select {
	case err := <-first.done:
		first.done <- err // for the cleanup of startAgent
	case <-time.After(10 * time.Second):
		t.Fatal("the first agent did not stop")
	}

	second := startAgent(t, cfg, agent.Options{Pins: bank})
	ack := h.ack("lamp", n, 20*time.Second)
	if ack.OK || ack.Error != agent.ErrRestarted {
		t.Fatalf("ack after the restart %+v, want error %s", ack, agent.ErrRestarted)
	}
	never(t, time.Second, "a second ack", func() bool { return len(h.acks("lamp", n)) > 1 })
	highs := 0
	for _, c := range bank.Get(lampPin).History() {
		if c.Level == gpio.High {
			highs++
		}
	}
	if highs != 1 {
		t.Fatalf("the lamp pin went high %d times for one toggle: %v", highs, bank.Get(lampPin).History())
	}
	if second.pin(lampPin).Level() != gpio.Low {
		t.Fatal("the restarted agent's lamp is not at its safe level")
	}
}
