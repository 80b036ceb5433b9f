package e2e

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
	"homemq/broker"
	"homemq/registry"
)

// silentV5 is an MQTT 5 client that writes packets and never reads: what the
// broker sends it stays in flight, unacknowledged, as for a client whose
// network went quiet.
type silentV5 struct {
	t    testing.TB
	conn net.Conn
	id   uint16
}

// silentConnect opens a persistent MQTT 5 session for clientID with token,
// which may also be re-authenticated (method homemq-jwt); edit may change
// the CONNECT.
func (b *testBroker) silentConnect(clientID, token string, edit ...func(*packets.Packet)) *silentV5 {
	b.t.Helper()
	r := &silentV5{t: b.t, conn: b.dial(overPlain)}
	b.t.Cleanup(func() { r.conn.Close() })
	connect := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: clientID, Keepalive: 60,
			Clean: true, PasswordFlag: true, Password: []byte(token), UsernameFlag: true, Username: []byte("u")},
		Properties: packets.Properties{SessionExpiryInterval: 3600, SessionExpiryIntervalFlag: true,
			AuthenticationMethod: auth.MQTTMethod, AuthenticationData: []byte(token)},
	}
	for _, e := range edit {
		e(&connect)
	}
	r.send(connect)
	return r
}

func (r *silentV5) send(pk packets.Packet) {
	r.t.Helper()
	pk.ProtocolVersion = 5
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Auth:
		err = pk.AuthEncode(&buf)
	}
	if err == nil {
		_, err = r.conn.Write(buf.Bytes())
	}
	if err != nil {
		r.t.Fatalf("raw client: %v", err)
	}
}

func (r *silentV5) subscribe(filter string) {
	r.id++
	r.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: r.id,
		Filters: packets.Subscriptions{{Filter: filter, Qos: 1}}})
}

func (r *silentV5) reauth(token string) {
	r.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Auth}, ReasonCode: 0x19,
		Properties: packets.Properties{AuthenticationMethod: auth.MQTTMethod, AuthenticationData: []byte(token)}})
}

// session reports the in-flight messages and the filters of the broker's
// session for clientID.
func (b *testBroker) session(clientID string) (inflight int, filters map[string]bool) {
	cl, ok := b.Server.Clients.Get(clientID)
	if !ok {
		return 0, nil
	}
	filters = map[string]bool{}
	for f := range cl.State.Subscriptions.GetAll() {
		filters[f] = true
	}
	return cl.State.Inflight.Len(), filters
}

// mintAfterRevocation mints a token for sub that a revocation of sub made
// just now does not cover (one issued in a later second).
func (b *testBroker) mintAfterRevocation(sub string, homes ...string) string {
	b.t.Helper()
	var tok string
	eventually(b.t, 3*time.Second, "a token issued after the revocation", func() bool {
		tok = b.mint(sub, homes...)
		_, err := b.Verifier.Verify(tok)
		return err == nil
	})
	return tok
}

// registryAdmin is the registry admin API of b, as the CLI uses it.
func (b *testBroker) registryAdmin() *registry.Client {
	tok, _ := b.mintSpec(auth.Spec{Sub: "user:operator", Operator: true})
	return &registry.Client{BaseURL: "https://" + b.Addrs()["https"], Token: tok,
		HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}, Timeout: 10 * time.Second}}
}

func (b *testBroker) mustAdmin(reqs ...registry.Request) {
	b.t.Helper()
	adm := b.registryAdmin()
	for _, req := range reqs {
		if _, err := adm.Do(context.Background(), req); err != nil {
			b.t.Fatalf("registry %s: %v", req.Op, err)
		}
	}
}

// publishStates publishes n QoS 1 state messages of the lamp in home h1 as the agent.
func publishStates(t *testing.T, b *testBroker, n int) {
	t.Helper()
	pi := b.mustV5(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"))
	for i := 0; i < n; i++ {
		if pr := pi.publish(t, "homes/h1/agents/pi/devices/lamp/state", []byte{'0' + byte(i)}, 1, false); pr.ReasonCode != 0 {
			t.Fatalf("state publish refused: 0x%02X", pr.ReasonCode)
		}
	}
	_ = pi.Disconnect(&paho.Disconnect{})
}

// TestRemovedMemberGetsNoQueuedMessages: a member with an offline session
// on homes/h1/# is removed from h1 (the registry admin API, as the CLI
// does it); when she reconnects with her next token, which no longer names
// h1, none of h1's messages queued for her session arrive, neither those
// queued before the removal nor after it.
func TestRemovedMemberGetsNoQueuedMessages(t *testing.T) {
	b := startBroker(t)
	b.mustAdmin(registry.Request{Op: registry.OpHomeAdd, Home: "h1"}, registry.Request{Op: registry.OpHomeAdd, Home: "h2"},
		registry.Request{Op: registry.OpMemberAdd, Home: "h1", User: "alice", Role: "admin"},
		registry.Request{Op: registry.OpMemberAdd, Home: "h2", User: "alice", Role: "member"})
	alice := b.mustV5(overTLS, "user:alice", b.mint("user:alice", "h1=admin", "h2=member"), persistent)
	if code := alice.subscribe(t, "homes/h1/#", 1); code != 1 {
		t.Fatalf("subscribe: 0x%02X", code)
	}
	_ = alice.Disconnect(&paho.Disconnect{})
	publishStates(t, b, 3)
	eventually(t, 5*time.Second, "three messages queued for alice", func() bool { n, _ := b.session("user:alice"); return n == 3 })

	b.mustAdmin(registry.Request{Op: registry.OpMemberRemove, Home: "h1", User: "alice"})
	publishStates(t, b, 1)

	again := b.mustV5(overTLS, "user:alice", b.mintAfterRevocation("user:alice", "h2=member"), func(c *paho.Connect) {
		persistent(c)
		c.CleanStart = false
	})
	never(t, 1500*time.Millisecond, "a queued h1 message reached the removed member", func() bool { return len(again.received()) > 0 })
	if _, filters := b.session("user:alice"); filters["homes/h1/#"] {
		t.Errorf("the removed member's session still holds homes/h1/#: %v", filters)
	}
}

// TestMemberRemoveCutsTheLiveConnection: member remove ends the member's
// live connection at once, with a DISCONNECT that says why.
func TestMemberRemoveCutsTheLiveConnection(t *testing.T) {
	b := startBroker(t)
	b.mustAdmin(registry.Request{Op: registry.OpHomeAdd, Home: "h1"},
		registry.Request{Op: registry.OpMemberAdd, Home: "h1", User: "alice", Role: "admin"})
	alice := b.mustV5(overTLS, "user:alice", b.mint("user:alice", "h1=admin"))
	alice.subscribe(t, "homes/h1/#", 1)
	b.mustAdmin(registry.Request{Op: registry.OpMemberRemove, Home: "h1", User: "alice"})
	select {
	case d := <-alice.disconnect:
		if d.ReasonCode != 0x87 {
			t.Fatalf("DISCONNECT 0x%02X, want 0x87 (not authorized)", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the removed member's connection is still open 5 s after member remove")
	}
}

// TestTakeoverWithFewerRightsGetsNoInflight: messages in flight to a
// connection that went quiet are not resent to the connection that takes
// its session over with a token that no longer names their home, and the
// subscriptions that token may not hold are gone.
func TestTakeoverWithFewerRightsGetsNoInflight(t *testing.T) {
	b := startBroker(t)
	quiet := b.silentConnect("user:alice", b.mint("user:alice", "h1=admin", "h2=member"))
	quiet.subscribe("homes/h1/#")
	eventually(t, 5*time.Second, "the subscription", func() bool { _, f := b.session("user:alice"); return f["homes/h1/#"] })
	publishStates(t, b, 3)
	eventually(t, 5*time.Second, "three messages in flight", func() bool { n, _ := b.session("user:alice"); return n == 3 })

	taker, ca, err := b.v5(overTLS, "user:alice", b.mint("user:alice", "h2=member"), func(c *paho.Connect) {
		persistent(c)
		c.CleanStart = false
	})
	if err != nil || !ca.SessionPresent {
		t.Fatalf("take-over: %v, session present %v", err, ca != nil && ca.SessionPresent)
	}
	never(t, 1500*time.Millisecond, "an h1 message resent to a token without h1", func() bool { return len(taker.received()) > 0 })
	if n, filters := b.session("user:alice"); n != 0 || filters["homes/h1/#"] {
		t.Errorf("after the take-over: %d in flight, filters %v; want none of h1", n, filters)
	}
}

// TestReauthToFewerRightsDropsQueue: an MQTT 5 re-authentication to a
// token without h1 drops h1's messages in flight to the connection and its
// h1 subscription at once; what it may still read stays.
func TestReauthToFewerRightsDropsQueue(t *testing.T) {
	const h2states = "homes/h2/agents/+/devices/+/state"
	b := startBroker(t)
	c := b.silentConnect("user:alice", b.mint("user:alice", "h1=admin", "h2=member"))
	c.subscribe("homes/h1/#")
	c.subscribe(h2states)
	eventually(t, 5*time.Second, "the subscriptions", func() bool { _, f := b.session("user:alice"); return len(f) == 2 })
	publishStates(t, b, 2)
	eventually(t, 5*time.Second, "two messages in flight", func() bool { n, _ := b.session("user:alice"); return n == 2 })

	c.reauth(b.mint("user:alice", "h2=member"))
	eventually(t, 5*time.Second, "h1's messages and subscription dropped", func() bool {
		n, f := b.session("user:alice")
		return n == 0 && !f["homes/h1/#"] && f[h2states]
	})
	c.conn.Close()
	again := b.mustV5(overTLS, "user:alice", b.mint("user:alice", "h1=admin", "h2=member"), func(cp *paho.Connect) {
		persistent(cp)
		cp.CleanStart = false
	})
	never(t, time.Second, "a message dropped at re-authentication was delivered later", func() bool { return len(again.received()) > 0 })
}

// TestRestoredQueueIsJudgedAtReconnect: messages queued for an offline
// session survive a restart in the store; its owner, back with a token
// that no longer names their home, gets none of them, and they are gone
// from the store too: after another restart a token with the home gets
// none either.
func TestRestoredQueueIsJudgedAtReconnect(t *testing.T) {
	data := t.TempDir()
	b := startBrokerIn(t, data)
	alice := b.mustV5(overTLS, "user:alice", b.mint("user:alice", "h1=admin"), persistent)
	if code := alice.subscribe(t, "homes/h1/#", 1); code != 1 {
		t.Fatalf("subscribe: 0x%02X", code)
	}
	_ = alice.Disconnect(&paho.Disconnect{})
	publishStates(t, b, 3)
	eventually(t, 5*time.Second, "three messages queued", func() bool { n, _ := b.session("user:alice"); return n == 3 })
	b.Close()

	resume := func(c *paho.Connect) {
		persistent(c)
		c.CleanStart = false
	}
	b = startBrokerIn(t, data)
	again := b.mustV5(overTLS, "user:alice", b.mint("user:alice", "h2=admin"), resume)
	never(t, time.Second, "a restored h1 message reached a token without h1", func() bool { return len(again.received()) > 0 })
	_ = again.Disconnect(&paho.Disconnect{})
	b.Close()

	b = startBrokerIn(t, data)
	back := b.mustV5(overTLS, "user:alice", b.mint("user:alice", "h1=admin"), resume)
	never(t, time.Second, "a dropped message came back from the store", func() bool { return len(back.received()) > 0 })
}

// TestReauthWithholdsWritesAlreadyQueued: a connection that stopped
// reading has messages of h1 in its send buffer (its write queue) when it
// re-authenticates to a token without h1. What the broker handed to the
// connection before the re-authentication took effect may still arrive —
// at most limits.write_buffer bytes, like the bytes in a socket's kernel
// buffer — but nothing after it: once it reads again, it gets the AUTH
// answer and no h1 message written later.
func TestReauthWithholdsWritesAlreadyQueued(t *testing.T) {
	b := startBroker(t, func(c *broker.Config) { c.Limits.WriteTimeout = time.Minute })
	c := b.silentConnect("user:alice", b.mint("user:alice", "h1=admin", "h2=member"))
	c.subscribe("homes/h1/#")
	eventually(t, 5*time.Second, "the subscription", func() bool { _, f := b.session("user:alice"); return f["homes/h1/#"] })

	pi, _, err := b.v5(overPlain, "agent:pi", b.mint("agent:pi", "h1=agent"))
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("x"), 16<<10)
	publish := func(n int) {
		for range n {
			_, _ = pi.Publish(context.Background(), &paho.Publish{Topic: "homes/h1/agents/pi/devices/lamp/state", Payload: payload})
		}
	}
	publish(20) // 320 KiB: more than the socket takes, less than the write queue holds
	eventually(t, 10*time.Second, "the 20 messages handed to the quiet connection", func() bool {
		return atomic.LoadInt64(&b.Server.Info.MessagesSent) >= 20
	})

	c.reauth(b.mint("user:alice", "h2=member"))
	eventually(t, 5*time.Second, "the h1 subscription dropped", func() bool { _, f := b.session("user:alice"); return !f["homes/h1/#"] })
	sentBefore := atomic.LoadInt64(&b.Server.Info.MessagesSent)
	publish(20)
	_ = pi.Disconnect(&paho.Disconnect{})

	read, authSeen := 0, false
	r := bufio.NewReaderSize(c.conn, 64<<10)
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		typ, err := skipPacket(r)
		if err != nil {
			break // nothing more for 2 s
		}
		switch typ {
		case packets.Auth:
			authSeen = true
		case packets.Publish:
			read++
		}
	}
	if !authSeen {
		t.Fatalf("no AUTH answer to the re-authentication (%d publishes read)", read)
	}
	if late := atomic.LoadInt64(&b.Server.Info.MessagesSent) - sentBefore; late > 0 {
		t.Fatalf("%d messages of h1 written after re-authenticating to a token without h1 (%d read in all)", late, read)
	}
	if int64(read) > sentBefore {
		t.Fatalf("read %d publishes, but only %d were handed to the connection before the re-authentication", read, sentBefore)
	}
}

// skipPacket reads one MQTT packet and returns its type.
func skipPacket(r *bufio.Reader) (byte, error) {
	h, err := r.ReadByte()
	if err != nil {
		return 0, err
	}
	n, shift := 0, 0
	for {
		d, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		n |= int(d&0x7F) << shift
		if d&0x80 == 0 {
			break
		}
		shift += 7
	}
	_, err = r.Discard(n)
	return h >> 4, err
}
