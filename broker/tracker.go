package broker

import (
	"net"
	"sync"
	"time"
)

// connTracker follows the connections a listener has handed to mochi, so
// that closing the listener can end them all and wait until mochi is done
// with every one. mochi's Server.Close waits on a WaitGroup that each
// connection adds to when it starts; a connection starting while Close
// waits is a data race in mochi. Waiting here, before mochi's wait, rules
// it out. Upstream: https://github.com/mochi-mqtt/server/issues/424, https://github.com/mochi-mqtt/server/issues/541, fix https://github.com/mochi-mqtt/server/pull/540.
type connTracker struct {
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// add tracks c; it reports false (and closes c) once the listener is closed.
func (t *connTracker) add(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		_ = c.Close()
		return false
	}
	if t.conns == nil {
		t.conns = map[net.Conn]struct{}{}
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	return true
}

// done stops tracking c after mochi returned from it.
func (t *connTracker) done(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	t.wg.Done()
}

// closeAll refuses new connections, closes the tracked ones (those still
// in their TLS handshake or CONNECT, and any the broker's closer missed)
// and waits up to timeout for mochi to return from all of them.
func (t *connTracker) closeAll(timeout time.Duration) {
	t.mu.Lock()
	t.closed = true
	for c := range t.conns {
		_ = c.Close()
	}
	t.mu.Unlock()
	finished := make(chan struct{})
	go func() { t.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(timeout):
	}
}

// shutdownWait bounds how long closing a listener waits for its connections.
const shutdownWait = 5 * time.Second
