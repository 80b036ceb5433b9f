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

// The stalled reader of the slow-reader attack (slowreader_test.go): a
// subscriber with a tiny receive buffer that has the broker queue far more
// for it than its socket takes and then never reads again. The tests and
// the benchmarks of cut-offs with it present share what is here.

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
func fillRetained(t testing.TB, b *testBroker, tr transport) *v5client {
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
func (b *testBroker) stall(t testing.TB, tr transport, id, token string) *stalledReader {
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
func (b *testBroker) dialTiny(t testing.TB, tr transport) net.Conn {
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
func readConnack(t testing.TB, conn net.Conn) byte {
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
func (b *testBroker) waitStalled(t testing.TB, base int64) {
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
func (b *testBroker) metric(t testing.TB, name string) float64 {
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

// tlsClient runs the TLS handshake on c.
func tlsClient(t testing.TB, c net.Conn, b *testBroker) net.Conn {
	t.Helper()
	tc := tls.Client(c, b.tlsConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	return tc
}

// The scenes below set up a cut-off with a stalled reader present; the
// tests in slowreader_test.go bound the cut-off and the benchmarks in
// slowreader_bench_test.go measure it. Each starts its own broker.

// revocationScene starts a broker where sub user:viewer holds eight
// well-behaved connections over tr and a stalled one, its whole quota
// (conns_per_sub is 9).
func revocationScene(t testing.TB, tr transport) (*testBroker, []*v5client, *stalledReader) {
	t.Helper()
	b := startBroker(t, bigQueues, func(c *broker.Config) { c.Limits.ConnsPerSub = 9 })
	fillRetained(t, b, tr)
	var good []*v5client
	for i := range 8 {
		good = append(good, b.mustV5(tr, fmt.Sprintf("user:viewer/ok%d", i), b.mint("user:viewer", "h1=viewer")))
	}
	s := b.stall(t, tr, "user:viewer/stalled", b.mint("user:viewer", "h1=viewer"))
	return b, good, s
}

// expiryScene starts a broker with an exact expiry (shortLeeway) and a
// stalled reader over tr whose token lives for ttl; it returns the
// deadline at which the broker must cut the reader off (exp + leeway).
// The deadline may already have passed on a slow machine: callers check.
func expiryScene(t testing.TB, tr transport, ttl time.Duration) (*testBroker, *stalledReader, time.Time) {
	t.Helper()
	b := startBroker(t, bigQueues, shortLeeway)
	fillRetained(t, b, tr)
	tok, claims := b.mintSpec(auth.Spec{Sub: "user:viewer", Homes: map[string]string{"h1": "viewer"}, TTL: ttl})
	s := b.stall(t, tr, "user:viewer/stalled", tok)
	return b, s, claims.ExpiresAtTime().Add(b.Verifier.Config().Leeway)
}

// shutdownScene starts a broker with a stalled reader connected over tr.
func shutdownScene(t testing.TB, tr transport) *testBroker {
	t.Helper()
	b := startBroker(t, bigQueues)
	fillRetained(t, b, tr)
	b.stall(t, tr, "user:viewer/stalled", b.mint("user:viewer", "h1=viewer"))
	return b
}
