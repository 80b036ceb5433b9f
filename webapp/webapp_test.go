package webapp

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, method, target string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	var rd io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		rd = zr
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHandlerServes(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		status       int
		ctype        string
		contains     string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `<script type="module" src="/app.mjs">`},
		{"HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/app.mjs", 200, "text/javascript; charset=utf-8", "from './devices.mjs'"},
		{"GET", "/devices.mjs", 200, "text/javascript; charset=utf-8", "import { seal } from './envelope.mjs'"},
		{"GET", "/manifest.webmanifest", 200, "application/manifest+json", "standalone"},
		{"GET", "/icon-192.png", 200, "image/png", "PNG"},
		{"GET", "/sw.js", 200, "text/javascript; charset=utf-8", "homemq-shell"},
		{"GET", "/envelope.mjs", 200, "text/javascript; charset=utf-8", "export"},
		{"GET", "/vendor/mqtt.esm.js", 200, "text/javascript; charset=utf-8", "export default"},
		{"GET", "/vendor/mqtt.LICENSE.txt", 200, "text/plain; charset=utf-8", "MIT License"},
		{"GET", "/app.css", 200, "text/css; charset=utf-8", ".device"},
		{"GET", "/icon.svg", 200, "image/svg+xml", "<svg"},
		{"GET", "/vendor/README.md", 404, "", "not found"},
		{"GET", "/vendor/", 404, "", ""},
		{"GET", "/static/index.html", 404, "", ""},
		{"GET", "/../webapp.go", 404, "", ""},
		{"GET", "/nope", 404, "", ""},
		{"POST", "/", 405, "", "read-only"},
		{"DELETE", "/app.mjs", 405, "", ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := get(t, tc.method, tc.path)
			if r.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", r.StatusCode, tc.status)
			}
			if tc.ctype != "" && r.Header.Get("Content-Type") != tc.ctype {
				t.Errorf("Content-Type %q, want %q", r.Header.Get("Content-Type"), tc.ctype)
			}
			if got := body(t, r); !strings.Contains(got, tc.contains) {
				t.Errorf("body does not contain %q", tc.contains)
			}
			// security headers on every answer, errors included
			if r.Header.Get("Content-Security-Policy") != CSP {
				t.Errorf("CSP %q", r.Header.Get("Content-Security-Policy"))
			}
			if r.Header.Get("X-Content-Type-Options") != "nosniff" || r.Header.Get("Cross-Origin-Opener-Policy") != "same-origin" {
				t.Errorf("missing isolation headers: %v", r.Header)
			}
			if tc.status == 405 && r.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow %q", r.Header.Get("Allow"))
			}
		})
	}
}

// The CSP forbids inline code, eval, foreign origins, frames and HTML sinks.
func TestCSPIsStrict(t *testing.T) {
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
		"frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'", "require-trusted-types-for 'script'"} {
		if !strings.Contains(CSP, want) {
			t.Errorf("CSP lacks %q", want)
		}
	}
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "*", "http:", "https:", "data: 'self'; script"} {
		if strings.Contains(CSP, bad) {
			t.Errorf("CSP allows %q", bad)
		}
	}
}

// Revalidation by ETag answers 304; gzip is sent only when accepted, and it
// has its own ETag.
func TestCachingAndCompression(t *testing.T) {
	r := get(t, "GET", "/vendor/mqtt.esm.js")
	plain := body(t, r)
	etag := r.Header.Get("ETag")
	if etag == "" || r.Header.Get("Cache-Control") != "no-cache" || r.Header.Get("Content-Encoding") != "" {
		t.Fatalf("headers %v", r.Header)
	}
	if r := get(t, "GET", "/vendor/mqtt.esm.js", "If-None-Match", etag); r.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: status %d, want 304", r.StatusCode)
	}
	z := get(t, "GET", "/vendor/mqtt.esm.js", "Accept-Encoding", "br, gzip;q=0.8")
	if z.Header.Get("Content-Encoding") != "gzip" || z.Header.Get("ETag") == etag || !strings.Contains(z.Header.Get("Vary"), "Accept-Encoding") {
		t.Fatalf("gzip headers %v", z.Header)
	}
	raw, _ := io.ReadAll(z.Body)
	if len(raw) >= len(plain)/2 {
		t.Errorf("gzip body is %d bytes for %d plain", len(raw), len(plain))
	}
	z.Body = io.NopCloser(bytes.NewReader(raw))
	if body(t, z) != plain {
		t.Fatal("gzip body does not decode to the file")
	}
	if r := get(t, "GET", "/vendor/mqtt.esm.js", "Accept-Encoding", "gzip;q=0"); r.Header.Get("Content-Encoding") != "" {
		t.Fatal("gzip sent to a client that refused it")
	}
}

func TestAcceptsGzip(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   bool
	}{
		{"", false}, {"gzip", true}, {"GZIP", true}, {"deflate, gzip", true}, {"gzip;q=0", false},
		{"gzip; q=0.000", false}, {"gzip;q=0.5", true}, {"x-gzip", false}, {"br", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Accept-Encoding", tc.header)
		if got := acceptsGzip(r); got != tc.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
}

var (
	scriptTag   = regexp.MustCompile(`(?is)<script\b([^>]*)>(.*?)</script>`)
	inlineStyle = regexp.MustCompile(`(?i)<style|\sstyle\s*=`)
	inlineEvent = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	jsURL       = regexp.MustCompile(`(?i)javascript:`)
	foreignURL  = regexp.MustCompile(`(?i)(src|href)\s*=\s*"(https?:)?//`)
	htmlSink    = regexp.MustCompile(`\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write|\beval\(|new Function`)
	storage     = regexp.MustCompile(`localStorage|sessionStorage|indexedDB|document\.cookie`)
)

// The page works under the CSP only if it has no inline code, and it keeps
// its promise only if it never stores the token or builds HTML from strings.
func TestStaticFilesFollowTheRules(t *testing.T) {
	html := string(assets["/index.html"].data)
	for _, m := range scriptTag.FindAllStringSubmatch(html, -1) {
		if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
			t.Errorf("index.html has an inline script: %q", m[0])
		}
	}
	for name, re := range map[string]*regexp.Regexp{"inline style": inlineStyle,
		"inline event handler": inlineEvent, "javascript: URL": jsURL, "foreign URL": foreignURL} {
		if m := re.FindString(html); m != "" {
			t.Errorf("index.html has an %s: %q", name, m)
		}
	}
	if !strings.Contains(html, `method="post"`) || strings.Contains(html, `method="get"`) {
		t.Error("forms must be method=post so that a failed script never puts a token in a URL")
	}
	for _, name := range []string{"/app.mjs", "/link.mjs", "/model.mjs"} {
		src := string(assets[name].data)
		if m := htmlSink.FindString(src); m != "" {
			t.Errorf("%s uses %q", name, m)
		}
		if m := storage.FindString(src); m != "" {
			t.Errorf("%s uses %q: the token stays in memory", name, m)
		}
	}
}

// The page's envelope.mjs is clients/js/envelope.mjs, byte for byte:
// `go generate ./webapp` copies it after a change.
func TestEnvelopeIsTheClientLibrary(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("..", "clients", "js", "envelope.mjs"))
	if err != nil {
		t.Fatalf("clients/js/envelope.mjs: %v", err)
	}
	if !bytes.Equal(assets["/envelope.mjs"].data, want) {
		t.Fatal("webapp/static/envelope.mjs differs from clients/js/envelope.mjs: run go generate ./webapp")
	}
}

// The vendored MQTT.js is the npm package's browser build, unmodified, with
// its licence beside it; when e2e/node has that version installed, the
// bytes must match.
func TestVendoredMQTTjs(t *testing.T) {
	const version = "5.16.0"
	readme, err := os.ReadFile(filepath.Join("static", "vendor", "README.md"))
	if err != nil || !strings.Contains(string(readme), "mqtt@"+version) {
		t.Fatalf("static/vendor/README.md must name mqtt@%s (%v)", version, err)
	}
	if lic := string(assets["/vendor/mqtt.LICENSE.txt"].data); !strings.Contains(lic, "The MIT License") {
		t.Fatal("the MQTT.js licence is missing")
	}
	src := assets["/vendor/mqtt.esm.js"].data
	if !bytes.Contains(src, []byte("Bundled license information")) {
		t.Fatal("the bundle's licence comment is missing")
	}
	pkg, err := os.ReadFile(filepath.Join("..", "e2e", "node", "node_modules", "mqtt", "package.json"))
	if err != nil {
		t.Skip("e2e/node/node_modules is not installed; cannot compare with the npm package")
	}
	if !bytes.Contains(pkg, []byte(`"version": "`+version+`"`)) {
		t.Skipf("e2e/node has another mqtt version than the vendored %s", version)
	}
	npm, err := os.ReadFile(filepath.Join("..", "e2e", "node", "node_modules", "mqtt", "dist", "mqtt.esm.js"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(src, npm) {
		t.Fatal("static/vendor/mqtt.esm.js differs from the npm package's dist/mqtt.esm.js")
	}
}
