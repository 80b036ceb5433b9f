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
	h := watchHome(t, b)
	first := startAgent(t, cfg, agent.Options{})
	h.waitOnline(10 * time.Second)
	ha := startHA(t, b, "ha", b.addIntegration(agentHome, "ha", "viewer"))
	fan, heater := "homeassistant/switch/pi1/fan/config", "homeassistant/switch/pi1/heater/config"
	eventually(t, 10*time.Second, "the fan is discovered", func() bool { return ha.config(fan) != nil })

	first.stop()
	eventually(t, 10*time.Second, "the first agent is gone", func() bool { return h.last(statusTopic()) == "offline" })
	var devs []agent.DeviceConfig
	for _, d := range cfg.Devices {
		if d.ID != "fan" {
			devs = append(devs, d)
		}
	}
	cfg.Devices = append(devs, agent.DeviceConfig{ID: "heater", Kind: agent.Switch, Pin: "GPIO24"})
	startAgent(t, cfg, agent.Options{})
	eventually(t, 10*time.Second, "the heater appears and the fan disappears", func() bool {
		return ha.config(heater) != nil && ha.config(fan) == nil
	})
	if got := retained(t, b, "homes/h1/discovery/switch/pi1/fan/config"); got != "" {
		t.Errorf("the removed fan's config is still retained: %q", got)
	}

	b.mustAdmin(registry.Request{Op: registry.OpAgentRemove, Home: agentHome, Agent: agentID})
	eventually(t, 10*time.Second, "Home Assistant drops every entity of the removed agent", func() bool {
		ha.mu.Lock()
		defer ha.mu.Unlock()
		return len(ha.configs) == 0
	})
	for _, topic := range []string{statusTopic(), "homes/h1/agents/pi1/devices/lamp/state", "homes/h1/discovery/lock/pi1/door/config"} {
		if got := retained(t, b, topic); got != "" {
			t.Errorf("after agent remove, %s is still retained: %q", topic, got)
		}
	}
}
