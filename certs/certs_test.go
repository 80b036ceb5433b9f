package certs

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
)

func TestEnsureDevMakesVerifiableServerCert(t *testing.T) {
	dir := t.TempDir()
	d, err := EnsureDev(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Created {
		t.Fatal("first EnsureDev should create the files")
	}
	pool, err := CertPool(d.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(d.CertFile, d.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("server cert does not verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: pool}); err == nil {
		t.Error("server cert verifies for a name it was not issued for")
	}
	for _, f := range []string{d.KeyFile, filepath.Join(dir, CAKeyFile)} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	again, err := EnsureDev(dir)
	if err != nil || again.Created {
		t.Fatalf("second EnsureDev should keep the files: created=%v err=%v", again.Created, err)
	}
}

func TestIssueRefusesNoNamesAndOverwrite(t *testing.T) {
	ca, err := NewAuthority("test")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.Issue(nil, ServerUsage); err == nil {
		t.Error("Issue with no names succeeded")
	}
	dir := t.TempDir()
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); err == nil {
		t.Error("Save over an existing CA succeeded; it must never overwrite")
	}
	loaded, err := LoadAuthority(dir)
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := loaded.Issue([]string{"pi.local"}, ClientUsage)
	if err != nil {
		t.Fatal(err)
	}
	if cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("client cert usage = %v", cert.ExtKeyUsage)
	}
}
