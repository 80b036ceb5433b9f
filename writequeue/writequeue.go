// Package writequeue wraps a network connection so that writing to it never
// blocks the writer. A Write appends to a bounded per-connection queue and
// returns; a short-lived goroutine, started only while there is something
// to send, writes the queue to the real connection with a write deadline.
// A peer that does not read fast enough (the queue would pass its bound, or
// one write passes its deadline) has its connection closed at once, so a
// stalled reader can hold neither the writer nor any lock the writer holds.
//
// The broker wraps every connection it hands to mochi-mqtt with it: mochi
// writes while holding the client's lock, which publishers, revocation,
// expiry and shutdown all need too.
package writequeue

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for a zero Options field.
const (
	DefaultLimit   = 1 << 20
	DefaultTimeout = 5 * time.Second
	// MaxGrace bounds how long Close keeps sending what is queued (a
	// DISCONNECT with its reason) before it closes the connection.
	MaxGrace = 2 * time.Second
	// chunk is the most one write to the real connection sends, so that a
	// slow but steady reader (chunk per Timeout) keeps its connection.
	chunk = 64 << 10
)

// Errors a Write or Read returns once the connection has failed. Both are
// reported to Options.OnFail.
var (
	// ErrOverflow: the peer reads too slowly; the queue would pass Options.Limit.
	ErrOverflow = errors.New("writequeue: the peer does not read fast enough: its write queue is full; connection closed")
	// ErrStalled: a write to the peer did not finish within Options.Timeout.
	ErrStalled = errors.New("writequeue: the peer stopped reading: a write timed out; connection closed")
)

// Options bound one connection's queue.
type Options struct {
	// Limit is the most bytes queued and not yet written (DefaultLimit if 0).
	// A Write that would pass it closes the connection.
	Limit int
	// Timeout is how long one write to the real connection may take
	// (DefaultTimeout if 0). A write that takes longer closes the connection.
	Timeout time.Duration
	// OnFail, if set, is called once, without locks held, when the
	// connection is closed for ErrOverflow or ErrStalled. It must not block.
	OnFail func(c *Conn, err error)
}

// Conn is a net.Conn whose Write never blocks. Reads, addresses and read
// deadlines pass through to the real connection; the write side belongs to
// Conn (SetWriteDeadline does nothing). The zero value is not usable: make
// one with New.
type Conn struct {
	nc   net.Conn
	opts Options
	down atomic.Bool // set with err: reads fail at once

	mu       sync.Mutex
	pending  []byte    // written by Write, not yet taken by the flusher
	inFlight int       // bytes the flusher has taken and not yet written
	flushing bool      // a flusher goroutine is running
	writeBy  time.Time // the flusher's current write deadline
	err      error     // once set, Write and Read return it
	closing  bool      // Close was called: flush until closeBy, then close
	closeBy  time.Time
	shut     bool // the real connection is being closed
}

// New wraps nc. Every Write, Read and Close must go through the returned
// Conn from now on.
func New(nc net.Conn, o Options) *Conn {
	if o.Limit <= 0 {
		o.Limit = DefaultLimit
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return &Conn{nc: nc, opts: o}
}

// Queued returns the number of bytes written and not yet sent.
func (c *Conn) Queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) + c.inFlight
}

// Err returns why the connection no longer takes writes: net.ErrClosed
// after Close, ErrOverflow or ErrStalled after a failure, an I/O error
// from the real connection; nil while it is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Write queues a copy of p and returns at once. It fails, and closes the
// connection, if the queue would pass its limit.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	if len(c.pending)+c.inFlight+len(p) > c.opts.Limit {
		first := c.failLocked(ErrOverflow)
		c.mu.Unlock()
		if first {
			c.report(ErrOverflow)
		}
		return 0, ErrOverflow
	}
	c.pending = append(c.pending, p...)
	if !c.flushing {
		c.flushing = true
		go c.flush()
	}
	c.mu.Unlock()
	return len(p), nil
}

// flush writes the queue to the real connection until it is empty, then
// exits; a Write that finds no flusher starts one.
func (c *Conn) flush() {
	var buf, out []byte // the buffer taken from pending, and what of it is left to write
	for {
		c.mu.Lock()
		if len(out) == 0 {
			if len(c.pending) == 0 || c.shut {
				c.flushing, c.pending, c.inFlight = false, nil, 0
				if c.closing {
					c.shutLocked(c.closeBy)
				}
				c.mu.Unlock()
				return
			}
			buf, c.pending = c.pending, buf[:0] // the written buffer takes the next Writes
			out = buf
		}
		c.inFlight = len(out)
		c.writeBy = time.Now().Add(c.opts.Timeout)
		if c.closing && c.closeBy.Before(c.writeBy) {
			c.writeBy = c.closeBy
		}
		_ = c.nc.SetWriteDeadline(c.writeBy)
		c.mu.Unlock()

		n, err := c.nc.Write(out[:min(len(out), chunk)])
		out = out[n:]
		if err != nil {
			c.writeFailed(err)
			return
		}
	}
}

// writeFailed ends the flusher after a failed write to the real
// connection, and reports a stall unless the connection was being closed
// anyway (a failure already reported, or the grace of Close ran out).
func (c *Conn) writeFailed(err error) {
	c.mu.Lock()
	c.flushing, c.pending, c.inFlight = false, nil, 0
	// a timeout, whatever error the real connection makes of it (a
	// WebSocket cancels its write context)
	var ne net.Error
	stalled := errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() || !time.Now().Before(c.writeBy)
	graceOut := c.closing && !c.writeBy.Before(c.closeBy)
	report := stalled && !graceOut && !c.shut
	if stalled {
		err = ErrStalled
	}
	if c.err == nil || report {
		c.err = err
		c.down.Store(true)
	}
	c.shutLocked(time.Now())
	c.mu.Unlock()
	if report {
		c.report(ErrStalled)
	}
}

// failLocked makes every later Write and Read fail with err and closes the
// real connection at once; it reports whether err is the first failure.
func (c *Conn) failLocked(err error) bool {
	first := c.err == nil
	if first {
		c.err = err
		c.down.Store(true)
	}
	c.pending = nil
	c.shutLocked(time.Now())
	return first
}

// shutLocked starts closing the real connection, once: anything still
// blocked on it is cut off at by.
func (c *Conn) shutLocked(by time.Time) {
	if c.shut {
		return
	}
	c.shut = true
	go func() {
		// The real Close may block (a TLS close_notify or a WebSocket close
		// frame to a peer that does not read): past the deadline, every
		// pending read and write on it fails at once.
		t := time.AfterFunc(time.Until(by), func() { _ = c.nc.SetDeadline(time.Now()) })
		_ = c.nc.Close()
		t.Stop()
	}()
}

func (c *Conn) report(err error) {
	if c.opts.OnFail != nil {
		c.opts.OnFail(c, err)
	}
}

// Close stops taking writes and returns at once. What is queued (such as a
// DISCONNECT that says why) is still sent, for at most min(Timeout,
// MaxGrace); then the real connection is closed.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.shut {
		return nil
	}
	c.closing = true
	c.closeBy = time.Now().Add(min(c.opts.Timeout, MaxGrace))
	if c.err == nil {
		c.err = net.ErrClosed
		c.down.Store(true)
	}
	if !c.flushing {
		c.shutLocked(c.closeBy)
		return nil
	}
	if c.closeBy.Before(c.writeBy) {
		c.writeBy = c.closeBy
		_ = c.nc.SetWriteDeadline(c.closeBy) // the flusher shuts the connection when done
	}
	return nil
}

// Read reads from the real connection; once the Conn is closed or has
// failed, it returns the reason at once.
func (c *Conn) Read(p []byte) (int, error) {
	if c.down.Load() {
		return 0, c.Err()
	}
	return c.nc.Read(p)
}

// LocalAddr returns the real connection's local address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// RemoteAddr returns the real connection's remote address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// SetDeadline sets the read deadline. While nothing is being flushed it is
// also the write deadline of the real connection, which bounds what the
// real connection writes on its own while reading (a TLS handshake).
func (c *Conn) SetDeadline(t time.Time) error {
	err := c.nc.SetReadDeadline(t)
	c.mu.Lock()
	if !c.flushing && !c.shut {
		_ = c.nc.SetWriteDeadline(t)
	}
	c.mu.Unlock()
	return err
}

// SetReadDeadline sets the real connection's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// SetWriteDeadline does nothing: Conn bounds its writes with
// Options.Timeout.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }
