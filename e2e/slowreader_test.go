package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
	"homemq/broker"
)

// The attack: a subscriber with a tiny receive buffer subscribes, many
// times over, to a home's retained states at QoS 1, then never reads its
// socket again, only sending a PUBACK now and then to keep its keep-alive
// fresh. Before homemq queued writes itself (package writequeue), mochi's
// writer to it held the client's lock for good, and with it every
// publisher that delivered to it, its revocation, its expiry and shutdown.

// stalledReader is that subscriber: a raw MQTT 5 client.
type stalledReader struct {
	id   string
	conn net.Conn
	stop chan struct{}
}

// Retained load: retainedCount states of retainedSize bytes, subscribed
// resubscribes times, is far more than the socket buffers on loopback
// (net.ipv4.tcp_wmem allows 4 MiB) and less than the queue limit that tests
// of cut-offs configure (bigQueue), so the reader stays connected, stalled.
const (
	retainedCount = 20
	retainedSize  = 16 << 10
	resubscribes  = 40
	bigQueue      = 64 << 20
	stateFilter   = "homes/h1/agents/+/devices/+/state"
)

// bigQueues makes the per-connection write queue large and slow to time
// out, so that a stalled reader is still connected when it is cut off.
func bigQueues(c *broker.Config) {
	c.Limits.WriteBuffer = bigQueue
	c.Limits.WriteTimeout = time.Minute
}

// tinyReceiveBuffer sets SO_RCVBUF before connecting.
var tinyReceiveBuffer = net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048)
	}); err != nil {
		return err
	}
	return serr
}}

// fillRetained publishes the retained states the stalled reader will
// subscribe to, from agent pi.
func fillRetained(t *testing.T, b *testBroker, tr transport) *v5client {
	t.Helper()
	agent := b.mustV5(tr, "agent:pi", b.mint("agent:pi", "h1=agent"))
	payload := bytes.Repeat([]byte("s"), retainedSize)
	for i := range retainedCount {
		if pr := agent.publish(t, fmt.Sprintf("homes/h1/agents/pi/devices/d%d/state", i), payload, 1, true); pr.ReasonCode != 0 {
			t.Fatalf("retained publish %d: 0x%02X", i, pr.ReasonCode)
		}
	}
	return agent
}

// stall connects a stalled reader over tr as id with token, subscribes it
// resubscribes times to the retained states, and waits until the broker can
// send it no more. Its socket is closed at cleanup, before the broker's.
func (b *testBroker) stall(t *testing.T, tr transport, id, token string) *stalledReader {
	t.Helper()
	conn := b.dialTiny(t, tr)
	s := &stalledReader{id: id, conn: conn, stop: make(chan struct{})}
	t.Cleanup(func() { close(s.stop); _ = conn.Close() })
	send := func(pk packets.Packet, encode func(*packets.Packet, *bytes.Buffer) error) error {
		var buf bytes.Buffer
		pk.ProtocolVersion = 5
		if err := encode(&pk, &buf); err != nil {
			return err
		}
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err := conn.Write(buf.Bytes())
		return err
	}
	err := send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 300, ClientIdentifier: id,
		UsernameFlag: true, Username: []byte("u"), PasswordFlag: true, Password: []byte(token)}}, (*packets.Packet).ConnectEncode)
	if err != nil {
		t.Fatalf("stalled reader CONNECT: %v", err)
	}
	if code := readConnack(t, conn); code != 0 {
		t.Fatalf("stalled reader CONNACK 0x%02X", code)
	}
	base := atomic.LoadInt64(&b.Server.Info.BytesSent)
	for i := range resubscribes {
		err := send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: uint16(60000 + i), // clear of the ids of deliveries: mochi refuses an id in flight either way
			Filters: packets.Subscriptions{{Filter: stateFilter, Qos: 1}}}, (*packets.Packet).SubscribeEncode)
		if err != nil {
			t.Fatalf("stalled reader SUBSCRIBE %d: %v", i, err)
		}
	}
	go func() { // a PUBACK now and then pushes the keep-alive deadline forward
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for id := uint16(1); ; id++ {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			_ = send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id}, (*packets.Packet).PubackEncode)
		}
	}()
	b.waitStalled(t, base)
	return s
}

// dialTiny opens a connection over tr with a tiny receive buffer.
func (b *testBroker) dialTiny(t *testing.T, tr transport) net.Conn {
	t.Helper()
	a := b.Addrs()
	switch tr {
	case overPlain:
		c, err := tinyReceiveBuffer.Dial("tcp", a["mqtt"])
		if err != nil {
			t.Fatal(err)
		}
		return c
	case overTLS:
		c, err := tinyReceiveBuffer.Dial("tcp", a["mqtts"])
		if err != nil {
			t.Fatal(err)
		}
		return tlsClient(t, c, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, b.url(overWSS), &websocket.DialOptions{
		Subprotocols: []string{"mqtt"},
		HTTPClient:   &http.Client{Transport: &http.Transport{TLSClientConfig: b.tlsConfig(), DialContext: tinyReceiveBuffer.DialContext}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return websocket.NetConn(context.Background(), c, websocket.MessageBinary)
}

// readConnack reads one CONNACK and returns its reason code.
func readConnack(t *testing.T, conn net.Conn) byte {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	r := bufio.NewReaderSize(conn, 16) // reads no further than it must
	var fh packets.FixedHeader
	first, err := r.ReadByte()
	if err == nil {
		err = fh.Decode(first)
	}
	if err == nil {
		fh.Remaining, _, err = packets.DecodeLength(r)
	}
	body := make([]byte, fh.Remaining)
	if err == nil {
		_, err = io.ReadFull(r, body)
	}
	if err != nil || fh.Type != packets.Connack || len(body) < 2 {
		t.Fatalf("CONNACK: %v (type %d)", err, fh.Type)
	}
	return body[1]
}

// waitStalled waits until the broker's sent-bytes counter has grown by
// more than a few retained states since base and then stood still for a
// while: every write it could make to the stalled reader is made.
func (b *testBroker) waitStalled(t *testing.T, base int64) {
	t.Helper()
	var last, still int64
	eventually(t, 30*time.Second, "the broker to stop sending to the stalled reader", func() bool {
		n := atomic.LoadInt64(&b.Server.Info.BytesSent)
		if n != last || n < base+256<<10 {
			last, still = n, 0
			return false
		}
		still++
		return still >= 10 // 200 ms unchanged
	})
}

// connected reports whether the broker still serves client id.
func (b *testBroker) connected(id string) bool {
	cl, ok := b.Server.Clients.Get(id)
	return ok && !cl.Closed()
}

// metric returns the value of a counter or gauge on the broker's registry
// (0 when it does not exist).
func (b *testBroker) metric(t *testing.T, name string) float64 {
	t.Helper()
	families, err := b.Metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		v := 0.0
		for _, m := range f.GetMetric() {
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		return v
	}
	return 0
}

// TestStalledReaderDoesNotHoldPublishers: with a stalled subscriber present,
// every QoS 1 state the agent publishes is acknowledged promptly, and the
// stalled reader is disconnected, counted and audited as a slow consumer:
// with the default queue and a long write timeout because its queue
// overflows, with a large queue because its write times out. (Each case
// makes the other cause too slow to win on a loaded machine.)
func TestStalledReaderDoesNotHoldPublishers(t *testing.T) {
	cases := []struct {
		reason string // of the audit entry
		edit   func(*broker.Config)
	}{
		{"write_buffer", func(c *broker.Config) { c.Limits.WriteTimeout = time.Minute }},
		{"write_timeout", func(c *broker.Config) { bigQueues(c); c.Limits.WriteTimeout = 3 * time.Second }},
	}
	for _, tc := range cases {
		for _, tr := range allTransports {
			t.Run(tc.reason+"/"+string(tr), func(t *testing.T) {
				b := startBroker(t, tc.edit)
				agent := fillRetained(t, b, tr)
				s := b.stall(t, tr, "user:viewer/stalled", b.mint("user:viewer", "h1=viewer"))
				payload := bytes.Repeat([]byte("p"), 4<<10)
				for i := range 30 {
					start := time.Now()
					pr := agent.publish(t, "homes/h1/agents/pi/devices/d0/state", payload, 1, false)
					if pr.ReasonCode != 0 || time.Since(start) > 5*time.Second {
						t.Fatalf("publish %d: 0x%02X after %v, want acknowledged within 5s", i, pr.ReasonCode, time.Since(start))
					}
				}
				eventually(t, 15*time.Second, "the stalled reader disconnected", func() bool { return !b.connected(s.id) })
				if n := b.metric(t, "homemq_slow_consumer_disconnects_total"); n != 1 {
					t.Fatalf("homemq_slow_consumer_disconnects_total = %v, want 1", n)
				}
				eventually(t, 5*time.Second, "a slow_consumer audit entry for the stalled reader", func() bool {
					return findAudit(auditLines(t, b), map[string]string{"event": broker.EventSlowConsumer, "client": s.id, "reason": tc.reason}) != nil
				})
			})
		}
	}
}

// TestStalledReaderDoesNotHoldRevocation: revoking a sub closes its stalled
// connection and all eight of its well-behaved ones within a bound, and its
// connection slots are free again at once (conns_per_sub is 9).
func TestStalledReaderDoesNotHoldRevocation(t *testing.T) {
	for _, tr := range allTransports {
		t.Run(string(tr), func(t *testing.T) {
			b := startBroker(t, bigQueues, func(c *broker.Config) { c.Limits.ConnsPerSub = 9 })
			fillRetained(t, b, tr)
			var good []*v5client
			for i := range 8 {
				good = append(good, b.mustV5(tr, fmt.Sprintf("user:viewer/ok%d", i), b.mint("user:viewer", "h1=viewer")))
			}
			s := b.stall(t, tr, "user:viewer/stalled", b.mint("user:viewer", "h1=viewer"))
			revoked := time.Now()
			go func() { _, _ = b.Revoke(broker.RevokeRequest{Sub: "user:viewer"}) }()
			for i, c := range good {
				select {
				case <-c.disconnect:
				case <-c.clientError:
				case <-time.After(time.Until(revoked.Add(10 * time.Second))):
					t.Fatalf("well-behaved connection %d of the revoked sub still open 10s after the revocation", i)
				}
			}
			eventually(t, time.Until(revoked.Add(10*time.Second)), "the stalled connection closed", func() bool { return !b.connected(s.id) })
			eventually(t, 10*time.Second, "a fresh token of the sub connects (its slots are free)", func() bool {
				c, ca, err := b.v5(tr, "user:viewer/again", b.mint("user:viewer", "h1=viewer"))
				if err == nil {
					return true
				}
				_ = c.conn.Close()
				if ca != nil && ca.ReasonCode == 0x97 {
					t.Fatalf("a fresh token was refused for quota (0x97): the cut-off connections were not uncounted")
				}
				return false // 0x87 while the new token is issued in the second of the revocation
			})
		})
	}
}

// TestStalledReaderIsCutOffAtExpiry: a stalled reader whose token expires
// is cut off within a bound.
func TestStalledReaderIsCutOffAtExpiry(t *testing.T) {
	for _, tr := range allTransports {
		t.Run(string(tr), func(t *testing.T) {
			b := startBroker(t, bigQueues, shortLeeway)
			fillRetained(t, b, tr)
			tok, claims := b.mintSpec(auth.Spec{Sub: "user:viewer", Homes: map[string]string{"h1": "viewer"}, TTL: 4 * time.Second})
			s := b.stall(t, tr, "user:viewer/stalled", tok)
			if time.Now().After(claims.ExpiresAtTime()) {
				t.Skip("the machine is too slow: the token expired before the reader stalled")
			}
			eventually(t, time.Until(claims.ExpiresAtTime().Add(10*time.Second)), "the stalled reader cut off at expiry", func() bool { return !b.connected(s.id) })
			eventually(t, 5*time.Second, "only the agent's session left", func() bool { return b.Guard.Sessions() == 1 })
		})
	}
}

// TestStalledReaderDoesNotHoldShutdown: Shutdown returns within a bound
// with a stalled reader connected.
func TestStalledReaderDoesNotHoldShutdown(t *testing.T) {
	for _, tr := range allTransports {
		t.Run(string(tr), func(t *testing.T) {
			b := startBroker(t, bigQueues)
			fillRetained(t, b, tr)
			b.stall(t, tr, "user:viewer/stalled", b.mint("user:viewer", "h1=viewer"))
			done := make(chan error, 1)
			go func() { done <- b.Shutdown(context.Background()) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("Shutdown still waits 15s later, held by a stalled reader")
			}
		})
	}
}

// tlsClient runs the TLS handshake on c.
func tlsClient(t *testing.T, c net.Conn, b *testBroker) net.Conn {
	t.Helper()
	tc := tls.Client(c, b.tlsConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	return tc
}
