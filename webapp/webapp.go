package webapp

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// envelope.mjs is a copy of clients/js/envelope.mjs (a test keeps them equal).
//go:generate cp ../clients/js/envelope.mjs static/envelope.mjs
//go:generate go run icons_gen.go

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every file the app serves: scripts,
// styles and connections (fetch, and WebSocket to /mqtt) only from the page's
// own origin, no inline code, no eval, no frames, no plugins, and Trusted
// Types enforced so no string can become HTML or script. The one policy,
// homemq-sw, turns only "/sw.js" into a script URL, to register the service
// worker (ServiceWorkerContainer.register is a Trusted Types sink).
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; manifest-src 'self'; base-uri 'none'; form-action 'self'; " +
	"frame-ancestors 'none'; object-src 'none'; worker-src 'self'; require-trusted-types-for 'script'; trusted-types homemq-sw"

// contentTypes are the file kinds the app serves; any other file in static/
// (such as vendor/README.md) is not served.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".mjs":  "text/javascript; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	// the manifest of an installable web app
	".webmanifest": "application/manifest+json",
	".txt":         "text/plain; charset=utf-8",
}

// asset is one servable file, with a gzip copy when that is smaller.
type asset struct {
	data, gz    []byte
	ctype, etag string
}

var assets = mustLoad(static)

func mustLoad(fsys fs.FS) map[string]asset {
	m, err := load(fsys)
	if err != nil {
		panic(err) // the embedded files are fixed at build time
	}
	return m
}

// load reads every servable file under static/ into memory, keyed by URL path.
func load(fsys fs.FS) (map[string]asset, error) {
	m := map[string]asset{}
	err := fs.WalkDir(fsys, "static", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ctype, ok := contentTypes[path.Ext(name)]
		if !ok {
			return nil
		}
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		a := asset{data: data, ctype: ctype, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = zw.Write(data)
		if err := zw.Close(); err != nil {
			return fmt.Errorf("webapp: gzip %s: %w", name, err)
		}
		if buf.Len() < len(data)*9/10 {
			a.gz = buf.Bytes()
		}
		m[strings.TrimPrefix(name, "static")] = a
		return nil
	})
	if _, ok := m["/index.html"]; err == nil && !ok {
		err = fmt.Errorf("webapp: static/index.html is missing")
	}
	return m, err
}

// Handler serves the web app: "/" is the page, and its modules, styles and
// the vendored MQTT.js are served by their paths. Every answer carries the
// app's CSP and isolation headers; unknown paths get 404, methods other than
// GET and HEAD get 405. Files are revalidated by ETag (Cache-Control:
// no-cache) and sent gzip-compressed to clients that accept it.
func Handler() http.Handler { return handler{} }

type handler struct{}

func (handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), bluetooth=()")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: the web app is read-only (GET)", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if p == "/" {
		p = "/index.html"
	}
	a, ok := assets[p]
	if !ok {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Add("Vary", "Accept-Encoding")
	data, etag := a.data, a.etag
	if a.gz != nil && acceptsGzip(r) {
		data, etag = a.gz, strings.TrimSuffix(a.etag, `"`)+`-gz"`
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("ETag", etag)
	http.ServeContent(w, r, p, time.Time{}, bytes.NewReader(data))
}

// acceptsGzip reports whether Accept-Encoding lists gzip with a non-zero q.
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				continue
			}
			q := strings.ReplaceAll(params, " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}
