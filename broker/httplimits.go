package broker

import (
	"fmt"
	"net/http"
)

// limitBodies refuses a request body larger than maxBody on every endpoint
// of the HTTPS server: at once (413) when its Content-Length says so, else
// when reading it passes maxBody. Handlers may set tighter limits of their
// own.
//
// Its read deadline is the server's: http.Server.ReadTimeout
// (limits.http_read_timeout) covers the whole request, body included, and
// cuts off one that announces a body and never sends it, even when the
// handler does not read the body (net/http reads what is left of it after
// the handler, under the same deadline). net/http lifts the deadline itself
// once the body has been read to its end, at once for a request without
// one, and on Hijack, so WebSocket upgrades, SSE streams and long polls
// may last.
func limitBodies(maxBody int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBody {
			w.Header().Set("Connection", "close")
			http.Error(w, fmt.Sprintf("request body of %d bytes is larger than the %d bytes allowed (limits.http_max_body)", r.ContentLength, maxBody), http.StatusRequestEntityTooLarge)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		next.ServeHTTP(w, r)
	})
}
