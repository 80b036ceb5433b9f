package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"homemq/auth"
	"homemq/broker"
	"homemq/certs"
)

// operatorClient returns what the CLI needs to call a running broker's
// operator APIs: a one-minute operator token minted with the data folder's
// key, and an HTTPS client that trusts the broker's CA (the dev CA in dev
// mode, tls.ca otherwise).
func operatorClient(cfg broker.Config) (string, *http.Client, error) {
	keys, err := auth.LoadOrCreateKeys(cfg.Data)
	if err != nil {
		return "", nil, err
	}
	tok, _, err := auth.NewIssuer(cfg.Tokens, keys).Mint(auth.Spec{Sub: "service:homemq-cli", Operator: true, TTL: time.Minute})
	if err != nil {
		return "", nil, err
	}
	caFile := cfg.TLS.CA
	if cfg.DevMode() {
		caFile = filepath.Join(cfg.Data, "certs", certs.CAFile)
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		if tlsConf.RootCAs, err = certs.CertPool(caFile); err != nil {
			return "", nil, err
		}
	}
	return tok, &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}, nil
}

// dialAddr turns a listen address into one to dial: a listener on every
// interface (":8443", "0.0.0.0:8443", "[::]:8443") is reached on loopback.
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		return net.JoinHostPort("127.0.0.1", port)
	case "::":
		return net.JoinHostPort("::1", port)
	}
	return listen
}

// explainTLS makes a certificate the CLI cannot trust for the address it
// dialled into an error that says what to do.
func explainTLS(err error) error {
	var host x509.HostnameError
	if errors.As(err, &host) {
		return fmt.Errorf("the broker's certificate is for %v, not for %q: pass --server with one of those names (or give the certificate this name)", certNames(host.Certificate), host.Host)
	}
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return fmt.Errorf("the broker's certificate is not signed by the CA the CLI trusts (tls.ca of the config, or the dev CA of --data): %w", err)
	}
	return err
}

func certNames(c *x509.Certificate) []string {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}
