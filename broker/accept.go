package broker

import (
	"errors"
	"log/slog"
	"net"
	"syscall"
	"time"
)

// maxAcceptDelay bounds the wait between two accepts that failed for a
// passing reason.
const maxAcceptDelay = time.Second

// retryAccept returns ln whose Accept, when accepting fails for a reason
// that passes (out of file descriptors or kernel memory, a connection
// aborted before it was accepted), waits and tries again, doubling the wait
// up to maxAcceptDelay, instead of returning the error. A TCPListener's
// Serve loop, like mochi's listeners.TCP.Serve it stands in for, stops for
// good on any Accept error, so a flood that used up the descriptors for a
// moment would otherwise end MQTT service until a restart. net/http's Server retries
// the same way, so the HTTPS listener needs no wrapper. mochi's behaviour
// is not reported upstream (checked 2026-11).
func retryAccept(ln net.Listener, log *slog.Logger) net.Listener {
	return &retryListener{Listener: ln, log: log}
}

type retryListener struct {
	net.Listener
	log *slog.Logger
}

// Accept returns the next connection, or an error that will not pass
// (such as the listener being closed).
func (l *retryListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil || !passingAcceptError(err) {
			return c, err
		}
		if delay == 0 && l.log != nil {
			l.log.Warn("accept failed; retrying until it succeeds", "address", l.Addr().String(), "error", err)
		}
		delay = min(max(2*delay, 5*time.Millisecond), maxAcceptDelay)
		time.Sleep(delay)
	}
}

// passingAcceptError reports whether accept failed for want of a resource
// that comes back, or for one connection only.
func passingAcceptError(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
