package cluster

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	emb := func(e Embedded) Config { return Config{Embedded: &e, SecretFile: "s"}.WithDefaults() }
	ext := func(x External) Config {
		x.Name, x.URL = "a", "tls://n:4222"
		return Config{NATS: &x, SecretFile: "s"}
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" = valid; else the key the error names
	}{
		{"embedded alone", emb(Embedded{Name: "a"}), ""},
		{"embedded with routes", emb(Embedded{Name: "a", Routes: []string{"nats-route://10.0.0.2:6222"}}), ""},
		{"external", Config{NATS: &External{Name: "a", URL: "nats://n:4222"}, SecretFile: "s"}, ""},
		{"no secret", Config{NATS: &External{Name: "a", URL: "nats://n:4222"}}, "secret_file"},
		{"neither", Config{}, "embedded, nats"},
		{"both", Config{Embedded: &Embedded{Name: "a"}, NATS: &External{URL: "nats://n"}}, "embedded, nats"},
		{"no url", Config{NATS: &External{Name: "a"}}, "nats.url"},
		{"no external name", Config{NATS: &External{URL: "nats://n"}}, "nats.name"},
		{"no name", emb(Embedded{}), "embedded.name"},
		{"bad name", emb(Embedded{Name: "a.b"}), "embedded.name"},
		{"bad listen", emb(Embedded{Name: "a", Listen: "nope"}), "embedded.listen"},
		{"bad route", emb(Embedded{Name: "a", Routes: []string{"http://x:1"}}), "embedded.routes"},
		{"replicas", Config{NATS: &External{Name: "a", URL: "nats://n"}, Replicas: 7}, "replicas"},
		{"external user", ext(External{User: "u", PasswordFile: "p"}), ""},
		{"external creds and tls", ext(External{CredsFile: "c", TLS: ExternalTLS{CAFile: "ca", CertFile: "c", KeyFile: "k"}}), ""},
		{"user without password", ext(External{User: "u"}), "nats.password_file"},
		{"password without user", ext(External{PasswordFile: "p"}), "nats.user"},
		{"user and creds", ext(External{User: "u", PasswordFile: "p", CredsFile: "c"}), "nats.creds_file"},
		{"cert without key", ext(External{TLS: ExternalTLS{CertFile: "c"}}), "nats.tls.key_file"},
		{"key without cert", ext(External{TLS: ExternalTLS{KeyFile: "k"}}), "nats.tls.cert_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
				t.Fatalf("Validate = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestReplicas(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want int
	}{
		{Config{Embedded: &Embedded{Name: "a"}}, 1},
		{Config{Embedded: &Embedded{Name: "a", Routes: []string{"x", "y"}}}, 3},
		{Config{Embedded: &Embedded{Name: "a", Routes: []string{"x", "y", "z", "w"}}}, 3},
		{Config{NATS: &External{URL: "nats://n"}}, 3},
		{Config{NATS: &External{URL: "nats://n"}, Replicas: 1}, 1},
	} {
		if got := tc.cfg.replicas(); got != tc.want {
			t.Errorf("%+v: replicas = %d, want %d", tc.cfg, got, tc.want)
		}
	}
}
