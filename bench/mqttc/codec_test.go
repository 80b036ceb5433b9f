package mqttc

import (
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// split reads one encoded packet back with this package's reader.
func split(t *testing.T, b []byte) Packet {
	t.Helper()
	c := NewSize(&fakeConn{r: bytes.NewReader(b)}, 64)
	pk, err := c.ReadPacket()
	if err != nil {
		t.Fatalf("ReadPacket: %v", err)
	}
	return pk
}

// mochiDecode decodes what this package encoded with mochi's own codec,
// as the broker will.
func mochiDecode(t *testing.T, b []byte) packets.Packet {
	t.Helper()
	raw := split(t, b)
	pk := packets.Packet{ProtocolVersion: 5}
	if err := pk.FixedHeader.Decode(b[0]); err != nil {
		t.Fatalf("fixed header: %v", err)
	}
	var err error
	switch raw.Type {
	case TypeConnect:
		err = pk.ConnectDecode(raw.Body)
	case TypePublish:
		err = pk.PublishDecode(raw.Body)
	case TypeSubscribe:
		err = pk.SubscribeDecode(raw.Body)
	}
	if err != nil {
		t.Fatalf("mochi cannot decode packet type %d: %v", raw.Type, err)
	}
	return pk
}

func TestEncodeAsMochiDecodes(t *testing.T) {
	t.Run("connect", func(t *testing.T) {
		for _, o := range []Options{
			{ClientID: "user:a/x", Username: "user:a", Password: []byte("eyJ.token.sig"), Keepalive: 300},
			{ClientID: "c", Keepalive: 30},
			{ClientID: "", Password: []byte{}},
			{ClientID: "agent:a/x", Username: "agent:a", Password: []byte("tok"), Keepalive: 60, SessionExpiry: 3600},
		} {
			pk := mochiDecode(t, AppendConnect(nil, o))
			c := pk.Connect
			if c.ProtocolName == nil || string(c.ProtocolName) != "MQTT" || pk.ProtocolVersion != 5 || c.Clean != (o.SessionExpiry == 0) {
				t.Errorf("%+v: protocol %q v%d clean %v", o, c.ProtocolName, pk.ProtocolVersion, c.Clean)
			}
			if pk.Properties.SessionExpiryInterval != o.SessionExpiry {
				t.Errorf("%+v: session expiry %d", o, pk.Properties.SessionExpiryInterval)
			}
			if c.ClientIdentifier != o.ClientID || string(c.Username) != o.Username || c.Keepalive != o.Keepalive {
				t.Errorf("%+v: got id %q user %q keepalive %d", o, c.ClientIdentifier, c.Username, c.Keepalive)
			}
			if c.PasswordFlag != (o.Password != nil) || !bytes.Equal(c.Password, o.Password) {
				t.Errorf("%+v: password flag %v %q", o, c.PasswordFlag, c.Password)
			}
		}
	})
	t.Run("publish", func(t *testing.T) {
		big := bytes.Repeat([]byte{0xAB}, 70000) // a three-byte remaining length
		for _, tc := range []struct {
			topic   string
			id      uint16
			qos     byte
			payload []byte
		}{
			{"homes/h/agents/a/devices/d/state", 0, 0, []byte("on")},
			{"homes/h/agents/a/devices/d/state", 7, 1, make([]byte, 64)},
			{"t", 65535, 1, big},
			{"t", 0, 0, nil},
		} {
			pk := mochiDecode(t, AppendPublish(nil, tc.topic, tc.id, tc.qos, tc.payload))
			if pk.TopicName != tc.topic || pk.FixedHeader.Qos != tc.qos || !bytes.Equal(pk.Payload, tc.payload) || pk.FixedHeader.Retain {
				t.Errorf("%s qos %d: mochi read topic %q qos %d payload %d bytes", tc.topic, tc.qos, pk.TopicName, pk.FixedHeader.Qos, len(pk.Payload))
			}
			if tc.qos > 0 && pk.PacketID != tc.id {
				t.Errorf("%s: packet id %d, want %d", tc.topic, pk.PacketID, tc.id)
			}
		}
	})
	t.Run("subscribe", func(t *testing.T) {
		pk := mochiDecode(t, AppendSubscribe(nil, 42, "homes/h/#", 1))
		if pk.PacketID != 42 || len(pk.Filters) != 1 || pk.Filters[0].Filter != "homes/h/#" || pk.Filters[0].Qos != 1 {
			t.Errorf("mochi read %+v", pk)
		}
	})
}

// mochiEncode encodes pk with mochi's codec, as the broker sends it.
func mochiEncode(t *testing.T, pk packets.Packet) []byte {
	t.Helper()
	pk.ProtocolVersion = 5
	var b bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackEncode(&b)
	case packets.Publish:
		err = pk.PublishEncode(&b)
	case packets.Puback:
		err = pk.PubackEncode(&b)
	case packets.Suback:
		err = pk.SubackEncode(&b)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestDecodeWhatMochiSends(t *testing.T) {
	t.Run("connack", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			pk   packets.Packet
			want Connack
		}{
			{"plain", packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}}, Connack{ReceiveMaximum: 65535}},
			{"properties", packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack},
				Properties: packets.Properties{ReceiveMaximum: 256, TopicAliasMaximum: 32, ServerKeepAlive: 300, ServerKeepAliveFlag: true,
					AssignedClientID: "user:a/xyz", User: []packets.UserProperty{{Key: "k", Val: "v"}}, MaximumPacketSize: 262144}},
				Connack{ReceiveMaximum: 256}},
			{"refused", packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: 0x86,
				Properties: packets.Properties{ReasonString: "token expired"}},
				Connack{Reason: 0x86, ReasonString: "token expired", ReceiveMaximum: 65535}},
		} {
			pk := split(t, mochiEncode(t, tc.pk))
			got, err := parseConnack(pk.Body)
			if err != nil || got != tc.want {
				t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
			}
		}
	})
	t.Run("publish", func(t *testing.T) {
		in := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "homes/h/x", PacketID: 513,
			Payload: []byte("hello"), Properties: packets.Properties{MessageExpiryInterval: 30, ContentType: "text/plain"}}
		p, err := ParsePublish(split(t, mochiEncode(t, in)))
		if err != nil || string(p.Topic) != in.TopicName || p.ID != 513 || p.QoS != 1 || string(p.Payload) != "hello" {
			t.Errorf("got %+v (%q, %q), %v", p, p.Topic, p.Payload, err)
		}
	})
	t.Run("puback", func(t *testing.T) {
		for _, code := range []byte{0x00, 0x87, 0x99} {
			in := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: 9, ReasonCode: code,
				Properties: packets.Properties{ReasonString: "refused"}}
			id, reason, err := ParseAck(split(t, mochiEncode(t, in)))
			if err != nil || id != 9 || reason != code {
				t.Errorf("code 0x%02X: got id %d reason 0x%02X, %v", code, id, reason, err)
			}
		}
	})
	t.Run("suback", func(t *testing.T) {
		for _, code := range []byte{0x00, 0x01, 0x87} {
			in := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, PacketID: 3, ReasonCodes: []byte{code}}
			got, err := parseSuback(split(t, mochiEncode(t, in)).Body, 3)
			if err != nil || got != code {
				t.Errorf("code 0x%02X: got 0x%02X, %v", code, got, err)
			}
			if _, err := parseSuback(split(t, mochiEncode(t, in)).Body, 4); err == nil {
				t.Errorf("a SUBACK for packet 3 was taken as the answer to packet 4")
			}
		}
	})
}

func TestMalformedIsAnError(t *testing.T) {
	for _, tc := range []struct {
		name string
		pk   Packet
	}{
		{"empty publish", Packet{Type: TypePublish}},
		{"topic longer than packet", Packet{Type: TypePublish, Body: []byte{0, 9, 'a'}}},
		{"qos 1 without id", Packet{Type: TypePublish, Flags: 2, Body: []byte{0, 1, 'a', 0}}},
		{"properties longer than packet", Packet{Type: TypePublish, Body: []byte{0, 1, 'a', 5, 1}}},
		{"varint too long", Packet{Type: TypePublish, Body: []byte{0, 1, 'a', 0xFF, 0xFF, 0xFF, 0xFF, 0x01}}},
	} {
		if _, err := ParsePublish(tc.pk); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if _, _, err := ParseAck(Packet{Type: TypePuback, Body: []byte{1}}); err == nil {
		t.Error("a one-byte PUBACK parsed")
	}
	for _, b := range [][]byte{{0}, {0, 0, 3, 0x21, 1}, {0, 0, 2, 0x7F, 0}, {0, 0, 3, 0x1F, 0, 9}} {
		if _, err := parseConnack(b); err == nil {
			t.Errorf("CONNACK % x parsed", b)
		}
	}
}
