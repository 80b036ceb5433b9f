package e2e

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"homemq/auth"
	"homemq/broker"
)

// Strict where MQTT 5 is strict: a client that breaks the protocol gets the
// reason code the specification names, on the wire, before the socket
// closes; and the broker's acknowledgements carry nothing the client did
// not ask for.

// rawV5 is an MQTT 5 client that writes packets exactly as the test builds
// them and reads what the broker sends back, for the violations a
// well-behaved library never commits.
type rawV5 struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// rawConnect opens a plain TCP connection and sends CONNECT with the token
// as password and props as its properties; it fails the test unless the
// CONNACK accepts.
func (b *testBroker) rawConnect(t *testing.T, clientID, token string, props *packets.Properties) (*rawV5, *packets.Connack) {
	t.Helper()
	conn := b.dial(overPlain)
	t.Cleanup(func() { _ = conn.Close() })
	c := &rawV5{t: t, conn: conn, r: bufio.NewReader(conn)}
	cp := packets.NewControlPacket(packets.CONNECT)
	con := cp.Content.(*packets.Connect)
	con.ClientID, con.KeepAlive, con.CleanStart = clientID, 60, true
	con.UsernameFlag, con.Username, con.PasswordFlag, con.Password = true, "u", true, []byte(token)
	if props != nil {
		con.Properties = props
	}
	c.send(cp)
	ca, ok := c.next(5 * time.Second).Content.(*packets.Connack)
	if !ok || ca.ReasonCode != 0 {
		t.Fatalf("CONNACK %v, want success", ca)
	}
	return c, ca
}

func (c *rawV5) send(cp *packets.ControlPacket) {
	c.t.Helper()
	if _, err := cp.WriteTo(c.conn); err != nil {
		c.t.Fatalf("write %s: %v", cp.PacketType(), err)
	}
}

// next reads the next packet, failing the test if none comes within d.
func (c *rawV5) next(d time.Duration) *packets.ControlPacket {
	c.t.Helper()
	cp, err := c.read(d)
	if err != nil {
		c.t.Fatalf("reading from the broker: %v", err)
	}
	return cp
}

func (c *rawV5) read(d time.Duration) (*packets.ControlPacket, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	return packets.ReadPacket(c.r)
}

// disconnected reads until the broker's DISCONNECT and then expects the
// socket to close; it fails the test if the socket closes without one.
func (c *rawV5) disconnected(d time.Duration) *packets.Disconnect {
	c.t.Helper()
	dc, _ := c.disconnectedAfter(d)
	return dc
}

// disconnectedAfter is disconnected that also returns the types of the
// packets read before the DISCONNECT.
func (c *rawV5) disconnectedAfter(d time.Duration) (*packets.Disconnect, []string) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	var seen []string
	for {
		cp, err := c.read(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("the connection ended (%v) without a DISCONNECT; packets before: %v", err, seen)
		}
		if dc, ok := cp.Content.(*packets.Disconnect); ok {
			if _, err := c.read(5 * time.Second); !errors.Is(err, io.EOF) && !isReset(err) {
				c.t.Errorf("after the DISCONNECT the socket was not closed: %v", err)
			}
			return dc, seen
		}
		seen = append(seen, cp.PacketType())
	}
}

func publishPacket(topic string, qos byte, id uint16, props *packets.Properties) *packets.ControlPacket {
	cp := packets.NewControlPacket(packets.PUBLISH)
	cp.Flags = qos << 1
	p := cp.Content.(*packets.Publish)
	p.Topic, p.QoS, p.PacketID, p.Payload = topic, qos, id, []byte(`{"state":"on"}`)
	if props != nil {
		p.Properties = props
	}
	return cp
}

const protoAgentTopic = "homes/h1/agents/pi/devices/lamp/state"

func (b *testBroker) protoAgent(t *testing.T, props *packets.Properties) (*rawV5, *packets.Connack) {
	t.Helper()
	return b.rawConnect(t, "agent:pi", b.mint("agent:pi", "h1=agent"), props)
}

func u16(v uint16) *uint16 { return &v }

// TestAcksDoNotEchoUserProperties: mochi copies a PUBLISH's properties
// (user properties included) onto its PUBACK and PUBREC; MQTT 5 gives the
// server's own properties there, so nothing the client sent may come back.
func TestAcksDoNotEchoUserProperties(t *testing.T) {
	b := startBroker(t)
	c, _ := b.protoAgent(t, nil)
	mine := []packets.User{{Key: "trace", Value: "client-secret-value"}}
	for qos, want := range map[byte]byte{1: packets.PUBACK, 2: packets.PUBREC} {
		c.send(publishPacket(protoAgentTopic, qos, uint16(10+qos), &packets.Properties{User: mine, ContentType: "application/json"}))
		ack := c.next(5 * time.Second)
		if ack.Type != want {
			t.Fatalf("QoS %d: got %s, want %d", qos, ack.PacketType(), want)
		}
		var props *packets.Properties
		switch a := ack.Content.(type) {
		case *packets.Puback:
			props = a.Properties
		case *packets.Pubrec:
			props = a.Properties
		}
		if props != nil && (len(props.User) > 0 || props.ContentType != "") {
			t.Errorf("QoS %d: the %s echoes the publisher's properties: %v", qos, ack.PacketType(), props)
		}
	}
}

// TestReceiveMaximumExceededIsDisconnected: a client that sends more QoS 2
// publishes than the CONNACK's Receive Maximum without completing them gets
// DISCONNECT 0x93 on the wire before its socket closes.
func TestReceiveMaximumExceededIsDisconnected(t *testing.T) {
	const receiveMax = 5
	b := startBroker(t, func(c *broker.Config) { c.Limits.MaxInflight = receiveMax })
	c, ca := b.protoAgent(t, nil)
	if ca.Properties == nil || ca.Properties.ReceiveMaximum == nil || *ca.Properties.ReceiveMaximum != receiveMax {
		t.Fatalf("CONNACK Receive Maximum %v, want %d", ca.Properties, receiveMax)
	}
	for i := 1; i <= receiveMax+3; i++ { // no PUBREL: each holds one unit of quota
		if _, err := publishPacket(protoAgentTopic, 2, uint16(i), nil).WriteTo(c.conn); err != nil {
			break // the broker may already have closed the socket
		}
	}
	d, before := c.disconnectedAfter(10 * time.Second)
	if d.ReasonCode != 0x93 {
		t.Fatalf("DISCONNECT 0x%02X, want 0x93 receive maximum exceeded", d.ReasonCode)
	}
	if len(before) != receiveMax {
		t.Errorf("%d packets before the DISCONNECT (%v), want a PUBREC for each of the %d publishes within Receive Maximum", len(before), before, receiveMax)
	}
	if d.Properties == nil || d.Properties.ReasonString == "" {
		t.Errorf("DISCONNECT 0x93 without a reason string")
	}
}

// TestAuthWithoutAuthenticationMethodIsAProtocolError: a client that
// connected with a password and no Authentication Method may not send AUTH
// [MQTT-4.12.0-4]; doing so is answered with DISCONNECT 0x82, not taken as
// a re-authentication.
func TestAuthWithoutAuthenticationMethodIsAProtocolError(t *testing.T) {
	b := startBroker(t)
	c, _ := b.protoAgent(t, nil)
	cp := packets.NewControlPacket(packets.AUTH)
	a := cp.Content.(*packets.Auth)
	cp.Flags = 0 // paho.golang sets 1; MQTT 5 says 0 for AUTH, and mochi drops the connection on 1
	a.ReasonCode = packets.AuthReauthenticate
	a.Properties = &packets.Properties{AuthMethod: auth.MQTTMethod, AuthData: []byte(b.mint("agent:pi", "h1=agent"))}
	c.send(cp)
	d := c.disconnected(5 * time.Second)
	if d.ReasonCode != 0x82 {
		t.Fatalf("DISCONNECT 0x%02X, want 0x82 protocol error", d.ReasonCode)
	}
	if d.Properties == nil || !strings.Contains(d.Properties.ReasonString, "authentication method") {
		t.Errorf("DISCONNECT 0x82 reason %v, want one naming the missing authentication method", d.Properties)
	}
}

// TestTopicAliasOutOfRangeIsDisconnected: aliases work from 1 up to the
// Topic Alias Maximum the CONNACK announces; alias 0 or one above the
// maximum is DISCONNECT 0x94.
func TestTopicAliasOutOfRangeIsDisconnected(t *testing.T) {
	b := startBroker(t)
	c, ca := b.protoAgent(t, nil)
	if ca.Properties == nil || ca.Properties.TopicAliasMaximum == nil {
		t.Fatal("CONNACK announces no Topic Alias Maximum")
	}
	max := *ca.Properties.TopicAliasMaximum
	// An alias within the maximum works: set it, then publish by alias only.
	c.send(publishPacket(protoAgentTopic, 1, 1, &packets.Properties{TopicAlias: u16(max)}))
	if ack := c.next(5 * time.Second).Content.(*packets.Puback); ack.ReasonCode != 0 {
		t.Fatalf("publish with alias %d: PUBACK 0x%02X", max, ack.ReasonCode)
	}
	c.send(publishPacket("", 1, 2, &packets.Properties{TopicAlias: u16(max)}))
	if ack := c.next(5 * time.Second).Content.(*packets.Puback); ack.ReasonCode != 0 {
		t.Fatalf("publish by alias %d: PUBACK 0x%02X", max, ack.ReasonCode)
	}
	for _, alias := range []uint16{0, max + 1} {
		c, _ := b.protoAgent(t, nil)
		c.send(publishPacket(protoAgentTopic, 1, 1, &packets.Properties{TopicAlias: u16(alias)}))
		d := c.disconnected(5 * time.Second)
		if d.ReasonCode != 0x94 {
			t.Errorf("alias %d: DISCONNECT 0x%02X, want 0x94 topic alias invalid", alias, d.ReasonCode)
		}
	}
}

// TestUnknownTopicAliasIsAProtocolError: a PUBLISH with no topic name and
// an alias the client never set is DISCONNECT 0x82 [MQTT-3.3.2-8], not a
// publish to the empty topic.
func TestUnknownTopicAliasIsAProtocolError(t *testing.T) {
	b := startBroker(t)
	c, _ := b.protoAgent(t, nil)
	c.send(publishPacket("", 1, 1, &packets.Properties{TopicAlias: u16(5)}))
	d := c.disconnected(5 * time.Second)
	if d.ReasonCode != 0x82 {
		t.Fatalf("DISCONNECT 0x%02X, want 0x82 protocol error", d.ReasonCode)
	}
	if d.Properties == nil || !strings.Contains(d.Properties.ReasonString, "topic alias 5") {
		t.Errorf("DISCONNECT reason %v, want one naming the alias", d.Properties)
	}
}

// TestSubackRefusalHasAReasonString: a SUBACK that refuses a filter with
// 0x87 says why in its reason string, and echoes none of the SUBSCRIBE's
// user properties (mochi's processSubscribe copies them).
func TestSubackRefusalHasAReasonString(t *testing.T) {
	b := startBroker(t)
	c, _ := b.protoAgent(t, nil)
	sub := packets.NewControlPacket(packets.SUBSCRIBE)
	s := sub.Content.(*packets.Subscribe)
	s.PacketID = 7
	s.Subscriptions = []packets.SubOptions{{Topic: "homes/h1/agents/pi/devices/+/cmd", QoS: 1}, {Topic: "homes/h2/#", QoS: 1}}
	s.Properties = &packets.Properties{User: []packets.User{{Key: "trace", Value: "client-secret-value"}}}
	c.send(sub)
	sa, ok := c.next(5 * time.Second).Content.(*packets.Suback)
	if !ok {
		t.Fatal("no SUBACK")
	}
	if len(sa.Reasons) != 2 || sa.Reasons[0] != 1 || sa.Reasons[1] != 0x87 {
		t.Fatalf("SUBACK reasons %v, want [1 0x87]", sa.Reasons)
	}
	if sa.Properties == nil || !strings.HasPrefix(sa.Properties.ReasonString, "not authorized: ") || !strings.Contains(sa.Properties.ReasonString, "homes/h2/#") {
		t.Fatalf("SUBACK reason string %v, want \"not authorized: …\" naming the refused filter", sa.Properties)
	}
	if len(sa.Properties.User) > 0 {
		t.Errorf("the SUBACK echoes the SUBSCRIBE's user properties: %v", sa.Properties.User)
	}
}
