package bridge

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		err  string
	}{
		{"defaults", func(*Config) {}, ""},
		{"zero config takes defaults", func(c *Config) { *c = Config{} }, ""},
		{"prefix without slash", func(c *Config) { c.Prefix = "/signalr" }, "must start and end with /"},
		{"negative time-out", func(c *Config) { c.AckTimeout = -time.Second }, "positive"},
		{"client time-out within keep-alive", func(c *Config) { c.ClientTimeout = 10 * time.Second }, "longer than the keep-alive"},
		{"tiny messages", func(c *Config) { c.MaxMessageSize = 100 }, "at least 1 KiB"},
		{"buffer below message size", func(c *Config) { c.MaxBuffered = 2048; c.MaxMessageSize = 4096 }, "at least the message size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			err := c.Validate()
			if (tt.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Validate() = %v, want %q", err, tt.err)
			}
		})
	}
}
