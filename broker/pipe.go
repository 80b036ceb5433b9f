package broker

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"

	"homemq/writequeue"
)

// PipeListener hands in-process connections (net.Pipe) to the broker, so
// that parts of homemq such as the SignalR bridge connect as ordinary MQTT
// clients, under exactly the same token, topic and envelope rules.
type PipeListener struct {
	id             string
	connectTimeout time.Duration
	closer         listeners.CloseFn
	queue          writequeue.Options // writes to the in-process client are queued like a socket's
	conns          connTracker
	mu             sync.RWMutex
	establish      listeners.EstablishFn
	closed         bool
}

// NewPipeListener returns an in-process listener named id.
func NewPipeListener(id string, connectTimeout time.Duration) *PipeListener {
	return &PipeListener{id: id, connectTimeout: connectTimeout}
}

// ID returns the listener's name.
func (l *PipeListener) ID() string { return l.id }

// Address returns "pipe".
func (l *PipeListener) Address() string { return "pipe" }

// Protocol returns "pipe".
func (l *PipeListener) Protocol() string { return "pipe" }

// Init does nothing.
func (l *PipeListener) Init(_ *slog.Logger) error { return nil }

// Serve records the broker's establish function.
func (l *PipeListener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	l.establish = establish
	l.mu.Unlock()
}

// Close refuses new connections and closes this listener's clients.
func (l *PipeListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	closeWith(l.closer, closeClients, l.id)
	l.conns.closeAll(shutdownWait)
}

// ErrNotServing is returned by Dial before Start or after Shutdown.
var ErrNotServing = errors.New("broker: not serving")

// Dial returns the client end of a new in-process MQTT connection.
func (l *PipeListener) Dial() (net.Conn, error) {
	l.mu.RLock()
	establish, closed := l.establish, l.closed
	l.mu.RUnlock()
	if establish == nil || closed {
		return nil, ErrNotServing
	}
	client, pipe := net.Pipe()
	var server net.Conn = writequeue.New(pipe, l.queue)
	if !l.conns.add(server) {
		_ = client.Close()
		return nil, ErrNotServing
	}
	_ = server.SetDeadline(time.Now().Add(l.connectTimeout))
	go func() {
		defer l.conns.done(server)
		_ = establish(l.id, server)
	}()
	return client, nil
}
