package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"homemq/cluster"
)

// TestClusterNATSCreds: nats-creds prints the client port's user and
// password derived from the secret, as the nats CLI's environment, and
// writes the cluster CA where NATS_CA says.
func TestClusterNATSCreds(t *testing.T) {
	dir := t.TempDir()
	s := cluster.NewSecret()
	secretFile, caFile := filepath.Join(dir, "cluster.secret"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(secretFile, []byte(s.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"cluster", "nats-creds", "--secret-file", secretFile, "--ca-out", caFile}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	want := "NATS_USER=" + cluster.ClientUser + "\nNATS_PASSWORD=" + s.ClientPassword() + "\nNATS_CA=" + caFile + "\n"
	if out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
	pem, _ := s.CAPEM()
	if got, err := os.ReadFile(caFile); err != nil || !bytes.Equal(got, pem) {
		t.Errorf("the CA file = %q, %v: want the cluster CA", got, err)
	}
	for _, args := range [][]string{
		{"cluster", "nats-creds", "--ca-out", caFile},
		{"cluster", "nats-creds", "--secret-file", filepath.Join(dir, "missing"), "--ca-out", caFile},
	} {
		out.Reset()
		errOut.Reset()
		if code := run(args, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "secret") {
			t.Errorf("%v: exit %d, stderr %q: want an error about the secret", args, code, errOut.String())
		}
	}
}
func TestClusterStatusHelp(t *testing.T) {
	for _, h := range []string{"-h", "--help"} {
		var out, errOut bytes.Buffer
		if code := run([]string{"cluster", "status", h}, &out, &errOut); code != 0 || !strings.Contains(out.String()+errOut.String(), "-json") {
			t.Errorf("cluster status %s: exit %d, output %q %q", h, code, out.String(), errOut.String())
		}
	}
}

func TestPrintStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    cluster.Status
		want []string
	}{
		{"embedded, healthy", cluster.Status{Node: "a", NATS: "embedded", Connected: true, Server: "a", Health: cluster.HealthOK, MetaLeader: "b",
			Peers:    []cluster.Peer{{Name: "a", State: cluster.PeerCurrent}, {Name: "b", State: cluster.PeerCurrent, Leader: true}, {Name: "c", State: cluster.PeerLagging, Lag: 7, SeenMillis: 1500}},
			Shared:   []cluster.Shared{{Name: "HOMEMQ_MSGS", Replicas: 3, Leader: "b", Messages: 4, Peers: []cluster.Peer{{Name: "b", State: cluster.PeerCurrent}, {Name: "c", State: cluster.PeerLagging, Lag: 7}}}},
			Consumer: &cluster.ConsumerLag{Name: "node-a", Pending: 2, AckPending: 1},
			Counters: cluster.Counts{Sent: 5, LedgerRefusals: 1}},
			[]string{"node a: ok (embedded NATS, connected to a)", "meta leader: b", "b (leader)", "c           lagging  7    1.5s ago", "c lagging (lag 7)", "node-a    2        1", "5 messages sent", "1 replays refused"}},
		{"external, degraded", cluster.Status{Node: "x", NATS: "external", Health: cluster.HealthDegraded, Problems: []string{"not connected to NATS (reconnecting)"},
			Shared: []cluster.Shared{{Name: "KV_HOMEMQ_REPLAY", Error: "timeout"}, {Name: "HOMEMQ_REVOKED", Replicas: 3}}},
			[]string{"node x: degraded (external NATS, not connected)", "problem: not connected to NATS", "not visible", "unreadable: timeout", "HOMEMQ_REVOKED    3         NONE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			printStatus(&b, tc.s)
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}
