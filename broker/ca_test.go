package broker

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"homemq/certs"
)

// testCAPages makes a dev CA in a temporary folder and its pages.
func testCAPages(t *testing.T) (*CAPages, *x509.Certificate) {
	t.Helper()
	d, err := certs.EnsureDev(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewCAPages(d.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := certs.LoadAuthority(filepath.Dir(d.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	return p, ca.Cert
}

func TestCAPagesServeTheCA(t *testing.T) {
	p, ca := testCAPages(t)
	mux := http.NewServeMux()
	p.Register(mux)
	sum := sha256.Sum256(ca.Raw)
	for _, tc := range []struct {
		path, contentType string
		check             func(t *testing.T, body []byte)
	}{
		{"/ca", "text/html; charset=utf-8", func(t *testing.T, body []byte) {
			for _, want := range []string{Fingerprint(sum[:]), `href="/ca.mobileconfig"`, `href="/ca.crt"`, `href="/ca.pem"`, "Certificate Trust Settings", "Not Signed"} {
				if !bytes.Contains(body, []byte(want)) {
					t.Errorf("page lacks %q", want)
				}
			}
		}},
		{"/ca.pem", "application/x-pem-file", func(t *testing.T, body []byte) {
			blk, _ := pem.Decode(body)
			if blk == nil || !bytes.Equal(blk.Bytes, ca.Raw) {
				t.Error("ca.pem is not the CA certificate")
			}
			if bytes.Contains(body, []byte("PRIVATE")) {
				t.Error("ca.pem holds a key")
			}
		}},
		{"/ca.crt", "application/x-x509-ca-cert", func(t *testing.T, body []byte) {
			if !bytes.Equal(body, ca.Raw) {
				t.Error("ca.crt is not the CA certificate's DER")
			}
		}},
		{"/ca.mobileconfig", "application/x-apple-aspen-config", func(t *testing.T, body []byte) {
			profile := parsePlist(t, body)
			if profile["PayloadType"] != "Configuration" || profile["PayloadVersion"] != "1" {
				t.Errorf("profile: type %q version %q", profile["PayloadType"], profile["PayloadVersion"])
			}
			payloads, _ := profile["PayloadContent"].([]any)
			if len(payloads) != 1 {
				t.Fatalf("profile has %d payloads, want 1", len(payloads))
			}
			cert := payloads[0].(map[string]any)
			if cert["PayloadType"] != "com.apple.security.root" {
				t.Errorf("payload type %q, want com.apple.security.root", cert["PayloadType"])
			}
			if der, _ := cert["PayloadContent"].([]byte); !bytes.Equal(der, ca.Raw) {
				t.Error("payload content is not the CA certificate's DER")
			}
			if cert["PayloadUUID"] == profile["PayloadUUID"] || len(cert["PayloadUUID"].(string)) != 36 {
				t.Errorf("UUIDs: profile %v, payload %v", profile["PayloadUUID"], cert["PayloadUUID"])
			}
		}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
			if rec.Code != 200 || rec.Header().Get("Content-Type") != tc.contentType {
				t.Fatalf("%d %q, want 200 %q", rec.Code, rec.Header().Get("Content-Type"), tc.contentType)
			}
			tc.check(t, rec.Body.Bytes())
		})
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("POST", "/ca.pem", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /ca.pem: %d, want 405", rec.Code)
	}
}

// TestCAPageLinksTheAppOverHTTP: served over plain HTTP, the page links
// the app on the HTTPS port of the host the phone used; its CSP allows its
// style and nothing else.
func TestCAPageLinksTheAppOverHTTP(t *testing.T) {
	p, _ := testCAPages(t)
	p.HTTPSPort = "8443"
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "http://192.168.1.20:8080/ca", nil)
	p.page(rec, req)
	if !strings.Contains(rec.Body.String(), `href="https://192.168.1.20:8443/"`) {
		t.Errorf("page does not link the app over HTTPS:\n%s", rec.Body)
	}
	csp := rec.Header().Get("Content-Security-Policy")
	sum := sha256.Sum256([]byte(caPageStyle))
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, base64.StdEncoding.EncodeToString(sum[:])) {
		t.Errorf("CSP %q", csp)
	}
}

func TestNewCAPagesRefusesALeaf(t *testing.T) {
	d, err := certs.EnsureDev(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewCAPages(d.CertFile); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("NewCAPages(server cert) = %v, want a refusal", err)
	}
}

func TestTLSKeysNameThemselves(t *testing.T) {
	for _, tc := range []struct{ yaml, key string }{
		{"tls:\n  dev_names: [\"a b\"]\n", "tls.dev_names"},
		{"tls:\n  cert: s.pem\n  key: k.pem\n  dev_names: [pi.local]\n", "tls.dev_names"},
		{"tls:\n  cert: s.pem\n  key: k.pem\nlisteners:\n  http_ca: 127.0.0.1:8080\n", "listeners.http_ca"},
		{"tls:\n  cert: s.pem\n  key: k.pem\n  acme:\n    domains: [home.example.org]\n    dns_provider: exec\n", "tls.acme"},
		{"tls:\n  acme:\n    domains: [home.example.org]\n    dns_provider: route53\n", "tls.acme.dns_provider"},
		{"tls:\n  acme:\n    domains: [home.example.org]\n    dns_provider: exec\n    directory: http://x/dir\n", "tls.acme.directory"},
		{"tls:\n  acme:\n    domains: [home.example.org]\n    dns_provider: exec\nlisteners:\n  http_ca: 127.0.0.1:8080\n", "listeners.http_ca"},
	} {
		f := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(f, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(f); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%q: error %v does not name %s", tc.yaml, err, tc.key)
		}
	}
	// [] is no extra names, unset is the host's names
	f := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(f, []byte("tls:\n  dev_names: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(f)
	if err != nil || c.TLS.DevNames == nil || len(c.DevNames()) != 0 {
		t.Errorf("dev_names: [] gave %#v, %v; want an empty list", c.TLS.DevNames, err)
	}
	if DefaultConfig().TLS.DevNames != nil {
		t.Error("the default dev_names must be unset (the host's names at start)")
	}
}

// parsePlist decodes an XML property list of dict, array, string, data,
// integer and boolean values: strings and integers as strings, data as
// bytes.
func parsePlist(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	var value func(start xml.StartElement) any
	value = func(start xml.StartElement) any {
		switch start.Name.Local {
		case "dict":
			m := map[string]any{}
			var key string
			for {
				tok, err := dec.Token()
				if err != nil {
					t.Fatalf("plist: %v", err)
				}
				switch el := tok.(type) {
				case xml.StartElement:
					if el.Name.Local == "key" {
						var k string
						if err := dec.DecodeElement(&k, &el); err != nil {
							t.Fatal(err)
						}
						key = k
					} else {
						m[key] = value(el)
					}
				case xml.EndElement:
					return m
				}
			}
		case "array":
			var a []any
			for {
				tok, err := dec.Token()
				if err != nil {
					t.Fatalf("plist: %v", err)
				}
				switch el := tok.(type) {
				case xml.StartElement:
					a = append(a, value(el))
				case xml.EndElement:
					return a
				}
			}
		case "true", "false":
			_ = dec.Skip()
			return start.Name.Local == "true"
		default:
			var s string
			if err := dec.DecodeElement(&s, &start); err != nil {
				t.Fatal(err)
			}
			if start.Name.Local == "data" {
				d, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
				if err != nil {
					t.Fatalf("plist data: %v", err)
				}
				return d
			}
			return s
		}
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			t.Fatal("plist: no top-level dict")
		}
		if err != nil {
			t.Fatalf("plist: %v", err)
		}
		if el, ok := tok.(xml.StartElement); ok && el.Name.Local == "dict" {
			m, _ := value(el).(map[string]any)
			return m
		}
	}
}
