package addrlimit

import (
	"net"
	"sync"
)

// Listener returns ln counting every connection it accepts under its remote
// address's key from accept until the connection is closed. A connection
// its key has no room for is closed at once, before a byte is read from it
// (so before any TLS handshake), and Accept goes on to the next; refused,
// when not nil, is told the remote address of each.
func (t *Table) Listener(ln net.Listener, refused func(remote string)) net.Listener {
	return &listener{Listener: ln, t: t, refused: refused}
}

type listener struct {
	net.Listener
	t       *Table
	refused func(remote string)
}

// Accept returns the next connection its key has room for.
func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		remote := c.RemoteAddr()
		if tc, ok := l.t.Track(c); ok {
			return tc, nil
		}
		if l.refused != nil && remote != nil {
			l.refused(remote.String())
		}
	}
}

// Track counts c under its remote address's key and returns it wrapped so
// that closing it uncounts it (once). If the key has no room, Track closes
// c and reports false.
func (t *Table) Track(c net.Conn) (net.Conn, bool) {
	key := KeyOf(c.RemoteAddr())
	if !t.Acquire(key) {
		_ = c.Close()
		return nil, false
	}
	return &conn{Conn: c, t: t, key: key}, true
}

// conn is a connection counted in a Table until its first Close.
type conn struct {
	net.Conn
	t    *Table
	key  string
	once sync.Once
}

// Close closes the connection and uncounts it.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.t.Release(c.key) })
	return err
}
