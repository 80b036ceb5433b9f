package broker

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLimitBodies(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		_, _ = w.Write(b)
	})
	h := limitBodies(8, echo)
	for _, tc := range []struct {
		name     string
		body     string
		length   int64 // -1: unknown (chunked)
		status   int
		contains string
	}{
		{"within", "12345678", 8, 200, "12345678"},
		{"announced over", "123456789", 9, 413, "limits.http_max_body"},
		{"chunked within", "1234", -1, 200, "1234"},
		{"chunked over", "123456789", -1, 413, "too large"},
		{"no body", "", 0, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
			r.ContentLength = tc.length
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.contains) {
				t.Fatalf("%d %q, want %d containing %q", w.Code, w.Body.String(), tc.status, tc.contains)
			}
		})
	}
}
