package bench

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"homemq/auth"
	"homemq/bench/mqttc"
	"homemq/broker"
	"homemq/hooks"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// pipeServer starts variant (allow, guard, homemq) with an in-process
// listener of its own ("bench-pipe": the Guard treats it as a network
// listener, unlike the broker's exempt "internal" one) and returns a
// dialler for it and the token minter of its keys (nil for allow).
func pipeServer(tb testing.TB, variant string) (dial func(context.Context) (net.Conn, error), issuer *auth.Issuer) {
	tb.Helper()
	cfg := ForLoad(broker.DefaultConfig())
	pipe := broker.NewPipeListener("bench-pipe", cfg.Limits.ConnectTimeout)
	var s, srv *mqtt.Server // srv: the broker's server, which the broker starts and closes
	switch variant {
	case "homemq":
		cfg.Data = tb.TempDir()
		cfg.Listeners = broker.ListenersConfig{MQTTPlain: "127.0.0.1:0"}
		b, err := broker.New(cfg, broker.WithLogger(quiet))
		if err != nil {
			tb.Fatal(err)
		}
		if err := b.Server.AddListener(pipe); err != nil {
			tb.Fatal(err)
		}
		if err := b.Start(); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(b.Close)
		issuer, srv = b.Issuer, b.Server
	case "guard":
		keys := auth.NewMemoryKeys()
		revoked, err := auth.LoadRevocations("")
		if err != nil {
			tb.Fatal(err)
		}
		issuer = auth.NewIssuer(cfg.Tokens, keys)
		s = mqtt.New(ServerOptions(cfg.Limits, quiet))
		g, err := hooks.New(s, auth.NewVerifier(cfg.Tokens, keys, revoked), make([]byte, 32), cfg.Guard())
		if err != nil {
			tb.Fatal(err)
		}
		if err := s.AddHook(g, nil); err != nil {
			tb.Fatal(err)
		}
	default:
		s = NewBare(cfg.Limits, quiet)
	}
	if srv == nil {
		if err := s.AddListener(pipe); err != nil {
			tb.Fatal(err)
		}
		if err := s.Serve(); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = s.Close() })
	}
	if s == nil {
		s = srv
	}
	// Let the server remove its last clients before it closes: a
	// listener without the broker's closer falls back on mochi's
	// closeListenerClients, which takes the clients' read lock twice and
	// deadlocks against a concurrent removal. (Cleanups run last first.)
	base := s.Clients.Len()
	tb.Cleanup(func() {
		for end := time.Now().Add(10 * time.Second); s.Clients.Len() > base && time.Now().Before(end); {
			time.Sleep(5 * time.Millisecond)
		}
	})
	dial = func(context.Context) (net.Conn, error) { return pipe.Dial() }
	for end := time.Now().Add(5 * time.Second); ; { // Serve hands the listener its establish function in a goroutine
		c, err := pipe.Dial()
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(end) {
			tb.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return dial, issuer
}

// BenchmarkConnectPipe is one full CONNECT → CONNACK → DISCONNECT through
// an in-process connection, without the network in the way: allocs/op and
// B/op show what the CONNECT path allocates (the client's share is the
// same in every variant). Profile it with -memprofile to name the
// allocators.
func BenchmarkConnectPipe(b *testing.B) {
	for _, v := range variants {
		b.Run(v, func(b *testing.B) {
			dial, is := pipeServer(b, v)
			if is == nil {
				is = auth.NewIssuer(auth.Config{}, auth.NewMemoryKeys())
			}
			tok, _, err := is.Mint(auth.Spec{Sub: "user:c", Homes: map[string]string{"h": "viewer"}, TTL: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			pass := []byte(tok)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c, err := mqttc.Dial(ctx, mqttc.Options{Dial: dial, ClientID: "user:c/" + strconv.Itoa(i),
					Username: "user:c", Password: pass, Keepalive: 60, BufferSize: 256})
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

// BenchmarkConnectPipeFresh is BenchmarkConnectPipe with a token of its
// own for every connect (minted before the timer starts), as scenario c:
// every CONNECT verifies a signature. Profile it with -cpuprofile to see
// what a connect costs beyond the signature.
func BenchmarkConnectPipeFresh(b *testing.B) {
	for _, v := range variants {
		b.Run(v, func(b *testing.B) {
			dial, is := pipeServer(b, v)
			if is == nil {
				is = auth.NewIssuer(auth.Config{}, auth.NewMemoryKeys())
			}
			pass := make([][]byte, b.N)
			for i := range pass {
				tok, _, err := is.Mint(auth.Spec{Sub: "user:c", Homes: map[string]string{"h": "viewer"}, TTL: time.Hour})
				if err != nil {
					b.Fatal(err)
				}
				pass[i] = []byte(tok)
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c, err := mqttc.Dial(ctx, mqttc.Options{Dial: dial, ClientID: "user:c/" + strconv.Itoa(i),
					Username: "user:c", Password: pass[i], Keepalive: 60, BufferSize: 256})
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
