package main

import (
	"strings"
	"testing"

	"rsc.io/qr"
)

// TestQRLines: two modules per line in half blocks, with a quiet zone, and
// the same modules as the code.
func TestQRLines(t *testing.T) {
	code, err := qr.Encode("https://hub.local:8443/#invite=abc", qr.M)
	if err != nil {
		t.Fatal(err)
	}
	lines := qrLines(code.Size, code.Black)
	n := code.Size + 4
	if len(lines) != (n+1)/2 {
		t.Fatalf("%d lines for %d modules, want %d", len(lines), n, (n+1)/2)
	}
	for i, l := range lines {
		if got := len([]rune(l)); got != n {
			t.Fatalf("line %d is %d wide, want %d", i, got, n)
		}
	}
	if strings.TrimSpace(lines[0]) != "" {
		t.Errorf("no quiet zone above: %q", lines[0])
	}
	// module (0,0) is the finder's dark corner: line 1, column 2, top half
	if r := []rune(lines[1])[2]; r != '█' && r != '▀' {
		t.Errorf("the finder's corner is %q", r)
	}
}

func TestInviteURL(t *testing.T) {
	for _, tt := range []struct{ base, server, listener, want string }{
		{"https://hub.example/", "", "", "https://hub.example/"},
		{"https://hub.example", "x:1", "", "https://hub.example/"},
		{"", "10.0.0.2:8443", "", "https://10.0.0.2:8443/"},
		{"", "", "127.0.0.1:9443", "https://127.0.0.1:9443/"},
		{"", "", "", "https://127.0.0.1:8443/"},
	} {
		if got := inviteURL(tt.base, tt.server, tt.listener); got != tt.want {
			t.Errorf("inviteURL(%q, %q, %q) = %q, want %q", tt.base, tt.server, tt.listener, got, tt.want)
		}
	}
}
