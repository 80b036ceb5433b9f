package hooks

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
)

// peerConn is a client socket as the broker sees it: one whose peer reads
// (writes land in got) or one whose peer never reads (Write blocks until
// Close, as a socket's does once its buffers are full).
type peerConn struct {
	net.Conn // nil: only the methods below are used
	reads    bool
	mu       sync.Mutex
	got      bytes.Buffer
	writing  chan struct{} // closed when a Write blocks
	closed   chan struct{}
	once     sync.Once
	wOnce    sync.Once
}

func newPeerConn(reads bool) *peerConn {
	return &peerConn{reads: reads, writing: make(chan struct{}), closed: make(chan struct{})}
}

func (c *peerConn) Write(p []byte) (int, error) {
	if c.reads {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.got.Write(p)
	}
	c.wOnce.Do(func() { close(c.writing) })
	<-c.closed
	return 0, net.ErrClosed
}

func (c *peerConn) Read([]byte) (int, error) { <-c.closed; return 0, net.ErrClosed }

func (c *peerConn) Close() error { c.once.Do(func() { close(c.closed) }); return nil }

func (c *peerConn) SetDeadline(time.Time) error { return nil }

func (c *peerConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1883} }

// connectOn runs the Guard's CONNECT decision for an MQTT 5 client on conn.
func connectOn(t *testing.T, g *Guard, srv *mqtt.Server, conn net.Conn, clientID, token string) *mqtt.Client {
	t.Helper()
	cl := srv.NewClient(conn, "test", "", false)
	pk := packets.Packet{ProtocolVersion: 5, Connect: packets.ConnectParams{ClientIdentifier: clientID, Password: []byte(token), PasswordFlag: true, Keepalive: 30}}
	cl.ParseConnect("test", pk)
	if err := g.OnConnect(cl, pk); err != nil {
		t.Fatalf("connect %s: %v", clientID, err)
	}
	return cl
}

// TestRevokedDoesNotWaitForAStuckClient: one connection of a revoked sub
// whose writer is stuck (it holds mochi's client lock) neither delays
// Revoked nor the cut-off of the sub's other connections; its connection
// slots are given back at once, and it is closed within DisconnectWait.
func TestRevokedDoesNotWaitForAStuckClient(t *testing.T) {
	g, srv, is := testGuard(t)
	g.cfg.DisconnectWait = 200 * time.Millisecond
	tok, _, err := is.Mint(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h1": "viewer"}})
	if err != nil {
		t.Fatal(err)
	}
	stuckConn, goodConn := newPeerConn(false), newPeerConn(true)
	stuck := connectOn(t, g, srv, stuckConn, "user:alice/stuck", tok)
	var good []*mqtt.Client
	for _, id := range []string{"user:alice/a", "user:alice/b", "user:alice/c"} {
		good = append(good, connectOn(t, g, srv, goodConn, id, tok))
	}
	// mochi's writer, stuck on a peer that does not read, holding the lock
	go func() {
		_ = stuck.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "homes/h1/agents/pi/devices/d/state"})
	}()
	<-stuckConn.writing

	start := time.Now()
	g.Revoked(auth.Revocation{Sub: "user:alice", At: time.Now().Unix() + 1, Until: time.Now().Add(time.Hour).Unix()})
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Revoked returned after %v, want at once", d)
	}
	g.counts.mu.Lock()
	slots := g.counts.subs["user:alice"]
	g.counts.mu.Unlock()
	if slots != 0 {
		t.Fatalf("%d connection slots of the revoked sub still counted", slots)
	}
	all := append([]*mqtt.Client{stuck}, good...)
	deadline := time.Now().Add(5 * time.Second)
	for _, cl := range all {
		for !cl.Closed() {
			if time.Now().After(deadline) {
				t.Fatalf("%s still open 5s after the revocation", cl.ID)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	goodConn.mu.Lock()
	defer goodConn.mu.Unlock()
	if n := bytes.Count(goodConn.got.Bytes(), []byte("token revoked")); n != len(good) {
		t.Fatalf("%d DISCONNECTs saying why, want %d", n, len(good))
	}
}

// TestCutOffReleasesOnce: a cut-off and the end of the connection that
// follows give the connection's slots back once between them.
func TestCutOffReleasesOnce(t *testing.T) {
	g, srv, is := testGuard(t)
	tok, _, err := is.Mint(auth.Spec{Sub: "user:bob", Homes: map[string]string{"h1": "viewer"}})
	if err != nil {
		t.Fatal(err)
	}
	conn := newPeerConn(true)
	first := connectOn(t, g, srv, conn, "user:bob/one", tok)
	connectOn(t, g, srv, conn, "user:bob/two", tok)
	s := g.session(first)
	s.revoked.Store(true)
	g.cutOff(first, s)
	g.cutOff(first, s) // expiry racing the revocation
	g.OnDisconnect(first, nil, true)
	g.counts.mu.Lock()
	defer g.counts.mu.Unlock()
	if n := g.counts.subs["user:bob"]; n != 1 {
		t.Fatalf("user:bob counted %d times, want 1 (the other connection)", n)
	}
}
