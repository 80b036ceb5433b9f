package bridge

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestNegotiate(t *testing.T) {
	h := newHarness(t)
	good := h.mint("user:ann", 0, "h1=admin")
	other := auth2(h)
	tests := []struct {
		name     string
		method   string
		query    string
		token    string
		status   int
		wwwAuth  string // substring of WWW-Authenticate
		errField string // substring of the JSON "error" property
	}{
		{"no token", "POST", "?negotiateVersion=1", "", 401, `Bearer realm="homemq"`, ""},
		{"garbage token", "POST", "?negotiateVersion=1", "not-a-jwt", 401, `error="invalid_token"`, ""},
		{"token of another issuer", "POST", "?negotiateVersion=1", other, 401, `error="invalid_token"`, ""},
		{"GET", "GET", "?negotiateVersion=1", good, 405, "", ""},
		{"version 0 refused", "POST", "", good, 200, "", "does not support this version"},
		{"bad version", "POST", "?negotiateVersion=x", good, 400, "", ""},
		{"version 1", "POST", "?negotiateVersion=1", good, 200, "", ""},
		{"newer version answered with 1", "POST", "?negotiateVersion=7", good, 200, "", ""},
		{"token in the query", "POST", "?negotiateVersion=1&access_token=" + url.QueryEscape(good), "", 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := h.do(tt.method, h.hubURL()+"/negotiate"+tt.query, tt.token, nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.status)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, tt.wwwAuth) || (tt.wwwAuth == "") != (got == "") {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.wwwAuth)
			}
			if tt.status != 200 {
				return
			}
			var n negotiateResponse
			if err := json.Unmarshal(body, &n); err != nil {
				t.Fatal(err)
			}
			if tt.errField != "" {
				if !strings.Contains(n.Error, tt.errField) || n.ConnectionToken != "" {
					t.Errorf("got %s, want an error containing %q and no connection", body, tt.errField)
				}
				return
			}
			if n.NegotiateVersion != 1 || n.ConnectionID == "" || n.ConnectionToken == "" || n.ConnectionID == n.ConnectionToken || n.Error != "" {
				t.Errorf("negotiate response %s", body)
			}
			want := `[{"transport":"WebSockets","transferFormats":["Text"]},{"transport":"ServerSentEvents","transferFormats":["Text"]},{"transport":"LongPolling","transferFormats":["Text"]}]`
			if got, _ := json.Marshal(n.AvailableTransports); string(got) != want {
				t.Errorf("transports %s, want %s", got, want)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

// auth2 mints a token with a key the harness does not know.
func auth2(h *harness) string {
	other := newHarness(h.t)
	return other.mint("user:ann", 0, "h1=admin")
}

func TestTransportRequestErrors(t *testing.T) {
	h := newHarness(t)
	ann := h.mint("user:ann", 0, "h1=admin")
	bob := h.mint("user:bob", 0, "h1=admin")
	sse := h.connect(ServerSentEvents, ann)
	lp := h.connect(LongPolling, ann)
	ws := h.connect(WebSockets, ann)
	fresh := h.negotiate(ann).ConnectionToken
	hub := h.hubURL()
	q := func(id string) string { return hub + "?id=" + url.QueryEscape(id) }
	tests := []struct {
		name   string
		method string
		url    string
		token  string
		hdr    []string
		status int
	}{
		{"no token", "GET", q(lp.id), "", nil, 401},
		{"bad token", "POST", q(lp.id), "x.y.z", nil, 401},
		{"poll without id", "GET", hub, ann, nil, 400},
		{"send without id", "POST", hub, ann, nil, 400},
		{"delete without id", "DELETE", hub, ann, nil, 400},
		{"event stream without id", "GET", hub, ann, []string{"Accept", "text/event-stream"}, 400},
		{"unknown id", "GET", q("nope"), ann, nil, 404},
		{"another identity's connection", "GET", q(lp.id), bob, nil, 404},
		{"another identity's send", "POST", q(sse.id), bob, nil, 404},
		{"send before a transport", "POST", q(fresh), ann, nil, 400},
		{"second event stream", "GET", q(sse.id), ann, []string{"Accept", "text/event-stream"}, 409},
		{"poll on an event stream connection", "GET", q(sse.id), ann, nil, 400},
		{"event stream on a long polling connection", "GET", q(lp.id), ann, []string{"Accept", "text/event-stream"}, 400},
		{"delete on an event stream connection", "DELETE", q(sse.id), ann, nil, 400},
		{"POST on a WebSocket connection", "POST", q(ws.id), ann, nil, 405},
		{"PUT", "PUT", q(lp.id), ann, nil, 405},
		{"other path", "GET", h.hs.URL + "/signalr/other", ann, nil, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := h.do(tt.method, tt.url, tt.token, nil, tt.hdr...)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d (%s), want %d", resp.StatusCode, body, tt.status)
			}
		})
	}
}

// A second WebSocket on a connection is refused with 409, and a WebSocket
// without negotiate starts a connection of its own.
func TestWebSocketAttach(t *testing.T) {
	h := newHarness(t)
	ann := h.mint("user:ann", 0, "h1=admin")
	ws := h.connect(WebSockets, ann)
	ws.handshake()
	resp, _ := h.do("GET", h.hubURL()+"?id="+url.QueryEscape(ws.id), ann, nil,
		"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("second WebSocket: %d, want 409", resp.StatusCode)
	}
	direct := h.start(WebSockets, ann, "")
	direct.handshake()
	if m := direct.invoke("1", "Subscribe", "h1"); m.HasError {
		t.Errorf("Subscribe over a WebSocket without negotiate: %s", m.Error)
	}
}

// Too many connections of one identity that never finish the handshake
// are refused.
func TestPendingLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxPendingPerSub = 2 })
	ann := h.mint("user:ann", 0, "h1=admin")
	h.negotiate(ann)
	h.negotiate(ann)
	resp, body := h.do("POST", h.hubURL()+"/negotiate?negotiateVersion=1", ann, nil)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third pending negotiate: %d %s, want 429", resp.StatusCode, body)
	}
	bob := h.mint("user:bob", 0, "h1=admin")
	h.negotiate(bob)
}

// A connection that never starts a transport is dropped after the
// disconnect time-out.
func TestNegotiatedButUnused(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.DisconnectTimeout = 100 * time.Millisecond })
	ann := h.mint("user:ann", 0, "h1=admin")
	id := h.negotiate(ann).ConnectionToken
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, _ := h.do("POST", h.hubURL()+"?id="+url.QueryEscape(id), ann, nil)
		if resp.StatusCode == http.StatusNotFound {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("unused connection still answers %d", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
