package mqttc

import (
	"fmt"
	"io"
)

// AppendConnect appends an MQTT 5 CONNECT (no will) for o to dst: clean
// start and no properties, or, with o.SessionExpiry, a persistent session
// (clean start off, Session Expiry Interval).
func AppendConnect(dst []byte, o Options) []byte {
	flags := byte(0x02) // clean start
	var props []byte
	if o.SessionExpiry > 0 {
		flags = 0
		e := o.SessionExpiry
		props = []byte{0x11, byte(e >> 24), byte(e >> 16), byte(e >> 8), byte(e)}
	}
	n := 10 + len(varintOf(len(props))) + len(props) + 2 + len(o.ClientID)
	if o.Username != "" {
		flags |= 0x80
		n += 2 + len(o.Username)
	}
	if o.Password != nil {
		flags |= 0x40
		n += 2 + len(o.Password)
	}
	dst = append(dst, TypeConnect<<4)
	dst = appendVarint(dst, n)
	dst = append(dst, 0, 4, 'M', 'Q', 'T', 'T', 5, flags, byte(o.Keepalive>>8), byte(o.Keepalive))
	dst = appendVarint(dst, len(props))
	dst = append(dst, props...)
	dst = appendString(dst, o.ClientID)
	if o.Username != "" {
		dst = appendString(dst, o.Username)
	}
	if o.Password != nil {
		dst = appendString(dst, string(o.Password))
	}
	return dst
}

func varintOf(n int) []byte { return appendVarint(nil, n) }

// AppendSubscribe appends a SUBSCRIBE of one filter at qos.
func AppendSubscribe(dst []byte, id uint16, filter string, qos byte) []byte {
	dst = append(dst, TypeSubscribe<<4|0x02)
	dst = appendVarint(dst, 2+1+2+len(filter)+1)
	dst = append(dst, byte(id>>8), byte(id), 0)
	dst = appendString(dst, filter)
	return append(dst, qos&0x03)
}

// AppendPublish appends a PUBLISH (no properties, not retained) to dst; id
// is ignored at QoS 0.
func AppendPublish(dst []byte, topic string, id uint16, qos byte, payload []byte) []byte {
	n := 2 + len(topic) + 1 + len(payload)
	if qos > 0 {
		n += 2
	}
	dst = append(dst, TypePublish<<4|qos<<1)
	dst = appendVarint(dst, n)
	dst = appendString(dst, topic)
	if qos > 0 {
		dst = append(dst, byte(id>>8), byte(id))
	}
	dst = append(dst, 0)
	return append(dst, payload...)
}

// Publish is a PUBLISH as read from the broker; the slices point into the
// packet body.
type Publish struct {
	Topic   []byte
	ID      uint16
	QoS     byte
	Payload []byte
}

// ParsePublish parses a PUBLISH packet read by ReadPacket.
func ParsePublish(pk Packet) (Publish, error) {
	b := pk.Body
	p := Publish{QoS: (pk.Flags >> 1) & 0x03}
	if len(b) < 2 {
		return p, ErrMalformed
	}
	tl := int(b[0])<<8 | int(b[1])
	if len(b) < 2+tl {
		return p, ErrMalformed
	}
	p.Topic, b = b[2:2+tl], b[2+tl:]
	if p.QoS > 0 {
		if len(b) < 2 {
			return p, ErrMalformed
		}
		p.ID, b = uint16(b[0])<<8|uint16(b[1]), b[2:]
	}
	pl, n, err := varint(b)
	if err != nil || len(b) < n+pl {
		return p, ErrMalformed
	}
	p.Payload = b[n+pl:]
	return p, nil
}

// ParseAck returns the packet ID and reason code of a PUBACK.
func ParseAck(pk Packet) (id uint16, reason byte, err error) {
	b := pk.Body
	if len(b) < 2 {
		return 0, 0, ErrMalformed
	}
	id = uint16(b[0])<<8 | uint16(b[1])
	if len(b) > 2 {
		reason = b[2]
	}
	return id, reason, nil
}

func parseConnack(b []byte) (Connack, error) {
	a := Connack{ReceiveMaximum: 65535}
	if len(b) < 2 {
		return a, fmt.Errorf("mqttc: CONNACK of %d bytes: %w", len(b), ErrMalformed)
	}
	a.SessionPresent = b[0]&0x01 != 0
	a.Reason = b[1]
	if len(b) == 2 {
		return a, nil
	}
	err := eachProperty(b[2:], func(id byte, v []byte) {
		switch id {
		case 0x21:
			if len(v) == 2 {
				a.ReceiveMaximum = uint16(v[0])<<8 | uint16(v[1])
			}
		case 0x1F:
			if len(v) >= 2 {
				a.ReasonString = string(v[2:])
			}
		}
	})
	return a, err
}

func parseSuback(b []byte, want uint16) (byte, error) {
	if len(b) < 3 || uint16(b[0])<<8|uint16(b[1]) != want {
		return 0, fmt.Errorf("mqttc: SUBACK does not answer packet %d: %w", want, ErrMalformed)
	}
	pl, n, err := varint(b[2:])
	if err != nil || len(b) < 2+n+pl+1 {
		return 0, fmt.Errorf("mqttc: SUBACK: %w", ErrMalformed)
	}
	return b[2+n+pl], nil
}

// propertyWidth is the value width of fixed-size MQTT 5 properties; -1 is
// a two-byte-length string or binary, -2 a string pair, -3 a varint.
var propertyWidth = map[byte]int{
	0x01: 1, 0x17: 1, 0x19: 1, 0x24: 1, 0x25: 1, 0x28: 1, 0x29: 1, 0x2A: 1,
	0x13: 2, 0x21: 2, 0x22: 2, 0x23: 2,
	0x02: 4, 0x11: 4, 0x18: 4, 0x27: 4,
	0x0B: -3,
	0x03: -1, 0x08: -1, 0x09: -1, 0x12: -1, 0x15: -1, 0x16: -1, 0x1A: -1, 0x1C: -1, 0x1F: -1,
	0x26: -2,
}

// eachProperty calls f for every property of a length-prefixed property
// block; string values keep their two-byte length prefix.
func eachProperty(b []byte, f func(id byte, v []byte)) error {
	pl, n, err := varint(b)
	if err != nil || len(b) < n+pl {
		return fmt.Errorf("mqttc: properties: %w", ErrMalformed)
	}
	b = b[n : n+pl]
	for len(b) > 0 {
		id := b[0]
		b = b[1:]
		w, ok := propertyWidth[id]
		if !ok {
			return fmt.Errorf("mqttc: unknown property 0x%02X: %w", id, ErrMalformed)
		}
		switch w {
		case -3:
			_, vn, err := varint(b)
			if err != nil {
				return err
			}
			w = vn
		case -1:
			if len(b) < 2 {
				return ErrMalformed
			}
			w = 2 + (int(b[0])<<8 | int(b[1]))
		case -2:
			if len(b) < 2 {
				return ErrMalformed
			}
			k := 2 + (int(b[0])<<8 | int(b[1]))
			if len(b) < k+2 {
				return ErrMalformed
			}
			w = k + 2 + (int(b[k])<<8 | int(b[k+1]))
		}
		if len(b) < w {
			return ErrMalformed
		}
		f(id, b[:w])
		b = b[w:]
	}
	return nil
}

func appendString(dst []byte, s string) []byte {
	dst = append(dst, byte(len(s)>>8), byte(len(s)))
	return append(dst, s...)
}

func appendVarint(dst []byte, n int) []byte {
	for {
		b := byte(n & 0x7F)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if n == 0 {
			return dst
		}
	}
}

// varint decodes a variable byte integer at the start of b and returns it
// with the number of bytes it took.
func varint(b []byte) (v, n int, err error) {
	for shift := 0; n < 4; shift += 7 {
		if n >= len(b) {
			return 0, 0, ErrMalformed
		}
		c := b[n]
		n++
		v |= int(c&0x7F) << shift
		if c&0x80 == 0 {
			return v, n, nil
		}
	}
	return 0, 0, ErrMalformed
}

func readVarint(r io.ByteReader) (int, error) {
	v := 0
	for i, shift := 0, 0; i < 4; i, shift = i+1, shift+7 {
		c, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		v |= int(c&0x7F) << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, ErrMalformed
}
