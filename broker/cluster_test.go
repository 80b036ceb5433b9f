package broker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClusterSection: the cluster section loads into cluster.Config, a
// bad one is refused naming its key, and without it there is none.
func TestClusterSection(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, err string
	}{
		{"absent", "log: {level: info}\n", ""},
		{"embedded", "cluster:\n  embedded:\n    name: node-a\n    routes: [nats-route://10.0.0.2:6222]\n  secret_file: /etc/homemq/cluster.secret\n", ""},
		{"external", "cluster:\n  nats: {name: node-a, url: nats://n:4222}\n  replicas: 3\n  secret_file: s\n", ""},
		{"empty", "cluster: {}\n", "config: cluster.embedded, nats: set exactly one"},
		{"bad name", "cluster:\n  embedded: {name: a.b}\n", "config: cluster.embedded.name:"},
		{"bad route", "cluster:\n  embedded: {name: a, routes: [\"10.0.0.2:6222\"]}\n", "config: cluster.embedded.routes:"},
		{"unknown key", "cluster:\n  embedded: {name: a, peers: []}\n", "peers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "homemq.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(p)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("LoadConfig: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("LoadConfig = %v, want an error with %q", err, tc.err)
			case tc.name == "absent" && cfg.Cluster != nil:
				t.Fatal("a config without a cluster section has one")
			case tc.name == "embedded" && (cfg.Cluster == nil || cfg.Cluster.Embedded.Name != "node-a"):
				t.Fatalf("cluster = %+v, want node-a", cfg.Cluster)
			}
		})
	}
}
