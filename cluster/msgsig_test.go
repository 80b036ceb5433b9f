package cluster

import (
	"io"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestMessageSignature(t *testing.T) {
	s := NewSecret()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	signer, receiver := newMsgSigner(s, quiet), newMsgSigner(s, quiet)
	signed := func() *nats.Msg {
		m := &nats.Msg{Subject: "homemq.msg.homes.h1.x", Data: []byte("on"), Header: nats.Header{metaHeader: []string{`{"topic":"homes/h1/x"}`}}}
		signer.sign(m)
		return m
	}
	for _, tc := range []struct {
		name string
		edit func(*nats.Msg)
		ok   bool
	}{
		{"signed", func(*nats.Msg) {}, true},
		{"unsigned", func(m *nats.Msg) { m.Header.Del(sigHeader) }, false},
		{"garbage signature", func(m *nats.Msg) { m.Header.Set(sigHeader, "!!") }, false},
		{"payload changed", func(m *nats.Msg) { m.Data = []byte("off") }, false},
		{"attributes changed", func(m *nats.Msg) { m.Header.Set(metaHeader, `{"topic":"homes/h2/x"}`) }, false},
		{"subject changed", func(m *nats.Msg) { m.Subject = "homemq.msg.homes.h2.x" }, false},
		{"bytes moved between parts", func(m *nats.Msg) {
			m.Header.Set(metaHeader, `{"topic":"homes/h1/x"}o`)
			m.Data = []byte("n")
		}, false},
		{"other secret", func(m *nats.Msg) { newMsgSigner(NewSecret(), quiet).sign(m) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := signed()
			tc.edit(m)
			before := receiver.dropped.Load()
			if got := receiver.check(m.Subject, m.Header, m.Data); got != tc.ok {
				t.Fatalf("check = %v, want %v", got, tc.ok)
			}
			if counted := receiver.dropped.Load() - before; counted != map[bool]uint64{true: 0, false: 1}[tc.ok] {
				t.Fatalf("dropped counter moved by %d", counted)
			}
		})
	}
}

func TestSealedValue(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := newMsgSigner(NewSecret(), quiet)
	value := []byte("{\"topic\":\"homes/h1/x\"}\non")
	sealed := s.seal("homes.h1.x", value)
	for _, tc := range []struct {
		name, key string
		v         []byte
		ok        bool
	}{
		{"sealed", "homes.h1.x", sealed, true},
		{"unsealed", "homes.h1.x", value, false},
		{"under another key", "homes.h2.x", sealed, false},
		{"sealed by another secret", "homes.h1.x", newMsgSigner(NewSecret(), quiet).seal("homes.h1.x", value), false},
		{"too short", "homes.h1.x", sealed[:10], false},
		{"empty", "homes.h1.x", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := s.open(tc.key, tc.v)
			if ok != tc.ok || ok && string(got) != string(value) {
				t.Fatalf("open = %q, %v; want %v", got, ok, tc.ok)
			}
		})
	}
}
