package hooks

import (
	"testing"

	"homemq/topics"
)

// TestMountedNothing: Home Assistant's discovery filter without a node id
// matches no topic of the namespace, so granting it gives nothing.
func TestMountedNothing(t *testing.T) {
	gr := &grant{home: "h1", identity: &topics.Identity{Sub: "service:ha", Homes: map[string]topics.Role{"h1": topics.Service}}}
	for f, want := range map[string]bool{
		"homes/h1/discovery/+/+/config":   true,
		"homes/h1/discovery/a/b/config":   true,
		"homes/h1/discovery/+/+/+/config": false,
		"homes/h1/discovery/+/#":          false,
		"homes/h2/discovery/+/+/config":   false,
		"homes/h1/agents/+/status":        false,
	} {
		if got := mountedNothing(gr, f); got != want {
			t.Errorf("mountedNothing(%q) = %v, want %v", f, got, want)
		}
		if want && topics.Authorize(gr.identity, topics.Subscribe, f, false).Allow {
			t.Errorf("%q is allowed by the ACL itself", f)
		}
	}
	if mountedNothing(&grant{identity: gr.identity}, "homes/h1/discovery/+/+/config") {
		t.Error("a token's grant (no mount) got the mounted filter")
	}
}

func TestMountTopic(t *testing.T) {
	for in, want := range map[string]string{
		"homeassistant/+/+/config":          "homes/h1/discovery/+/+/config",
		"homeassistant/+/+/+/config":        "homes/h1/discovery/+/+/+/config",
		"homeassistant/status":              "homeassistant/status",
		"homes/h1/agents/pi1/status":        "homes/h1/agents/pi1/status",
		"tasmota/discovery/#":               "tasmota/discovery/#",
		"homeassistantx/switch/a/b/config":  "homeassistantx/switch/a/b/config",
		"homeassistant/switch/pi1/a/config": "homes/h1/discovery/switch/pi1/a/config",
	} {
		if got := mountTopic("h1", in); got != want {
			t.Errorf("mountTopic(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPlainAction(t *testing.T) {
	tests := []struct {
		payload, want string
	}{
		{"ON", "on"}, {"off", "off"}, {" PULSE\n", "pulse"}, {`{"action":"toggle"}`, "toggle"},
		{"", ""}, {"on off", ""}, {`{"action":"on","x":1}`, ""}, {`{"action":5}`, ""}, {`{"action":"on"}{}`, ""},
		{"ÖN", ""}, {"a.b", ""},
	}
	for _, tt := range tests {
		got, err := PlainAction([]byte(tt.payload))
		if got != tt.want || (err == nil) != (tt.want != "") {
			t.Errorf("PlainAction(%q) = %q, %v; want %q", tt.payload, got, err, tt.want)
		}
	}
}
