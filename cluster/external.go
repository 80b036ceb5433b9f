package cluster

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"homemq/certs"
)

// options are the connection options for an external NATS: its user and
// password, or credentials file, and its TLS. Errors name the key.
func (x External) options() ([]nats.Option, error) {
	var opts []nats.Option
	if x.User != "" {
		b, err := os.ReadFile(x.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("cluster: cluster.nats.password_file: %w", err)
		}
		pw := strings.TrimSpace(string(b))
		if pw == "" {
			return nil, fmt.Errorf("cluster: cluster.nats.password_file: %s is empty; it must hold the password of cluster.nats.user", x.PasswordFile)
		}
		opts = append(opts, nats.UserInfo(x.User, pw))
	}
	if x.CredsFile != "" {
		if _, err := os.Stat(x.CredsFile); err != nil {
			return nil, fmt.Errorf("cluster: cluster.nats.creds_file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(x.CredsFile))
	}
	t := x.TLS
	if t.CAFile == "" && t.CertFile == "" {
		return opts, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pool, err := certs.CertPool(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cluster: cluster.nats.tls.ca_file: %w", err)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cluster: cluster.nats.tls.cert_file, key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return append(opts, nats.Secure(tc)), nil
}
