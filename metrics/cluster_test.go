package metrics

import (
	"strings"
	"testing"
)

func TestWatchCluster(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    ClusterCounters
		want map[string]float64 // "name label=value" → value; -1: absent
	}{
		{"counts and lag", ClusterCounters{Sent: 5, Received: 7, PublishErrors: 1, LedgerChecks: 10, LedgerRefusals: 2, LedgerErrors: 1, ConsumerPending: 4, ConsumerPendingKnown: true}, map[string]float64{
			"homemq_cluster_messages_total direction=sent":     5,
			"homemq_cluster_messages_total direction=received": 7,
			"homemq_cluster_publish_errors_total":              1,
			"homemq_cluster_ledger_checks_total result=ok":     7,
			"homemq_cluster_ledger_checks_total result=replay": 2,
			"homemq_cluster_ledger_checks_total result=error":  1,
			"homemq_cluster_consumer_pending":                  4,
		}},
		{"lag unknown", ClusterCounters{ConsumerPendingKnown: false}, map[string]float64{
			"homemq_cluster_consumer_pending":              -1,
			"homemq_cluster_ledger_checks_total result=ok": 0,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := New()
			m.WatchCluster(func() ClusterCounters { return tc.c })
			fams := scrape(t, m)
			for key, want := range tc.want {
				name, label, _ := strings.Cut(key, " ")
				var labels []string
				if k, v, ok := strings.Cut(label, "="); ok {
					labels = []string{k, v}
				}
				if got := value(fams, name, labels...); got != want {
					t.Errorf("%s = %v, want %v", key, got, want)
				}
			}
		})
	}
}

// A single node registers no cluster metric.
func TestNoClusterMetricsWithoutCluster(t *testing.T) {
	for name := range scrape(t, New()) {
		if strings.HasPrefix(name, "homemq_cluster_") {
			t.Errorf("a node without a cluster exposes %s", name)
		}
	}
}
