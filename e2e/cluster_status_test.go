package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"homemq/auth"
	"homemq/cluster"
)

// healthz GETs /healthz of b, asking for JSON when asJSON, and returns
// the status code and body.
func healthz(t *testing.T, b *testBroker, asJSON bool) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://"+b.Addrs()["https"]+"/healthz", nil)
	if asJSON {
		req.Header.Set("Accept", "application/json")
	}
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}}
	defer cl.CloseIdleConnections() // polled: each call's connection must not outlive it (limits.https_conns_per_addr)
	res, err := cl.Do(req)
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// clusterHealth decodes a cluster node's /healthz.
type clusterHealth struct {
	Status  string          `json:"status"`
	Cluster *cluster.Health `json:"cluster"`
}

// statusCLI runs `homemq cluster status` against the running node b.
func statusCLI(t *testing.T, b *testBroker, args ...string) (string, error) {
	t.Helper()
	return tokCLI(t, b.Data, b.Addrs()["https"], append([]string{"cluster", "status"}, args...)...)
}

// TestSingleNodeHealthzHasNoCluster: a node without a cluster section
// answers /healthz 200 "ok" as before, and with JSON "cluster": null;
// `homemq cluster status` says it is a single node.
func TestSingleNodeHealthzHasNoCluster(t *testing.T) {
	b := startBroker(t)
	if code, body := healthz(t, b, false); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q, want 200 \"ok\"", code, body)
	}
	code, body := healthz(t, b, true)
	var h clusterHealth
	if err := json.Unmarshal([]byte(body), &h); code != 200 || err != nil || h.Status != "ok" || h.Cluster != nil || !strings.Contains(body, `"cluster":null`) {
		t.Fatalf("/healthz as JSON: %d %q, want 200 {\"status\":\"ok\",\"cluster\":null}", code, body)
	}
	if out, err := statusCLI(t, b); err == nil || !strings.Contains(err.Error(), "single node") {
		t.Fatalf("cluster status on a single node: %q %v, want an error saying it is a single node", out, err)
	}
}

// TestClusterStatus: `homemq cluster status` on a node of three shows
// the nodes, JetStream's meta leader, each shared stream's replicas and
// leader, and the node's consumer, as a table and as JSON; /healthz
// reports the node and the peers it sees; the cluster metrics count
// messages across nodes and replays the ledger refused. When two nodes
// are gone, the last one has no quorum: /healthz answers 503 degraded, it
// refuses commands (fail closed) and cluster status fails, naming the
// problem.
func TestClusterStatus(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	a, c := nodes[0], nodes[2]

	t.Run("json", func(t *testing.T) {
		var s cluster.Status
		eventually(t, 20*time.Second, "node a reports a healthy cluster of three", func() bool {
			out, err := statusCLI(t, a, "--json")
			s = cluster.Status{}
			return err == nil && json.Unmarshal([]byte(out), &s) == nil && s.Health == cluster.HealthOK && len(s.Peers) == 3 && distinctPeers(s.Peers)
		})
		if s.Node != "a" || s.NATS != "embedded" || !s.Connected || s.MetaLeader == "" {
			t.Fatalf("status = %+v, want node a, embedded, connected, a meta leader", s)
		}
		want := map[string]bool{cluster.MessagesStream: true, cluster.RevocationsStream: true, "KV_" + cluster.ReplayBucket: true}
		for _, sh := range s.Shared {
			if !want[sh.Name] {
				continue
			}
			delete(want, sh.Name)
			if sh.Replicas != 3 || sh.Leader == "" || len(sh.Peers) != 3 {
				t.Errorf("shared %s = %+v, want 3 replicas, a leader and 3 peers", sh.Name, sh)
			}
		}
		if len(want) > 0 {
			t.Errorf("status lists no %v: %+v", want, s.Shared)
		}
		if s.Consumer == nil || s.Consumer.Name != "node-a" || s.Consumer.Error != "" {
			t.Errorf("consumer = %+v, want node-a", s.Consumer)
		}
	})

	t.Run("table", func(t *testing.T) {
		out, err := statusCLI(t, c)
		if err != nil {
			t.Fatalf("cluster status on c: %v\n%s", err, out)
		}
		t.Logf("homemq cluster status on c:\n%s", out)
		for _, w := range []string{"node c: ok", "JetStream meta leader:", "PEER", "HOMEMQ_MSGS", "KV_HOMEMQ_REPLAY", "node-c"} {
			if !strings.Contains(out, w) {
				t.Errorf("the table does not show %q:\n%s", w, out)
			}
		}
	})

	t.Run("healthz", func(t *testing.T) {
		code, body := healthz(t, a, false)
		var h clusterHealth
		if err := json.Unmarshal([]byte(body), &h); code != 200 || err != nil || h.Status != "ok" || h.Cluster == nil ||
			h.Cluster.Node != "a" || h.Cluster.Status != cluster.HealthOK || h.Cluster.Peers != 3 {
			t.Fatalf("/healthz on a: %d %q, want 200 with cluster {node a, ok, 3 peers}", code, body)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		op, _ := a.mintSpec(auth.Spec{Sub: "service:prometheus", Operator: true})
		const state = "homes/h1/agents/a1/devices/d1/state"
		viewer := c.mustV5(overTLS, "user:viewer", c.mint("user:viewer", "h1=viewer"))
		viewer.subscribe(t, state, 1)
		agent := a.mustV5(overPlain, "agent:a1", a.mint("agent:a1", "h1=agent"))
		agent.publish(t, state, []byte("on"), 1, false)
		eventually(t, 10*time.Second, "the viewer on c gets the state", func() bool { return len(publishes(viewer, state)) > 0 })

		const cmd = "homes/h1/agents/a1/devices/d1/cmd"
		s := newSealer(a, "user:owner")
		env := s.seal(t, cmd, "on", time.Now(), time.Minute)
		if pr := a.mustV5(overTLS, "user:owner", s.token).publish(t, cmd, env, 1, false); pr.ReasonCode != 0 {
			t.Fatalf("command on a: PUBACK %#x", pr.ReasonCode)
		}
		if pr := c.mustV5(overTLS, "user:owner/c", s.token).publish(t, cmd, env, 1, false); pr.ReasonCode != 0x87 {
			t.Fatalf("replay on c: PUBACK %#x, want 0x87", pr.ReasonCode)
		}
		_, fa := scrapeMetrics(t, a, op)
		_, fc := scrapeMetrics(t, c, op)
		for _, m := range []struct {
			what string
			got  float64
		}{
			{"messages a sent", metricValue(fa, "homemq_cluster_messages_total", "direction", "sent")},
			{"messages c received", metricValue(fc, "homemq_cluster_messages_total", "direction", "received")},
			{"ledger checks a passed", metricValue(fa, "homemq_cluster_ledger_checks_total", "result", "ok")},
			{"replays c's ledger refused", metricValue(fc, "homemq_cluster_ledger_checks_total", "result", "replay")},
		} {
			if m.got < 1 {
				t.Errorf("%s = %v, want at least 1", m.what, m.got)
			}
		}
		if _, ok := fa["homemq_cluster_consumer_pending"]; !ok {
			t.Error("a does not expose homemq_cluster_consumer_pending")
		}
	})

	t.Run("no quorum", func(t *testing.T) {
		// connected while the cluster has its quorum (a connect on a lone
		// node waits for its client-id write to give up)
		s := newSealer(a, "user:owner")
		owner := a.mustV5(overTLS, "user:owner/alone", s.token)
		nodes[1].Close()
		c.Close()
		eventually(t, 30*time.Second, "a alone answers /healthz 503 degraded", func() bool {
			code, body := healthz(t, a, false)
			var h clusterHealth
			return code == http.StatusServiceUnavailable && json.Unmarshal([]byte(body), &h) == nil &&
				h.Status == cluster.HealthDegraded && h.Cluster != nil && h.Cluster.Status == cluster.HealthDegraded
		})
		// alone, a refuses commands: its replay ledger cannot be written
		// (fail closed), within the ledger's 5 s bound on a request
		const cmd = "homes/h1/agents/a1/devices/d1/cmd"
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		pr, err := owner.Publish(ctx, &paho.Publish{Topic: cmd, QoS: 1, Payload: s.seal(t, cmd, "on", time.Now(), time.Minute)})
		if pr == nil {
			t.Fatalf("a command on a without quorum: no PUBACK: %v", err)
		}
		if pr.ReasonCode != 0x87 || pr.Properties == nil || !strings.Contains(pr.Properties.ReasonString, "cannot answer") {
			t.Fatalf("a command on a without quorum: PUBACK %#x %+v, want 0x87 saying the replay cache cannot answer", pr.ReasonCode, pr.Properties)
		}
		op, _ := a.mintSpec(auth.Spec{Sub: "service:prometheus", Operator: true})
		if _, f := scrapeMetrics(t, a, op); metricValue(f, "homemq_cluster_ledger_checks_total", "result", "error") < 1 {
			t.Error("the unanswered ledger claim is not counted in homemq_cluster_ledger_checks_total{result=\"error\"}")
		}
		out, err := statusCLI(t, a)
		t.Logf("homemq cluster status on a alone: %v\n%s", err, out)
		if err == nil || !strings.Contains(err.Error(), "degraded") || !strings.Contains(out, "problem:") {
			t.Fatalf("cluster status on a without quorum: %v\n%s\nwant an error saying it is degraded and the problem in the table", err, out)
		}
	})
}

// distinctPeers tells whether each peer is listed once.
func distinctPeers(peers []cluster.Peer) bool {
	seen := map[string]bool{}
	for _, p := range peers {
		if seen[p.Name] {
			return false
		}
		seen[p.Name] = true
	}
	return true
}
