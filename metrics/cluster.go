package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// ClusterCounters are a cluster node's cross-node counts (cluster.Counts)
// and its consumer's lag, read at each scrape. The broker fills them, so
// that neither this package needs NATS nor the cluster package Prometheus.
type ClusterCounters struct {
	Sent, Received, PublishErrors              uint64
	LedgerChecks, LedgerRefusals, LedgerErrors uint64
	// ConsumerPending is how many messages wait for this node (not yet
	// delivered or not yet acknowledged); ConsumerPendingKnown is false
	// when JetStream did not answer, and the gauge is then left out.
	ConsumerPending      uint64
	ConsumerPendingKnown bool
}

// clusterCollector reads a node's counters at each scrape: counting costs
// the message path one atomic add.
type clusterCollector struct {
	read                    func() ClusterCounters
	messages, publishErrors *prometheus.Desc
	ledgerChecks, pending   *prometheus.Desc
}

func newClusterCollector(read func() ClusterCounters) *clusterCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "cluster", name), help, labels, nil)
	}
	return &clusterCollector{
		read:          read,
		messages:      d("messages_total", "Messages this node sent to the other nodes (direction=sent) and delivered from them (direction=received).", "direction"),
		publishErrors: d("publish_errors_total", "Messages that could not be published to the other nodes (a QoS 1 publisher got PUBACK 0x80)."),
		ledgerChecks:  d("ledger_checks_total", "Claims on the shared replay ledger by result: ok, replay (refused: a node accepted the envelope before) or error (no answer: refused, fail closed).", "result"),
		pending:       d("consumer_pending", "Messages waiting for this node in its consumer: not yet delivered or not yet acknowledged."),
	}
}

// Describe sends the descriptions of the cluster metrics.
func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.messages
	ch <- c.publishErrors
	ch <- c.ledgerChecks
	ch <- c.pending
}

// Collect reads the counters once and sends them.
func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	v := c.read()
	counter := func(d *prometheus.Desc, n uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n), labels...)
	}
	counter(c.messages, v.Sent, "sent")
	counter(c.messages, v.Received, "received")
	counter(c.publishErrors, v.PublishErrors)
	ok := v.LedgerChecks - min(v.LedgerChecks, v.LedgerRefusals+v.LedgerErrors)
	counter(c.ledgerChecks, ok, resultOK)
	counter(c.ledgerChecks, v.LedgerRefusals, "replay")
	counter(c.ledgerChecks, v.LedgerErrors, "error")
	if v.ConsumerPendingKnown {
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(v.ConsumerPending))
	}
}

// WatchCluster adds a cluster node's metrics, which read returns at each
// scrape: homemq_cluster_messages_total{direction},
// homemq_cluster_publish_errors_total,
// homemq_cluster_ledger_checks_total{result} and
// homemq_cluster_consumer_pending. A single node never calls it.
func (m *Metrics) WatchCluster(read func() ClusterCounters) {
	m.reg.MustRegister(newClusterCollector(read))
}
