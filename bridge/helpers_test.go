package bridge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
)

// harness is a bridge on an httptest server in front of a real mochi broker
// that allows everything (the broker's own rules are tested end to end in
// e2e/, with the Guard).
type harness struct {
	t      *testing.T
	mq     *mqtt.Server
	issuer *auth.Issuer
	srv    *Server
	hs     *httptest.Server
}

// allowAll admits every client and packet: a plain MQTT broker.
type allowAll struct{ mqtt.HookBase }

func (*allowAll) ID() string { return "allow-all" }
func (*allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (*allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }
func (*allowAll) OnACLCheck(*mqtt.Client, string, bool) bool              { return true }

func newHarness(t *testing.T, edit ...func(*Config)) *harness {
	t.Helper()
	mq := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := mq.AddHook(new(allowAll), nil); err != nil {
		t.Fatal(err)
	}
	if err := mq.Serve(); err != nil {
		t.Fatal(err)
	}
	keys := auth.NewMemoryKeys()
	cfg := DefaultConfig()
	for _, e := range edit {
		e(&cfg)
	}
	dial := func() (net.Conn, error) {
		client, server := net.Pipe()
		go func() { _ = mq.EstablishConnection("pipe", server) }()
		return client, nil
	}
	h := &harness{t: t, mq: mq, issuer: auth.NewIssuer(auth.Config{}, keys)}
	h.srv = New(cfg, auth.NewVerifier(auth.Config{}, keys, nil), dial)
	mux := http.NewServeMux()
	mux.Handle("/signalr/", h.srv)
	h.hs = httptest.NewServer(mux)
	t.Cleanup(func() {
		h.srv.Close()
		h.hs.Close()
		_ = mq.Close()
	})
	return h
}

func (h *harness) mint(sub string, ttl time.Duration, homes ...string) string {
	h.t.Helper()
	m := map[string]string{}
	for _, kv := range homes {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	tok, _, err := h.issuer.Mint(auth.Spec{Sub: sub, Homes: m, TTL: ttl})
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

func (h *harness) hubURL() string { return h.hs.URL + "/signalr/home" }

// do sends an HTTP request with an optional bearer token.
func (h *harness) do(method, u, tok string, body []byte, hdr ...string) (*http.Response, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// negotiate returns the negotiate response for tok.
func (h *harness) negotiate(tok string) negotiateResponse {
	h.t.Helper()
	resp, body := h.do("POST", h.hubURL()+"/negotiate?negotiateVersion=1", tok, nil)
	var n negotiateResponse
	if resp.StatusCode != 200 || json.Unmarshal(body, &n) != nil || n.ConnectionToken == "" {
		h.t.Fatalf("negotiate: %d %s", resp.StatusCode, body)
	}
	return n
}

// client is a minimal SignalR client over one transport, for tests.
type client struct {
	h       *harness
	tr      string
	tok     string
	id      string // connection token
	ws      *websocket.Conn
	records chan []byte
	ended   chan struct{} // the transport ended (WebSocket closed, stream ended, poll 204)
	mu      sync.Mutex
	status  []int // long poll statuses, in order
	cancel  context.CancelFunc
}

// connect negotiates and starts the transport tr (no handshake yet).
func (h *harness) connect(tr, tok string) *client {
	h.t.Helper()
	n := h.negotiate(tok)
	return h.start(tr, tok, n.ConnectionToken)
}

func (h *harness) start(tr, tok, id string) *client {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &client{h: h, tr: tr, tok: tok, id: id, records: make(chan []byte, 256), ended: make(chan struct{}), cancel: cancel}
	h.t.Cleanup(cancel)
	u := h.hubURL() + "?id=" + url.QueryEscape(id)
	switch tr {
	case WebSockets:
		ws, resp, err := websocket.Dial(ctx, strings.Replace(u, "http", "ws", 1), &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}}})
		if err != nil {
			h.t.Fatalf("websocket dial: %v (%v)", err, resp)
		}
		ws.SetReadLimit(1 << 20)
		c.ws = ws
		go c.readWS(ctx)
	case ServerSentEvents:
		req, _ := http.NewRequestWithContext(ctx, "GET", u+"&access_token="+url.QueryEscape(tok), nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			h.t.Fatalf("event stream: %v %v", err, resp)
		}
		go c.readSSE(resp.Body)
	case LongPolling:
		resp, body := h.do("GET", u, tok, nil)
		if resp.StatusCode != 200 || len(body) != 0 {
			h.t.Fatalf("first poll: %d %q", resp.StatusCode, body)
		}
		go c.poll(ctx, u)
	}
	return c
}

func (c *client) push(data []byte) {
	recs, _, _ := ParseMessages(data, 1<<20)
	for _, r := range recs {
		c.records <- append([]byte(nil), r...)
	}
}

func (c *client) readWS(ctx context.Context) {
	defer close(c.ended)
	for {
		_, data, err := c.ws.Read(ctx)
		if err != nil {
			return
		}
		c.push(data)
	}
}

func (c *client) readSSE(body io.ReadCloser) {
	defer close(c.ended)
	defer body.Close()
	sc := bufio.NewScanner(body)
	var event []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			c.push([]byte(strings.Join(event, "\n")))
			event = nil
			continue
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			event = append(event, d)
		}
	}
}

func (c *client) poll(ctx context.Context, u string) {
	defer close(c.ended)
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		req.Header.Set("Authorization", "Bearer "+c.tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		c.mu.Lock()
		c.status = append(c.status, resp.StatusCode)
		c.mu.Unlock()
		if resp.StatusCode != 200 {
			return
		}
		c.push(body)
	}
}

func (c *client) pollStatuses() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.status...)
}

// send sends raw bytes the way the transport does.
func (c *client) send(data []byte) {
	c.h.t.Helper()
	if c.ws != nil {
		if err := c.ws.Write(context.Background(), websocket.MessageText, data); err != nil {
			c.h.t.Fatalf("websocket write: %v", err)
		}
		return
	}
	resp, body := c.h.do("POST", c.h.hubURL()+"?id="+url.QueryEscape(c.id), c.tok, data)
	if resp.StatusCode != 200 {
		c.h.t.Fatalf("send: %d %s", resp.StatusCode, body)
	}
}

// next returns the next record that is not a Ping.
func (c *client) next() []byte {
	c.h.t.Helper()
	for {
		select {
		case r := <-c.records:
			if string(r) == `{"type":6}` {
				continue
			}
			return r
		case <-time.After(5 * time.Second):
			c.h.t.Fatal("no message from the server within 5s")
		}
	}
}

func (c *client) nextMessage() Message {
	c.h.t.Helper()
	r := c.next()
	m, err := ParseMessage(r)
	if err != nil {
		c.h.t.Fatalf("server sent %q: %v", r, err)
	}
	return m
}

// handshake sends the JSON handshake and expects {}.
func (c *client) handshake() {
	c.h.t.Helper()
	c.send([]byte(`{"protocol":"json","version":1}` + "\x1e"))
	if r := c.next(); string(r) != "{}" {
		c.h.t.Fatalf("handshake response %q, want {}", r)
	}
}

// invoke calls target and returns its completion.
func (c *client) invoke(id, target string, args ...any) Message {
	c.h.t.Helper()
	if args == nil {
		args = []any{}
	}
	b, _ := json.Marshal(map[string]any{"type": 1, "invocationId": id, "target": target, "arguments": args})
	c.send(append(b, RecordSeparator))
	for {
		m := c.nextMessage()
		if m.Type == TypeCompletion && m.InvocationID == id {
			return m
		}
		if m.Type == TypeClose {
			c.h.t.Fatalf("%s: the server closed the connection: %s", target, m.Error)
		}
	}
}

// waitEnded waits for the transport to end.
func (c *client) waitEnded() {
	c.h.t.Helper()
	select {
	case <-c.ended:
	case <-time.After(5 * time.Second):
		c.h.t.Fatal("the transport did not end within 5s")
	}
}

var allTransports = []string{WebSockets, ServerSentEvents, LongPolling}
