// Package metrics owns homemq's Prometheus metrics, on a registry of their
// own: connections, authentication and refusal counters fed by the Guard's
// events, message counters read from mochi, and gauges other parts feed.
package metrics

import (
	"net/http"
	"regexp"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"homemq/decision"
)

// Namespace prefixes every metric name.
const Namespace = "homemq"

// resultOK is the result label of a success.
const resultOK = "ok"

// Metrics are the broker's metrics. The exported vectors may be fed
// directly by the parts that own what they count.
type Metrics struct {
	reg *prometheus.Registry

	// Connections counts live authenticated MQTT connections by listener
	// (mqtts, wss, mqtt, internal).
	Connections *prometheus.GaugeVec
	// Auth counts CONNECT decisions by result: "ok" or the refusal reason
	// (expired, bad_signature, client_id, rate, quota, …).
	Auth *prometheus.CounterVec
	// Reauth counts MQTT 5 re-authentications by result.
	Reauth *prometheus.CounterVec
	// ACLRefusals counts publishes and subscriptions refused by the topic
	// rules, by action (publish, subscribe).
	ACLRefusals *prometheus.CounterVec
	// LimitRefusals counts refusals by a limit: connect_rate, connections,
	// subscriptions, command_rate.
	LimitRefusals *prometheus.CounterVec
	// Commands counts accepted commands.
	Commands prometheus.Counter
	// EnvelopeRefusals counts refused commands by envelope reason
	// (malformed, expired, bad_signature, replay, …).
	EnvelopeRefusals *prometheus.CounterVec
	// ExpiryDisconnects counts connections closed because their token expired.
	ExpiryDisconnects prometheus.Counter
	// RevocationDisconnects counts connections closed because their token
	// was revoked.
	RevocationDisconnects prometheus.Counter
	// TokenExchanges counts POST /api/token answers by result: "ok" or the
	// RFC 6749 error code.
	TokenExchanges *prometheus.CounterVec
	// BridgeConnections counts live SignalR bridge connections by transport
	// (websockets, serversentevents, longpolling). The bridge feeds it:
	// Inc when a connection starts its transport, Dec when it ends.
	BridgeConnections *prometheus.GaugeVec
}

// New returns the metrics, registered on a fresh registry together with
// the Go runtime and process collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	counterVec := func(name, help, label string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, []string{label})
		reg.MustRegister(v)
		return v
	}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	gaugeVec := func(name, help, label string) *prometheus.GaugeVec {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, []string{label})
		reg.MustRegister(v)
		return v
	}
	return &Metrics{
		reg:                   reg,
		Connections:           gaugeVec("connections", "Live authenticated MQTT connections by listener.", "listener"),
		Auth:                  counterVec("auth_total", "CONNECT decisions by result: ok or the refusal reason.", "result"),
		Reauth:                counterVec("reauth_total", "MQTT 5 re-authentications by result: ok or the refusal reason.", "result"),
		ACLRefusals:           counterVec("acl_refusals_total", "Publishes and subscriptions refused by the topic rules, by action.", "action"),
		LimitRefusals:         counterVec("limit_refusals_total", "Refusals by a configured limit, by limit.", "limit"),
		Commands:              counter("commands_accepted_total", "Commands whose envelope was accepted and delivered to subscribers."),
		EnvelopeRefusals:      counterVec("envelope_refusals_total", "Commands refused by the envelope checks, by reason.", "reason"),
		ExpiryDisconnects:     counter("expiry_disconnects_total", "Connections closed because their token expired."),
		RevocationDisconnects: counter("revocation_disconnects_total", "Connections closed because their token was revoked."),
		TokenExchanges:        counterVec("token_exchanges_total", "POST /api/token answers by result: ok or the OAuth error code.", "result"),
		BridgeConnections:     gaugeVec("bridge_connections", "Live SignalR bridge connections by transport.", "transport"),
	}
}

// Registry returns the registry the metrics are on, for more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// labelPattern is what a label value taken from an event may look like;
// anything else is counted as "other", so a label cannot grow without bound.
var labelPattern = regexp.MustCompile(`^[a-z0-9_]{1,40}$`)

func label(s string) string {
	if s == "" || len(s) > 40 || !labelPattern.MatchString(s) {
		return "other"
	}
	return s
}

// commandLimits and connectLimits map the Guard's limit reasons to the
// limit label.
var (
	connectLimits   = map[string]string{"rate": "connect_rate", "quota": "connections"}
	subscribeLimits = map[string]string{"quota": "subscriptions"}
	commandLimits   = map[string]string{"rate": "command_rate"}
)

// Observe counts one Guard or token-service decision; it implements
// decision.Observer and never blocks.
func (m *Metrics) Observe(e decision.Event) {
	switch e.Kind {
	case decision.EventConnect:
		if e.Allowed {
			m.Auth.WithLabelValues(resultOK).Inc()
			m.Connections.WithLabelValues(label(e.Listener)).Inc()
			return
		}
		m.Auth.WithLabelValues(label(e.Reason)).Inc()
		if l, ok := connectLimits[e.Reason]; ok {
			m.LimitRefusals.WithLabelValues(l).Inc()
		}
	case decision.EventDisconnect:
		m.Connections.WithLabelValues(label(e.Listener)).Dec()
	case decision.EventReauth:
		if e.Allowed {
			m.Reauth.WithLabelValues(resultOK).Inc()
		} else {
			m.Reauth.WithLabelValues(label(e.Reason)).Inc()
		}
	case decision.EventPublish, decision.EventSubscribe:
		switch {
		case e.Allowed:
		case e.Reason == "acl":
			m.ACLRefusals.WithLabelValues(e.Kind).Inc()
		case e.Kind == decision.EventSubscribe && subscribeLimits[e.Reason] != "":
			m.LimitRefusals.WithLabelValues(subscribeLimits[e.Reason]).Inc()
		}
	case decision.EventCommand:
		switch {
		case e.Allowed:
			m.Commands.Inc()
		case commandLimits[e.Reason] != "":
			m.LimitRefusals.WithLabelValues(commandLimits[e.Reason]).Inc()
		default:
			m.EnvelopeRefusals.WithLabelValues(label(e.Reason)).Inc()
		}
	case decision.EventExpire:
		m.ExpiryDisconnects.Inc()
	case decision.EventRevoke:
		m.RevocationDisconnects.Inc()
	case decision.EventTokenExchange:
		if e.Allowed {
			m.TokenExchanges.WithLabelValues(resultOK).Inc()
		} else {
			m.TokenExchanges.WithLabelValues(label(e.Reason)).Inc()
		}
	}
}

// WatchReplayCache adds homemq_replay_cache_entries, read from size at
// each scrape.
func (m *Metrics) WatchReplayCache(size func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "replay_cache_entries",
		Help: "Command nonces remembered by the replay cache."}, func() float64 { return float64(size()) }))
}

// WatchAudit adds homemq_audit_dropped_total and homemq_audit_written_total,
// read from the audit log at each scrape.
func (m *Metrics) WatchAudit(dropped, written func() uint64) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: "audit_dropped_total",
			Help: "Audit entries lost because the audit queue was full."}, func() float64 { return float64(dropped()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: "audit_written_total",
			Help: "Audit entries written to the audit log."}, func() float64 { return float64(written()) }),
	)
}

// WatchBridge keeps homemq_bridge_connections in step with conns, the
// bridge's live connections by transport, read at each scrape.
func (m *Metrics) WatchBridge(conns func() map[string]int) {
	m.reg.Unregister(m.BridgeConnections)
	m.reg.MustRegister(bridgeCollector{m.BridgeConnections, conns})
}

// bridgeCollector refreshes the bridge gauge from the bridge before it is
// collected.
type bridgeCollector struct {
	gauge *prometheus.GaugeVec
	conns func() map[string]int
}

func (c bridgeCollector) Describe(ch chan<- *prometheus.Desc) { c.gauge.Describe(ch) }

func (c bridgeCollector) Collect(ch chan<- prometheus.Metric) {
	c.gauge.Reset()
	for transport, n := range c.conns() {
		c.gauge.WithLabelValues(transport).Set(float64(n))
	}
	c.gauge.Collect(ch)
}
