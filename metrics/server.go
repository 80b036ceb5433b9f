package metrics

import (
	"sync/atomic"

	"github.com/mochi-mqtt/server/v2/system"
	"github.com/prometheus/client_golang/prometheus"
)

// infoMetric is one of mochi's counters, read at scrape time.
type infoMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(*system.Info) *int64
}

// serverCollector reads mochi's own atomic counters at each scrape, so
// counting messages costs the broker nothing extra per message.
type serverCollector struct {
	info    *system.Info
	metrics []infoMetric
}

func newServerCollector(info *system.Info) *serverCollector {
	m := func(name, help string, kind prometheus.ValueType, v func(*system.Info) *int64) infoMetric {
		return infoMetric{desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, nil, nil), kind: kind, value: v}
	}
	return &serverCollector{info: info, metrics: []infoMetric{
		m("messages_received_total", "PUBLISH packets received from clients (refused ones included).", prometheus.CounterValue,
			func(i *system.Info) *int64 { return &i.MessagesReceived }),
		m("messages_sent_total", "PUBLISH packets sent to clients.", prometheus.CounterValue,
			func(i *system.Info) *int64 { return &i.MessagesSent }),
		m("messages_dropped_total", "Messages dropped because a subscriber's send queue was full.", prometheus.CounterValue,
			func(i *system.Info) *int64 { return &i.MessagesDropped }),
		m("inflight_dropped_total", "QoS 1/2 messages dropped because a session's queue was full.", prometheus.CounterValue,
			func(i *system.Info) *int64 { return &i.InflightDropped }),
		m("bytes_received_total", "Bytes received from MQTT clients.", prometheus.CounterValue,
			func(i *system.Info) *int64 { return &i.BytesReceived }),
		m("bytes_sent_total", "Bytes sent to MQTT clients.", prometheus.CounterValue,
			func(i *system.Info) *int64 { return &i.BytesSent }),
		m("retained_messages", "Retained messages held.", prometheus.GaugeValue,
			func(i *system.Info) *int64 { return &i.Retained }),
		m("inflight_messages", "QoS 1/2 messages in flight or queued for sessions, online and offline.", prometheus.GaugeValue,
			func(i *system.Info) *int64 { return &i.Inflight }),
		m("subscriptions", "Subscriptions held, of online and offline sessions.", prometheus.GaugeValue,
			func(i *system.Info) *int64 { return &i.Subscriptions }),
		m("sessions", "Sessions held, online and offline (updated every $SYS interval).", prometheus.GaugeValue,
			func(i *system.Info) *int64 { return &i.ClientsTotal }),
	}}
}

// Describe sends the descriptions of mochi's counters.
func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
}

// Collect reads mochi's counters.
func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, float64(atomic.LoadInt64(m.value(c.info))))
	}
}

// WatchServer adds the message, byte, retained, in-flight, subscription
// and session counts of a mochi server, read from info at each scrape.
func (m *Metrics) WatchServer(info *system.Info) {
	m.reg.MustRegister(newServerCollector(info))
}
