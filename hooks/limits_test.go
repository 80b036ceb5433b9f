package hooks

import (
	"fmt"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
)

func TestConnectLimits(t *testing.T) {
	tests := []struct {
		name      string
		limits    Limits
		elsewhere int    // connections of the sub on a cluster's other brokers (-1: one broker)
		connect   int    // CONNECTs of one sub from one address
		refused   []byte // the code of each, 0 for accepted
	}{
		{"per sub", Limits{ConnsPerSub: 2, ConnsPerAddr: 1}, -1, 3, []byte{0, 0, 0x97}},
		{"per sub, cluster", Limits{ConnsPerSub: 3}, 1, 3, []byte{0, 0, 0x97}},
		{"per sub, cluster full", Limits{ConnsPerSub: 2}, 2, 1, []byte{0x97}},
		{"per sub off, cluster", Limits{}, 5, 2, []byte{0, 0}},
		{"connect rate", Limits{ConnectRate: 0.001, ConnectBurst: 2}, -1, 3, []byte{0, 0, 0x9F}},
		{"off", Limits{}, -1, 3, []byte{0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, srv, is := testGuard(t)
			g.cfg.Limits = tc.limits
			g.counts = newCounters(tc.limits)
			if tc.elsewhere >= 0 {
				g.ShareConnections(fixedCount{"user:alice": tc.elsewhere})
			}
			tok, _, err := is.Mint(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h1": "admin"}})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < tc.connect; i++ {
				_, err := connect(t, g, srv, fmt.Sprintf("user:alice/%d", i), tok)
				var got byte
				if code, ok := err.(packets.Code); ok {
					got = code.Code
				} else if err != nil {
					t.Fatal(err)
				}
				if got != tc.refused[i] {
					t.Fatalf("CONNECT %d: 0x%02X, want 0x%02X", i, got, tc.refused[i])
				}
			}
			// sockets per address are the listeners' to count, at accept:
			// a CONNECT must not count its socket a second time
			if n := g.Addresses().Conns(""); n != 0 {
				t.Fatalf("OnConnect counted %d sockets for the address, want 0", n)
			}
		})
	}
}

// fixedCount is a cluster whose other brokers hold a fixed number of
// connections per sub.
type fixedCount map[string]int

func (f fixedCount) Elsewhere(sub string) int { return f[sub] }
