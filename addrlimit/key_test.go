package addrlimit

import (
	"net"
	"testing"
)

func TestKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7:5555", "192.0.2.7"},
		{"192.0.2.7", "192.0.2.7"},
		{"203.0.113.255:65535", "203.0.113.255"},
		{"[::ffff:192.0.2.7]:1", "192.0.2.7"}, // IPv4-mapped: the IPv4 address
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"}, // same /64: same key
		{"[2001:db8:1:3:3:4:5:6]:443", "2001:db8:1:3::/64"}, // next /64: another key
		{"2001:db8:1:2::9", "2001:db8:1:2::/64"},
		{"[2001:db8:0:0:ffff:ffff::]:1", "2001:db8::/64"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
		{"[::1]:8443", "::/64"},
		{"127.0.0.1:1883", "127.0.0.1"},
		{"127.0.0.2:1883", "127.0.0.2"},
		{"pipe", "pipe"},
		{"not an address", "not an address"},
	} {
		if got := Key(tc.in); got != tc.want {
			t.Errorf("Key(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestKeyOf(t *testing.T) {
	for _, tc := range []struct {
		in   net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}, "192.0.2.7"}, // net.ParseIP gives the 16-byte mapped form
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, "2001:db8::/64"},
		{nil, ""},
	} {
		if got := KeyOf(tc.in); got != tc.want {
			t.Errorf("KeyOf(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
