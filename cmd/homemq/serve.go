package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"homemq/auth"
	"homemq/broker"
)

func init() {
	register("serve", "run the broker (dev mode with no config: self-provisioned certificates and keys)", serve)
}

const serveUsage = `usage: homemq serve [--config FILE] [--data DIR] [--mqtt ADDR] [--https ADDR] [--mqtt-plain ADDR] [--log-level L]
flags override the config file; with no config, dev mode`

func serve(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	var cf commonFlags
	cf.add(fs, flagConfig, flagData)
	mqttAddr := fs.String("mqtt", "", "MQTT over TLS address (default 127.0.0.1:8883)")
	httpsAddr := fs.String("https", "", "HTTPS address for /mqtt WebSocket, APIs and web app (default 127.0.0.1:8443)")
	plain := fs.String("mqtt-plain", "", "also serve plain MQTT/TCP on this address (off unless set)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error")
	withDemo := fs.Bool("demo", false, "dev mode only: also run home demo's agent demo-pi (a lamp and a door on simulated pins) and print an invite link for user:demo")
	fs.Usage = func() {
		fmt.Fprintln(stderr, serveUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := cf.loadConfig()
	if err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "mqtt":
			cfg.Listeners.MQTT = *mqttAddr
		case "https":
			cfg.Listeners.HTTPS = *httpsAddr
		case "mqtt-plain":
			cfg.Listeners.MQTTPlain = *plain
		case "log-level":
			cfg.Log.Level = *logLevel
		}
	})
	if err := cfg.Validate(); err != nil {
		return err
	}
	if *withDemo && !cfg.DevMode() {
		return errors.New("--demo runs only in dev mode (no tls.cert and tls.key in the config): it registers a demo home and agent")
	}
	log := newLogger(cfg.Log.Level, stderr)
	cfg.Limits.ApplyMemoryLimit()
	b, err := broker.New(cfg, broker.WithLogger(log))
	if err != nil {
		return err
	}
	if err := b.Start(); err != nil {
		return err
	}
	// Catch the signals before anything is printed: a Ctrl-C right after
	// the banner must still shut down cleanly (and exit 0, so make is content).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	var d *demo
	if *withDemo {
		if d, err = startDemo(b, log); err != nil {
			b.Close()
			return err
		}
	}
	if err := printWelcome(stdout, b, *withDemo); err != nil {
		b.Close()
		return err
	}
	if d != nil {
		if err := printDemo(stdout, b); err != nil {
			b.Close()
			return err
		}
	}
	s := <-sig
	if s == syscall.SIGTERM && b.CanDrain() {
		drainOnSignal(b, sig, log) // a cluster node hands its clients to the others first
	}
	log.Info("shutting down", "signal", s.String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if d != nil {
		// first the agent, so it says "offline" itself and leaves true retained state
		if err := d.Stop(ctx); err != nil {
			log.Warn("demo agent stopped with an error", "error", err)
		}
		// Workaround: mochi's Server.Close disconnects every client with
		// Server.DisconnectClient, which closes the connection at once and
		// drops publishes still queued for it, so a page watching the demo
		// could miss the agent's "offline". Give the queues a moment.
		time.Sleep(200 * time.Millisecond)
	}
	return b.Shutdown(ctx)
}

// drainOnSignal drains a cluster node (broker.Broker.Drain) until every
// client was asked to leave, or until a second signal.
func drainOnSignal(b *broker.Broker, sig <-chan os.Signal, log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-sig:
			log.Warn("second signal: stopping without waiting for the drain")
			cancel()
		case <-ctx.Done():
		}
	}()
	_ = b.Drain(ctx)
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// printWelcome tells a new user where the broker is and how to talk to it,
// with copy-paste commands that work as printed (dev mode mints demo tokens).
func printWelcome(w io.Writer, b *broker.Broker, withDemo bool) error {
	addrs := b.Addrs()
	fmt.Fprintln(w, "homemq is running.")
	for _, k := range []string{"mqtts", "https", "mqtt"} {
		if a, ok := addrs[k]; ok {
			switch k {
			case "mqtts":
				fmt.Fprintf(w, "  MQTT over TLS:       mqtts://%s\n", a)
			case "https":
				fmt.Fprintf(w, "  MQTT over WebSocket: wss://%s/mqtt\n", a)
				fmt.Fprintf(w, "  HTTPS (health, API): https://%s/healthz\n", a)
			case "mqtt":
				fmt.Fprintf(w, "  plain MQTT (no TLS): mqtt://%s\n", a)
			}
		}
	}
	caFile, _ := filepath.Abs(b.CAFile)
	if b.CAFile != "" {
		fmt.Fprintf(w, "  CA certificate:      %s\n", caFile)
	}
	if b.CAPages != nil {
		fmt.Fprintf(w, "  CA fingerprint:      SHA-256 %s\n", b.CAPages.Fingerprint)
		if a, ok := addrs["http_ca"]; ok {
			fmt.Fprintf(w, "  trust it on a phone: http://%s/ca\n", a)
		} else if a, ok := addrs["https"]; ok {
			fmt.Fprintf(w, "  trust it on a phone: https://%s/ca\n", a)
		}
	}
	if !b.Config().DevMode() {
		return nil
	}
	user, _, err := b.Issuer.Mint(auth.Spec{Sub: "user:demo", Homes: map[string]string{"demo": "admin"}, TTL: 12 * time.Hour})
	if err != nil {
		return err
	}
	host, port := "127.0.0.1", "8883"
	if a, ok := addrs["mqtts"]; ok {
		host, port = hostPort(a)
	}
	fmt.Fprintf(w, "\nDev mode: demo tokens valid for 12h (home \"demo\"). In another terminal:\n\n")
	fmt.Fprintf(w, "  # watch everything in home demo, as its admin\n")
	fmt.Fprintf(w, "  mosquitto_sub -h %s -p %s --cafile %s -V mqttv5 -i user:demo/sub -u user:demo -P '%s' -t 'homes/demo/#' -v\n\n", host, port, shellQuote(caFile), user)
	self := selfPath()
	if withDemo {
		fmt.Fprintf(w, "  # switch the demo lamp on (a signed command; the agent answers on .../ack)\n")
		fmt.Fprintf(w, "  %s send --data %s --server mqtts://%s --topic homes/demo/agents/demo-pi/devices/lamp/cmd --msg '{\"action\":\"on\"}'\n\n", shellQuote(self), shellQuote(b.Config().Data), net.JoinHostPort(host, port))
	} else {
		agent, _, err := b.Issuer.Mint(auth.Spec{Sub: "agent:demo-pi", Homes: map[string]string{"demo": "agent"}, TTL: 12 * time.Hour})
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  # report a lamp's state, as the demo agent (make run runs a real one: serve --demo)\n")
		fmt.Fprintf(w, "  mosquitto_pub -h %s -p %s --cafile %s -V mqttv5 -i agent:demo-pi -u agent:demo-pi -P '%s' -t homes/demo/agents/demo-pi/devices/lamp/state -m on -r\n\n", host, port, shellQuote(caFile), agent)
	}
	fmt.Fprintf(w, "Mint more tokens with: %s token mint --data %s --sub user:NAME --home demo=member\n", shellQuote(self), shellQuote(b.Config().Data))
	return nil
}

// selfPath is how to run this binary again from the current folder:
// ./bin/homemq after make build, else its absolute path ("homemq" need not be
// on PATH).
func selfPath() string {
	exe, err := os.Executable()
	if err != nil {
		return "homemq"
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, exe); err == nil && !strings.HasPrefix(rel, "..") {
			return "./" + rel
		}
	}
	return exe
}

func hostPort(addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "127.0.0.1", "8883"
	}
	if h == "" || h == "0.0.0.0" || h == "::" {
		h = "localhost"
	}
	return h, p
}

func shellQuote(s string) string {
	if strings.ContainsAny(s, " '\"$`\\") {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return s
}
