package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// maxFrame bounds a WebSocket message from the broker (one MQTT packet).
const maxFrame = 1 << 20

// closeWait bounds how long a clean disconnect waits for the broker to
// close its side.
const closeWait = 2 * time.Second

// graceConn is the agent's side of one connection. After a clean
// DISCONNECT (leaving set), Close waits until the broker, having read the
// DISCONNECT, closes its side: otherwise the next CONNECT with the same
// client id could overtake it, and the broker would end the old connection
// as a session takeover and publish its will, a false "offline".
type graceConn struct {
	net.Conn
	leaving atomic.Bool
	eof     chan struct{}
	once    sync.Once
}

func newGraceConn(c net.Conn) *graceConn { return &graceConn{Conn: c, eof: make(chan struct{})} }

func (c *graceConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.once.Do(func() { close(c.eof) })
	}
	return n, err
}

func (c *graceConn) Close() error {
	if c.leaving.Load() {
		t := time.NewTimer(closeWait)
		select {
		case <-c.eof:
		case <-t.C:
		}
		t.Stop()
	}
	return c.Conn.Close()
}

// open is paho's connection opener: TLS over the agent's dialer for
// mqtts://, or a WebSocket (subprotocol mqtt) over TLS for wss://. The
// broker's certificate must chain to the configured CA.
func (a *Agent) open(u *url.URL) (*graceConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	conf := a.tlsConf.Clone()
	if conf.ServerName == "" {
		conf.ServerName = u.Hostname()
	}
	if u.Scheme == "wss" {
		hc := &http.Client{Transport: &http.Transport{DialContext: a.dial, TLSClientConfig: conf, TLSHandshakeTimeout: connectTimeout}}
		ws, _, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPClient: hc, Subprotocols: []string{"mqtt"}})
		if err != nil {
			return nil, fmt.Errorf("websocket %s: %w", u.Redacted(), err)
		}
		if ws.Subprotocol() != "mqtt" {
			ws.CloseNow()
			return nil, fmt.Errorf("websocket %s: the server did not agree to subprotocol mqtt", u.Redacted())
		}
		ws.SetReadLimit(maxFrame)
		return newGraceConn(websocket.NetConn(context.Background(), ws, websocket.MessageBinary)), nil
	}
	raw, err := a.dial(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls with %s: %w", u.Host, err)
	}
	return newGraceConn(tc), nil
}
