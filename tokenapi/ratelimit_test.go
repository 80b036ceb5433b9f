package tokenapi

import (
	"fmt"
	"testing"
	"time"
)

func TestFailureLimiter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name      string
		failures  int           // failures of key "k" at t0
		at        time.Duration // when to ask
		key       string
		wantBlock bool
	}{
		{"no failures", 0, 0, "k", false},
		{"within the burst", 2, 0, "k", false},
		{"burst spent", 3, 0, "k", true},
		{"other key unaffected", 3, 0, "other", false},
		{"still blocked before the refill", 3, 19 * time.Second, "k", true},
		{"one failure refilled", 3, 21 * time.Second, "k", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := NewFailureLimiter(3, 3, 100) // 3 per minute: one every 20 s
			for i := 0; i < tc.failures; i++ {
				l.Fail("k", t0)
			}
			wait, blocked := l.Blocked(tc.key, t0.Add(tc.at))
			if blocked != tc.wantBlock {
				t.Fatalf("blocked = %v, want %v", blocked, tc.wantBlock)
			}
			if blocked && (wait <= 0 || wait > 20*time.Second) {
				t.Fatalf("retry after %v, want within the 20 s refill", wait)
			}
		})
	}
}

// TestFailureLimiterMemoryIsBounded: a flood of distinct keys never grows
// the table past its cap, and a key whose budget is spent outlives keys
// with failures left.
func TestFailureLimiterMemoryIsBounded(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := NewFailureLimiter(1, 2, 64)
	for i := 0; i < 30; i++ {
		l.Fail(fmt.Sprint("old", i), t0.Add(-time.Hour)) // idle again by t0
	}
	l.Fail("attacker", t0)
	l.Fail("attacker", t0)
	for i := 0; i < 10_000; i++ {
		l.Fail(fmt.Sprint("flood", i), t0)
		if l.Len() > 64 {
			t.Fatalf("%d keys kept, cap is 64", l.Len())
		}
	}
	if _, blocked := l.Blocked("attacker", t0); !blocked {
		t.Fatal("the limited key was evicted in favour of keys with failures left")
	}
}

func TestAddressKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7:5555":               "192.0.2.7",
		"[::ffff:192.0.2.7]:1":         "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443":   "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443":   "2001:db8:1:2::/64",
		"127.0.0.1":                    "127.0.0.1",
		"not an address":               "not an address",
		"[2001:db8:1:3:3:4:5:6]:443":   "2001:db8:1:3::/64",
		"[fe80::1%eth0]:80":            "fe80::/64",
		"[::1]:8443":                   "::/64",
		"203.0.113.255:65535":          "203.0.113.255",
		"[2001:db8::]:1":               "2001:db8::/64",
		"[2001:db8:0:0:ffff:ffff::]:1": "2001:db8::/64",
	} {
		if got := AddressKey(in); got != want {
			t.Errorf("AddressKey(%q) = %q, want %q", in, got, want)
		}
	}
}
