package broker

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"homemq/hooks"
)

// documentedConfig returns the YAML block of docs/configuration.md,
// written to a file.
func documentedConfig(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/configuration.md has no yaml block")
	}
	f := filepath.Join(t.TempDir(), "homemq.yaml")
	if err := os.WriteFile(f, m[1], 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestDocumentedConfigLoads: the full example in docs/configuration.md is
// a valid configuration, so the page cannot drift from the code.
func TestDocumentedConfigLoads(t *testing.T) {
	cfg, err := LoadConfig(documentedConfig(t))
	if err != nil {
		t.Fatalf("the documented config does not load: %v", err)
	}
	if cfg.Limits.ConnsPerSub != 32 || cfg.Envelope.MaxLifetime.String() != "1m0s" || cfg.Observe.AuditKeep != 5 ||
		cfg.Limits.SessionsPerSub != 16 || cfg.Envelope.ReplayQuota != 4096 || cfg.Limits.RetainedPerAgent != 256 {
		t.Fatalf("documented values not read: %+v", cfg)
	}
}

// TestDocumentedConfigIsTheDefault: every value docs/configuration.md
// shows is the default, field for field, so the page documents what a
// broker without a config file runs with.
func TestDocumentedConfigIsTheDefault(t *testing.T) {
	cfg, err := LoadConfig(documentedConfig(t))
	if err != nil {
		t.Fatalf("the documented config does not load: %v", err)
	}
	if want := DefaultConfig(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("docs/configuration.md differs from DefaultConfig():\n%s", configDiff(cfg, want))
	}
}

// configDiff lists, by Go field path, where got and want differ.
func configDiff(got, want any) string {
	var b strings.Builder
	var walk func(path string, g, w reflect.Value)
	walk = func(path string, g, w reflect.Value) {
		if g.Kind() == reflect.Struct {
			for i := range g.NumField() {
				walk(path+"."+g.Type().Field(i).Name, g.Field(i), w.Field(i))
			}
			return
		}
		if !reflect.DeepEqual(g.Interface(), w.Interface()) {
			fmt.Fprintf(&b, "%s: documented %#v, default %#v\n", path, g.Interface(), w.Interface())
		}
	}
	walk("Config", reflect.ValueOf(got), reflect.ValueOf(want))
	return b.String()
}

func TestConfigErrorsNameTheirKey(t *testing.T) {
	tests := []struct{ yaml, key string }{
		{"bogus: 1\n", "bogus"},
		{"limits:\n  max_packet_size: 10\n", "limits.max_packet_size"},
		{"limits:\n  max_keepalive: 0\n", "limits.max_keepalive"},
		{"limits:\n  conns_per_sub: -1\n", "limits.conns_per_sub"},
		{"envelope:\n  skew: 5m\n", "envelope.skew"},
		{"envelope:\n  replay_cache: 10\n", "envelope.replay_cache"},
		{"tokens:\n  leeway: 1h\n", "tokens.leeway"},
		{"tokens:\n  algorithms: [HS512]\n", "tokens.algorithms"},
		{"listeners:\n  mqtt: \"\"\n  https: \"\"\n", "listeners"},
		{"data: \"\"\n", "data"},
		{"observe:\n  audit_keep: -2\n", "observe.audit_keep"},
		{"limits:\n  http_read_timeout: 0s\n", "limits.http_read_timeout"},
		{"limits:\n  http_read_header_timeout: -1s\n", "limits.http_read_header_timeout"},
		{"limits:\n  http_max_body: 10\n", "limits.http_max_body"},
		{"limits:\n  https_conns_per_addr: -1\n", "limits.https_conns_per_addr"},
		{"envelope:\n  replay_quota: -1\n", "envelope.replay_quota"},
		{"envelope:\n  replay_cache: 2048\n  replay_quota: 4096\n", "envelope.replay_quota"},
		{"limits:\n  sessions_per_sub: -1\n", "limits.sessions_per_sub"},
		{"limits:\n  retained_per_agent: -1\n", "limits.retained_per_agent"},
		{"limits:\n  max_retained_size: 300000\n", "limits.max_retained_size"},
		{"limits:\n  retained_rate: -1\n", "limits.retained_rate"},
		{"limits:\n  retained_burst: 0\n", "limits.retained_burst"},
		{"limits:\n  write_buffer: 1024\n", "limits.write_buffer"}, // below max_packet_size
		{"limits:\n  write_timeout: 0s\n", "limits.write_timeout"},
		{"limits:\n  write_timeout: 1h\n", "limits.write_timeout"},
		{"limits:\n  memory_limit: -1\n", "limits.memory_limit"},
		{"limits:\n  memory_limit: 1000\n", "limits.memory_limit"},
	}
	for _, tc := range tests {
		f := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(f, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(f)
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%q: error %v does not name %s", tc.yaml, err, tc.key)
		}
	}
}

// TestConfigGuardGetsTheSections: keys of the owners' types, inlined in
// the envelope and limits sections, reach the Guard's Config as written; a
// skew of 0 stays 0.
func TestConfigGuardGetsTheSections(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	y := "envelope:\n  skew: 0s\n  replay_quota: 7\nlimits:\n  refusal_limit: 3\n  max_subscriptions: 9\n  retained_burst: 11\n  write_timeout: 2s\n"
	if err := os.WriteFile(f, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	want := hooks.DefaultConfig()
	want.Envelope.Skew = 0
	want.Replay.ReplayQuota = 7
	want.RefusalLimit = 3
	want.Limits.MaxSubscriptions = 9
	want.Quotas.RetainedBurst = 11
	want.DisconnectWait = 2 * time.Second
	if got := cfg.Guard(); !reflect.DeepEqual(got, want) {
		t.Errorf("Guard() = %+v\nwant %+v", got, want)
	}
}
