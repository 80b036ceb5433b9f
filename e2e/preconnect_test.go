package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"homemq/auth"
	"homemq/broker"
)

// TestSocketsBeforeConnectCountPerAddress: sockets that never send CONNECT
// count toward limits.conns_per_addr from accept, across the TCP and TLS
// listeners: those over the limit are closed at once (before the TLS
// handshake) and reported as refusals; another address still connects; a
// socket counted at accept is not counted again at CONNECT; and the count
// goes back to zero when the sockets close.
func TestSocketsBeforeConnectCountPerAddress(t *testing.T) {
	const limit, opened = 20, 40
	b := startBroker(t, func(c *broker.Config) {
		c.Limits.ConnsPerAddr = limit
		c.Limits.ConnectTimeout = time.Minute // the idle sockets stay until this test closes them
	})
	a := b.Addrs()
	tok := b.mint("user:owner", "h1=admin")

	var idle []net.Conn
	refused := 0
	for i := 0; i < opened; i++ {
		var conn net.Conn
		var err error
		if i%2 == 0 {
			conn, err = dialFrom("127.0.0.1", a["mqtt"])
		} else {
			conn, err = tlsDialFrom("127.0.0.1", a["mqtts"], b.tlsConfig())
		}
		if err != nil {
			refused++ // a TLS socket closed at accept: the handshake gets no answer
			continue
		}
		t.Cleanup(func() { _ = conn.Close() })
		idle = append(idle, conn)
	}
	// a plain socket over the limit was accepted by the kernel and closed
	// by the broker at once; one within it waits for CONNECT (a minute)
	closed := make([]bool, len(idle))
	var wg sync.WaitGroup
	for i, c := range idle {
		wg.Go(func() { closed[i] = closedByServer(c, 3*time.Second) })
	}
	wg.Wait()
	var open []net.Conn
	for i, c := range idle {
		if closed[i] {
			refused++
		} else {
			open = append(open, c)
		}
	}
	if len(open) != limit || refused != opened-limit {
		t.Fatalf("%d of %d silent sockets held, %d closed; want %d held and the rest closed at once", len(open), opened, refused, limit)
	}
	if n := b.Guard.Addresses().Conns("127.0.0.1"); n != limit {
		t.Fatalf("%d sockets counted for 127.0.0.1, want %d", n, limit)
	}
	// the refusals are reported like any connect refused for quota
	op, _ := b.mintSpec(auth.Spec{Sub: "service:prometheus", Operator: true})
	eventually(t, 10*time.Second, "the sockets closed at accept counted as connection refusals", func() bool {
		_, fams := scrapeMetrics(t, b, op)
		return metricValue(fams, "homemq_limit_refusals_total", "limit", "connections") == opened-limit
	})

	// another address connects over TLS, TCP and WebSocket
	for name, dial := range map[string]func() (net.Conn, error){
		"tls": func() (net.Conn, error) { return tlsDialFrom("127.0.0.2", a["mqtts"], b.tlsConfig()) },
		"tcp": func() (net.Conn, error) { return dialFrom("127.0.0.2", a["mqtt"]) },
		"wss": func() (net.Conn, error) { return dialWSFrom("127.0.0.2", b.url(overWSS), b.tlsConfig()) },
	} {
		conn, err := dial()
		if err != nil {
			t.Fatalf("%s from 127.0.0.2: %v", name, err)
		}
		b.v5conn(conn, "user:owner/other-"+name, tok)
	}
	// this address is refused on WebSocket too, with a status that says why
	if _, err := dialWSFrom("127.0.0.1", b.url(overWSS), b.tlsConfig()); err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("MQTT over WebSocket from an address at its limit: %v, want 429", err)
	}

	for _, c := range open {
		_ = c.Close()
	}
	eventually(t, 10*time.Second, "the closed sockets are uncounted", func() bool {
		return b.Guard.Addresses().Conns("127.0.0.1") == 0
	})

	// real clients: each counted once, at accept, so exactly limit connect
	for i := 0; i < limit; i++ {
		conn, err := dialFrom("127.0.0.1", a["mqtt"])
		if err != nil {
			t.Fatal(err)
		}
		b.v5conn(conn, fmt.Sprintf("user:owner/%d", i), tok)
	}
	conn, err := dialFrom("127.0.0.1", a["mqtt"])
	if err != nil {
		t.Fatal(err)
	}
	if !closedByServer(conn, 5*time.Second) {
		t.Fatalf("connection %d from one address was held; the limit is %d", limit+1, limit)
	}
}

// dialFrom opens a TCP connection to addr from the loopback address local:
// any 127.x.y.z is a source address of this host on Linux.
func dialFrom(local, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	return d.Dial("tcp", addr)
}

// tlsDialFrom is dialFrom with a TLS handshake (HTTP/1.1 offered).
func tlsDialFrom(local, addr string, conf *tls.Config) (net.Conn, error) {
	raw, err := dialFrom(local, addr)
	if err != nil {
		return nil, err
	}
	conf = conf.Clone()
	conf.NextProtos = []string{"http/1.1"}
	c := tls.Client(raw, conf)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		_ = raw.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// httpClientFrom is an HTTPS client whose connections come from local.
func httpClientFrom(local string, conf *tls.Config) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: conf, DialContext: d.DialContext}}
}

// dialWSFrom is dialWS from the loopback address local.
func dialWSFrom(local, u string, conf *tls.Config) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{Subprotocols: []string{"mqtt"}, HTTPClient: httpClientFrom(local, conf)})
	if err != nil {
		return nil, err
	}
	return websocket.NetConn(context.Background(), c, websocket.MessageBinary), nil
}

// closedByServer reads c (discarding any answer) until the peer closes it,
// or reports false if it is still open after within.
func closedByServer(c net.Conn, within time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}
