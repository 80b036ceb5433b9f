package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// ServerCounters are the message, byte, retained, in-flight, subscription
// and session counts of the MQTT server (mochi's system.Info), read at each
// scrape. The broker fills them, so that this package needs nothing of
// mochi.
type ServerCounters struct {
	MessagesReceived, MessagesSent, MessagesDropped, InflightDropped int64
	BytesReceived, BytesSent                                         int64
	Retained, Inflight, Subscriptions, Sessions                      int64
}

// serverMetric is one of the server's counters.
type serverMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(*ServerCounters) int64
}

// serverCollector reads the server's own counters at each scrape, so
// counting messages costs the broker nothing extra per message.
type serverCollector struct {
	read    func() ServerCounters
	metrics []serverMetric
}

func newServerCollector(read func() ServerCounters) *serverCollector {
	m := func(name, help string, kind prometheus.ValueType, v func(*ServerCounters) int64) serverMetric {
		return serverMetric{desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, nil, nil), kind: kind, value: v}
	}
	return &serverCollector{read: read, metrics: []serverMetric{
		m("messages_received_total", "PUBLISH packets received from clients (refused ones included).", prometheus.CounterValue,
			func(c *ServerCounters) int64 { return c.MessagesReceived }),
		m("messages_sent_total", "PUBLISH packets sent to clients.", prometheus.CounterValue,
			func(c *ServerCounters) int64 { return c.MessagesSent }),
		m("messages_dropped_total", "Messages dropped because a subscriber's send queue was full.", prometheus.CounterValue,
			func(c *ServerCounters) int64 { return c.MessagesDropped }),
		m("inflight_dropped_total", "QoS 1/2 messages dropped because a session's queue was full.", prometheus.CounterValue,
			func(c *ServerCounters) int64 { return c.InflightDropped }),
		m("bytes_received_total", "Bytes received from MQTT clients.", prometheus.CounterValue,
			func(c *ServerCounters) int64 { return c.BytesReceived }),
		m("bytes_sent_total", "Bytes sent to MQTT clients.", prometheus.CounterValue,
			func(c *ServerCounters) int64 { return c.BytesSent }),
		m("retained_messages", "Retained messages held.", prometheus.GaugeValue,
			func(c *ServerCounters) int64 { return c.Retained }),
		m("inflight_messages", "QoS 1/2 messages in flight or queued for sessions, online and offline.", prometheus.GaugeValue,
			func(c *ServerCounters) int64 { return c.Inflight }),
		m("subscriptions", "Subscriptions held, of online and offline sessions.", prometheus.GaugeValue,
			func(c *ServerCounters) int64 { return c.Subscriptions }),
		m("sessions", "Sessions held, online and offline (updated every $SYS interval).", prometheus.GaugeValue,
			func(c *ServerCounters) int64 { return c.Sessions }),
	}}
}

// Describe sends the descriptions of the server's counters.
func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
}

// Collect reads the server's counters once and sends them.
func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.read()
	for _, m := range c.metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, float64(m.value(&counts)))
	}
}

// WatchServer adds the message, byte, retained, in-flight, subscription
// and session counts of the MQTT server, which read returns at each scrape.
func (m *Metrics) WatchServer(read func() ServerCounters) {
	m.reg.MustRegister(newServerCollector(read))
}
