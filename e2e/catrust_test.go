package e2e

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"homemq/broker"
)

// caFingerprint is the SHA-256 fingerprint of the broker's CA as the CA
// page shows it, computed here from the CA file.
func caFingerprint(t *testing.T, b *testBroker) (string, []byte) {
	t.Helper()
	raw, err := os.ReadFile(b.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(raw)
	if blk == nil {
		t.Fatalf("%s holds no PEM", b.CAFile)
	}
	sum := sha256.Sum256(blk.Bytes)
	return broker.Fingerprint(sum[:]), blk.Bytes
}

// TestCAInstallPageOverHTTP: a phone that does not trust the home's CA yet
// can fetch it, without a certificate warning, from listeners.http_ca:
// the page with the CA's fingerprint and the CA as PEM, DER and an iOS
// profile. That listener serves nothing else: no app, no API, no MQTT.
// The same routes are on the HTTPS server.
func TestCAInstallPageOverHTTP(t *testing.T) {
	b := startBroker(t, func(c *broker.Config) { c.Listeners.HTTPCA = "127.0.0.1:0" })
	fp, der := caFingerprint(t, b)
	plain := &http.Client{Timeout: 10 * time.Second}
	secure := &http.Client{Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}, Timeout: 10 * time.Second}
	get := func(c *http.Client, url string) (int, string, []byte) {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), body
	}
	for base, c := range map[string]*http.Client{"http://" + b.Addrs()["http_ca"]: plain, "https://" + b.Addrs()["https"]: secure} {
		for _, tc := range []struct{ path, contentType, contains string }{
			{"/ca", "text/html; charset=utf-8", fp},
			{"/ca.pem", "application/x-pem-file", "-----BEGIN CERTIFICATE-----"},
			{"/ca.crt", "application/x-x509-ca-cert", string(der)},
			{"/ca.mobileconfig", "application/x-apple-aspen-config", "com.apple.security.root"},
		} {
			status, ct, body := get(c, base+tc.path)
			if status != 200 || ct != tc.contentType || !strings.Contains(string(body), tc.contains) {
				t.Errorf("GET %s%s: %d %q, want 200 %q with %.40q", base, tc.path, status, ct, tc.contentType, tc.contains)
			}
			if strings.Contains(string(body), "PRIVATE KEY") {
				t.Errorf("GET %s%s serves a private key", base, tc.path)
			}
		}
	}
	_, _, crt := get(plain, "http://"+b.Addrs()["http_ca"]+"/ca.crt")
	if cert, err := x509.ParseCertificate(crt); err != nil || !cert.IsCA {
		t.Errorf("ca.crt does not parse as a CA certificate: %v", err)
	}
	_, _, page := get(plain, "http://"+b.Addrs()["http_ca"]+"/ca")
	_, port, _ := strings.Cut(b.Addrs()["https"], ":")
	if !strings.Contains(string(page), "https://127.0.0.1:"+port+"/") {
		t.Errorf("the plain-HTTP page does not link the app over HTTPS on port %s", port)
	}
	for _, path := range []string{"/", "/app.mjs", "/healthz", "/.well-known/jwks.json", "/api/token", "/mqtt", "/signalr/", "/ca-key.pem", "/ca/../ca-key.pem"} {
		if status, _, _ := get(plain, "http://"+b.Addrs()["http_ca"]+path); status != http.StatusNotFound {
			t.Errorf("listeners.http_ca answers GET %s with %d, want 404: it serves only the CA", path, status)
		}
	}
}

// TestCAPageFromSignIn: the sign-in screen links the CA page ("This phone
// doesn't trust your home yet?"); following it in Chromium shows the CA's
// fingerprint and the iOS, Android and PEM buttons (their downloads' types
// are TestCAInstallPageOverHTTP's).
func TestCAPageFromSignIn(t *testing.T) {
	chromium := needTool(t, "chromium")
	b := startBroker(t)
	fp, _ := caFingerprint(t, b)
	artifacts := filepath.Join(repoRoot(), "e2e", "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	p := startNode(t, "webapp-ca.test.mjs", map[string]string{
		"CHROMIUM":  chromium,
		"BASE_URL":  "https://" + b.Addrs()["https"] + "/",
		"SPKI":      spkiHash(t, b),
		"ARTIFACTS": artifacts,
	})
	var res struct {
		Status                         int
		URL, Title, CSP                string
		Fingerprint, IOS, Android, PEM string
		ConsoleErrors                  []string
	}
	p.wait(60*time.Second, &res)
	if res.Status != 200 || !strings.HasSuffix(res.URL, "/ca") {
		t.Fatalf("following the sign-in link: %d at %s", res.Status, res.URL)
	}
	if res.Fingerprint != fp {
		t.Errorf("page fingerprint %q, want the CA's %q", res.Fingerprint, fp)
	}
	if res.IOS != "/ca.mobileconfig" || res.Android != "/ca.crt" {
		t.Errorf("buttons link %q and %q", res.IOS, res.Android)
	}
	if res.PEM != "/ca.pem" {
		t.Errorf("PEM button links %q", res.PEM)
	}
	if !strings.Contains(res.CSP, "default-src 'none'") {
		t.Errorf("CA page CSP %q", res.CSP)
	}
	if len(res.ConsoleErrors) > 0 {
		t.Errorf("the pages logged errors (CSP violations?): %q", res.ConsoleErrors)
	}
}
