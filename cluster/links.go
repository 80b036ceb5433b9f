package cluster

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"homemq/certs"
)

// The embedded NATS server's links are protected with what every node
// derives from the cluster secret, so nothing but the secret is
// distributed (docs/cluster.md, "Securing the cluster links"):
//
//   - a cluster CA: an Ed25519 key seeded from Key("route-ca") and a
//     self-signed certificate with fixed fields, identical on every node;
//   - a short leaf certificate each node issues itself with that CA at
//     start and renews while it runs, shown on routes (both ways: a route
//     requires and verifies the peer's certificate) and on the client port;
//   - the route user and password (Key("route")) a route's CONNECT carries;
//   - the client port's user and password (Key("nats-client")), which
//     homemq's own in-process connection and operators' tools use.
const (
	// RouteServerName is the name routes verify in a peer's certificate,
	// whatever address they dial.
	RouteServerName = "homemq-cluster"
	// routeUser is the user name a route authenticates with.
	routeUser = "route"
	// ClientUser is the user name of the client port (cluster.embedded.listen).
	ClientUser = "homemq"
	// leafLifetime is how long a node's own certificate is valid; it is
	// renewed when half of it has passed.
	leafLifetime = 24 * time.Hour
)

// caEpoch fixes the CA certificate's validity, so every node makes the same
// bytes from the same secret.
var caEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// ClientPassword is the client port's password for ClientUser: every
// holder of the secret can compute it (homemq cluster nats-creds).
func (s Secret) ClientPassword() string {
	return base64.RawURLEncoding.EncodeToString(s.Key("nats-client", 32))
}

// routePassword is the password a route authenticates with.
func (s Secret) routePassword() string {
	return base64.RawURLEncoding.EncodeToString(s.Key("route", 32))
}

// CA is the cluster CA every node derives from the secret: the same
// certificate (byte for byte) and key on every node.
func (s Secret) CA() (*x509.Certificate, ed25519.PrivateKey, error) {
	key := ed25519.NewKeyFromSeed(s.Key("route-ca", ed25519.SeedSize))
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "homemq cluster CA", Organization: []string{"homemq"}},
		NotBefore:             caEpoch,
		NotAfter:              caEpoch.AddDate(100, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	// Ed25519 signatures are deterministic, so are the bytes.
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: make the cluster CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: make the cluster CA: %w", err)
	}
	return cert, key, nil
}

// CAPEM is the cluster CA certificate in PEM, for an operator's NATS tool
// (nats --tlsca).
func (s Secret) CAPEM() ([]byte, error) {
	ca, _, err := s.CA()
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), nil
}

// links is a node's TLS material and credentials for its embedded server.
type links struct {
	secret Secret
	pool   *x509.CertPool // the cluster CA alone
	leaf   *leafIssuer
}

// newLinks derives the cluster CA and prepares this node's certificate
// for the given names (besides RouteServerName).
func newLinks(s Secret, node string, names []string) (*links, error) {
	ca, key, err := s.CA()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	l := &links{secret: s, pool: pool, leaf: &leafIssuer{ca: ca, key: key, node: node, names: names}}
	if _, err := l.leaf.current(); err != nil {
		return nil, err
	}
	return l, nil
}

// routeTLS is the routes' TLS: TLS 1.3, this node's certificate on both
// sides, and a peer certificate from the cluster CA required both ways.
func (l *links) routeTLS() *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		ServerName:           RouteServerName,
		RootCAs:              l.pool,
		ClientCAs:            l.pool,
		ClientAuth:           tls.RequireAndVerifyClientCert,
		GetCertificate:       func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return l.leaf.current() },
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return l.leaf.current() },
	}
}

// clientTLS is the client port's TLS: the node's certificate, no client
// certificate asked for (clients authenticate with the password).
func (l *links) clientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return l.leaf.current() },
	}
}

// secure makes so's routes and client port require TLS and the
// credentials derived from the secret.
func (l *links) secure(so *server.Options) {
	so.Username, so.Password = ClientUser, l.secret.ClientPassword()
	so.TLSConfig = l.clientTLS()
	so.TLSTimeout = 5
	if so.Cluster.Name == "" {
		return // no routes
	}
	so.Cluster.Username, so.Cluster.Password = routeUser, l.secret.routePassword()
	so.Cluster.TLSConfig = l.routeTLS()
	so.Cluster.TLSTimeout = 5
	for _, r := range so.Routes {
		r.User = url.UserPassword(routeUser, l.secret.routePassword())
	}
}

// leafIssuer keeps this node's certificate current.
type leafIssuer struct {
	ca    *x509.Certificate
	key   ed25519.PrivateKey
	node  string
	names []string

	mu    sync.Mutex
	cert  *tls.Certificate
	renew time.Time // when to issue the next one
}

// current returns the node's certificate, issuing a new one when half of
// the last one's life has passed.
func (li *leafIssuer) current() (*tls.Certificate, error) {
	li.mu.Lock()
	defer li.mu.Unlock()
	now := time.Now()
	if li.cert != nil && now.Before(li.renew) {
		return li.cert, nil
	}
	c, err := li.issue(now)
	if err != nil {
		if li.cert != nil && now.Before(li.cert.Leaf.NotAfter) {
			return li.cert, nil // try again at the next handshake
		}
		return nil, err
	}
	li.cert, li.renew = c, now.Add(leafLifetime/2)
	return c, nil
}

// issue makes a fresh key and certificate for RouteServerName and the
// node's names.
func (li *leafIssuer) issue(now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("cluster: node certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("cluster: node certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: li.node, Organization: []string{"homemq cluster"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{RouteServerName},
	}
	for _, n := range li.names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if n != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, li.ca, &key.PublicKey, li.key)
	if err != nil {
		return nil, fmt.Errorf("cluster: sign the node certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("cluster: sign the node certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// clientNames are the names the client port's certificate carries, so an
// operator's tool can verify it at the address it dials: localhost and the
// loopback addresses, the listen host, and when it listens on every
// interface, the host's names and addresses.
func clientNames(listen string) []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host == "" {
		return names
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return append(names, certs.LocalNames()...)
	}
	return append(names, host)
}
