package mqttc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// fakeConn is a net.Conn that reads from r and discards writes.
type fakeConn struct {
	net.Conn
	r io.Reader
}

func (f *fakeConn) Read(p []byte) (int, error)         { return f.r.Read(p) }
func (f *fakeConn) Write(p []byte) (int, error)        { return len(p), nil }
func (f *fakeConn) Close() error                       { return nil }
func (f *fakeConn) SetDeadline(time.Time) error        { return nil }
func (f *fakeConn) SetReadDeadline(t time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(t time.Time) error { return nil }

// denyUser is a mochi hook that refuses the user "bad" and allows all else.
type denyUser struct{ mqtt.HookBase }

func (h *denyUser) ID() string { return "deny-bad" }
func (h *denyUser) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (h *denyUser) OnConnectAuthenticate(_ *mqtt.Client, pk packets.Packet) bool {
	return string(pk.Connect.Username) != "bad"
}
func (h *denyUser) OnACLCheck(_ *mqtt.Client, topic string, _ bool) bool { return topic != "secret" }

// startMochi runs a mochi server on a free loopback port.
func startMochi(t *testing.T) string {
	t.Helper()
	s := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), InlineClient: false})
	if err := s.AddHook(new(denyUser), nil); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := s.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return l.Address()
}

func TestAgainstMochi(t *testing.T) {
	addr := startMochi(t)
	ctx := context.Background()
	sub, err := Dial(ctx, Options{Addr: addr, ClientID: "sub", Username: "u", Password: []byte("p"), Keepalive: 60})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := sub.Subscribe("homes/#", 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := sub.Subscribe("secret", 1, 5*time.Second); err == nil {
		t.Error("a refused subscription was reported as granted")
	}

	pub, err := Dial(ctx, Options{Addr: addr, ClientID: "pub", Keepalive: 60})
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	for i, qos := range []byte{0, 1, 1} {
		buf = AppendPublish(buf, "homes/h/x", pub.NextID(), qos, []byte{byte('a' + i)})
	}
	if err := pub.Write(buf); err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}

	_ = sub.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	for len(got) < 3 {
		pk, err := sub.ReadPacket()
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		if pk.Type != TypePublish {
			continue
		}
		p, err := ParsePublish(pk)
		if err != nil || string(p.Topic) != "homes/h/x" {
			t.Fatalf("delivery %+v: %v", p, err)
		}
		got = append(got, p.Payload...)
		if p.QoS == 1 {
			if err := sub.Puback(p.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if string(got) != "abc" {
		t.Errorf("subscriber got %q, want abc in order", got)
	}
	acks := 0
	_ = pub.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	for acks < 2 {
		pk, err := pub.ReadPacket()
		if err != nil {
			t.Fatalf("publisher got %d PUBACKs: %v", acks, err)
		}
		if _, reason, err := ParseAck(pk); pk.Type == TypePuback && err == nil && reason < 0x80 {
			acks++
		}
	}
	if err := pub.Disconnect(time.Second); err != nil {
		t.Errorf("disconnect: %v", err)
	}
}

func TestRefusedConnect(t *testing.T) {
	addr := startMochi(t)
	_, err := Dial(context.Background(), Options{Addr: addr, ClientID: "x", Username: "bad", Password: []byte("p"), Keepalive: 60})
	var refused *RefusedError
	if !errors.As(err, &refused) || refused.Reason != 0x86 {
		t.Fatalf("got %v, want a refusal with reason 0x86 (bad user name or password)", err)
	}
}

func TestDialTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accept and say nothing
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}
	}()
	_, err = Dial(context.Background(), Options{Addr: ln.Addr().String(), ClientID: "x", Timeout: 200 * time.Millisecond})
	if err == nil {
		t.Fatal("Dial returned without a CONNACK")
	}
}

func FuzzReadPacket(f *testing.F) {
	f.Add(AppendPublish(nil, "homes/h/x", 1, 1, []byte("payload")))
	f.Add([]byte{0x20, 0x03, 0x00, 0x86, 0x00})
	f.Add([]byte{0x90, 0x04, 0x00, 0x01, 0x00, 0x87})
	f.Add([]byte{0x20, 0x09, 0x00, 0x00, 0x06, 0x21, 0x01, 0x00, 0x1F, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := NewSize(&fakeConn{r: bytes.NewReader(b)}, 64)
		for i := 0; i < 16; i++ {
			pk, err := c.ReadPacket()
			if err != nil {
				return
			}
			switch pk.Type {
			case TypePublish:
				if p, err := ParsePublish(pk); err == nil && len(p.Topic)+len(p.Payload) > len(pk.Body) {
					t.Fatalf("publish parts exceed the packet")
				}
			case TypeConnack:
				_, _ = parseConnack(pk.Body)
			case TypeSuback:
				_, _ = parseSuback(pk.Body, 1)
			case TypePuback:
				_, _, _ = ParseAck(pk)
			}
		}
	})
}

// TestReadPublishSkipsOtherPackets: a PUBACK and a PINGRESP before a
// PUBLISH are skipped, the PUBLISH comes back parsed.
func TestReadPublishSkipsOtherPackets(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		defer server.Close()
		in := []byte{0x40, 2, 0, 7, 0xD0, 0}
		in = AppendPublish(in, "a/b", 0, 0, []byte("hi"))
		_, _ = server.Write(in)
	}()
	p, err := New(client).ReadPublish()
	if err != nil || string(p.Topic) != "a/b" || string(p.Payload) != "hi" {
		t.Fatalf("ReadPublish = %+v, %v, want a/b hi", p, err)
	}
}
