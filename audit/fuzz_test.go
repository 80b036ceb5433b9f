package audit

import (
	"strings"
	"testing"
	"unicode/utf8"
)

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
