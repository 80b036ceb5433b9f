package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
)

// leafOf loads the dev server certificate of d.
func leafOf(t *testing.T, d Dev) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(d.CertFile, d.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func TestEnsureDevReissuesWhenNamesChange(t *testing.T) {
	dir := t.TempDir()
	first, err := EnsureDev(dir, "pi.local", "192.168.1.20")
	if err != nil || !first.Created {
		t.Fatalf("first EnsureDev: created=%v err=%v", first.Created, err)
	}
	ca, err := os.ReadFile(first.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := CertPool(first.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		extra    []string
		reissued bool
		verifies []string
		refuses  []string
	}{
		{[]string{"PI.local.", "192.168.1.20"}, false, []string{"pi.local", "192.168.1.20", "localhost"}, []string{"192.168.1.21"}},
		{[]string{"pi.local", "192.168.1.21"}, true, []string{"pi.local", "192.168.1.21", "::1"}, []string{"192.168.1.20"}},
		{nil, true, []string{"localhost", "127.0.0.1"}, []string{"pi.local"}},
		{nil, false, []string{"localhost"}, nil},
	} {
		d, err := EnsureDev(dir, step.extra...)
		if err != nil {
			t.Fatal(err)
		}
		if d.Created || d.Reissued != step.reissued {
			t.Fatalf("EnsureDev(%v): created=%v reissued=%v, want reissued=%v", step.extra, d.Created, d.Reissued, step.reissued)
		}
		leaf := leafOf(t, d)
		for _, n := range step.verifies {
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: n, Roots: pool}); err != nil {
				t.Errorf("EnsureDev(%v): cert does not verify for %s with the first CA: %v", step.extra, n, err)
			}
		}
		for _, n := range step.refuses {
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: n, Roots: pool}); err == nil {
				t.Errorf("EnsureDev(%v): cert verifies for %s", step.extra, n)
			}
		}
		if st, err := os.Stat(d.KeyFile); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("server key: %v %v, want mode 0600", st.Mode().Perm(), err)
		}
	}
	if now, _ := os.ReadFile(first.CAFile); !bytes.Equal(now, ca) {
		t.Fatal("re-issuing the server certificate changed the CA")
	}
}

func TestEnsureDevReplacesBrokenLeaf(t *testing.T) {
	dir := t.TempDir()
	if _, err := EnsureDev(dir); err != nil {
		t.Fatal(err)
	}
	// a server key that does not match the certificate (a crash between
	// the two writes)
	other, err := NewAuthority("other")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, ServerKeyFile)); err != nil {
		t.Fatal(err)
	}
	if err := writeKey(filepath.Join(dir, ServerKeyFile), other.Key); err != nil {
		t.Fatal(err)
	}
	d, err := EnsureDev(dir)
	if err != nil || !d.Reissued {
		t.Fatalf("EnsureDev over a mismatched key: reissued=%v err=%v", d.Reissued, err)
	}
	leafOf(t, d) // the pair loads
}

func TestEnsureDevRefusesBadName(t *testing.T) {
	if _, err := EnsureDev(t.TempDir(), "not a name"); err == nil {
		t.Fatal("EnsureDev accepted a name with spaces")
	}
}

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"localhost", true},
		{"pi.local", true},
		{"home-1.example.org", true},
		{"*.example.org", true},
		{"192.168.1.20", true},
		{"fd00::20", true},
		{"", false},
		{"a b", false},
		{"-pi.local", false},
		{"pi..local", false},
		{"pi_1.local", false},
		{"https://pi.local", false},
	} {
		if err := CheckName(tc.name); (err == nil) != tc.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestLocalNamesAreIssuable(t *testing.T) {
	names := LocalNames()
	for _, n := range names {
		if err := CheckName(n); err != nil {
			t.Errorf("LocalNames gave %q: %v", n, err)
		}
		if n == "127.0.0.1" || n == "::1" {
			t.Errorf("LocalNames gave the loopback address %s", n)
		}
	}
	if _, err := EnsureDev(t.TempDir(), names...); err != nil {
		t.Fatalf("EnsureDev(LocalNames() = %v): %v", names, err)
	}
}
