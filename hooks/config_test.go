package hooks

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"homemq/auth"
)

// TestConfigValidate: every part of the Guard's Config refuses a value out
// of range with its YAML key and section; the defaults pass.
func TestConfigValidate(t *testing.T) {
	cases := []struct {
		key    string // "" when valid
		change func(*Config)
	}{
		{"", func(*Config) {}},
		{"", func(c *Config) { c.Envelope.Skew = 0 }},
		{"", func(c *Config) {
			c.Limits = Limits{}
			c.Quotas = Quotas{}
			c.RefusalLimit = 0
			c.Replay.ReplayQuota = 0
		}},
		{"envelope.skew", func(c *Config) { c.Envelope.Skew = -time.Second }},
		{"envelope.max_size", func(c *Config) { c.Envelope.MaxSize = 0 }},
		{"envelope.replay_cache", func(c *Config) { c.Replay.ReplayCache = 0 }},
		{"envelope.replay_quota", func(c *Config) { c.Replay.ReplayQuota = c.Replay.ReplayCache + 1 }},
		{"limits.max_keepalive", func(c *Config) { c.MaxKeepalive = 0 }},
		{"limits.refusal_limit", func(c *Config) { c.RefusalLimit = -1 }},
		{"limits.command_rate", func(c *Config) { c.CommandRate = 0 }},
		{"limits.command_burst", func(c *Config) { c.CommandBurst = 0 }},
		{"limits.conns_per_addr", func(c *Config) { c.Limits.ConnsPerAddr = -1 }},
		{"limits.max_subscriptions", func(c *Config) { c.Limits.MaxSubscriptions = -1 }},
		{"limits.sessions_per_sub", func(c *Config) { c.Quotas.SessionsPerSub = -1 }},
		{"limits.max_retained_size", func(c *Config) { c.Quotas.MaxRetainedSize = -1 }},
		{"limits.retained_burst", func(c *Config) { c.Quotas.RetainedBurst = 0 }},
		{"DisconnectWait", func(c *Config) { c.DisconnectWait = 0 }},
	}
	for _, tc := range cases {
		c := DefaultConfig()
		tc.change(&c)
		err := c.Validate()
		switch {
		case tc.key == "" && err != nil:
			t.Errorf("valid config refused: %v", err)
		case tc.key != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.key+":")):
			t.Errorf("error %v does not name %s", err, tc.key)
		}
	}
}

// TestNewRefusesInvalidConfig: New does not replace a bad config with the
// defaults; it says what is wrong.
func TestNewRefusesInvalidConfig(t *testing.T) {
	revs, _ := auth.LoadRevocations("")
	v := auth.NewVerifier(auth.Config{}, auth.NewMemoryKeys(), revs)
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	for name, cfg := range map[string]Config{"zero": {}, "no replay cache": func() Config { c := DefaultConfig(); c.Replay.ReplayCache = 0; return c }()} {
		g, err := New(srv, v, make([]byte, 32), cfg)
		if g != nil || err == nil || !strings.Contains(err.Error(), "hooks: ") {
			t.Errorf("%s: New = %v, %v; want an error", name, g, err)
		}
	}
}
