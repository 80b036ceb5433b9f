package broker

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestDrainBatches(t *testing.T) {
	tests := []struct {
		name      string
		period    time.Duration
		clients   int
		wantSteps int
		wantFirst int
	}{
		{"default period", DefaultDrainPeriod, 600, 60, 10},
		{"fewer clients than steps", 30 * time.Second, 7, 60, 1},
		{"one step", drainStep, 100, 1, 100},
		{"shorter than a step", time.Millisecond, 5, 1, 5},
		{"uneven", 2 * time.Second, 10, 4, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := drainSteps(tt.period)
			if steps != tt.wantSteps {
				t.Fatalf("drainSteps(%v) = %d, want %d", tt.period, steps, tt.wantSteps)
			}
			if got := batchSize(tt.clients, steps); got != tt.wantFirst {
				t.Fatalf("first batch of %d clients over %d steps = %d, want %d", tt.clients, steps, got, tt.wantFirst)
			}
			// nobody reconnects: the batches leave no client by the last step
			n := tt.clients
			for left := steps; left >= 1 && n > 0; left-- {
				b := batchSize(n, left)
				if b < 1 || b > n {
					t.Fatalf("batch %d of %d clients with %d steps left", b, n, left)
				}
				n -= b
			}
			if n != 0 {
				t.Fatalf("%d clients left after the last step", n)
			}
		})
	}
}

func TestDrainConfigValidate(t *testing.T) {
	tests := []struct {
		period  time.Duration
		wantErr string
	}{
		{0, ""},
		{time.Minute, ""},
		{-time.Second, "period: -1s"},
		{2 * time.Hour, "period: 2h0m0s"},
	}
	for _, tt := range tests {
		err := DrainConfig{Period: tt.period}.Validate()
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("period %v: error %v, want %q", tt.period, err, tt.wantErr)
		}
	}
	cfg := DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.Drain.Period = -time.Second
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "drain.period") {
		t.Errorf("Config.Validate: %v, want it to name drain.period", err)
	}
}

func TestHealthSaysDraining(t *testing.T) {
	b := &Broker{}
	for _, tt := range []struct {
		draining bool
		code     int
		body     string
	}{{false, 200, "ok\n"}, {true, 503, "draining\n"}} {
		b.drain.on.Store(tt.draining)
		rec := httptest.NewRecorder()
		b.handleHealthz(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if rec.Code != tt.code || rec.Body.String() != tt.body {
			t.Errorf("draining %v: %d %q, want %d %q", tt.draining, rec.Code, rec.Body, tt.code, tt.body)
		}
	}
}
