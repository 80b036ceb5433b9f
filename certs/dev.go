package certs

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"homemq/atomicfile"
)

// devBaseNames are the names every dev server certificate carries.
var devBaseNames = []string{"localhost", "127.0.0.1", "::1"}

// devRenewBefore is how long before its expiry dev mode replaces a server
// certificate.
const devRenewBefore = 30 * 24 * time.Hour

// Dev is the material dev mode provisions in its certificate folder.
type Dev struct {
	CAFile, CertFile, KeyFile string
	// Names are the DNS names and IP addresses the server certificate
	// carries, in canonical form.
	Names   []string
	Created bool // true when this call made the CA or the server certificate
	// Reissued is true when this call replaced an existing server
	// certificate (same CA) because its names changed or it neared expiry.
	Reissued bool
}

// EnsureDev makes, on first use, a CA and a server certificate in dir for
// localhost, 127.0.0.1, ::1 and the extra names (DNS names or IP
// addresses, such as the host's LAN names from LocalNames), and returns
// their paths. The CA is kept across restarts, so clients keep trusting
// it; the server certificate is re-issued by the same CA when the set of
// names differs from the one it carries, when it does not match its key or
// the CA, or when it expires within 30 days.
func EnsureDev(dir string, extra ...string) (Dev, error) {
	d := Dev{
		CAFile:   filepath.Join(dir, CAFile),
		CertFile: filepath.Join(dir, ServerFile),
		KeyFile:  filepath.Join(dir, ServerKeyFile),
	}
	names, err := canonicalNames(append(slices.Clone(devBaseNames), extra...))
	if err != nil {
		return d, err
	}
	d.Names = names
	var ca *Authority
	if exists(d.CAFile) {
		ca, err = LoadAuthority(dir)
	} else {
		ca, err = NewAuthority("homemq dev CA")
		if err == nil {
			err = ca.Save(dir)
		}
	}
	if err != nil {
		return d, err
	}
	haveLeaf := exists(d.CertFile) || exists(d.KeyFile)
	if haveLeaf && leafCurrent(d, ca, names) {
		return d, nil
	}
	cert, key, err := ca.Issue(names, ServerUsage)
	if err != nil {
		return d, err
	}
	if err := replaceLeaf(d.CertFile, d.KeyFile, cert, key); err != nil {
		return d, err
	}
	d.Created, d.Reissued = !haveLeaf, haveLeaf
	return d, nil
}

// leafCurrent reports whether the server certificate in d is signed by ca,
// matches its key, carries exactly names and is not near its expiry.
func leafCurrent(d Dev, ca *Authority, names []string) bool {
	cert, err := readCert(d.CertFile)
	if err != nil {
		return false
	}
	key, err := readKey(d.KeyFile)
	if err != nil || !key.PublicKey.Equal(cert.PublicKey) {
		return false
	}
	if cert.CheckSignatureFrom(ca.Cert) != nil || time.Until(cert.NotAfter) < devRenewBefore {
		return false
	}
	have := slices.Clone(cert.DNSNames)
	for _, ip := range cert.IPAddresses {
		have = append(have, ip.String())
	}
	have, err = canonicalNames(have)
	return err == nil && slices.Equal(have, names)
}

// replaceLeaf writes a certificate and its key over the files there are,
// the key first: a crash between the two leaves a pair that does not
// match, which the next EnsureDev replaces.
func replaceLeaf(certFile, keyFile string, cert *x509.Certificate, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("certs: encode key: %w", err)
	}
	if err := atomicfile.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := atomicfile.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

// canonicalNames returns names checked, with IP addresses in their
// canonical form and DNS names in lower case, sorted, without duplicates.
func canonicalNames(names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if err := CheckName(n); err != nil {
			return nil, err
		}
		if ip := net.ParseIP(n); ip != nil {
			out = append(out, ip.String())
		} else {
			out = append(out, strings.ToLower(strings.TrimSuffix(n, ".")))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// CheckName reports whether name can be a subject alternative name of a
// server certificate: an IP address or a DNS name (letters, digits and
// hyphens in dot-separated labels, optionally starting with "*.").
func CheckName(name string) error {
	if net.ParseIP(name) != nil {
		return nil
	}
	bad := fmt.Errorf("%q is neither an IP address nor a DNS name (e.g. homemq.local or 192.168.1.20)", name)
	host := strings.TrimSuffix(strings.TrimPrefix(name, "*."), ".")
	if host == "" || len(host) > 253 {
		return bad
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return bad
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return bad
			}
		}
	}
	return nil
}

// LocalNames returns the names a phone on the LAN may use to reach this
// host: its host name, the same name under .local (mDNS), and its
// non-loopback unicast addresses, as they are now. Link-local addresses
// are left out: a URL cannot name their zone portably.
func LocalNames() []string {
	var names []string
	if h, err := os.Hostname(); err == nil && CheckName(h) == nil && net.ParseIP(h) == nil {
		names = append(names, h)
		label, _, _ := strings.Cut(h, ".")
		if label != "localhost" {
			names = append(names, label+".local")
		}
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || !ipn.IP.IsGlobalUnicast() {
			continue
		}
		names = append(names, ipn.IP.String())
	}
	return names
}
