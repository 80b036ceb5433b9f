package agent

import (
	"encoding/json"
	"testing"
)

func TestDiscoveryMessages(t *testing.T) {
	cfg := &Config{Home: "h1", Agent: "pi1", Devices: []DeviceConfig{
		{ID: "door", Kind: Pulse, Name: "Front door"},
		{ID: "lamp", Kind: Switch},
		{ID: "pir", Kind: Input, DeviceClass: "motion"},
	}}
	if got := DiscoveryMessages(cfg); got != nil {
		t.Fatalf("discovery without home_assistant: %v", got)
	}
	cfg.HomeAssistant = &HomeAssistantConfig{DiscoveryPrefix: "homeassistant"}
	msgs := DiscoveryMessages(cfg)
	tests := []struct {
		topic, name, class, state string
	}{
		{"homeassistant/binary_sensor/pi1/door/config", "Front door", "lock", "homes/h1/agents/pi1/devices/door/state"},
		{"homeassistant/binary_sensor/pi1/lamp/config", "lamp", "power", "homes/h1/agents/pi1/devices/lamp/state"},
		{"homeassistant/binary_sensor/pi1/pir/config", "pir", "motion", "homes/h1/agents/pi1/devices/pir/state"},
	}
	if len(msgs) != len(tests) {
		t.Fatalf("%d messages, want %d", len(msgs), len(tests))
	}
	ids := map[string]bool{}
	for i, tt := range tests {
		m := msgs[i]
		if m.Topic != tt.topic {
			t.Errorf("topic %q, want %q", m.Topic, tt.topic)
		}
		var c map[string]any
		if err := json.Unmarshal(m.Payload, &c); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"name": tt.name, "device_class": tt.class, "state_topic": tt.state,
			"value_template": "{{ value_json.state }}", "payload_on": "on", "payload_off": "off",
			"availability_topic": "homes/h1/agents/pi1/status", "payload_available": "online", "payload_not_available": "offline",
		}
		for k, v := range want {
			if c[k] != v {
				t.Errorf("%s: %s = %v, want %v", tt.topic, k, c[k], v)
			}
		}
		if _, ok := c["command_topic"]; ok {
			t.Errorf("%s: a command_topic would let Home Assistant send unsigned commands", tt.topic)
		}
		id, _ := c["unique_id"].(string)
		if id == "" || ids[id] {
			t.Errorf("%s: unique_id %q is empty or repeated", tt.topic, id)
		}
		ids[id] = true
	}
}
