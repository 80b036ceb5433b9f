// Command homemq-bare runs the comparison broker of `make bench-compare`:
// mochi with homemq's options and listeners (MQTT over TLS, plain MQTT,
// MQTT over WebSocket with TLS) and an allow-all hook instead of homemq's
// checks. It is for measuring, never for a home.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/mochi-mqtt/server/v2/listeners"

	"homemq/bench"
	"homemq/broker"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "homemq-bare:", err)
		os.Exit(1)
	}
}

func run() error {
	plain := flag.String("mqtt-plain", "127.0.0.1:1883", "plain MQTT/TCP address (\"\" = off)")
	mqtts := flag.String("mqtt", "", "MQTT over TLS address (needs --cert and --key)")
	ws := flag.String("ws", "", "MQTT over WebSocket with TLS address (needs --cert and --key)")
	cert := flag.String("cert", "", "server certificate (PEM), e.g. DATA/certs/server.pem of homemq's dev mode")
	key := flag.String("key", "", "server key (PEM)")
	level := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	var tlsConf *tls.Config
	if *mqtts != "" || *ws != "" {
		if *cert == "" || *key == "" {
			return fmt.Errorf("--mqtt and --ws need --cert and --key")
		}
		pair, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			return fmt.Errorf("--cert/--key: %w", err)
		}
		tlsConf = broker.ServerTLS(pair)
		tlsConf.NextProtos = nil
	}
	s := bench.NewBare(broker.DefaultConfig().Limits, log)
	if *plain != "" {
		_ = s.AddListener(listeners.NewTCP(listeners.Config{ID: "mqtt", Address: *plain}))
	}
	if *mqtts != "" {
		_ = s.AddListener(listeners.NewTCP(listeners.Config{ID: "mqtts", Address: *mqtts, TLSConfig: tlsConf}))
	}
	if *ws != "" {
		_ = s.AddListener(listeners.NewWebsocket(listeners.Config{ID: "wss", Address: *ws, TLSConfig: tlsConf}))
	}
	if err := s.Serve(); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return s.Close()
}
