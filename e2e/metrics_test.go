package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"homemq/auth"
)

// scrapeMetrics GETs /metrics with token (none when ""), returning the
// status and, for a 200, the parsed metric families.
func scrapeMetrics(t *testing.T, b *testBroker, token string) (int, map[string]*dto.MetricFamily) {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://"+b.Addrs()["https"]+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}}
	res, err := cl.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return res.StatusCode, nil
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("/metrics is not the Prometheus text format: %v", err)
	}
	return res.StatusCode, fams
}

// metricValue returns the value of name{label="value"} (or of the single
// series when no label is given); 0 when absent.
func metricValue(fams map[string]*dto.MetricFamily, name string, label ...string) float64 {
	for _, m := range fams[name].GetMetric() {
		if len(label) == 2 {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || lp.GetName() == label[0] && lp.GetValue() == label[1]
			}
			if !found {
				continue
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	return 0
}

// TestMetricsMoveAndAreForOperators: /metrics needs an operator token, and
// a scrape shows what happened: connections by listener, a refused
// CONNECT, an accepted command and a replay, messages in and out, the
// replay cache.
func TestMetricsMoveAndAreForOperators(t *testing.T) {
	b := startBroker(t)
	op, _ := b.mintSpec(auth.Spec{Sub: "service:prometheus", Operator: true})
	user := b.mint("user:ann", "h1=admin")
	for name, c := range map[string]struct {
		token string
		want  int
	}{"no token": {"", 401}, "bad token": {"garbage", 401}, "not an operator": {user, 403}, "operator": {op, 200}} {
		if got, _ := scrapeMetrics(t, b, c.token); got != c.want {
			t.Errorf("%s: GET /metrics answered %d, want %d", name, got, c.want)
		}
	}

	_, before := scrapeMetrics(t, b, op)
	agent := b.mustV5(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"))
	agent.subscribe(t, "homes/h1/agents/pi/devices/+/cmd", 1)
	if _, _, err := b.v5(overTLS, "user:mallory", "garbage"); err == nil {
		t.Fatal("a garbage token connected")
	}
	owner := newSealer(b, "user:owner")
	c := b.mustV5(overWSS, "user:owner", owner.token)
	lock := "homes/h1/agents/pi/devices/lock/cmd"
	env := owner.seal(t, lock, `{"action":"unlock"}`, time.Now(), 30*time.Second)
	c.publish(t, lock, env, 1, false)
	c.publish(t, lock, env, 1, false)
	if code := c.subscribe(t, "homes/h2/#", 0); code != 0x87 {
		t.Fatalf("subscribe to another home: 0x%02X", code)
	}
	eventually(t, 5*time.Second, "the command delivered", func() bool { return len(agent.received()) == 1 })

	_, after := scrapeMetrics(t, b, op)
	delta := func(name string, label ...string) float64 {
		return metricValue(after, name, label...) - metricValue(before, name, label...)
	}
	checks := []struct {
		what  string
		got   float64
		check func(float64) bool
	}{
		{"connections over TLS", metricValue(after, "homemq_connections", "listener", "mqtts"), func(v float64) bool { return v == 1 }},
		{"connections over WSS", metricValue(after, "homemq_connections", "listener", "wss"), func(v float64) bool { return v == 1 }},
		{"successful CONNECTs", delta("homemq_auth_total", "result", "ok"), func(v float64) bool { return v == 2 }},
		{"CONNECTs refused as malformed", delta("homemq_auth_total", "result", "malformed"), func(v float64) bool { return v == 1 }},
		{"accepted commands", delta("homemq_commands_accepted_total"), func(v float64) bool { return v == 1 }},
		{"replays refused", delta("homemq_envelope_refusals_total", "reason", "replay"), func(v float64) bool { return v == 1 }},
		{"ACL refusals of subscriptions", delta("homemq_acl_refusals_total", "action", "subscribe"), func(v float64) bool { return v == 1 }},
		{"messages received", delta("homemq_messages_received_total"), func(v float64) bool { return v >= 2 }},
		{"messages sent", delta("homemq_messages_sent_total"), func(v float64) bool { return v >= 1 }},
		{"replay cache entries", metricValue(after, "homemq_replay_cache_entries"), func(v float64) bool { return v >= 1 }},
		{"audit entries written", delta("homemq_audit_written_total"), func(v float64) bool { return v >= 5 }},
		{"audit entries dropped", metricValue(after, "homemq_audit_dropped_total"), func(v float64) bool { return v == 0 }},
	}
	for _, c := range checks {
		if !c.check(c.got) {
			t.Errorf("%s: %v", c.what, c.got)
		}
	}

	_ = agent.Disconnect(&paho.Disconnect{})
	eventually(t, 5*time.Second, "the TLS connection gauge back to 0", func() bool {
		_, f := scrapeMetrics(t, b, op)
		return metricValue(f, "homemq_connections", "listener", "mqtts") == 0
	})
}
