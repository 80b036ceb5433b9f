package broker

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"

	"homemq/addrlimit"
	"homemq/writequeue"
)

// addressGate bounds a listener's sockets per source address from accept
// (the Guard: Addresses, with limits.conns_per_addr) and hears of each
// socket it closes for that.
type addressGate interface {
	Addresses() *addrlimit.Table
	SocketRefused(listener, remote string)
}

// TCPListener is an MQTT listener on TCP, with TLS when configured. Unlike
// mochi's own, it gives every new connection a deadline to finish the TLS
// handshake and send CONNECT, so idle sockets cannot pile up; it counts
// every socket per source address from accept (with gate, when set), so one
// over the limit is closed at once, before the TLS handshake; and it queues
// what is written to it (package writequeue), so that a client that does
// not read cannot hold the broker.
type TCPListener struct {
	id, address    string
	tls            *tls.Config
	connectTimeout time.Duration
	gate           addressGate
	ln             net.Listener
	closer         listeners.CloseFn
	queue          writequeue.Options
	conns          connTracker
	once           sync.Once
}

// NewTCPListener returns a listener named id on address; tlsConf may be nil.
func NewTCPListener(id, address string, tlsConf *tls.Config, connectTimeout time.Duration) *TCPListener {
	return &TCPListener{id: id, address: address, tls: tlsConf, connectTimeout: connectTimeout}
}

// ID returns the listener's name.
func (l *TCPListener) ID() string { return l.id }

// Address returns the bound address (the real port once Init has run).
func (l *TCPListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.address
}

// Protocol returns "mqtts" or "mqtt".
func (l *TCPListener) Protocol() string {
	if l.tls != nil {
		return "mqtts"
	}
	return "mqtt"
}

// Init binds the address.
func (l *TCPListener) Init(log *slog.Logger) error {
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	ln = retryAccept(ln, log) // Serve stops on any Accept error: ride out EMFILE and the like
	if l.gate != nil {
		ln = l.gate.Addresses().Listener(ln, func(remote string) { l.gate.SocketRefused(l.id, remote) })
	}
	if l.tls != nil {
		ln = tls.NewListener(ln, l.tls)
	}
	l.ln = ln
	return nil
}

// Serve accepts connections until Close.
func (l *TCPListener) Serve(establish listeners.EstablishFn) {
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			return
		}
		var conn net.Conn = writequeue.New(raw, l.queue)
		if !l.conns.add(conn) {
			return
		}
		go func() {
			defer l.conns.done(conn)
			_ = conn.SetDeadline(time.Now().Add(l.connectTimeout))
			_ = establish(l.id, conn)
		}()
	}
}

// Close stops accepting and closes this listener's clients.
func (l *TCPListener) Close(closeClients listeners.CloseFn) {
	l.once.Do(func() {
		if l.ln != nil {
			_ = l.ln.Close()
		}
		closeWith(l.closer, closeClients, l.id)
		l.conns.closeAll(shutdownWait)
	})
}

// WebSocketListener is MQTT over WebSocket as an http.Handler mounted on the
// shared HTTPS server: subprotocol "mqtt" required, Origin checked against an
// handshake and send CONNECT, so idle sockets cannot pile up; it counts
// every socket per source address from accept (with gate, when set), so one
// over the limit is closed at once, before the TLS handshake; and it queues
// what is written to it (package writequeue), so that a client that does
// not read cannot hold the broker.
type WebSocketListener struct {
	id             string
	origins        []string
	readLimit      int64
	connectTimeout time.Duration
	gate           addressGate
	closer         listeners.CloseFn
	queue          writequeue.Options
	conns          connTracker
	mu             sync.RWMutex
	establish      listeners.EstablishFn
	ctx            context.Context
	cancel         context.CancelFunc
}

// NewWebSocketListener returns a listener named id. origins are extra
// allowed Origin host patterns (path.Match syntax); the request's own host is
// always allowed, and so are clients that send no Origin (not browsers).
func NewWebSocketListener(id string, origins []string, readLimit int64, connectTimeout time.Duration) *WebSocketListener {
	ctx, cancel := context.WithCancel(context.Background())
	return &WebSocketListener{id: id, origins: origins, readLimit: readLimit, connectTimeout: connectTimeout, ctx: ctx, cancel: cancel}
}

// ID returns the listener's name.
func (l *WebSocketListener) ID() string { return l.id }

// Address returns the path it is served at.
func (l *WebSocketListener) Address() string { return "/mqtt" }

// Protocol returns "wss".
func (l *WebSocketListener) Protocol() string { return "wss" }

// Init does nothing: the HTTPS server owns the socket.
func (l *WebSocketListener) Init(_ *slog.Logger) error { return nil }

// Serve records the broker's establish function; connections arrive
// through ServeHTTP.
func (l *WebSocketListener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	l.establish = establish
	l.mu.Unlock()
}

// Close refuses new connections and closes this listener's clients.
func (l *WebSocketListener) Close(closeClients listeners.CloseFn) {
	l.cancel()
	closeWith(l.closer, closeClients, l.id)
	l.conns.closeAll(shutdownWait)
}

// ServeHTTP upgrades to a WebSocket and hands the connection to the broker
// for its whole life.
func (l *WebSocketListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.RLock()
	establish := l.establish
	l.mu.RUnlock()
	if establish == nil || l.ctx.Err() != nil {
		http.Error(w, ErrNotServing.Error(), http.StatusServiceUnavailable)
		return
	}
	if l.gate != nil {
		key, addrs := addrlimit.Key(r.RemoteAddr), l.gate.Addresses()
		if !addrs.Acquire(key) {
			l.gate.SocketRefused(l.id, r.RemoteAddr)
			http.Error(w, "too many MQTT connections from "+key+" (limits.conns_per_addr); close some first", http.StatusTooManyRequests)
			return
		}
		defer addrs.Release(key)
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"mqtt"}, OriginPatterns: l.origins})
	if err != nil {
		return // Accept has answered (403 for a foreign Origin, 400 for a bad upgrade)
	}
	if c.Subprotocol() != "mqtt" {
		_ = c.Close(websocket.StatusPolicyViolation, `the WebSocket subprotocol "mqtt" is required`)
		return
	}
	var conn net.Conn = writequeue.New(websocket.NetConn(l.ctx, c, websocket.MessageBinary), l.queue)
	c.SetReadLimit(l.readLimit) // after NetConn, which switches the limit off
	if !l.conns.add(conn) {
		return
	}
	defer l.conns.done(conn)
	_ = conn.SetDeadline(time.Now().Add(l.connectTimeout))
	_ = establish(l.id, conn)
}

// closeWith closes a listener's clients with the broker's own closer when
// it has one: mochi's (closeListenerClients) takes the clients' read lock
// twice and deadlocks when a client is being removed at the same moment.
// Upstream: https://github.com/mochi-mqtt/server/issues/488, fix https://github.com/mochi-mqtt/server/pull/489.
func closeWith(own, mochis listeners.CloseFn, id string) {
	if own != nil {
		own(id)
		return
	}
	mochis(id)
}
