package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"homemq/agent"
	"homemq/agent/gpiosim"
	"homemq/auth"
	"homemq/broker"
	"homemq/registry"
)

// The demo of serve --demo: home demo, its admin user:demo and the agent
// demo-pi with a lamp and a door on simulated pins, run in the broker's
// process.
const (
	demoHome   = "demo"
	demoUser   = "user:demo"
	demoAgent  = "demo-pi"
	demoCred   = "demo-agent.credential" // in the data folder, 0600
	demoSignIn = time.Hour               // how long the printed invite link works
)

// demo is the running demo agent.
type demo struct {
	stop context.CancelFunc
	done chan error
}

// startDemo registers (or finds) the demo home, member and agent in the
// broker's registry and runs the agent on simulated GPIO until Stop. A
// restart finds the same home and the same agent: its credential is kept in
// the data folder, and replaced if it no longer works.
func startDemo(b *broker.Broker, log *slog.Logger) (*demo, error) {
	cred, err := demoRegister(b)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	addr, ok := b.Addrs()["mqtts"]
	if !ok {
		return nil, errors.New("demo: the demo agent needs the MQTT over TLS listener (--mqtt)")
	}
	httpsAddr, ok := b.Addrs()["https"]
	if !ok {
		return nil, errors.New("demo: the demo agent needs the HTTPS listener (--https) for its tokens")
	}
	cfg := agent.Config{
		Broker:     "mqtts://" + addr,
		CAFile:     b.CAFile,
		Home:       demoHome,
		Agent:      demoAgent,
		Credential: cred,
		TokenURL:   "https://" + httpsAddr + "/api/token",
		GPIO:       agent.GPIOSim,
		Devices: []agent.DeviceConfig{
			{ID: "lamp", Kind: agent.Switch, Use: agent.UseLight, Pin: "GPIO17"},
			{ID: "door", Kind: agent.Pulse, Use: agent.UseDoor, Pin: "GPIO27", Pulse: 3 * time.Second},
		},
		Reconnect: agent.ReconnectConfig{Min: 200 * time.Millisecond, Max: 5 * time.Second},
	}
	a, err := agent.New(cfg, agent.Options{Pins: gpiosim.New(), Logger: log.With("demo", demoAgent)})
	if err != nil {
		return nil, fmt.Errorf("demo agent: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &demo{stop: cancel, done: make(chan error, 1)}
	go func() { d.done <- a.Run(ctx) }()
	return d, nil
}

// Stop stops the demo agent, which says "offline" before it goes, and
// waits for it up to the context's deadline.
func (d *demo) Stop(ctx context.Context) error {
	d.stop()
	select {
	case err := <-d.done:
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	case <-ctx.Done():
		return fmt.Errorf("demo agent: did not stop in time: %w", ctx.Err())
	}
}

// demoRegister makes sure home demo, its admin and agent demo-pi exist, and
// returns the agent's credential.
func demoRegister(b *broker.Broker) (string, error) {
	r := b.Registry
	if _, err := r.AddHome(demoHome); err != nil && !errors.Is(err, registry.ErrExists) {
		return "", err
	}
	if _, err := r.AddMember(demoHome, demoUser, "admin"); err != nil && !errors.Is(err, registry.ErrExists) {
		return "", err
	}
	file := filepath.Join(b.Config().Data, demoCred)
	if _, err := r.Agent(demoAgent); err != nil {
		if !errors.Is(err, registry.ErrNotFound) {
			return "", err
		}
		_, cred, err := r.AddAgent(demoHome, demoAgent, []string{"lamp", "door"})
		if err != nil {
			return "", err
		}
		return cred.Encode(), os.WriteFile(file, []byte(cred.Encode()+"\n"), 0o600)
	}
	if data, err := os.ReadFile(file); err == nil {
		if c, err := auth.ParseAgentCredential(strings.TrimSpace(string(data))); err == nil {
			if _, err := r.CheckAgentCredential(c); err == nil {
				return c.Encode(), nil
			}
		}
	}
	_, cred, err := r.RotateAgent(demoHome, demoAgent)
	if err != nil {
		return "", err
	}
	return cred.Encode(), os.WriteFile(file, []byte(cred.Encode()+"\n"), 0o600)
}

// printDemo prints a one-time invite link for user:demo, the demo home's
// admin (and its QR code on a terminal): the browser that opens it stays
// signed in (docs/webapp.md).
func printDemo(w io.Writer, b *broker.Broker) error {
	inv, secret, err := b.Registry.AddInvite(demoHome, "admin", demoUser, demoSignIn)
	if err != nil {
		return err
	}
	host, port := hostPort(b.Addrs()["https"])
	link := fmt.Sprintf("https://%s:%s/#invite=%s", host, port, secret)
	fmt.Fprintf(w, "\nDemo: home %q with agent %s (a lamp and a door on simulated pins) is running in this process.\n", demoHome, demoAgent)
	fmt.Fprintf(w, "Open the web app, signed in as %s — the link works once, until %s; the browser that opens it stays signed in:\n\n", inv.User, inv.Expires.Local().Format("15:04:05"))
	fmt.Fprintf(w, "  %s\n\n", link)
	if isTerminal(w) {
		if err := printQR(w, link); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "Your browser does not trust the dev CA: accept the warning once, or trust %s.\n", shellQuote(absPath(b.CAFile)))
	fmt.Fprintf(w, "Another browser or phone: %s member invite --data %s --server %s --home demo --role member\n", shellQuote(selfPath()), shellQuote(b.Config().Data), net.JoinHostPort(host, port))
	return nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
