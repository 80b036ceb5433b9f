package addrlimit

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

func TestAcquireRelease(t *testing.T) {
	tb := New(Config{MaxConns: 2})
	for i, want := range []bool{true, true, false} {
		if got := tb.Acquire("a"); got != want {
			t.Fatalf("acquire %d: %v, want %v", i, got, want)
		}
	}
	if !tb.Acquire("b") {
		t.Fatal("another key was refused")
	}
	tb.Release("a")
	if !tb.Acquire("a") {
		t.Fatal("a released connection was not uncounted")
	}
	tb.Release("a")
	tb.Release("a")
	tb.Release("a") // one too many: ignored, never negative
	tb.Release("b")
	if n := tb.Len(); n != 0 {
		t.Fatalf("%d keys kept with no connections, want 0", n)
	}
	if got := acquireN(tb, "a", 3); got != 2 {
		t.Fatalf("%d of 3 acquired after an extra Release, want 2 (MaxConns)", got)
	}
}

// acquireN tries n acquisitions of key and returns how many succeeded.
func acquireN(tb *Table, key string, n int) int {
	got := 0
	for i := 0; i < n; i++ {
		if tb.Acquire(key) {
			got++
		}
	}
	return got
}

func TestZeroLimitsAllowEverything(t *testing.T) {
	tb := New(Config{})
	for i := 0; i < 1000; i++ {
		if !tb.Acquire("a") || !tb.Allow("a", time.Now()) {
			t.Fatal("a Table without limits refused")
		}
	}
	if tb.Len() != 0 {
		t.Fatal("a Table without limits kept keys")
	}
}

func TestAllowIsATokenBucketPerKey(t *testing.T) {
	tb := New(Config{Rate: 1, Burst: 3})
	now := time.Unix(1000, 0)
	var got []bool
	for i := 0; i < 4; i++ {
		got = append(got, tb.Allow("a", now))
	}
	if fmt.Sprint(got) != "[true true true false]" {
		t.Fatalf("burst 3: %v", got)
	}
	if !tb.Allow("b", now) {
		t.Fatal("another key shares the bucket")
	}
	if !tb.Allow("a", now.Add(time.Second)) {
		t.Fatal("the bucket did not refill")
	}
}

func TestTableIsBounded(t *testing.T) {
	tb := New(Config{MaxConns: 1, Rate: 1, Burst: 2, MaxKeys: 4})
	now := time.Unix(1000, 0)
	tb.now = func() time.Time { return now }
	for i := 0; i < 4; i++ {
		if !tb.Acquire(fmt.Sprint("conn", i)) {
			t.Fatalf("key %d refused below the bound", i)
		}
	}
	// full of keys holding connections: a newcomer is refused, nobody is evicted
	if tb.Acquire("new") || tb.Allow("new", now) {
		t.Fatal("a full Table took a new key")
	}
	if tb.Len() != 4 || tb.Conns("conn0") != 1 {
		t.Fatal("a key with a live connection was dropped")
	}
	// a released key whose bucket is spent is kept until it refills
	tb.Release("conn0")
	allowed := 0
	for i := 0; i < 3; i++ {
		if tb.Allow("conn1", now) {
			allowed++
		}
	}
	if allowed != 2 {
		t.Fatalf("%d of 3 attempts allowed, want burst 2", allowed)
	}
	now = now.Add(time.Second) // past pruneEvery
	if !tb.Acquire("new") {
		t.Fatal("a released key was not made room of")
	}
	if tb.Len() != 4 {
		t.Fatalf("%d keys, want at most 4", tb.Len())
	}
	tb.Release("conn2")
	tb.Release("conn3")
	tb.Release("new")
	now = now.Add(time.Second)
	for i := 0; i < 100; i++ {
		tb.Allow(fmt.Sprint("rate", i), now)
		now = now.Add(time.Second) // every bucket is full again a second later
		if tb.Len() > 4 {
			t.Fatalf("%d keys, want at most 4", tb.Len())
		}
	}
}

func TestListenerClosesConnectionsOverTheLimitAtAccept(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tb := New(Config{MaxConns: 2})
	refused := make(chan string, 10)
	ln := tb.Listener(inner, func(remote string) { refused <- remote })
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	held := []net.Conn{<-accepted, <-accepted}
	// the third was closed by the listener without being handed out
	_ = clients[2].SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := clients[2].Read(make([]byte, 1)); err != io.EOF && !isReset(err) {
		t.Fatalf("third connection: read %v, want it closed", err)
	}
	if n := tb.Conns("127.0.0.1"); n != 2 {
		t.Fatalf("%d counted, want 2", n)
	}
	if got := <-refused; got != clients[2].LocalAddr().String() {
		t.Fatalf("refused %s, want %s", got, clients[2].LocalAddr())
	}
	_ = held[0].Close()
	_ = held[0].Close() // twice: uncounted once
	if n := tb.Conns("127.0.0.1"); n != 1 {
		t.Fatalf("%d counted after a close, want 1", n)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case got := <-accepted:
		_ = got.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("a connection within the limit was not accepted")
	}
	_ = held[1].Close()
}

// isReset reports a connection reset by the peer (a close with unread data).
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET)
}
