package main

import "testing"

func TestDialAddr(t *testing.T) {
	for _, tc := range []struct{ listen, want string }{
		{":8443", "127.0.0.1:8443"},
		{"0.0.0.0:8443", "127.0.0.1:8443"},
		{"[::]:8443", "[::1]:8443"},
		{"127.0.0.1:8443", "127.0.0.1:8443"},
		{"broker.lan:8443", "broker.lan:8443"},
		{"", ""},
	} {
		if got := dialAddr(tc.listen); got != tc.want {
			t.Errorf("dialAddr(%q) = %q, want %q", tc.listen, got, tc.want)
		}
	}
}
