package cluster

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPeerOf(t *testing.T) {
	for _, tc := range []struct {
		name             string
		current, offline bool
		lag              uint64
		want             string
	}{
		{"caught up", true, false, 0, PeerCurrent},
		{"behind", true, false, 12, PeerLagging},
		{"not current", false, false, 0, PeerLagging},
		{"offline", false, true, 40, PeerOffline},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := peerOf("b", tc.current, tc.offline, tc.lag, 1500*time.Millisecond, false)
			if p.State != tc.want || p.Lag != tc.lag || p.SeenMillis != 1500 {
				t.Fatalf("peerOf = %+v, want state %s lag %d seen 1500 ms", p, tc.want, tc.lag)
			}
		})
	}
}

func TestStatusJudge(t *testing.T) {
	const ledger = "KV_" + ReplayBucket
	ok := Shared{Name: ledger, Replicas: 3, Leader: "a"}
	for _, tc := range []struct {
		name string
		s    Status
		want []string // words of the problems; none: ok
	}{
		{"healthy", Status{NATS: "embedded", Connected: true, MetaLeader: "a", Shared: []Shared{ok}}, nil},
		{"external has no meta leader to see", Status{NATS: "external", Connected: true, Shared: []Shared{ok}}, nil},
		{"disconnected", Status{NATS: "external"}, []string{"not connected"}},
		{"no meta leader", Status{NATS: "embedded", Connected: true, Shared: []Shared{ok}}, []string{"meta leader"}},
		{"ledger without leader", Status{NATS: "embedded", Connected: true, MetaLeader: "a", Shared: []Shared{{Name: ledger, Replicas: 3}}}, []string{ledger, "no leader"}},
		{"ledger unreadable", Status{NATS: "external", Connected: true, Shared: []Shared{{Name: ledger, Error: "context deadline exceeded"}}}, []string{"deadline"}},
		{"ledger missing", Status{NATS: "external", Connected: true}, []string{ledger, "not read"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			s.judge(ledger)
			all := strings.Join(s.Problems, "; ")
			if (len(tc.want) == 0) != (s.Health == HealthOK) {
				t.Fatalf("health %s (%s), want problems %q", s.Health, all, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("problems %q do not say %q", all, w)
				}
			}
		})
	}
}

// An external NATS shows no meta group: the peers are those holding the
// shared streams, each at its worst state and largest lag.
func TestPeersFromSharedStreams(t *testing.T) {
	n := &Node{name: "x"}
	s := Status{Shared: []Shared{
		{Name: "A", Peers: []Peer{{Name: "n1", State: PeerCurrent, Leader: true}, {Name: "n2", State: PeerLagging, Lag: 3}, {Name: "n3", State: PeerCurrent}}},
		{Name: "B", Peers: []Peer{{Name: "n2", State: PeerCurrent, Leader: true}, {Name: "n3", State: PeerOffline, Lag: 9}, {Name: "n1", State: PeerCurrent}}},
	}}
	n.peers(&s)
	want := []Peer{{Name: "n1", State: PeerCurrent}, {Name: "n2", State: PeerLagging, Lag: 3}, {Name: "n3", State: PeerOffline, Lag: 9}}
	if !slices.Equal(s.Peers, want) {
		t.Fatalf("peers = %+v, want %+v", s.Peers, want)
	}
}

func TestCountsSnapshot(t *testing.T) {
	var c counters
	c.sent.Add(2)
	c.ledgerChecks.Add(3)
	c.ledgerRefusals.Add(1)
	if got := c.Snapshot(); got != (Counts{Sent: 2, LedgerChecks: 3, LedgerRefusals: 1}) {
		t.Fatalf("Snapshot = %+v", got)
	}
	if got := (*counters)(nil).Snapshot(); got != (Counts{}) {
		t.Fatalf("nil Snapshot = %+v", got)
	}
}

// Health answers from the last background check, and a check that is too
// old (JetStream stopped answering it) counts as degraded.
func TestHealthFromLastCheck(t *testing.T) {
	n := &Node{done: make(chan struct{})}
	n.health.start.Do(func() {}) // no background check in this test
	n.health.at, n.health.last = time.Now(), Health{Node: "a", Status: HealthOK, Peers: 3}
	if h := n.Health(t.Context()); h != (Health{Node: "a", Status: HealthOK, Peers: 3}) {
		t.Fatalf("Health = %+v, want the last check", h)
	}
	n.health.at = time.Now().Add(-healthStale - time.Second)
	if h := n.Health(t.Context()); h.Status != HealthDegraded || h.Node != "a" {
		t.Fatalf("Health after a stuck check = %+v, want degraded", h)
	}
}
