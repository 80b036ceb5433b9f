package main

import (
	"crypto/tls"
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
