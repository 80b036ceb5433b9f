package bench

import (
	"context"
	"encoding/binary"
	"log/slog"
	"runtime"
	"strconv"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
	"homemq/bench/mqttc"
	"homemq/broker"
	"homemq/envelope"
	"homemq/hooks"
)

// These benchmarks put homemq's checks next to the allow-all hook, on the
// same mochi options and loopback listener, client and server in one
// process. Each has three variants:
//
//	…/allow   mochi with the allow-all hook (the bare server)
//	…/guard   mochi with homemq's Guard alone (every check, nothing else)
//	…/homemq  the whole broker of broker.New (Guard, storage, observers)
//
// make bench-compare prints them side by side into docs/performance.md.

var quiet = slog.New(slog.DiscardHandler)

// variants of the server under benchmark.
var variants = []string{"allow", "guard", "homemq"}

// server is a broker under benchmark: its plain MQTT address and, for the
// variants that check tokens, credentials minted with its keys.
type server struct {
	addr   string
	issuer *auth.Issuer
	msgKey func(jti string) []byte // the message key of a token
	guard  *hooks.Guard
	mochi  *mqtt.Server
}

func startServer(tb testing.TB, variant string) *server {
	tb.Helper()
	cfg := ForLoad(broker.DefaultConfig())
	if variant == "homemq" {
		cfg.Data = tb.TempDir()
		cfg.Listeners = broker.ListenersConfig{MQTTPlain: "127.0.0.1:0"}
		b, err := broker.New(cfg, broker.WithLogger(quiet))
		if err != nil {
			tb.Fatal(err)
		}
		if err := b.Start(); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(b.Close)
		return &server{addr: b.Addrs()["mqtt"], issuer: b.Issuer, msgKey: b.MessageKey, guard: b.Guard, mochi: b.Server}
	}
	s := &server{mochi: mqtt.New(ServerOptions(cfg.Limits, quiet))}
	if variant == "guard" {
		keys := auth.NewMemoryKeys()
		revoked, err := auth.LoadRevocations("")
		if err != nil {
			tb.Fatal(err)
		}
		master := make([]byte, 32)
		s.msgKey = func(jti string) []byte { return envelope.DeriveKey(master, jti) }
		s.issuer = auth.NewIssuer(cfg.Tokens, keys)
		gc := cfg.Guard()
		if s.guard, err = hooks.New(s.mochi, auth.NewVerifier(cfg.Tokens, keys, revoked), master, gc); err != nil {
			tb.Fatal(err)
		}
		if err := s.mochi.AddHook(s.guard, nil); err != nil {
			tb.Fatal(err)
		}
	} else if err := s.mochi.AddHook(new(AllowAll), nil); err != nil {
		tb.Fatal(err)
	}
	l := broker.NewTCPListener("mqtt", "127.0.0.1:0", nil, cfg.Limits.ConnectTimeout)
	if err := s.mochi.AddListener(l); err != nil {
		tb.Fatal(err)
	}
	if err := s.mochi.Serve(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.mochi.Close() })
	s.addr = l.Address()
	return s
}

// identity returns a password, jti and message key for sub (role in home
// h). The allow-all server gets the same kind of token from a key of its
// own (it ignores it), so every variant reads CONNECT packets of one size.
func (s *server) identity(tb testing.TB, sub, role string) (pass []byte, jti string, key []byte) {
	tb.Helper()
	is, msgKey := s.issuer, s.msgKey
	if is == nil {
		is = auth.NewIssuer(auth.Config{}, auth.NewMemoryKeys())
		msgKey = func(jti string) []byte { return envelope.DeriveKey(make([]byte, 32), jti) }
	}
	tok, c, err := is.Mint(auth.Spec{Sub: sub, Homes: map[string]string{"h": role}, TTL: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	return []byte(tok), c.ID, msgKey(c.ID)
}

func (s *server) dial(tb testing.TB, sub, role, suffix string) *mqttc.Conn {
	tb.Helper()
	pass, _, _ := s.identity(tb, sub, role)
	c, err := mqttc.Dial(context.Background(), mqttc.Options{Addr: s.addr, ClientID: sub + "/" + suffix, Username: sub, Password: pass, Keepalive: 300})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// pump publishes n payloads from pub (made by next) and waits until sub
// has received all of them, with at most window in flight.
func pump(b *testing.B, pub, sub *mqttc.Conn, topic string, qos byte, n int, next func(i int) []byte) {
	const window = 256
	got := make(chan struct{}, window)
	errc := make(chan error, 2)
	go func() { // subscriber
		unacked := 0
		for i := 0; i < n; {
			pk, err := sub.ReadPacket()
			if err != nil {
				errc <- err
				return
			}
			if pk.Type == mqttc.TypePublish {
				p, err := mqttc.ParsePublish(pk)
				if err != nil {
					errc <- err
					return
				}
				if p.QoS > 0 {
					_ = sub.Puback(p.ID)
					unacked++
				}
				got <- struct{}{}
				i++
			}
			if unacked >= 16 || sub.Buffered() == 0 {
				_ = sub.Flush()
				unacked = 0
			}
		}
		_ = sub.Flush()
		errc <- nil
	}()
	if qos > 0 {
		go func() { // PUBACKs; a refusal is a failure
			for acked := 0; acked < n; {
				pk, err := pub.ReadPacket()
				if err != nil {
					return
				}
				if pk.Type == mqttc.TypePuback {
					if _, reason, _ := mqttc.ParseAck(pk); reason >= 0x80 {
						errc <- &mqttc.RefusedError{Reason: reason, ReasonString: "publish refused"}
						return
					}
					acked++
				}
			}
		}()
	}
	var buf []byte
	inflight := 0
	for i := 0; i < n; i++ {
		if inflight == window {
			_ = pub.Flush()
			<-got
			inflight--
		}
		buf = mqttc.AppendPublish(buf[:0], topic, pub.NextID(), qos, next(i))
		if err := pub.Write(buf); err != nil {
			b.Fatal(err)
		}
		inflight++
	}
	if err := pub.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

// benchState: one agent publishes 64-byte state messages, one viewer
// receives them; ns/op is per message delivered.
func benchState(b *testing.B, qos byte) {
	for _, v := range variants {
		b.Run(v, func(b *testing.B) {
			s := startServer(b, v)
			sub := s.dial(b, "user:viewer", "viewer", "s")
			if err := sub.Subscribe("homes/h/agents/+/devices/+/state", qos, 5*time.Second); err != nil {
				b.Fatal(err)
			}
			pub := s.dial(b, "agent:a", "agent", "p")
			payload := make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			pump(b, pub, sub, "homes/h/agents/a/devices/d/state", qos, b.N, func(i int) []byte {
				binary.BigEndian.PutUint64(payload, uint64(i))
				return payload
			})
		})
	}
}

func BenchmarkStateQoS0(b *testing.B) { benchState(b, 0) }
func BenchmarkStateQoS1(b *testing.B) { benchState(b, 1) }

// BenchmarkCommand: an admin publishes signed commands (sealed before the
// timer starts), the agent receives them; with the Guard every one is
// parsed, verified and recorded in the replay cache.
func BenchmarkCommand(b *testing.B) {
	for _, v := range variants {
		b.Run(v, func(b *testing.B) {
			s := startServer(b, v)
			sub := s.dial(b, "agent:a", "agent", "s")
			if err := sub.Subscribe("homes/h/agents/a/devices/+/cmd", 1, 5*time.Second); err != nil {
				b.Fatal(err)
			}
			pass, jti, key := s.identity(b, "user:admin", "admin")
			pub, err := mqttc.Dial(context.Background(), mqttc.Options{Addr: s.addr, ClientID: "user:admin/p", Username: "user:admin", Password: pass, Keepalive: 300})
			if err != nil {
				b.Fatal(err)
			}
			defer pub.Close()
			const topic = "homes/h/agents/a/devices/d/cmd"
			sealed := make([][]byte, b.N)
			for i := range sealed {
				if sealed[i], err = envelope.Seal(key, topic, jti, `{"action":"toggle"}`, time.Now(), 30*time.Second); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			pump(b, pub, sub, topic, 1, b.N, func(i int) []byte { return sealed[i] })
		})
	}
}

// BenchmarkConnect: CONNECT with a JWT, CONNACK, DISCONNECT, one after
// the other; with the Guard every CONNECT verifies an EdDSA signature.
func BenchmarkConnect(b *testing.B) {
	for _, v := range variants {
		b.Run(v, func(b *testing.B) {
			s := startServer(b, v)
			pass, _, _ := s.identity(b, "user:c", "viewer")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c, err := mqttc.Dial(context.Background(), mqttc.Options{Addr: s.addr, ClientID: "user:c/" + strconv.Itoa(i),
					Username: "user:c", Password: pass, Keepalive: 60, BufferSize: 512})
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Disconnect(time.Second); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// guardClient returns homemq's Guard with one authenticated MQTT 5 client
// of sub (role in home h), for calling the hook methods directly, and the
// jti and message key of the client's token.
func guardClient(b *testing.B, sub, role string) (*server, *mqtt.Client, string, []byte) {
	s := startServer(b, "guard")
	pass, jti, key := s.identity(b, sub, role)
	cl := s.mochi.NewClient(nil, "mqtt", "", false)
	pk := packets.Packet{ProtocolVersion: 5, Connect: packets.ConnectParams{ClientIdentifier: sub + "/x", Password: pass, PasswordFlag: true, Keepalive: 60}}
	cl.ParseConnect("mqtt", pk)
	cl.Net.Remote = "127.0.0.1:5555"
	if err := s.guard.OnConnect(cl, pk); err != nil {
		b.Fatal(err)
	}
	return s, cl, jti, key
}

// BenchmarkGuardOnPublishState is the Guard's own work on one state
// publish: token alive, topic rules.
func BenchmarkGuardOnPublishState(b *testing.B) {
	s, cl, _, _ := guardClient(b, "agent:a", "agent")
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "homes/h/agents/a/devices/d/state", Payload: make([]byte, 64)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.guard.OnPublish(cl, pk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGuardOnPublishCommand is the Guard's own work on one command:
// rate limit, envelope parse, signature, replay cache. The envelopes are
// sealed before the timer starts.
func BenchmarkGuardOnPublishCommand(b *testing.B) {
	s, cl, jti, key := guardClient(b, "user:admin", "admin")
	const topic = "homes/h/agents/a/devices/d/cmd"
	pks := make([]packets.Packet, b.N)
	for i := range pks {
		p, err := envelope.Seal(key, topic, jti, `{"action":"toggle"}`, time.Now(), 30*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		pks[i] = packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: topic, PacketID: 1, Payload: p}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.guard.OnPublish(cl, pks[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGuardOnACLCheckRead is the Guard's work per delivery of a
// message to a subscriber.
func BenchmarkGuardOnACLCheckRead(b *testing.B) {
	s, cl, _, _ := guardClient(b, "user:viewer", "viewer")
	b.ReportAllocs()
	for b.Loop() {
		if !s.guard.OnACLCheck(cl, "homes/h/agents/a/devices/d/state", false) {
			b.Fatal("refused")
		}
	}
}

// BenchmarkGuardOnPacketRead is the Guard's token-alive check on every
// PUBLISH and SUBSCRIBE read.
func BenchmarkGuardOnPacketRead(b *testing.B) {
	s, cl, _, _ := guardClient(b, "agent:a", "agent")
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.guard.OnPacketRead(cl, pk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIdleConn opens b.N connections and holds them; it reports the
// server's live heap and goroutine stacks per connection (after a GC), the
// in-process counterpart of the idle-memory scenario. Client connections
// live in the same process and weigh the same in every variant.
func BenchmarkIdleConn(b *testing.B) {
	for _, v := range variants {
		b.Run(v, func(b *testing.B) {
			s := startServer(b, v)
			pass, _, _ := s.identity(b, "user:idle", "viewer")
			conns := make([]*mqttc.Conn, 0, b.N)
			defer func() {
				for _, c := range conns {
					_ = c.Close()
				}
			}()
			before := liveBytes()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c, err := mqttc.Dial(context.Background(), mqttc.Options{Addr: s.addr, ClientID: "user:idle/" + strconv.Itoa(i),
					Username: "user:idle", Password: pass, Keepalive: 300, BufferSize: 512})
				if err != nil {
					b.Fatal(err)
				}
				conns = append(conns, c)
			}
			b.StopTimer()
			time.Sleep(100 * time.Millisecond) // let the server finish setting up the last ones
			b.ReportMetric(float64(liveBytes()-before)/float64(b.N), "B/conn")
		})
	}
}

// liveBytes is the live heap and the goroutine stacks, after a GC.
func liveBytes() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc + m.StackInuse)
}

// BenchmarkFanOut: one agent publishes 64-byte QoS 1 state messages,
// sixteen viewers receive every one; ns/op is per message published
// (sixteen deliveries, each judged by the receiver's rights).
func BenchmarkFanOut(b *testing.B) {
	const subs, window = 16, 256
	for _, v := range variants {
		b.Run(v, func(b *testing.B) {
			s := startServer(b, v)
			got := make([]chan struct{}, subs)
			errc := make(chan error, subs)
			n := b.N
			for i := range got {
				got[i] = make(chan struct{}, window)
				sub := s.dial(b, "user:viewer", "viewer", "s"+strconv.Itoa(i))
				if err := sub.Subscribe("homes/h/agents/+/devices/+/state", 1, 5*time.Second); err != nil {
					b.Fatal(err)
				}
				go func(sub *mqttc.Conn, got chan<- struct{}) {
					for i := 0; i < n; {
						pk, err := sub.ReadPacket()
						if err != nil {
							errc <- err
							return
						}
						if pk.Type != mqttc.TypePublish {
							continue
						}
						p, err := mqttc.ParsePublish(pk)
						if err != nil {
							errc <- err
							return
						}
						_ = sub.Puback(p.ID)
						if sub.Buffered() == 0 {
							_ = sub.Flush()
						}
						got <- struct{}{}
						i++
					}
					_ = sub.Flush()
					errc <- nil
				}(sub, got[i])
			}
			pub := s.dial(b, "agent:a", "agent", "p")
			go func() { // PUBACKs
				for {
					if _, err := pub.ReadPacket(); err != nil {
						return
					}
				}
			}()
			payload := make([]byte, 64)
			var buf []byte
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < n; i++ {
				if i >= window {
					_ = pub.Flush()
					for _, g := range got {
						<-g
					}
				}
				binary.BigEndian.PutUint64(payload, uint64(i))
				buf = mqttc.AppendPublish(buf[:0], "homes/h/agents/a/devices/d/state", pub.NextID(), 1, payload)
				if err := pub.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			if err := pub.Flush(); err != nil {
				b.Fatal(err)
			}
			for range subs {
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
