package bridge

import (
	"errors"
	"net"
	"sync"
	"time"
)

// maxPending bounds what a session may have written that the broker has
// not read yet.
const maxPending = 4 << 20

var errPendingFull = errors.New("bridge: the broker is not reading; more than 4 MiB pending")

// asyncConn makes writes to an in-process connection (net.Pipe, which has
// no buffer at all) return at once: a goroutine forwards them. Without it,
// paho writing an ack while holding its session lock, and the broker
// writing to paho at the same moment, wait on each other forever. Writes are
// safe for concurrent use and each one is forwarded whole.
type asyncConn struct {
	net.Conn
	mu      sync.Mutex
	cond    *sync.Cond
	buf     []byte
	err     error
	closing bool
	done    chan struct{}
}

func newAsyncConn(c net.Conn) *asyncConn {
	a := &asyncConn{Conn: c, done: make(chan struct{})}
	a.cond = sync.NewCond(&a.mu)
	go a.forward()
	return a
}

func (a *asyncConn) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.err != nil:
		return 0, a.err
	case a.closing:
		return 0, net.ErrClosed
	case len(a.buf)+len(p) > maxPending:
		return 0, errPendingFull
	}
	a.buf = append(a.buf, p...)
	a.cond.Signal()
	return len(p), nil
}

func (a *asyncConn) forward() {
	defer close(a.done)
	var out []byte
	for {
		a.mu.Lock()
		for len(a.buf) == 0 && !a.closing && a.err == nil {
			a.cond.Wait()
		}
		if len(a.buf) == 0 || a.err != nil {
			a.mu.Unlock()
			return
		}
		out, a.buf = a.buf, out[:0]
		a.mu.Unlock()
		if _, err := a.Conn.Write(out); err != nil {
			a.mu.Lock()
			a.err = err
			a.mu.Unlock()
			return
		}
	}
}

// Close forwards what was written (for at most a second, so a DISCONNECT
// reaches the broker) and closes the connection.
func (a *asyncConn) Close() error {
	a.mu.Lock()
	a.closing = true
	a.cond.Signal()
	a.mu.Unlock()
	select {
	case <-a.done:
	case <-time.After(time.Second):
	}
	err := a.Conn.Close()
	<-a.done
	return err
}
