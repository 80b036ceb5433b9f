package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"homemq/broker"
)

// TestHTTPSSlowlorisIsCutOffAndCapped: requests that announce a 100 kB
// body and send nothing, to /api/token, /healthz and SignalR negotiate, are
// cut off at limits.http_read_timeout; sockets over
// limits.https_conns_per_addr are closed at accept, before the TLS
// handshake. Another address, long polls and MQTT over WebSocket, which
// outlive the read timeout, are unaffected, and the address gets its
// connections back once the stalled ones are gone.
func TestHTTPSSlowlorisIsCutOffAndCapped(t *testing.T) {
	const capPerAddr, opened = 50, 80
	b := startBroker(t, func(c *broker.Config) {
		c.Limits.HTTPSConnsPerAddr = capPerAddr
		c.Limits.HTTPReadTimeout = 3 * time.Second
		c.Limits.HTTPReadHeaderTimeout = 3 * time.Second
	})
	addr := b.Addrs()["https"]
	other := httpClientFrom("127.0.0.2", b.tlsConfig())

	// long-lived, from another address: MQTT over WebSocket and a long poll
	tok := b.mint("user:owner", "h1=admin")
	ws, err := dialWSFrom("127.0.0.2", b.url(overWSS), b.tlsConfig())
	if err != nil {
		t.Fatal(err)
	}
	wsClient := b.v5conn(ws, "user:owner/ws", tok)
	pollEnded := startLongPoll(t, other, "https://"+addr+"/signalr/home", tok)

	partial := []string{
		"POST /api/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
		"GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n",
		"POST /signalr/home/negotiate?negotiateVersion=1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n",
	}
	start := time.Now()
	var held []net.Conn
	refused := 0
	for i := 0; i < opened; i++ {
		conn, err := tlsDialFrom("127.0.0.1", addr, b.tlsConfig())
		if err != nil {
			refused++ // closed at accept: the handshake gets no answer
			continue
		}
		t.Cleanup(func() { _ = conn.Close() })
		if _, err := io.WriteString(conn, partial[i%len(partial)]); err != nil {
			t.Fatalf("write a partial request: %v", err)
		}
		held = append(held, conn)
	}
	t.Logf("%d connections opened in %v", opened, time.Since(start))
	if len(held) != capPerAddr || refused != opened-capPerAddr {
		t.Fatalf("%d of %d stalled connections held, %d refused; want %d held, the rest refused at accept", len(held), opened, refused, capPerAddr)
	}

	// another address is served while this one is at its cap
	if err := getHealthz(other, addr); err != nil {
		t.Fatalf("/healthz from another address: %v", err)
	}

	// every stalled request is cut off at the read timeout
	var wg sync.WaitGroup
	var stillOpen atomic.Int32
	for _, c := range held {
		wg.Go(func() {
			if !closedByServer(c, 20*time.Second) {
				stillOpen.Add(1)
			}
		})
	}
	wg.Wait()
	if n := stillOpen.Load(); n > 0 {
		t.Fatalf("%d stalled requests still open after 20 s; the read timeout is 3 s", n)
	}

	// the address has its connections back
	self := httpClientFrom("127.0.0.1", b.tlsConfig())
	if err := getHealthz(self, addr); err != nil {
		t.Fatalf("/healthz from 127.0.0.1 after the stalled requests were cut off: %v", err)
	}
	// what outlives the read timeout lives on
	if pollEnded.Load() {
		t.Fatal("a SignalR long poll ended at the read timeout")
	}
	if code := wsClient.subscribe(t, "homes/h1/agents/+/status", 1); code != 1 {
		t.Fatalf("MQTT over WebSocket after the read timeout: SUBACK 0x%02X, want 1", code)
	}
}

// TestHTTPSBodyOverTheLimitIsRefusedByItsLength: a request announcing a
// body over limits.http_max_body is answered 413 before a byte of it is read.
func TestHTTPSBodyOverTheLimitIsRefusedByItsLength(t *testing.T) {
	b := startBroker(t, func(c *broker.Config) { c.Limits.HTTPMaxBody = 4 << 10 })
	for _, path := range []string{"/api/token", "/signalr/home/negotiate?negotiateVersion=1", "/api/admin/revoke"} {
		conn, err := tlsDialFrom("127.0.0.1", b.Addrs()["https"], b.tlsConfig())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n", path)
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, _ := io.ReadAll(conn)
		_ = conn.Close()
		if !strings.HasPrefix(string(resp), "HTTP/1.1 413") || !strings.Contains(string(resp), "limits.http_max_body") {
			t.Fatalf("POST %s announcing 10 MB: %q, want 413 naming limits.http_max_body", path, resp)
		}
	}
}

// getHealthz asks for /healthz with hc and reports any answer but "ok".
func getHealthz(hc *http.Client, addr string) error {
	resp, err := hc.Get("https://" + addr + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		return fmt.Errorf("%d %q", resp.StatusCode, body)
	}
	return nil
}

// startLongPoll opens a SignalR long-polling connection with tok and starts
// a poll that waits for messages; the flag it returns is set when the poll
// ends.
func startLongPoll(t *testing.T, hc *http.Client, hub, tok string) *atomic.Bool {
	t.Helper()
	do := func(method, u string) *http.Response {
		req, _ := http.NewRequest(method, u, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, u, err)
		}
		return resp
	}
	resp := do("POST", hub+"/negotiate?negotiateVersion=1")
	var n struct{ ConnectionToken string }
	_ = json.NewDecoder(resp.Body).Decode(&n)
	resp.Body.Close()
	if n.ConnectionToken == "" {
		t.Fatalf("negotiate: %d, no connection token", resp.StatusCode)
	}
	u := hub + "?id=" + url.QueryEscape(n.ConnectionToken)
	if resp := do("GET", u); resp.StatusCode != 200 { // the first poll answers at once
		t.Fatalf("first poll: %d", resp.StatusCode)
	} else {
		resp.Body.Close()
	}
	ended := new(atomic.Bool)
	poller := &http.Client{Transport: hc.Transport} // no client timeout: the poll waits up to 90 s
	go func() {
		defer ended.Store(true)
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if resp, err := poller.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	return ended
}

// TestHTTP2StalledBodyIsCutOff: over HTTP/2, where one socket carries many
// requests, a request whose body never comes is cut off at
// limits.http_read_timeout too.
func TestHTTP2StalledBodyIsCutOff(t *testing.T) {
	b := startBroker(t, func(c *broker.Config) { c.Limits.HTTPReadTimeout = 2 * time.Second })
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: b.tlsConfig(), ForceAttemptHTTP2: true}}
	body, stall := io.Pipe() // never written
	defer stall.Close()
	req, _ := http.NewRequest("POST", "https://"+b.Addrs()["https"]+"/api/token", body)
	req.ContentLength = 100000
	req.Header.Set("Content-Type", "application/json")
	type answer struct {
		resp *http.Response
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		answered <- answer{resp, err}
	}()
	select {
	case a := <-answered:
		if a.err != nil {
			t.Fatalf("stalled HTTP/2 request: %v, want an answer", a.err)
		}
		if a.resp.ProtoMajor != 2 || a.resp.StatusCode < 400 {
			t.Fatalf("stalled HTTP/2 request: %s %d, want an HTTP/2 error status", a.resp.Proto, a.resp.StatusCode)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a stalled HTTP/2 request body was still being waited for after 20 s; the read timeout is 2 s")
	}
}
