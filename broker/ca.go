package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	texttemplate "text/template"
	"time"

	"homemq/addrlimit"
	"homemq/certs/acme"
)

// CAPages serves the page that helps a phone trust the home's CA, and the
// CA certificate in the forms phones install:
//
//	GET /ca               the page: what this is, the fingerprint, buttons
//	GET /ca.pem           PEM (application/x-pem-file)
//	GET /ca.crt           DER (application/x-x509-ca-cert), for Android
//	GET /ca.mobileconfig  an unsigned iOS configuration profile
//	                      (application/x-apple-aspen-config) whose one
//	                      payload is the CA (com.apple.security.root)
//
// It never reads or serves a key.
type CAPages struct {
	cert *x509.Certificate
	// Fingerprint is the SHA-256 of the CA certificate, as upper-case hex
	// pairs joined by colons (the form iOS and Android show).
	Fingerprint string
	// HTTPSPort is the port of the HTTPS listener, for the page's link to
	// the app when it is served over plain HTTP ("" leaves the link out).
	HTTPSPort string
}

// NewCAPages reads the first certificate of the PEM file caFile.
func NewCAPages(caFile string) (*CAPages, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("broker: CA page: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("broker: CA page: %s holds no PEM certificate", caFile)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("broker: CA page: %s: %w", caFile, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("broker: CA page: %s is not a CA certificate; phones need the CA that signed the server certificate", caFile)
	}
	sum := sha256.Sum256(cert.Raw)
	return &CAPages{cert: cert, Fingerprint: Fingerprint(sum[:])}, nil
}

// Fingerprint formats a digest as upper-case hex pairs joined by colons.
func Fingerprint(sum []byte) string {
	pairs := make([]string, len(sum))
	for i, c := range sum {
		pairs[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(pairs, ":")
}

// Register mounts the four routes on mux.
func (p *CAPages) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /ca", p.page)
	mux.HandleFunc("GET /ca.pem", p.file("application/x-pem-file", "homemq-ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.cert.Raw})))
	mux.HandleFunc("GET /ca.crt", p.file("application/x-x509-ca-cert", "homemq-ca.crt", p.cert.Raw))
	mux.HandleFunc("GET /ca.mobileconfig", p.file("application/x-apple-aspen-config", "homemq-ca.mobileconfig", p.MobileConfig()))
}

func (p *CAPages) file(contentType, name string, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(body)
	}
}

// MobileConfig is an iOS configuration profile that installs the CA as a
// root certificate. It is unsigned: iOS shows it as "Not Signed" and asks
// for the passcode, and the user then turns on full trust for it under
// Settings → General → About → Certificate Trust Settings. Its identifiers
// and UUIDs derive from the CA's fingerprint, so downloading it again
// replaces the profile rather than adding a second one.
func (p *CAPages) MobileConfig() []byte {
	sum := sha256.Sum256(p.cert.Raw)
	id := "org.homemq.ca." + hex.EncodeToString(sum[:8])
	var b bytes.Buffer
	_ = mobileConfigTemplate.Execute(&b, map[string]string{
		"Name":        caName(p.cert),
		"Cert":        base64.StdEncoding.EncodeToString(p.cert.Raw),
		"ID":          id,
		"ProfileUUID": uuidFrom(sha256.Sum256(append([]byte("profile:"), p.cert.Raw...))),
		"CertUUID":    uuidFrom(sha256.Sum256(append([]byte("cert:"), p.cert.Raw...))),
	})
	return b.Bytes()
}

// xmlText escapes s for XML character data.
func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// caName is the CA's common name, or a generic one.
func caName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return "homemq home CA"
}

// uuidFrom formats the first 16 bytes of sum as a version 8 (custom) UUID.
func uuidFrom(sum [32]byte) string {
	u := sum[:16]
	u[6] = u[6]&0x0f | 0x80
	u[8] = u[8]&0x3f | 0x80
	h := strings.ToUpper(hex.EncodeToString(u))
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// mobileConfigTemplate is a configuration profile (an XML property list);
// every value that is not base64 or hex passes through xml.
var mobileConfigTemplate = texttemplate.Must(texttemplate.New("mobileconfig").Funcs(texttemplate.FuncMap{"xml": xmlText}).Parse(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>PayloadContent</key>
	<array>
		<dict>
			<key>PayloadCertificateFileName</key>
			<string>homemq-ca.cer</string>
			<key>PayloadContent</key>
			<data>{{.Cert}}</data>
			<key>PayloadDescription</key>
			<string>Lets this device trust your homemq home over HTTPS and MQTT/TLS.</string>
			<key>PayloadDisplayName</key>
			<string>{{xml .Name}}</string>
			<key>PayloadIdentifier</key>
			<string>{{.ID}}.cert</string>
			<key>PayloadType</key>
			<string>com.apple.security.root</string>
			<key>PayloadUUID</key>
			<string>{{.CertUUID}}</string>
			<key>PayloadVersion</key>
			<integer>1</integer>
		</dict>
	</array>
	<key>PayloadDescription</key>
	<string>Installs the certificate authority of your homemq home. Compare its SHA-256 fingerprint with the one homemq serve prints.</string>
	<key>PayloadDisplayName</key>
	<string>homemq: {{xml .Name}}</string>
	<key>PayloadIdentifier</key>
	<string>{{.ID}}</string>
	<key>PayloadRemovalDisallowed</key>
	<false/>
	<key>PayloadType</key>
	<string>Configuration</string>
	<key>PayloadUUID</key>
	<string>{{.ProfileUUID}}</string>
	<key>PayloadVersion</key>
	<integer>1</integer>
</dict>
</plist>
`))

// caPageStyle is the page's only style; its hash is in the page's CSP.
const caPageStyle = `body{font:16px/1.45 system-ui,sans-serif;max-width:36rem;margin:1rem auto;padding:0 1rem;color:#1d2330}` +
	`code{word-break:break-all;font-size:.95rem}a.button{display:block;margin:.6rem 0;padding:.8rem 1rem;border-radius:.5rem;` +
	`background:#2456c7;color:#fff;text-decoration:none;text-align:center;font-weight:600}ol{padding-left:1.2rem}`

var caPageCSP = func() string {
	sum := sha256.Sum256([]byte(caPageStyle))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

var caPageTemplate = template.Must(template.New("ca").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Trust your home – homemq</title>
<style>{{.Style}}</style>
</head>
<body>
<h1>Trust your home</h1>
<p>Your homemq home signs its own certificates with its own certificate
authority (CA), <strong>{{.Name}}</strong>. Until this phone trusts that CA,
it refuses to open the app. Installing the CA lets it check that it talks to
your home and not to someone in between.</p>
<p>Before you install it, compare this SHA-256 fingerprint with the one
<code>homemq serve</code> (or <code>make run</code>) printed on your home's
computer. If they differ, stop: someone else's certificate is being offered.</p>
<p><code id="fingerprint">{{.Fingerprint}}</code></p>
<h2>iPhone and iPad</h2>
<a class="button" id="ios" href="/ca.mobileconfig">Install on iPhone / iPad</a>
<ol>
<li>Tap the button above and allow the download (Safari).</li>
<li>Open Settings → Profile Downloaded → Install. The profile is shown as
“Not Signed”: that is expected, compare the fingerprint instead.</li>
<li>Then Settings → General → About → Certificate Trust Settings, and turn
on full trust for <strong>{{.Name}}</strong>.</li>
</ol>
<h2>Android</h2>
<a class="button" id="android" href="/ca.crt">Download for Android</a>
<ol>
<li>Tap the button above to save <code>homemq-ca.crt</code>.</li>
<li>Open Settings → Security (&amp; privacy) → More security settings →
Encryption &amp; credentials → Install a certificate → CA certificate, and
pick <code>homemq-ca.crt</code>.</li>
<li>Chrome then trusts your home; some other apps trust only built-in CAs.</li>
</ol>
<h2>Other devices</h2>
<a class="button" id="pem" href="/ca.pem">Download the CA (PEM)</a>
{{if .AppURL}}<p>Once this phone trusts the CA, open the app at <a id="app" href="{{.AppURL}}">{{.AppURL}}</a>.</p>
{{else}}<p><a id="app" href="/">Back to the app</a></p>
{{end}}</body>
</html>
`))

func (p *CAPages) page(w http.ResponseWriter, r *http.Request) {
	appURL := ""
	if r.TLS == nil && p.HTTPSPort != "" {
		host := r.Host
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			host = h
		}
		appURL = "https://" + net.JoinHostPort(host, p.HTTPSPort) + "/"
	}
	var b bytes.Buffer
	err := caPageTemplate.Execute(&b, map[string]any{
		"Style":       template.CSS(caPageStyle),
		"Name":        caName(p.cert),
		"Fingerprint": p.Fingerprint,
		"AppURL":      appURL,
	})
	if err != nil {
		http.Error(w, "the CA page could not be made: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", caPageCSP)
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(b.Bytes())
}

// httpCAServer is the plain-HTTP listener listeners.http_ca: the CA pages
// and nothing else, under the HTTPS server's header and read limits.
type httpCAServer struct {
	srv *http.Server
	ln  net.Listener
}

// startHTTPCA binds listeners.http_ca, if set, and serves the CA pages on
// it. The broker's CAPages must be set.
func (b *Broker) startHTTPCA() error {
	a := b.cfg.Listeners.HTTPCA
	if a == "" {
		return nil
	}
	if b.CAPages == nil {
		return errors.New("broker: listeners.http_ca: no CA is known to offer; set tls.ca")
	}
	ln, err := net.Listen("tcp", a)
	if err != nil {
		return fmt.Errorf("broker: listeners.http_ca: %w", err)
	}
	mux := http.NewServeMux()
	b.CAPages.Register(mux)
	l := b.cfg.Limits
	b.httpCA = &httpCAServer{ln: ln, srv: &http.Server{
		Handler:           securityHeaders(limitBodies(l.HTTPMaxBody, mux)),
		ReadHeaderTimeout: l.HTTPReadHeaderTimeout,
		ReadTimeout:       l.HTTPReadTimeout,
		WriteTimeout:      l.HTTPReadTimeout + 10*time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(b.log.Handler(), slog.LevelDebug),
	}}
	addrs := addrlimit.New(addrlimit.Config{MaxConns: l.HTTPSConnsPerAddr})
	go func() {
		if err := b.httpCA.srv.Serve(addrs.Listener(ln, nil)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.log.Error("http_ca server stopped", "error", err)
		}
	}()
	return nil
}

// loadACME obtains the server certificate from tls.acme (or loads it
// from data/acme) before the broker listens; the TLS configuration then
// asks the manager at each handshake, so renewals need no restart.
func (b *Broker) loadACME() error {
	c := b.cfg.TLS.ACME
	m, err := acme.New(c, filepath.Join(b.cfg.Data, "acme"), os.Getenv, b.log)
	if err != nil {
		return fmt.Errorf("broker: tls.acme: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.PropagationTimeout+3*time.Minute)
	defer cancel()
	if err := m.Manage(ctx); err != nil {
		m.Close()
		return fmt.Errorf("broker: tls.acme: %w", err)
	}
	b.acme = m
	b.tlsConf = ServerTLS(tls.Certificate{})
	b.tlsConf.Certificates = nil
	b.tlsConf.GetCertificate = m.GetCertificate
	return nil
}

// closeHTTPCA stops listeners.http_ca, if it runs.
func (b *Broker) closeHTTPCA() {
	if b.httpCA != nil {
		_ = b.httpCA.srv.Close()
	}
}
