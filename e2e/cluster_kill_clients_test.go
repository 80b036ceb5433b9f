package e2e

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"homemq/agent"
	"homemq/agent/gpiosim"
)

// The clients of TestClusterKillNodeUnderLoad: agents that tell which node
// they are on and which commands they executed, a phone and an
// integration that rotate through the nodes' addresses.

// killAgent is an in-process agent on simulated pins with its log.
type killAgent struct {
	id   string
	bank *gpiosim.Bank
	log  *agentLog
}

// startKillAgent runs an agent with cfg until the test ends.
func startKillAgent(t *testing.T, id string, cfg agent.Config) *killAgent {
	t.Helper()
	ka := &killAgent{id: id, bank: gpiosim.New(), log: &agentLog{runs: map[string]int{}}}
	ag, err := agent.New(cfg, agent.Options{Pins: ka.bank, Logger: slog.New(ka.log)})
	if err != nil {
		t.Fatalf("agent %s: %v", id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("agent %s did not stop within 10s", id)
		}
	})
	return ka
}

// agentLog reads an agent's structured log: the commands it executed (by
// nonce) and when it connected to which broker or lost its connection.
type agentLog struct {
	mu    sync.Mutex
	runs  map[string]int // nonce → times executed
	total int
	conns []connEvent
}

// connEvent is a connection of the agent (broker set) or its loss.
type connEvent struct {
	at     time.Time
	broker string
}

func (l *agentLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *agentLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *agentLog) WithGroup(string) slog.Handler            { return l }

func (l *agentLog) Handle(_ context.Context, r slog.Record) error {
	attr := func(key string) string {
		var v string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == key {
				v = a.Value.String()
				return false
			}
			return true
		})
		return v
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch r.Message {
	case "command executed":
		l.runs[attr("nonce")]++
		l.total++
	case "connected":
		l.conns = append(l.conns, connEvent{at: r.Time, broker: attr("broker")})
	case "connection lost":
		l.conns = append(l.conns, connEvent{at: r.Time})
	}
	return nil
}

// executions is how often the command nonce was executed.
func (l *agentLog) executions(nonce string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.runs[nonce]
}

// executed is how many commands the agent executed.
func (l *agentLog) executed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// node returns the broker URL the agent was connected to at t, or "" if
// it was not connected.
func (l *agentLog) node(t time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := ""
	for _, c := range l.conns {
		if c.at.After(t) {
			break
		}
		b = c.broker
	}
	return b
}

// reconnected says when, after t, the agent next connected, and where.
func (l *agentLog) reconnected(t time.Time, names map[string]string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		if c.at.After(t) && c.broker != "" {
			return fmt.Sprintf("%+dms from the kill to node %s", c.at.Sub(t).Milliseconds(), names[c.broker])
		}
	}
	return "never"
}

// sentCommand is one command the sender published.
type sentCommand struct {
	n       int
	agent   *killAgent
	nonce   string
	at      time.Time
	acked   bool   // a PUBACK with a success code
	outcome string // otherwise: the PUBACK's code or the publish error
}

// describe says when the command was sent relative to the kill, to which
// agent, and which node that agent was connected to then.
func (sc *sentCommand) describe(killed time.Time, names map[string]string) string {
	node := names[sc.agent.log.node(sc.at)]
	if node == "" {
		node = "none (reconnecting)"
	}
	return fmt.Sprintf("command %d (nonce %s) to %s, sent %+dms from the kill, agent on node %s then", sc.n, sc.nonce, sc.agent.id, sc.at.Sub(killed).Milliseconds(), node)
}

// decodeMsgKey decodes token mint --json's msg_key.
func decodeMsgKey(s string) ([]byte, error) {
	k, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("msg_key %q: %w", s, err)
	}
	return k, nil
}

// rotatingClient is what the phone and the integration share: the
// address of their current connection, how often they connected, and
// what they received when.
type rotatingClient struct {
	mu     sync.Mutex
	addr   string // host:port of the last connection attempt that succeeded
	trying string
	n      int
	upAt   time.Time // when the last connection came up
	subbed bool      // the phone subscribed (or resumed a session)
	got    []received
}

type received struct {
	topic string
	at    time.Time
}

func (r *rotatingClient) server() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr
}

func (r *rotatingClient) ups() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *rotatingClient) up() {
	r.mu.Lock()
	r.addr, r.n, r.upAt = r.trying, r.n+1, time.Now()
	r.mu.Unlock()
}

// lastUp says when, relative to t, the last connection came up.
func (r *rotatingClient) lastUp(t time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("%+dms", r.upAt.Sub(t).Milliseconds())
}

func (r *rotatingClient) record(topic string) {
	r.mu.Lock()
	r.got = append(r.got, received{topic, time.Now()})
	r.mu.Unlock()
}

// gotSince reports whether a message on topic arrived after t.
func (r *rotatingClient) gotSince(topic string, t time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range r.got {
		if g.topic == topic && g.at.After(t) {
			return true
		}
	}
	return false
}

// startPhone connects an app as a phone does: MQTT 5 through autopaho,
// several broker URLs tried in turn, a persistent session (one hour)
// subscribed to filter when the broker has no session for it.
func startPhone(t *testing.T, urls []string, tc *tls.Config, token, filter string) *rotatingClient {
	t.Helper()
	r := &rotatingClient{}
	var servers []*url.URL
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, u)
	}
	cfg := autopaho.ClientConfig{
		ServerUrls: servers, TlsCfg: tc, KeepAlive: 30, SessionExpiryInterval: 3600,
		ReconnectBackoff: func(attempt int) time.Duration { return time.Duration(min(attempt, 1)) * 100 * time.Millisecond },
		ConnectTimeout:   5 * time.Second,
		ConnectUsername:  "u", ConnectPassword: []byte(token),
		ConnectPacketBuilder: func(cp *paho.Connect, u *url.URL) (*paho.Connect, error) {
			r.mu.Lock()
			r.trying = u.Host
			r.mu.Unlock()
			return cp, nil
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, ca *paho.Connack) {
			r.up()
			if ca.SessionPresent {
				return
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if _, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
					t.Errorf("the phone's subscribe: %v", err)
					return
				}
				r.mu.Lock()
				r.subbed = true
				r.mu.Unlock()
			}()
		},
		ClientConfig: paho.ClientConfig{
			ClientID:    "phone",
			PingHandler: quietPinger{},
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				r.record(pr.Packet.Topic)
				return true, nil
			}},
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("the phone: %v", err)
	}
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer dcancel()
		_ = cm.Disconnect(dctx)
		cancel()
	})
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	defer acancel()
	if err := cm.AwaitConnection(actx); err != nil {
		t.Fatalf("the phone did not connect: %v", err)
	}
	eventually(t, 5*time.Second, "the phone's subscription", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.subbed
	})
	return r
}

// startIntegration connects an integration as Home Assistant does: MQTT
// 3.1.1 (paho.mqtt.golang) with its user name and password, several
// brokers, clean session off, automatic reconnection, subscribed to filter.
func startIntegration(t *testing.T, urls []string, tc *tls.Config, user, password, filter string) *rotatingClient {
	t.Helper()
	r := &rotatingClient{}
	o := pahov3.NewClientOptions().SetClientID("ha-events").SetUsername(user).SetPassword(password).
		SetProtocolVersion(4).SetCleanSession(false).SetAutoReconnect(true).SetMaxReconnectInterval(500 * time.Millisecond).
		SetConnectTimeout(5 * time.Second).SetKeepAlive(30 * time.Second).SetOrderMatters(false).
		SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) { r.record(m.Topic()) }).
		SetOnConnectHandler(func(pahov3.Client) { r.up() }).
		SetCustomOpenConnectionFn(func(u *url.URL, _ pahov3.ClientOptions) (net.Conn, error) {
			d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: tc}
			c, err := d.Dial("tcp", u.Host)
			if err == nil {
				r.mu.Lock()
				r.trying = u.Host
				r.mu.Unlock()
			}
			return c, err
		})
	for _, u := range urls {
		o.AddBroker(strings.Replace(u, "mqtts://", "tls://", 1))
	}
	c := pahov3.NewClient(o)
	if tk := c.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("the integration could not connect: %v", tk.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	if tk := c.Subscribe(filter, 1, nil); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("the integration's subscribe: %v", tk.Error())
	}
	return r
}
