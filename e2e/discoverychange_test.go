package e2e

import (
	"testing"
	"time"

	"homemq/agent"
	"homemq/registry"
)

// TestDiscoveryFollowsTheAgentsDevices: a device added to the agent's
// config appears in Home Assistant after the agent restarts, a removed one
// disappears (empty retained config), and removing the agent from the
// registry clears its retained status, state and discovery configs.
func TestDiscoveryFollowsTheAgentsDevices(t *testing.T) {
	b := startBroker(t)
	cfg := agentConfig(t, b)
	cfg.HomeAssistant = &agent.HomeAssistantConfig{}
	cfg.StateDir = t.TempDir()
	all := cfg.Devices
	without := func(id string) []agent.DeviceConfig {
		var out []agent.DeviceConfig
		for _, d := range all {
			if d.ID != id {
				out = append(out, d)
			}
		}
		return out
	}
	// The registry lists lamp, door, button and fan (an agent token names
	// only those): the first run has no fan, the second no button.
	cfg.Devices = without("fan")
	h := watchHome(t, b)
	first := startAgent(t, cfg, agent.Options{})
	h.waitOnline(10 * time.Second)
	ha := startHA(t, b, "ha", b.addIntegration(agentHome, "ha", "viewer"))
	fan, button := "homeassistant/switch/pi1/fan/config", "homeassistant/binary_sensor/pi1/button/config"
	eventually(t, 10*time.Second, "the button is discovered", func() bool { return ha.config(button) != nil })
	if ha.config(fan) != nil {
		t.Fatal("the fan is discovered before it is configured")
	}

	first.stop()
	eventually(t, 10*time.Second, "the first agent is gone", func() bool { return h.last(statusTopic()) == "offline" })
	cfg.Devices = without("button")
	startAgent(t, cfg, agent.Options{})
	eventually(t, 10*time.Second, "the fan appears and the button disappears", func() bool {
		return ha.config(fan) != nil && ha.config(button) == nil
	})
	if got := heldRetained(b, "homes/h1/discovery/binary_sensor/pi1/button/config"); got != "" {
		t.Errorf("the removed button's config is still retained: %q", got)
	}

	b.mustAdmin(registry.Request{Op: registry.OpAgentRemove, Home: agentHome, Agent: agentID})
	eventually(t, 10*time.Second, "Home Assistant drops every entity of the removed agent", func() bool {
		ha.mu.Lock()
		defer ha.mu.Unlock()
		return len(ha.configs) == 0
	})
	for _, topic := range []string{statusTopic(), "homes/h1/agents/pi1/devices/lamp/state", "homes/h1/discovery/lock/pi1/door/config"} {
		if got := heldRetained(b, topic); got != "" {
			t.Errorf("after agent remove, %s is still retained: %q", topic, got)
		}
	}
}

// heldRetained returns the retained payload the broker holds on topic now
// ("" if none), without waiting as a subscriber would for one that is absent.
func heldRetained(b *testBroker, topic string) string {
	if pk, ok := b.Server.Topics.Retained.Get(topic); ok {
		return string(pk.Payload)
	}
	return ""
}
