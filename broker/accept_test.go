package broker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
)

// failingListener fails its first accepts with errs, then returns conn.
type failingListener struct {
	net.Listener
	errs []error
	conn net.Conn
}

func (l *failingListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.conn, nil
}

func (l *failingListener) Addr() net.Addr { return &net.TCPAddr{} }

func TestRetryAccept(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	closed := fmt.Errorf("accept: %w", net.ErrClosed)
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	tests := []struct {
		name     string
		errs     []error
		wantConn bool
		wantErr  error
	}{
		{"out of descriptors, then a connection", []error{emfile, emfile, syscall.ECONNABORTED}, true, nil},
		{"closed", []error{closed}, false, net.ErrClosed},
		{"closed while waiting", []error{emfile, closed}, false, net.ErrClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln := retryAccept(&failingListener{errs: tc.errs, conn: c1}, nil)
			c, err := ln.Accept()
			if (c != nil) != tc.wantConn || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Accept = %v, %v; want a connection %v, error %v", c, err, tc.wantConn, tc.wantErr)
			}
		})
	}
}
