package topics

import (
	"strings"
	"testing"
)

func TestPlace(t *testing.T) {
	cases := []struct{ topic, home, agent, device string }{
		{"homes/h1/agents/pi/devices/door/cmd", "h1", "pi", "door"},
		{"homes/h1/agents/pi/status", "h1", "pi", ""},
		{"homes/h2/#", "h2", "", ""},
		{"homes/h1/agents/+/devices/+/state", "h1", "", ""},
		{"homes/h1/agents/pi/devices/+/cmd", "h1", "pi", ""},
		{"homes/H1/x", "", "", ""},
		{"$SYS/broker/uptime", "", "", ""},
		{"#", "", "", ""},
		{"", "", "", ""},
	}
	for _, c := range cases {
		h, a, d := Place(c.topic)
		if h != c.home || a != c.agent || d != c.device {
			t.Errorf("Place(%q) = %q %q %q, want %q %q %q", c.topic, h, a, d, c.home, c.agent, c.device)
		}
	}
}

// FuzzPlace: whatever the topic, Place names only valid ids that are
// literally in the topic, at their places in the homes/ namespace.
func FuzzPlace(f *testing.F) {
	for _, s := range []string{"homes/h1/agents/pi/devices/door/cmd", "homes/h1/agents/pi/status", "homes/h2/#", "homes/+/agents/x", "$SYS/#", "homes//agents/a/devices/d/cmd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		h, a, d := Place(topic)
		lv := strings.Split(topic, "/")
		check := func(what, id string, level int) {
			if id == "" {
				return
			}
			if !ValidID(id) || len(lv) <= level || lv[level] != id {
				t.Fatalf("Place(%q) gave %s %q, not level %d of the topic", topic, what, id, level)
			}
		}
		if (a != "" && h == "") || (d != "" && a == "") {
			t.Fatalf("Place(%q) = %q %q %q: an inner id without the outer one", topic, h, a, d)
		}
		check("home", h, 1)
		check("agent", a, 3)
		check("device", d, 5)
	})
}
