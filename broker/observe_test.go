package broker

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"homemq/auth"
)

// newTestBroker starts a broker on loopback ports with cfg (the default
// configuration) changed by edit.
func newTestBroker(t *testing.T, edit func(*Config)) *Broker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.Listeners = ListenersConfig{MQTT: "127.0.0.1:0", HTTPS: "127.0.0.1:0"}
	edit(&cfg)
	b, err := New(cfg, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// TestMetricsAccess: an operator token reads /metrics; loopback peers read
// it without one only when the operator opened it on loopback.
func TestMetricsAccess(t *testing.T) {
	for _, open := range []bool{false, true} {
		b := newTestBroker(t, func(c *Config) { c.Observe.MetricsOpenOnLoopback = open })
		op, _, err := b.Issuer.Mint(auth.Spec{Sub: "service:prom", Operator: true})
		if err != nil {
			t.Fatal(err)
		}
		user, _, err := b.Issuer.Mint(auth.Spec{Sub: "user:ann", Homes: map[string]string{"h1": "admin"}})
		if err != nil {
			t.Fatal(err)
		}
		openCode := map[bool]int{false: 401, true: 200}[open]
		cases := []struct {
			name, remote, token string
			want                int
		}{
			{"operator from afar", "192.0.2.7:4000", op, 200},
			{"operator on loopback", "127.0.0.1:4000", op, 200},
			{"no token from afar", "192.0.2.7:4000", "", 401},
			{"no token on IPv4 loopback", "127.0.0.1:4000", "", openCode},
			{"no token on IPv6 loopback", "[::1]:4000", "", openCode},
			{"user token on loopback", "127.0.0.1:4000", user, 403},
			{"bad token on loopback", "127.0.0.1:4000", "garbage", 401},
		}
		for _, c := range cases {
			req := httptest.NewRequest("GET", "/metrics", nil)
			req.RemoteAddr = c.remote
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			rec := httptest.NewRecorder()
			b.Mux.ServeHTTP(rec, req)
			if rec.Code != c.want {
				t.Errorf("open=%v %s: %d, want %d", open, c.name, rec.Code, c.want)
			}
			if rec.Code == http.StatusOK && rec.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("open=%v %s: metrics may be cached", open, c.name)
			}
		}
	}
}
