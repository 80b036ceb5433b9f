package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"homemq/decision"
)

// scrape fetches the handler's text output and parses it, as Prometheus would.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, rec.Body)
	}
	return fams
}

// value returns the value of name{label=value} (no label: the only series), or -1.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
	for _, m := range f.GetMetric() {
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return -1
}

func TestObserveCountsEachDecision(t *testing.T) {
	m := New()
	events := []decision.Event{
		{Kind: decision.EventConnect, Allowed: true, Listener: "mqtts"},
		{Kind: decision.EventConnect, Allowed: true, Listener: "mqtts"},
		{Kind: decision.EventConnect, Allowed: true, Listener: "wss"},
		{Kind: decision.EventDisconnect, Allowed: true, Listener: "mqtts"},
		{Kind: decision.EventConnect, Reason: "expired"},
		{Kind: decision.EventConnect, Reason: "bad_signature"},
		{Kind: decision.EventConnect, Reason: "bad_signature"},
		{Kind: decision.EventConnect, Reason: "rate"},
		{Kind: decision.EventConnect, Reason: "quota"},
		{Kind: decision.EventConnect, Reason: "Weird Reason with spaces"},
		{Kind: decision.EventReauth, Allowed: true},
		{Kind: decision.EventReauth, Reason: "sub"},
		{Kind: decision.EventPublish, Reason: "acl"},
		{Kind: decision.EventSubscribe, Reason: "acl"},
		{Kind: decision.EventSubscribe, Reason: "acl"},
		{Kind: decision.EventSubscribe, Reason: "quota"},
		{Kind: decision.EventSubscribe, Allowed: true},
		{Kind: decision.EventCommand, Allowed: true},
		{Kind: decision.EventCommand, Reason: "replay"},
		{Kind: decision.EventCommand, Reason: "replay"},
		{Kind: decision.EventCommand, Reason: "expired"},
		{Kind: decision.EventCommand, Reason: "rate"},
		{Kind: decision.EventExpire, Reason: "expired"},
		{Kind: decision.EventRevoke, Reason: "revoked"},
		{Kind: decision.EventRevoke, Reason: "revoked"},
		{Kind: decision.EventTokenExchange, Allowed: true},
		{Kind: decision.EventTokenExchange, Reason: "invalid_grant"},
	}
	for _, e := range events {
		m.Observe(e)
	}
	f := scrape(t, m)
	want := []struct {
		name   string
		labels []string
		value  float64
	}{
		{"homemq_connections", []string{"listener", "mqtts"}, 1},
		{"homemq_connections", []string{"listener", "wss"}, 1},
		{"homemq_auth_total", []string{"result", "ok"}, 3},
		{"homemq_auth_total", []string{"result", "expired"}, 1},
		{"homemq_auth_total", []string{"result", "bad_signature"}, 2},
		{"homemq_auth_total", []string{"result", "rate"}, 1},
		{"homemq_auth_total", []string{"result", "other"}, 1},
		{"homemq_limit_refusals_total", []string{"limit", "connect_rate"}, 1},
		{"homemq_limit_refusals_total", []string{"limit", "connections"}, 1},
		{"homemq_limit_refusals_total", []string{"limit", "subscriptions"}, 1},
		{"homemq_limit_refusals_total", []string{"limit", "command_rate"}, 1},
		{"homemq_reauth_total", []string{"result", "ok"}, 1},
		{"homemq_reauth_total", []string{"result", "sub"}, 1},
		{"homemq_acl_refusals_total", []string{"action", "publish"}, 1},
		{"homemq_acl_refusals_total", []string{"action", "subscribe"}, 2},
		{"homemq_commands_accepted_total", nil, 1},
		{"homemq_envelope_refusals_total", []string{"reason", "replay"}, 2},
		{"homemq_envelope_refusals_total", []string{"reason", "expired"}, 1},
		{"homemq_envelope_refusals_total", []string{"reason", "rate"}, -1},
		{"homemq_expiry_disconnects_total", nil, 1},
		{"homemq_revocation_disconnects_total", nil, 2},
		{"homemq_token_exchanges_total", []string{"result", "ok"}, 1},
		{"homemq_token_exchanges_total", []string{"result", "invalid_grant"}, 1},
	}
	for _, w := range want {
		if got := value(f, w.name, w.labels...); got != w.value {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
		}
	}
}

func TestWatchedValuesAreReadAtScrape(t *testing.T) {
	m := New()
	var counts ServerCounters
	m.WatchServer(func() ServerCounters { return counts })
	size, dropped := 0, uint64(0)
	m.WatchReplayCache(func() int { return size })
	m.WatchAudit(func() uint64 { return dropped }, func() uint64 { return 7 })
	m.bridgeConnections.WithLabelValues("websockets").Inc()

	f := scrape(t, m)
	if v := value(f, "homemq_messages_received_total"); v != 0 {
		t.Errorf("messages received %v before any message", v)
	}
	counts.MessagesReceived, counts.MessagesSent, counts.Retained, counts.Inflight = 5, 9, 3, 2
	size, dropped = 42, 4
	f = scrape(t, m)
	for name, want := range map[string]float64{
		"homemq_messages_received_total": 5, "homemq_messages_sent_total": 9, "homemq_retained_messages": 3,
		"homemq_inflight_messages": 2, "homemq_replay_cache_entries": 42, "homemq_audit_dropped_total": 4,
		"homemq_audit_written_total": 7,
	} {
		if got := value(f, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := value(f, "homemq_bridge_connections", "transport", "websockets"); got != 1 {
		t.Errorf("bridge connections = %v, want 1", got)
	}
	if value(f, "go_goroutines") <= 0 || value(f, "process_resident_memory_bytes") <= 0 {
		t.Errorf("Go runtime and process metrics missing")
	}
}

func TestLabel(t *testing.T) {
	for in, want := range map[string]string{"replay": "replay", "bad_signature": "bad_signature", "": "other",
		"Bad": "other", "a b": "other", strings.Repeat("x", 41): "other", "issued_in_future": "issued_in_future"} {
		if got := label(in); got != want {
			t.Errorf("label(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWatchBridgeReadsTheBridgeAtScrape(t *testing.T) {
	m := New()
	live := map[string]int{"WebSockets": 2, "LongPolling": 1}
	m.WatchBridge(func() map[string]int { return live })
	got := map[string]float64{}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "homemq_bridge_connections" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			got[mt.GetLabel()[0].GetValue()] = mt.GetGauge().GetValue()
		}
	}
	if got["WebSockets"] != 2 || got["LongPolling"] != 1 || len(got) != 2 {
		t.Fatalf("bridge gauge %v", got)
	}
}
