package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"periph.io/x/conn/v3/gpio"

	"homemq/agent"
	"homemq/agent/gpiosim"
	"homemq/auth"
	"homemq/broker"
	"homemq/envelope"
	"homemq/topics"
)

// The Pi agent end to end: a real broker, the agent on simulated GPIO over
// a network the test can cut, and a real client sending signed commands.

const (
	agentHome = "h1"
	agentID   = "pi1"
)

// pins of the test agent's devices.
const (
	lampPin   = "GPIO17" // switch
	doorPin   = "GPIO27" // pulse, 400ms
	buttonPin = "GPIO22" // input, active low, 150ms debounce
	fanPin    = "GPIO23" // switch, active low
)

const (
	doorPulse      = 400 * time.Millisecond
	buttonDebounce = 150 * time.Millisecond
)

// testNet is the agent's network: the test can cut it (close every
// connection without a DISCONNECT, refuse new ones), restore it, and freeze
// writes (nothing the agent sends arrives) until a cut.
type testNet struct {
	mu     sync.Mutex
	down   bool
	frozen bool
	conns  []*netConn
	dials  int
}

type netConn struct {
	net.Conn
	n      *testNet
	closed chan struct{}
	once   sync.Once
	cut    atomic.Bool
}

// errCut is what the agent reads and writes on a cut connection: a reset,
// as a dead network gives, not the "use of closed network connection" of
// a socket the agent closed itself.
var errCut = errors.New("connection reset (the test cut the network)")

func (c *netConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && c.cut.Load() {
		err = errCut
	}
	return n, err
}

func (n *testNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	down := n.down
	n.dials++
	n.mu.Unlock()
	if down {
		return nil, errors.New("test network is down")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	nc := &netConn{Conn: c, n: n, closed: make(chan struct{})}
	n.mu.Lock()
	n.conns = append(n.conns, nc)
	n.mu.Unlock()
	return nc, nil
}

func (c *netConn) Write(b []byte) (int, error) {
	c.n.mu.Lock()
	frozen := c.n.frozen
	c.n.mu.Unlock()
	if frozen {
		<-c.closed
		return 0, errCut
	}
	n, err := c.Conn.Write(b)
	if err != nil && c.cut.Load() {
		err = errCut
	}
	return n, err
}

func (c *netConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// cut closes every connection abruptly and refuses new ones.
func (n *testNet) cut() {
	n.mu.Lock()
	n.down, n.frozen = true, false
	conns := n.conns
	n.conns = nil
	n.mu.Unlock()
	for _, c := range conns {
		c.cut.Store(true)
		_ = c.Close()
	}
}

func (n *testNet) restore() {
	n.mu.Lock()
	n.down = false
	n.mu.Unlock()
}

func (n *testNet) freeze() {
	n.mu.Lock()
	n.frozen = true
	n.mu.Unlock()
}

// testAgent is a running agent with its simulated pins.
type testAgent struct {
	*agent.Agent
	bank *gpiosim.Bank
	net  *testNet
	logs *logTap
	stop context.CancelFunc
	done chan error
}

// logTap counts the agent's log messages (and prints them when
// HOMEMQ_E2E_LOG is set), so a test can tell what the agent saw.
type logTap struct {
	mu     sync.Mutex
	counts map[string]int
	next   slog.Handler
}

func newLogTap() *logTap {
	l := &logTap{counts: map[string]int{}}
	if lvl := os.Getenv("HOMEMQ_E2E_LOG"); lvl != "" {
		var v slog.Level
		_ = v.UnmarshalText([]byte(lvl))
		l.next = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: v}).WithAttrs([]slog.Attr{slog.String("side", "agent")})
	}
	return l
}

func (l *logTap) Enabled(context.Context, slog.Level) bool { return true }

func (l *logTap) Handle(ctx context.Context, r slog.Record) error {
	l.mu.Lock()
	l.counts[r.Message]++
	l.mu.Unlock()
	if l.next != nil && l.next.Enabled(ctx, r.Level) {
		return l.next.Handle(ctx, r)
	}
	return nil
}

func (l *logTap) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logTap) WithGroup(string) slog.Handler      { return l }

// count returns how often the agent logged msg.
func (l *logTap) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[msg]
}

func (a *testAgent) pin(name string) *gpiosim.Pin { return a.bank.Get(name) }

// agentConfig is the test agent's agent.yaml, with a credential registered
// in the broker's registry.
func agentConfig(t *testing.T, b *testBroker) agent.Config {
	t.Helper()
	if _, err := b.Registry.AddHome(agentHome); err != nil {
		t.Fatalf("add home: %v", err)
	}
	_, cred, err := b.Registry.AddAgent(agentHome, agentID, []string{"lamp", "door", "button", "fan"})
	if err != nil {
		t.Fatalf("add agent: %v", err)
	}
	a := b.Addrs()
	return agent.Config{
		Broker:     "mqtts://" + a["mqtts"],
		CAFile:     b.CAFile,
		Home:       agentHome,
		Agent:      agentID,
		Credential: cred.Encode(),
		TokenURL:   "https://" + a["https"] + "/api/token",
		GPIO:       agent.GPIOSim,
		Devices: []agent.DeviceConfig{
			{ID: "lamp", Kind: agent.Switch, Pin: lampPin},
			{ID: "door", Kind: agent.Pulse, Pin: doorPin, Pulse: doorPulse},
			{ID: "button", Kind: agent.Input, Pin: buttonPin, ActiveLow: true, Debounce: buttonDebounce},
			{ID: "fan", Kind: agent.Switch, Pin: fanPin, ActiveLow: true},
		},
		Reconnect: agent.ReconnectConfig{Min: 100 * time.Millisecond, Max: 500 * time.Millisecond},
	}
}

// startAgent runs an agent with cfg on simulated pins until the test ends.
func startAgent(t *testing.T, cfg agent.Config, opt agent.Options) *testAgent {
	t.Helper()
	ta := &testAgent{bank: gpiosim.New(), net: &testNet{}, logs: newLogTap(), done: make(chan error, 1)}
	if opt.Pins == nil {
		opt.Pins = ta.bank
	}
	opt.Dial = ta.net.dial
	opt.Logger = slog.New(ta.logs)
	a, err := agent.New(cfg, opt)
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	ta.Agent = a
	ctx, cancel := context.WithCancel(context.Background())
	ta.stop = cancel
	go func() { ta.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ta.done:
		case <-time.After(10 * time.Second):
			t.Error("the agent did not stop within 10s")
		}
	})
	return ta
}

// home is a user of the home: it watches everything and sends commands
// sealed with its token's message key.
type home struct {
	t      *testing.T
	client pahov3.Client
	claims *auth.Claims
	key    []byte

	mu   sync.Mutex
	msgs []homeMsg
}

type homeMsg struct {
	topic    string
	payload  string
	retained bool
}

// watchHome connects an admin of the home over MQTT 3.1.1 (so a queued
// command is held for the agent as is, and judged by the agent) and
// subscribes to everything in it.
func watchHome(t *testing.T, b *testBroker) *home {
	t.Helper()
	tok, claims := b.mintSpec(auth.Spec{Sub: "user:owner", Homes: map[string]string{agentHome: "admin"}, TTL: time.Hour})
	h := &home{t: t, claims: claims, key: b.MessageKey(claims.ID)}
	h.client = b.mustV3(overTLS, "user:owner/"+t.Name()[:min(len(t.Name()), 20)], tok)
	if tk := h.client.Subscribe("homes/"+agentHome+"/#", 1, h.record); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("subscribe: %v", tk.Error())
	}
	return h
}

func (h *home) record(_ pahov3.Client, m pahov3.Message) {
	h.mu.Lock()
	h.msgs = append(h.msgs, homeMsg{m.Topic(), string(m.Payload()), m.Retained()})
	h.mu.Unlock()
}

// on returns the payloads received on topic, oldest first.
func (h *home) on(topic string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, m := range h.msgs {
		if m.topic == topic {
			out = append(out, m.payload)
		}
	}
	return out
}

func (h *home) last(topic string) string {
	p := h.on(topic)
	if len(p) == 0 {
		return ""
	}
	return p[len(p)-1]
}

// send seals msg for device's command topic and publishes it (QoS 1); it
// returns the envelope's nonce.
func (h *home) send(device, msg string, ttl time.Duration) string {
	h.t.Helper()
	topic := topics.CommandTopic(agentHome, agentID, device)
	env, err := envelope.Seal(h.key, topic, h.claims.ID, msg, time.Now(), ttl)
	if err != nil {
		h.t.Fatal(err)
	}
	if tk := h.client.Publish(topic, 1, false, env); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		h.t.Fatalf("publish %s: %v", topic, tk.Error())
	}
	var e envelope.Envelope
	_ = json.Unmarshal(env, &e)
	return e.Nonce
}

// acks returns the acks of device that carry nonce.
func (h *home) acks(device, nonce string) []agent.Ack {
	var out []agent.Ack
	for _, p := range h.on(topics.AckTopic(agentHome, agentID, device)) {
		var a agent.Ack
		if json.Unmarshal([]byte(p), &a) == nil && a.Nonce == nonce {
			out = append(out, a)
		}
	}
	return out
}

// ack waits for the one ack of nonce.
func (h *home) ack(device, nonce string, within time.Duration) agent.Ack {
	h.t.Helper()
	eventually(h.t, within, "the ack of "+device+" command "+nonce, func() bool { return len(h.acks(device, nonce)) > 0 })
	return h.acks(device, nonce)[0]
}

func (h *home) state(device string) agent.State {
	var s agent.State
	_ = json.Unmarshal([]byte(h.last(topics.StateTopic(agentHome, agentID, device))), &s)
	return s
}

func statusTopic() string { return topics.StatusTopic(agentHome, agentID) }

// waitOnline waits for the agent's retained status to say online.
func (h *home) waitOnline(within time.Duration) {
	h.t.Helper()
	eventually(h.t, within, "agent online", func() bool { return h.last(statusTopic()) == "online" })
}

// retained reads the retained message of topic with a fresh subscriber.
func retained(t *testing.T, b *testBroker, topic string) string {
	t.Helper()
	tok := b.mint("user:reader", agentHome+"=viewer")
	got := make(chan string, 1)
	c := b.mustV3(overTLS, "user:reader", tok)
	defer c.Disconnect(0)
	c.Subscribe(topic, 1, func(_ pahov3.Client, m pahov3.Message) {
		if m.Retained() {
			select {
			case got <- string(m.Payload()):
			default:
			}
		}
	})
	select {
	case p := <-got:
		return p
	case <-time.After(3 * time.Second):
		return ""
	}
}

func stateOf(payload string) string {
	var s agent.State
	_ = json.Unmarshal([]byte(payload), &s)
	return s.State
}

// TestAgentSwitchPulseInput: a switch command drives the pin, is acked and
// leaves a retained state; a pulse is high for its time and then low; an
// input's bouncing edge gives one event after debounce; unknown devices
// and actions get refusing acks and touch nothing.
func TestAgentSwitchPulseInput(t *testing.T) {
	b := startBroker(t)
	h := watchHome(t, b)
	a := startAgent(t, agentConfig(t, b), agent.Options{})
	h.waitOnline(10 * time.Second)

	// Safe initial levels: outputs off (the active-low fan high), inputs read.
	if a.pin(lampPin).Level() != gpio.Low || a.pin(doorPin).Level() != gpio.Low || a.pin(fanPin).Level() != gpio.High {
		t.Fatalf("initial levels lamp %v door %v fan %v, want Low Low High", a.pin(lampPin).Level(), a.pin(doorPin).Level(), a.pin(fanPin).Level())
	}
	if s := stateOf(retained(t, b, topics.StateTopic(agentHome, agentID, "lamp"))); s != "off" {
		t.Fatalf("retained lamp state at start = %q, want off", s)
	}

	t.Run("switch on", func(t *testing.T) {
		n := h.send("lamp", `{"action":"on"}`, 30*time.Second)
		ack := h.ack("lamp", n, 5*time.Second)
		if !ack.OK || ack.Result != "on" || ack.State != "on" {
			t.Fatalf("ack %+v, want ok on/on", ack)
		}
		if a.pin(lampPin).Level() != gpio.High {
			t.Fatal("lamp pin is not high after on")
		}
		p := retained(t, b, topics.StateTopic(agentHome, agentID, "lamp"))
		var s agent.State
		if err := json.Unmarshal([]byte(p), &s); err != nil || s.State != "on" || s.Kind != agent.Switch {
			t.Fatalf("retained lamp state %q, want state on kind switch", p)
		}
	})

	t.Run("active-low switch toggles", func(t *testing.T) {
		n := h.send("fan", `{"action":"toggle"}`, 30*time.Second)
		if ack := h.ack("fan", n, 5*time.Second); !ack.OK || ack.State != "on" {
			t.Fatalf("ack %+v, want ok with state on", ack)
		}
		if a.pin(fanPin).Level() != gpio.Low {
			t.Fatal("an active-low switch that is on must drive its pin low")
		}
	})

	t.Run("pulse", func(t *testing.T) {
		before := len(a.pin(doorPin).History())
		n := h.send("door", `{"action":"pulse"}`, 30*time.Second)
		if ack := h.ack("door", n, 5*time.Second); !ack.OK || ack.Result != "pulse" || ack.State != "on" {
			t.Fatalf("ack %+v, want ok pulse/on", ack)
		}
		eventually(t, 5*time.Second, "door pin back low", func() bool {
			return len(a.pin(doorPin).History()) >= before+2 && a.pin(doorPin).Level() == gpio.Low
		})
		h := a.pin(doorPin).History()[before:]
		if len(h) != 2 || h[0].Level != gpio.High || h[1].Level != gpio.Low {
			t.Fatalf("door pin changes %v, want one High then one Low", h)
		}
		if d := h[1].Time.Sub(h[0].Time); d < doorPulse {
			t.Fatalf("the pulse lasted %v, less than the configured %v", d, doorPulse)
		}
	})
	eventually(t, 3*time.Second, "door state off after the pulse", func() bool { return h.state("door").State == "off" })

	t.Run("input edge gives one event after debounce", func(t *testing.T) {
		btn := a.pin(buttonPin)
		events := topics.EventTopic(agentHome, agentID, "button")
		before := len(h.on(events))
		// A bouncing press: low, high, low within the debounce time.
		var lastEdge time.Time
		for _, l := range []gpio.Level{gpio.Low, gpio.High, gpio.Low} {
			if err := btn.Drive(l); err != nil {
				t.Fatal(err)
			}
			lastEdge = time.Now()
			time.Sleep(2 * time.Millisecond)
		}
		eventually(t, 5*time.Second, "a button event", func() bool { return len(h.on(events)) > before })
		never(t, 500*time.Millisecond, "a second event for one bouncing press", func() bool { return len(h.on(events)) > before+1 })
		var ev agent.Event
		if err := json.Unmarshal([]byte(h.on(events)[before]), &ev); err != nil || ev.State != "on" {
			t.Fatalf("event %q, want state on (active-low button pressed)", h.on(events)[before])
		}
		if d := ev.Time.Sub(lastEdge); d < buttonDebounce {
			t.Fatalf("the event came %v after the last bounce, before the %v debounce", d, buttonDebounce)
		}
		if s := stateOf(retained(t, b, topics.StateTopic(agentHome, agentID, "button"))); s != "on" {
			t.Fatalf("retained button state %q, want on", s)
		}
		// A glitch that returns to the pressed level within the debounce is no event.
		_ = btn.Drive(gpio.High)
		time.Sleep(2 * time.Millisecond)
		_ = btn.Drive(gpio.Low)
		never(t, 500*time.Millisecond, "an event for a glitch", func() bool { return len(h.on(events)) > before+1 })
	})

	t.Run("refusals", func(t *testing.T) {
		tests := []struct {
			device, msg, code string
		}{
			{"ghost", `{"action":"on"}`, agent.ErrUnknownDev},
			{"lamp", `{"action":"pulse"}`, agent.ErrUnsupported},
			{"button", `{"action":"on"}`, agent.ErrUnsupported},
			{"lamp", `{"action":"on","extra":1}`, agent.ErrBadCommand},
			{"lamp", `off`, agent.ErrBadCommand},
		}
		for _, tt := range tests {
			lampBefore := len(a.pin(lampPin).History())
			n := h.send(tt.device, tt.msg, 30*time.Second)
			ack := h.ack(tt.device, n, 5*time.Second)
			if ack.OK || ack.Error != tt.code || ack.Detail == "" {
				t.Errorf("%s %s: ack %+v, want error %s with a detail", tt.device, tt.msg, ack, tt.code)
			}
			if len(a.pin(lampPin).History()) != lampBefore {
				t.Errorf("%s %s: the lamp pin changed", tt.device, tt.msg)
			}
		}
	})
}

// TestAgentDuplicateDeliveryActsOnce: the agent gets a toggle but its
// PUBACK never reaches the broker (its writes are frozen, then its
// connection dies), so the broker delivers the command again on the next
// connection: the pin toggles once and the command gets one ack.
func TestAgentDuplicateDeliveryActsOnce(t *testing.T) {
	b := startBroker(t)
	h := watchHome(t, b)
	a := startAgent(t, agentConfig(t, b), agent.Options{})
	h.waitOnline(10 * time.Second)
	before := len(a.pin(lampPin).History())

	a.net.freeze()
	n := h.send("lamp", `{"action":"toggle"}`, 30*time.Second)
	eventually(t, 5*time.Second, "the toggle to drive the lamp pin", func() bool { return a.pin(lampPin).Level() == gpio.High })
	if len(h.acks("lamp", n)) != 0 {
		t.Fatal("an ack got out through a frozen connection")
	}
	a.net.cut()
	a.net.restore()

	ack := h.ack("lamp", n, 20*time.Second)
	if !ack.OK || ack.State != "on" {
		t.Fatalf("ack %+v, want ok with state on", ack)
	}
	eventually(t, 10*time.Second, "the broker's redelivery to reach the agent", func() bool {
		return a.logs.count("duplicate delivery of a command already handled; not acted on again") > 0
	})
	never(t, time.Second, "a second ack", func() bool { return len(h.acks("lamp", n)) > 1 })
	if got := a.pin(lampPin).History()[before:]; len(got) != 1 || got[0].Level != gpio.High {
		t.Fatalf("lamp pin changes %v, want one change to High", got)
	}
}

// TestAgentComesBackAfterRevocation: revoking the agent's sub cuts its
// connection and refuses its token; the agent drops the refused token,
// exchanges its credential for a fresh one and is back in service.
func TestAgentComesBackAfterRevocation(t *testing.T) {
	b := startBroker(t)
	h := watchHome(t, b)
	a := startAgent(t, agentConfig(t, b), agent.Options{})
	h.waitOnline(10 * time.Second)
	onlines := func() int {
		return len(slices.DeleteFunc(h.on(statusTopic()), func(s string) bool { return s != "online" }))
	}
	before := onlines()

	if _, err := b.Revoke(broker.RevokeRequest{Sub: "agent:" + agentID}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the agent back online", func() bool { return onlines() > before })
	if n := a.logs.count("token obtained"); n < 2 {
		t.Fatalf("%d token exchanges: the agent must have fetched a new token after the revocation", n)
	}
	n := h.send("lamp", `{"action":"on"}`, 30*time.Second)
	if ack := h.ack("lamp", n, 5*time.Second); !ack.OK {
		t.Fatalf("after the revocation: ack %+v", ack)
	}
}

// TestAgentOverWebSocket: with broker wss://host/mqtt the agent speaks MQTT
// over a WebSocket on the broker's HTTPS port and finds /api/token there.
func TestAgentOverWebSocket(t *testing.T) {
	b := startBroker(t)
	h := watchHome(t, b)
	cfg := agentConfig(t, b)
	cfg.Broker, cfg.TokenURL = "wss://"+b.Addrs()["https"]+"/mqtt", ""
	a := startAgent(t, cfg, agent.Options{})
	h.waitOnline(10 * time.Second)
	n := h.send("lamp", `{"action":"on"}`, 30*time.Second)
	if ack := h.ack("lamp", n, 5*time.Second); !ack.OK || a.pin(lampPin).Level() != gpio.High {
		t.Fatalf("ack %+v, lamp %v", ack, a.pin(lampPin).Level())
	}
}
