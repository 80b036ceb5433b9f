package agent

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestDiscoveryMessages(t *testing.T) {
	cfg := &Config{Home: "h1", Agent: "pi1", Devices: []DeviceConfig{
		{ID: "door", Kind: Pulse, Name: "Front door"},
		{ID: "lamp", Kind: Switch},
		{ID: "pir", Kind: Input, DeviceClass: "motion"},
		{ID: "strike", Kind: Switch, DeviceClass: "door"},
		{ID: "bell", Kind: Pulse, DeviceClass: "sound"},
	}}
	if got := DiscoveryMessages(cfg); got != nil {
		t.Fatalf("discovery without home_assistant: %v", got)
	}
	cfg.HomeAssistant = &HomeAssistantConfig{DiscoveryPrefix: "homeassistant"}
	msgs := DiscoveryMessages(cfg)
	tests := []struct {
		topic string
		want  map[string]any
	}{
		{"homeassistant/lock/pi1/door/config", map[string]any{"name": "Front door",
			"command_topic": "homes/h1/agents/pi1/devices/door/cmd", "payload_unlock": "PULSE", "payload_lock": "OFF",
			"state_unlocked": "on", "state_locked": "off", "state_topic": "homes/h1/agents/pi1/devices/door/state"}},
		{"homeassistant/switch/pi1/lamp/config", map[string]any{"name": "lamp",
			"command_topic": "homes/h1/agents/pi1/devices/lamp/cmd", "payload_on": "ON", "payload_off": "OFF",
			"state_on": "on", "state_off": "off", "optimistic": false}},
		{"homeassistant/binary_sensor/pi1/pir/config", map[string]any{"name": "pir", "device_class": "motion",
			"payload_on": "on", "payload_off": "off", "command_topic": nil}},
		{"homeassistant/lock/pi1/strike/config", map[string]any{"payload_unlock": "ON", "payload_lock": "OFF"}},
		{"homeassistant/switch/pi1/bell/config", map[string]any{"command_topic": "homes/h1/agents/pi1/devices/bell/cmd"}},
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
		want := map[string]any{"value_template": "{{ value_json.state }}",
			"availability_topic": "homes/h1/agents/pi1/status", "payload_available": "online", "payload_not_available": "offline"}
		for k, v := range tt.want {
			want[k] = v
		}
		for k, v := range want {
			if c[k] != v {
				t.Errorf("%s: %s = %v, want %v", tt.topic, k, c[k], v)
			}
		}
		id, _ := c["unique_id"].(string)
		if id == "" || ids[id] {
			t.Errorf("%s: unique_id %q is empty or repeated", tt.topic, id)
		}
		ids[id] = true
	}
}

func TestGuardsDoor(t *testing.T) {
	for _, tt := range []struct {
		d    DeviceConfig
		want bool
	}{
		{DeviceConfig{Kind: Pulse}, true},
		{DeviceConfig{Kind: Pulse, DeviceClass: "sound"}, false},
		{DeviceConfig{Kind: Switch}, false},
		{DeviceConfig{Kind: Switch, DeviceClass: "garage_door"}, true},
		{DeviceConfig{Kind: Input, DeviceClass: "door"}, false},
		{DeviceConfig{Kind: "lock", DeviceClass: "power"}, true},
	} {
		if got := GuardsDoor(tt.d); got != tt.want {
			t.Errorf("GuardsDoor(%+v) = %v, want %v", tt.d, got, tt.want)
		}
	}
}

// TestStaleDiscovery: configs published before for devices that are gone,
// and other components of current devices, are cleared; current ones not.
func TestStaleDiscovery(t *testing.T) {
	cfg := &Config{Home: "h1", Agent: "pi1", HomeAssistant: &HomeAssistantConfig{DiscoveryPrefix: "p"},
		Devices: []DeviceConfig{{ID: "lamp", Kind: Switch}}}
	msgs := DiscoveryMessages(cfg)
	got := staleDiscovery(cfg, []string{"p/switch/pi1/lamp/config", "p/lock/pi1/door/config"}, msgs)
	want := []string{"p/lock/pi1/door/config", "p/binary_sensor/pi1/lamp/config", "p/lock/pi1/lamp/config"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("stale %v, want %v", got, want)
	}
	cfg.HomeAssistant = nil
	if got := staleDiscovery(cfg, []string{"p/switch/pi1/lamp/config"}, nil); !slices.Equal(got, []string{"p/switch/pi1/lamp/config"}) {
		t.Fatalf("home_assistant removed: stale %v, want the published config", got)
	}
}
