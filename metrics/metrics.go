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

// Metrics are the broker's metrics. Observe feeds the counters from the
// Guard's decisions; the Watch methods add values other parts own, read at
// each scrape.
type Metrics struct {
	reg *prometheus.Registry

	// connections counts live authenticated MQTT connections by listener
	// (mqtts, wss, mqtt, internal).
	connections *prometheus.GaugeVec
	// auth counts CONNECT decisions by result: "ok" or the refusal reason
	// (expired, bad_signature, client_id, rate, quota, …).
	auth *prometheus.CounterVec
	// reauth counts MQTT 5 re-authentications by result.
	reauth *prometheus.CounterVec
	// aclRefusals counts publishes and subscriptions refused by the topic
	// rules, by action (publish, subscribe).
	aclRefusals *prometheus.CounterVec
	// limitRefusals counts refusals by a limit: connect_rate, connections,
	// subscriptions, command_rate.
	limitRefusals *prometheus.CounterVec
	// commands counts accepted commands.
	commands prometheus.Counter
	// envelopeRefusals counts refused commands by envelope reason
	// (malformed, expired, bad_signature, replay, …).
	envelopeRefusals *prometheus.CounterVec
	// expiryDisconnects counts connections closed because their token expired.
	expiryDisconnects prometheus.Counter
	// revocationDisconnects counts connections closed because their token
	// was revoked.
	revocationDisconnects prometheus.Counter
	// tokenExchanges counts POST /api/token answers by result: "ok" or the
	// RFC 6749 error code.
	tokenExchanges *prometheus.CounterVec
	// bridgeConnections counts live SignalR bridge connections by transport
	// (websockets, serversentevents, longpolling), set from the bridge at
	// each scrape (WatchBridge).
	bridgeConnections *prometheus.GaugeVec
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
		connections:           gaugeVec("connections", "Live authenticated MQTT connections by listener.", "listener"),
		auth:                  counterVec("auth_total", "CONNECT decisions by result: ok or the refusal reason.", "result"),
		reauth:                counterVec("reauth_total", "MQTT 5 re-authentications by result: ok or the refusal reason.", "result"),
		aclRefusals:           counterVec("acl_refusals_total", "Publishes and subscriptions refused by the topic rules, by action.", "action"),
		limitRefusals:         counterVec("limit_refusals_total", "Refusals by a configured limit, by limit.", "limit"),
		commands:              counter("commands_accepted_total", "Commands whose envelope was accepted and delivered to subscribers."),
		envelopeRefusals:      counterVec("envelope_refusals_total", "Commands refused by the envelope checks, by reason.", "reason"),
		expiryDisconnects:     counter("expiry_disconnects_total", "Connections closed because their token expired."),
		revocationDisconnects: counter("revocation_disconnects_total", "Connections closed because their token was revoked."),
		tokenExchanges:        counterVec("token_exchanges_total", "POST /api/token answers by result: ok or the OAuth error code.", "result"),
		bridgeConnections:     gaugeVec("bridge_connections", "Live SignalR bridge connections by transport.", "transport"),
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
			m.auth.WithLabelValues(resultOK).Inc()
			m.connections.WithLabelValues(label(e.Listener)).Inc()
			return
		}
		m.auth.WithLabelValues(label(e.Reason)).Inc()
		if l, ok := connectLimits[e.Reason]; ok {
			m.limitRefusals.WithLabelValues(l).Inc()
		}
	case decision.EventDisconnect:
		m.connections.WithLabelValues(label(e.Listener)).Dec()
	case decision.EventReauth:
		if e.Allowed {
			m.reauth.WithLabelValues(resultOK).Inc()
		} else {
			m.reauth.WithLabelValues(label(e.Reason)).Inc()
		}
	case decision.EventPublish, decision.EventSubscribe:
		switch {
		case e.Allowed:
		case e.Reason == "acl":
			m.aclRefusals.WithLabelValues(e.Kind).Inc()
		case e.Kind == decision.EventSubscribe && subscribeLimits[e.Reason] != "":
			m.limitRefusals.WithLabelValues(subscribeLimits[e.Reason]).Inc()
		}
	case decision.EventCommand:
		switch {
		case e.Allowed:
			m.commands.Inc()
		case commandLimits[e.Reason] != "":
			m.limitRefusals.WithLabelValues(commandLimits[e.Reason]).Inc()
		default:
			m.envelopeRefusals.WithLabelValues(label(e.Reason)).Inc()
		}
	case decision.EventExpire:
		m.expiryDisconnects.Inc()
	case decision.EventRevoke:
		m.revocationDisconnects.Inc()
	case decision.EventTokenExchange:
		if e.Allowed {
			m.tokenExchanges.WithLabelValues(resultOK).Inc()
		} else {
			m.tokenExchanges.WithLabelValues(label(e.Reason)).Inc()
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
	m.reg.Unregister(m.bridgeConnections)
	m.reg.MustRegister(bridgeCollector{m.bridgeConnections, conns})
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
