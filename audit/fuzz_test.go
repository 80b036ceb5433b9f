package audit

import (
	"strings"
	"testing"

	"homemq/topics"
)

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
			if !topics.ValidID(id) || len(lv) <= level || lv[level] != id {
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
