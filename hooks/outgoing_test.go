package hooks

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSubackReasons(t *testing.T) {
	long := strings.Repeat("é", 400) // 800 bytes of two-byte characters
	tests := []struct {
		name    string
		filters [][2]string
		want    string // "" when only the rules below apply
	}{
		{"none", nil, ""},
		{"one", [][2]string{{"homes/h2/#", "token names no role in this home"}}, "not authorized: homes/h2/#: token names no role in this home"},
		{"two", [][2]string{{"a", "x"}, {"b", "y"}}, "not authorized: a: x; b: y"},
		{"clipped at a character", [][2]string{{"homes/h1/" + long, "x"}, {"c", "z"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r subackReasons
			for _, f := range tt.filters {
				r.add(f[0], f[1])
			}
			got := string(r.b)
			if tt.want != "" && got != tt.want {
				t.Fatalf("reason %q, want %q", got, tt.want)
			}
			if len(got) > maxSubackReason || !utf8.ValidString(got) {
				t.Fatalf("reason of %d bytes (valid UTF-8: %v), want at most %d valid bytes", len(got), utf8.ValidString(got), maxSubackReason)
			}
			if tt.want == "" && len(tt.filters) > 0 && !strings.HasSuffix(got, "…") {
				t.Fatalf("a clipped reason %q does not end in …", got)
			}
		})
	}
}
