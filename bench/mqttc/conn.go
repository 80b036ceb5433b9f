package mqttc

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Packet types (the high nibble of the first byte).
const (
	TypeConnect    = 1
	TypeConnack    = 2
	TypePublish    = 3
	TypePuback     = 4
	TypeSubscribe  = 8
	TypeSuback     = 9
	TypePingreq    = 12
	TypePingresp   = 13
	TypeDisconnect = 14
	TypeAuth       = 15
)

// bufSize is the size of the read and write buffers of a connection.
const bufSize = 64 << 10

// Options say where and as whom to connect.
type Options struct {
	// Addr is host:port of the broker.
	Addr string
	// TLS, when set, wraps the connection in TLS.
	TLS *tls.Config
	// ClientID, Username and Password go into CONNECT; an empty Username
	// or a nil Password is left out.
	ClientID string
	Username string
	Password []byte
	// Keepalive is the keep-alive in seconds (the client never pings, so
	// pick one longer than the connection lives).
	Keepalive uint16
	// Timeout bounds the dial, the TLS handshake and the wait for CONNACK.
	Timeout time.Duration
	// BufferSize is the size of the read and the write buffer (default
	// 64 KiB; a few hundred bytes for connections that only connect).
	BufferSize int
	// SessionExpiry, when set, asks for a persistent session kept this
	// many seconds after the connection ends (clean start off).
	SessionExpiry uint32
	// LocalIP, when set, is the source address to dial from (e.g.
	// 127.0.0.2, so that one generator holds more connections to one
	// port than one address has ephemeral ports).
	LocalIP string
	// Dial, when set, replaces the TCP dial (and Addr and LocalIP): an
	// in-process connection, for instance.
	Dial func(ctx context.Context) (net.Conn, error)
}

// Connack is the broker's answer to CONNECT.
type Connack struct {
	SessionPresent bool
	Reason         byte
	ReasonString   string
	ReceiveMaximum uint16 // 65535 when the broker sent none
}

// RefusedError is a CONNACK with a reason code of 0x80 or more.
type RefusedError struct {
	Reason       byte
	ReasonString string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("mqttc: connection refused with reason 0x%02X: %s", e.Reason, e.ReasonString)
}

// Conn is one MQTT 5 connection. Reads and writes may run in two different
// goroutines; neither side may be used from more than one goroutine.
type Conn struct {
	c      net.Conn
	r      *bufio.Reader
	w      *bufio.Writer
	buf    []byte
	hdr    [5]byte
	nextID uint16
	// Connack is what the broker answered to CONNECT.
	Connack Connack
}

// Dial connects to o.Addr, sends CONNECT and waits for CONNACK. A refusal
// is a *RefusedError.
func Dial(ctx context.Context, o Options) (*Conn, error) {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	nc, err := dial(ctx, o)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if o.TLS != nil {
		tc := tls.Client(nc, o.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("mqttc: TLS handshake with %s: %w", o.Addr, err)
		}
		nc = tc
	}
	c := NewSize(nc, o.BufferSize)
	_, err = c.w.Write(AppendConnect(nil, o))
	if err == nil {
		err = c.w.Flush()
	}
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("mqttc: send CONNECT: %w", err)
	}
	pk, err := c.ReadPacket()
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("mqttc: wait for CONNACK: %w", err)
	}
	if pk.Type != TypeConnack {
		_ = nc.Close()
		return nil, fmt.Errorf("mqttc: expected CONNACK, got packet type %d", pk.Type)
	}
	ack, err := parseConnack(pk.Body)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	c.Connack = ack
	if ack.Reason >= 0x80 {
		_ = nc.Close()
		return nil, &RefusedError{Reason: ack.Reason, ReasonString: ack.ReasonString}
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

func dial(ctx context.Context, o Options) (net.Conn, error) {
	if o.Dial != nil {
		nc, err := o.Dial(ctx)
		if err != nil {
			return nil, fmt.Errorf("mqttc: dial: %w", err)
		}
		return nc, nil
	}
	d := net.Dialer{}
	if o.LocalIP != "" {
		ip := net.ParseIP(o.LocalIP)
		if ip == nil {
			return nil, fmt.Errorf("mqttc: local address %q is not an IP address", o.LocalIP)
		}
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	nc, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("mqttc: dial %s: %w", o.Addr, err)
	}
	return nc, nil
}

// New wraps an established network connection (after CONNECT, or for
// tests that speak the protocol by hand) with 64 KiB buffers.
func New(nc net.Conn) *Conn { return NewSize(nc, bufSize) }

// NewSize is New with buffers of size bytes (64 KiB when size <= 0).
func NewSize(nc net.Conn, size int) *Conn {
	if size <= 0 {
		size = bufSize
	}
	return &Conn{c: nc, r: bufio.NewReaderSize(nc, size), w: bufio.NewWriterSize(nc, size), buf: make([]byte, 0, min(size, 1024))}
}

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.c }

// Close closes the connection without DISCONNECT.
func (c *Conn) Close() error { return c.c.Close() }

// Packet is one packet read from the broker. Body is valid until the next
// ReadPacket on the same Conn.
type Packet struct {
	Type  byte
	Flags byte
	Body  []byte
}

// ReadPacket reads the next packet.
func (c *Conn) ReadPacket() (Packet, error) {
	b, err := c.r.ReadByte()
	if err != nil {
		return Packet{}, err
	}
	n, err := readVarint(c.r)
	if err != nil {
		return Packet{}, err
	}
	if cap(c.buf) < n {
		c.buf = make([]byte, n)
	}
	c.buf = c.buf[:n]
	if _, err := io.ReadFull(c.r, c.buf); err != nil {
		return Packet{}, err
	}
	return Packet{Type: b >> 4, Flags: b & 0x0F, Body: c.buf}, nil
}

// ReadPublish reads packets until a PUBLISH and returns it parsed; other
// packets (acks, pings) are skipped. Its payload is valid until the next
// read, as a packet's body.
func (c *Conn) ReadPublish() (Publish, error) {
	for {
		pk, err := c.ReadPacket()
		if err != nil {
			return Publish{}, err
		}
		if pk.Type == TypePublish {
			return ParsePublish(pk)
		}
	}
}

// Buffered reports how many bytes are read from the network but not yet
// returned as packets: when it is 0, the next ReadPacket may block, so a
// reader should Flush what it has written before.
func (c *Conn) Buffered() int { return c.r.Buffered() }

// Write buffers p (one or more encoded packets).
func (c *Conn) Write(p []byte) error {
	_, err := c.w.Write(p)
	return err
}

// Flush sends what is buffered.
func (c *Conn) Flush() error { return c.w.Flush() }

// NextID returns the next packet identifier (1 to 65535, wrapping).
func (c *Conn) NextID() uint16 {
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	return c.nextID
}

// Puback buffers a PUBACK (success) for id.
func (c *Conn) Puback(id uint16) error {
	c.hdr[0], c.hdr[1], c.hdr[2], c.hdr[3] = TypePuback<<4, 2, byte(id>>8), byte(id)
	_, err := c.w.Write(c.hdr[:4])
	return err
}

// Subscribe sends SUBSCRIBE for one filter and waits for its SUBACK; a
// refused filter is an error naming the reason code. Call it before any
// reader goroutine starts.
func (c *Conn) Subscribe(filter string, qos byte, timeout time.Duration) error {
	id := c.NextID()
	if err := c.Write(AppendSubscribe(nil, id, filter, qos)); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return err
	}
	_ = c.c.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = c.c.SetReadDeadline(time.Time{}) }()
	for {
		pk, err := c.ReadPacket()
		if err != nil {
			return fmt.Errorf("mqttc: wait for SUBACK of %q: %w", filter, err)
		}
		if pk.Type != TypeSuback {
			continue // e.g. a retained message that raced ahead
		}
		code, err := parseSuback(pk.Body, id)
		if err != nil {
			return err
		}
		if code > qos {
			return fmt.Errorf("mqttc: subscription to %q refused with reason 0x%02X", filter, code)
		}
		return nil
	}
}

// Disconnect sends DISCONNECT (normal), then waits up to timeout for the
// broker to close the connection, and closes it.
func (c *Conn) Disconnect(timeout time.Duration) error {
	err := c.Write([]byte{TypeDisconnect << 4, 0})
	if err == nil {
		err = c.Flush()
	}
	if err == nil && timeout > 0 {
		_ = c.c.SetReadDeadline(time.Now().Add(timeout))
		for {
			if _, rerr := c.ReadPacket(); rerr != nil {
				break
			}
		}
	}
	if cerr := c.c.Close(); err == nil {
		err = cerr
	}
	return err
}

// ErrMalformed is a packet this client cannot parse.
var ErrMalformed = errors.New("mqttc: malformed packet")
