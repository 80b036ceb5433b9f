// Package certs makes the X.509 material homemq needs: a certificate
// authority, server (and optionally client) leaf certificates signed by it,
// and the self-provisioning used by dev mode. Keys are ECDSA P-256, made with
// the standard library only, and written with 0600 permissions.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"homemq/atomicfile"
)

// File names inside a certificate folder.
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	ServerFile    = "server.pem"
	ServerKeyFile = "server-key.pem"
)

// Lifetimes of what this package makes.
const (
	CALifetime   = 10 * 365 * 24 * time.Hour
	LeafLifetime = 397 * 24 * time.Hour
)

// Authority is a CA that can sign leaf certificates.
type Authority struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewAuthority makes a new self-signed CA named name.
func NewAuthority(name string) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"homemq"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: sign CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Authority{Cert: cert, Key: key}, nil
}

// LoadAuthority reads a CA certificate and key from dir (ca.pem, ca-key.pem).
func LoadAuthority(dir string) (*Authority, error) {
	cert, err := readCert(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, err
	}
	key, err := readKey(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certs: %s is not a CA certificate", filepath.Join(dir, CAFile))
	}
	return &Authority{Cert: cert, Key: key}, nil
}

// Save writes the CA to dir as ca.pem and ca-key.pem, refusing to overwrite.
func (a *Authority) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := writePEM(filepath.Join(dir, CAFile), "CERTIFICATE", a.Cert.Raw, 0o644); err != nil {
		return err
	}
	return writeKey(filepath.Join(dir, CAKeyFile), a.Key)
}

// Usage says what a leaf certificate is for.
type Usage int

// Leaf usages.
const (
	ServerUsage Usage = iota
	ClientUsage
)

// Issue signs a leaf certificate for the given names (DNS names or IP
// addresses; the first is also the common name) and returns it with its key.
func (a *Authority) Issue(names []string, usage Usage) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if len(names) == 0 {
		return nil, nil, errors.New("certs: a certificate needs at least one name (--name localhost)")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0], Organization: []string{"homemq"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(LeafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if usage == ClientUsage {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, &key.PublicKey, a.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: sign leaf: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// WriteLeaf writes a certificate and key as certFile and keyFile (0600 key).
func WriteLeaf(certFile, keyFile string, cert *x509.Certificate, key *ecdsa.PrivateKey) error {
	if err := writePEM(certFile, "CERTIFICATE", cert.Raw, 0o644); err != nil {
		return err
	}
	return writeKey(keyFile, key)
}

// CertPool reads a PEM file of CA certificates into a pool.
func CertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("certs: read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("certs: %s holds no PEM certificate", file)
	}
	return pool, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("certs: no randomness: " + err.Error())
	}
	return n
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	if exists(path) {
		return fmt.Errorf("certs: %s exists; move it away first, it is never overwritten", path)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := atomicfile.WriteFile(path, b, mode); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("certs: encode key: %w", err)
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("certs: %s holds no PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

func readKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("certs: %s holds no PEM key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("certs: %s is not an ECDSA key", path)
	}
	return ek, nil
}
