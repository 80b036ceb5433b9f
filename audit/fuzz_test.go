package audit

import (
	"strings"
	"testing"
	"unicode/utf8"

	"homemq/topics"
)

// FuzzPlace: whatever the topic, Place names only valid ids that are
// literally in the topic, at their places in the homes/ namespace.
func FuzzPlace(f *testing.F) {
	for _, s := range []string{"homes/h1/agents/pi/devices/door/cmd", "homes/h1/agents/pi/status", "homes/h2/#", "homes/+/agents/x", "$SYS/#", "homes//agents/a/devices/d/cmd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		h, a, d := place(topic)
		lv := strings.Split(topic, "/")
		check := func(what, id string, level int) {
			if id == "" {
				return
			}
			if !topics.ValidID(id) || len(lv) <= level || lv[level] != id {
				t.Fatalf("place(%q) gave %s %q, not level %d of the topic", topic, what, id, level)
			}
		}
		if (a != "" && h == "") || (d != "" && a == "") {
			t.Fatalf("place(%q) = %q %q %q: an inner id without the outer one", topic, h, a, d)
		}
		check("home", h, 1)
		check("agent", a, 3)
		check("device", d, 5)
	})
}

// FuzzClip: a clipped value is valid UTF-8 when its input is, fits its
// limit plus the mark, says how much was cut, and keeps no whole JWT.
func FuzzClip(f *testing.F) {
	for _, s := range []string{"agent:pi", strings.Repeat("é", 200), "x" + strings.Repeat("eyJa.b.c ", 40)} {
		f.Add(s, uint8(16))
	}
	f.Fuzz(func(t *testing.T, s string, max uint8) {
		limit := int(max) + 1
		got := clip(s, limit)
		if len(s) <= limit {
			if got != s {
				t.Fatalf("clip(%q, %d) changed a value within the limit: %q", s, limit, got)
			}
			return
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("clip(%q, %d) = %q: invalid UTF-8", s, limit, got)
		}
		body, _, marked := strings.Cut(got, ClipMark)
		if len(body) > limit || (!marked && len(got) > limit) {
			t.Fatalf("clip(%q, %d) = %q: over the limit", s, limit, got)
		}
		if secretPattern.MatchString(body) && !strings.Contains(s, Masked) {
			t.Fatalf("clip(%q, %d) = %q keeps a token", s, limit, got)
		}
	})
}
