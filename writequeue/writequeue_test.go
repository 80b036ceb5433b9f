package writequeue

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// peer is the far end of a pipe: it reads everything (or nothing) and
// records what it got and whether it saw the connection end.
type peer struct {
	conn  net.Conn
	mu    sync.Mutex
	got   bytes.Buffer
	ended chan struct{}
}

func newPeer(conn net.Conn, reads bool) *peer {
	p := &peer{conn: conn, ended: make(chan struct{})}
	if !reads {
		return p
	}
	go func() {
		defer close(p.ended)
		b := make([]byte, 4096)
		for {
			n, err := conn.Read(b)
			p.mu.Lock()
			p.got.Write(b[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return p
}

func (p *peer) bytes() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.got.Bytes())
}

// TestWriteNeverBlocks: a Write returns at once whatever the peer does; a
// peer that cannot keep up has its connection closed with the reason, once.
func TestWriteNeverBlocks(t *testing.T) {
	cases := []struct {
		name      string
		opts      Options
		peerReads bool
		writes    []int // sizes, one Write each
		wait      time.Duration
		wantErr   error // of the last Write, or of a Write after wait
		wantFail  error // reported to OnFail (nil: not called)
	}{
		{name: "reader gets everything", opts: Options{Limit: 2000}, peerReads: true, writes: []int{300, 300, 300, 300}, wait: time.Second},
		{name: "over the limit at once", opts: Options{Limit: 1000}, writes: []int{600, 600}, wantErr: ErrOverflow, wantFail: ErrOverflow},
		{name: "exactly the limit", opts: Options{Limit: 1000, Timeout: time.Hour}, writes: []int{500, 500}, wait: time.Minute},
		{name: "stalled past the timeout", opts: Options{Limit: 1000, Timeout: 5 * time.Second}, writes: []int{10}, wait: 6 * time.Second, wantErr: ErrStalled, wantFail: ErrStalled},
		{name: "later writes after overflow", opts: Options{Limit: 100}, writes: []int{90, 20, 1}, wantErr: ErrOverflow, wantFail: ErrOverflow},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a, b := net.Pipe()
				var fails atomic.Int32
				var failed atomic.Value
				tc.opts.OnFail = func(_ *Conn, err error) { fails.Add(1); failed.Store(err) }
				c := New(a, tc.opts)
				p := newPeer(b, tc.peerReads)
				var want bytes.Buffer
				var err error
				for i, n := range tc.writes {
					chunk := bytes.Repeat([]byte{byte('a' + i)}, n)
					start := time.Now()
					_, err = c.Write(chunk)
					if time.Since(start) != 0 {
						t.Fatalf("Write %d blocked for %v", i, time.Since(start))
					}
					if err == nil {
						want.Write(chunk)
					}
				}
				if tc.wait > 0 {
					time.Sleep(tc.wait)
					synctest.Wait()
					if err == nil && tc.wantErr != nil {
						_, err = c.Write([]byte("x"))
					}
				}
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Write: %v, want %v", err, tc.wantErr)
				}
				if got := fails.Load(); (tc.wantFail == nil) != (got == 0) || got > 1 {
					t.Fatalf("OnFail called %d times, want %v", got, tc.wantFail)
				}
				if tc.wantFail != nil && failed.Load() != tc.wantFail {
					t.Fatalf("OnFail(%v), want %v", failed.Load(), tc.wantFail)
				}
				if tc.wantErr != nil {
					if _, err := c.Read(make([]byte, 1)); !errors.Is(err, tc.wantErr) {
						t.Fatalf("Read after failure: %v, want %v", err, tc.wantErr)
					}
					if _, err := b.Write([]byte("x")); err == nil {
						t.Fatal("the real connection is still open after a failure")
					}
				}
				if tc.peerReads && !bytes.Equal(p.bytes(), want.Bytes()) {
					t.Fatalf("peer got %d bytes, want %d in order", len(p.bytes()), want.Len())
				}
				_ = c.Close()
				_ = b.Close()
			})
		})
	}
}

// TestCloseFlushesThenCloses: Close returns at once; what was queued still
// reaches a reading peer, which then sees the end of the connection. A
// peer that does not read is cut off after the grace, and a Read blocked on
// the connection returns.
func TestCloseFlushesThenCloses(t *testing.T) {
	cases := []struct {
		name      string
		peerReads bool
		timeout   time.Duration
	}{
		{name: "reading peer", peerReads: true, timeout: 5 * time.Second},
		{name: "stalled peer", peerReads: false, timeout: 5 * time.Second},
		{name: "stalled peer, short timeout", peerReads: false, timeout: 500 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a, b := net.Pipe()
				c := New(a, Options{Timeout: tc.timeout})
				p := newPeer(b, tc.peerReads)
				readDone := make(chan error, 1)
				go func() {
					_, err := c.Read(make([]byte, 1))
					readDone <- err
				}()
				msg := bytes.Repeat([]byte("disconnect"), 1000)
				if _, err := c.Write(msg); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				if err := c.Close(); err != nil || time.Since(start) != 0 {
					t.Fatalf("Close: %v after %v", err, time.Since(start))
				}
				if _, err := c.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
					t.Fatalf("Write after Close: %v", err)
				}
				if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
					t.Fatalf("Read after Close: %v", err)
				}
				select {
				case <-readDone:
				case <-time.After(min(tc.timeout, MaxGrace) + time.Millisecond):
					t.Fatalf("a blocked Read still waits after the grace")
				}
				if tc.peerReads {
					<-p.ended
					if !bytes.Equal(p.bytes(), msg) {
						t.Fatalf("peer got %d bytes before the end, want %d", len(p.bytes()), len(msg))
					}
					return
				}
				if _, err := b.Read(make([]byte, 1)); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
					t.Fatalf("peer read: %v", err)
				}
				_ = b.Close()
			})
		})
	}
}

// TestSetDeadlineIsForReads: a read deadline set through the Conn ends a
// Read; it does not cut short a queued write to a slow reader.
func TestSetDeadlineIsForReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		c := New(a, Options{Timeout: 10 * time.Second})
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("Read returned without data before its deadline")
		}
		time.Sleep(5 * time.Second) // past the read deadline, within the write timeout
		got := make([]byte, 5)
		if _, err := io.ReadFull(b, got); err != nil || string(got) != "hello" {
			t.Fatalf("peer read %q: %v", got, err)
		}
		if err := c.Err(); err != nil {
			t.Fatalf("the connection failed: %v", err)
		}
		_ = c.Close()
		_ = b.Close()
	})
}

// TestIdleConnHasNoGoroutine: once the queue is written, no goroutine is
// left for the connection and its buffer is released.
func TestIdleConnHasNoGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		c := New(a, Options{})
		p := newPeer(b, true)
		_, _ = c.Write([]byte("state"))
		synctest.Wait()
		c.mu.Lock()
		flushing, pending := c.flushing, c.pending
		c.mu.Unlock()
		if flushing || pending != nil || c.Queued() != 0 {
			t.Fatalf("idle: flushing %v, pending %d bytes (cap %d)", flushing, len(pending), cap(pending))
		}
		if string(p.bytes()) != "state" {
			t.Fatalf("peer got %q", p.bytes())
		}
		_ = c.Close()
	})
}
