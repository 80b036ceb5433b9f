package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExternalOptions(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pw, empty, notPEM := write("pw", "s3cret\n"), write("empty", "\n"), write("ca.pem", "no")
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		name string
		x    External
		want string // "" = options made; else the key the error names
	}{
		{"none", External{}, ""},
		{"user", External{User: "u", PasswordFile: pw}, ""},
		{"missing password file", External{User: "u", PasswordFile: missing}, "cluster.nats.password_file"},
		{"empty password file", External{User: "u", PasswordFile: empty}, "cluster.nats.password_file"},
		{"missing creds", External{CredsFile: missing}, "cluster.nats.creds_file"},
		{"bad CA", External{TLS: ExternalTLS{CAFile: notPEM}}, "cluster.nats.tls.ca_file"},
		{"bad pair", External{TLS: ExternalTLS{CertFile: notPEM, KeyFile: notPEM}}, "cluster.nats.tls.cert_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.x.options()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("options: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("options = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
