package webapp

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// FuzzServe: whatever the path and Accept-Encoding, the handler answers
// without panicking, serves only the embedded files (the exact bytes, once
// decompressed) and sets its CSP.
func FuzzServe(f *testing.F) {
	for _, s := range [][2]string{
		{"/", "gzip"}, {"/app.mjs", ""}, {"/vendor/mqtt.esm.js", "br, gzip;q=0.5"}, {"/vendor/README.md", "gzip;q=0"},
		{"/../webapp.go", "*"}, {"//app.mjs", "GZIP ; q=1"}, {"/index.html/", "identity"}, {"/%2e%2e/", ",,;"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, path, enc string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.URL = &url.URL{Path: path}
		req.Header.Set("Accept-Encoding", enc)
		rec := httptest.NewRecorder()
		Handler().ServeHTTP(rec, req)
		r := rec.Result()
		if r.Header.Get("Content-Security-Policy") != CSP {
			t.Fatalf("%q: no CSP", path)
		}
		want, known := assets[path]
		if path == "/" {
			want, known = assets["/index.html"], true
		}
		if r.StatusCode != http.StatusOK {
			if known {
				t.Fatalf("%q: status %d for an embedded file", path, r.StatusCode)
			}
			return
		}
		if !known {
			t.Fatalf("%q: served, but no such file is embedded", path)
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Fatal(err)
			}
			body = zr
		}
		got, err := io.ReadAll(body)
		if err != nil || !bytes.Equal(got, want.data) {
			t.Fatalf("%q (Accept-Encoding %q): body differs from the file (%v)", path, enc, err)
		}
	})
}
