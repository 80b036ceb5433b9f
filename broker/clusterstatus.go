package broker

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"homemq/cluster"
	"homemq/metrics"
)

// ClusterStatusPath is the admin endpoint `homemq cluster status` reads:
// GET, with an operator token, answers the node's cluster.Status as JSON.
const ClusterStatusPath = "/api/admin/cluster/status"

// Health is the JSON body of /healthz on a cluster node (and on a single
// node asked for JSON): Status is "ok", "degraded" or "draining", Cluster
// is nil on a single node.
type Health struct {
	Status  string          `json:"status"`
	Cluster *cluster.Health `json:"cluster"`
}

// handleHealthz answers /healthz. A single node answers 200 "ok" (JSON
// with "cluster": null when asked for JSON). A cluster node answers JSON
// with its cluster health, and 503 when it is degraded: it cannot accept
// commands, so a load balancer should send clients to another node
// (docs/decisions.md). A draining node answers 503 "draining" (drain.go).
func (b *Broker) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	h := Health{Status: cluster.HealthOK}
	status := http.StatusOK
	if b.cluster != nil {
		ch := b.cluster.Health(r.Context())
		h.Status, h.Cluster = ch.Status, &ch
		if ch.Status != cluster.HealthOK {
			status = http.StatusServiceUnavailable
		}
	}
	if b.Draining() {
		h.Status, status = healthDraining, http.StatusServiceUnavailable
	}
	if b.cluster == nil && !strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(h.Status + "\n"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(h)
}

// handleClusterStatus serves ClusterStatusPath.
func (b *Broker) handleClusterStatus(w http.ResponseWriter, r *http.Request) {
	if b.cluster == nil {
		writeJSONError(w, http.StatusNotFound, "not_clustered", "this broker is a single node: its config has no cluster: section (docs/cluster.md)")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(b.cluster.Status(r.Context()))
}

// watchCluster adds the node's cross-node counters and its consumer's lag
// to the metrics.
func (b *Broker) watchCluster(n *cluster.Node) {
	if b.Metrics == nil {
		return
	}
	b.Metrics.WatchCluster(func() metrics.ClusterCounters {
		c := n.Counters()
		lag, ok := n.ConsumerPending(context.Background())
		return metrics.ClusterCounters{
			Sent: c.Sent, Received: c.Received, PublishErrors: c.PublishErrors,
			LedgerChecks: c.LedgerChecks, LedgerRefusals: c.LedgerRefusals, LedgerErrors: c.LedgerErrors,
			ConsumerPending: lag, ConsumerPendingKnown: ok,
		}
	})
}
