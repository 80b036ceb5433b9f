// Package acme obtains the broker's server certificate for names the home
// owner owns from an ACME certificate authority (Let's Encrypt by
// default), with the DNS-01 challenge, which works for a broker behind
// NAT, and renews it in the background: the TLS server asks Manager for
// its certificate at each handshake (tls.Config.GetCertificate), so a
// renewed certificate is served without a restart. certmagic does the
// ACME protocol, storage and renewal; this package chooses its settings
// and sets the challenge's TXT record through a DNSProvider.
package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// LetsEncrypt is the directory of Let's Encrypt's production CA;
// LetsEncryptStaging is its staging CA, for trying a setup out.
const (
	LetsEncrypt        = certmagic.LetsEncryptProductionCA
	LetsEncryptStaging = certmagic.LetsEncryptStagingCA
)

// Config is the tls.acme section. With no domains it is off.
type Config struct {
	// Email is the ACME account's contact, for expiry warnings.
	Email string `yaml:"email"`
	// Domains are the names the certificate is for; a name the owner owns
	// whose DNS the provider can change ("*.home.example.org" too).
	Domains []string `yaml:"domains"`
	// DNSProvider names how the challenge's TXT record is set: "httpreq"
	// or "exec" (DNSProviders), with credentials from the environment.
	DNSProvider string `yaml:"dns_provider"`
	// Directory is the ACME directory URL; default Let's Encrypt
	// production (LetsEncryptStaging to try a setup out).
	Directory string `yaml:"directory"`
	// DirectoryCA is a PEM file of CA certificates trusted for the
	// directory's HTTPS, besides the system's (a private ACME server).
	DirectoryCA string `yaml:"directory_ca"`
	// Resolvers are the DNS servers (host:port) asked whether the TXT
	// record is visible before the CA is told to look; default the
	// system's.
	Resolvers []string `yaml:"resolvers"`
	// PropagationTimeout is how long to wait for the TXT record to be
	// visible at the resolvers.
	PropagationTimeout time.Duration `yaml:"propagation_timeout"`

	// RenewCheckInterval is how often the certificate's expiry is checked
	// (default certmagic's, 10 minutes); tests shorten it.
	RenewCheckInterval time.Duration `yaml:"-"`
}

// DefaultConfig is ACME switched off, with the defaults it runs with once
// domains are given.
func DefaultConfig() Config {
	return Config{Domains: []string{}, Directory: LetsEncrypt, Resolvers: []string{}, PropagationTimeout: 2 * time.Minute}
}

// Enabled reports whether certificates come from ACME.
func (c Config) Enabled() bool { return len(c.Domains) > 0 }

// Validate reports the first key out of range, without the section's name
// (e.g. "domains: …"). A disabled section is always valid.
func (c Config) Validate(checkName func(string) error) error {
	if !c.Enabled() {
		return nil
	}
	for _, d := range c.Domains {
		if err := checkName(d); err != nil {
			return fmt.Errorf("domains: %w", err)
		}
		if strings.Count(strings.TrimPrefix(d, "*."), ".") == 0 {
			return fmt.Errorf("domains: %q is not a name a public CA issues for; give a domain you own, e.g. home.example.org", d)
		}
	}
	if c.Email != "" {
		if _, err := mail.ParseAddress(c.Email); err != nil {
			return fmt.Errorf("email: %q is not an email address", c.Email)
		}
	}
	if _, ok := DNSProviders[c.DNSProvider]; !ok {
		return fmt.Errorf("dns_provider: %q is not one of %s", c.DNSProvider, providerNames())
	}
	if u, err := url.Parse(c.Directory); err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("directory: %q is not an https:// ACME directory URL (e.g. %s)", c.Directory, LetsEncryptStaging)
	}
	for _, r := range c.Resolvers {
		if !strings.Contains(r, ":") {
			return fmt.Errorf("resolvers: %q has no port; e.g. 1.1.1.1:53", r)
		}
	}
	if c.PropagationTimeout < time.Second || c.PropagationTimeout > time.Hour {
		return fmt.Errorf("propagation_timeout: %v is out of range (1s to 1h)", c.PropagationTimeout)
	}
	return nil
}

// Manager holds the certificate of the configured domains and renews it.
type Manager struct {
	cache   *certmagic.Cache
	magic   *certmagic.Config
	domains []string
}

// New prepares a Manager that keeps its ACME account and certificates in
// storageDir; env looks up the DNS provider's credentials (os.Getenv).
// Nothing is obtained until Manage.
func New(c Config, storageDir string, env func(string) string, log *slog.Logger) (*Manager, error) {
	newProvider := DNSProviders[c.DNSProvider]
	if newProvider == nil {
		return nil, fmt.Errorf("acme: dns_provider %q is not one of %s", c.DNSProvider, providerNames())
	}
	provider, err := newProvider(env)
	if err != nil {
		return nil, fmt.Errorf("acme: dns_provider %s: %w", c.DNSProvider, err)
	}
	var roots *x509.CertPool
	if c.DirectoryCA != "" {
		if roots, err = systemPlus(c.DirectoryCA); err != nil {
			return nil, err
		}
	}
	logger := zap.New(slogCore{log: log})
	m := &Manager{domains: c.Domains}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return m.magic, nil },
		RenewCheckInterval: c.RenewCheckInterval,
		Logger:             logger,
	})
	m.magic = certmagic.New(m.cache, certmagic.Config{
		Storage:           &certmagic.FileStorage{Path: storageDir},
		DefaultServerName: c.Domains[0], // for a client that sends no SNI
		Logger:            logger,
	})
	m.magic.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(m.magic, certmagic.ACMEIssuer{
		CA:                      c.Directory,
		Email:                   c.Email,
		Agreed:                  true,
		DisableHTTPChallenge:    true,
		DisableTLSALPNChallenge: true,
		DNS01Solver:             &dnsSolver{provider: provider, resolvers: c.Resolvers, timeout: c.PropagationTimeout},
		TrustedRoots:            roots,
		Logger:                  logger,
	})}
	return m, nil
}

// Manage obtains the certificate (or loads it from storage) before it
// returns, and keeps renewing it in the background until Close.
func (m *Manager) Manage(ctx context.Context) error {
	if err := m.magic.ManageSync(ctx, m.domains); err != nil {
		return fmt.Errorf("acme: obtaining a certificate for %s: %w", strings.Join(m.domains, ", "), err)
	}
	return nil
}

// GetCertificate is tls.Config.GetCertificate: the current certificate of
// the name the client asked for (the first domain when it named none).
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return m.magic.GetCertificate(hello)
}

// Close stops renewing.
func (m *Manager) Close() { m.cache.Stop() }

// systemPlus is the system's roots plus the certificates of a PEM file.
func systemPlus(file string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("acme: directory_ca: %w", err)
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("acme: directory_ca: " + file + " holds no PEM certificate")
	}
	return pool, nil
}
