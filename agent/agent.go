package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"homemq/topics"
)

// Options change how an Agent runs; the zero value is what production uses.
type Options struct {
	// Logger gets the agent's structured log (default slog.Default()).
	Logger *slog.Logger
	// Pins replaces the backend named by the config's gpio (tests pass a
	// *gpiosim.Bank they can read and drive).
	Pins Pins
	// Tokens replaces the token source of the config.
	Tokens TokenSource
	// Dial opens TCP connections to the broker and the token API (default:
	// a net.Dialer). Tests use it to cut the network.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now is the clock that judges command expiry (default time.Now).
	Now func() time.Time
}

// Timeouts of one connection attempt.
const (
	connectTimeout = 10 * time.Second
	ackWait        = 10 * time.Second
	quiesce        = 500 // ms a graceful disconnect waits for in-flight work
)

// Agent runs one agent.yaml: its devices, its MQTT session and its tokens.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	pins    Pins
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	tlsConf *tls.Config
	tokens  *keeper
	devices []*device
	cmd     *commander
	out     *outbox

	discovery *published // the discovery config topics it published

	first int // the index in cfg.Brokers the next connection tries first (supervise only)
}

// New checks cfg and prepares an agent; it touches no pin and opens no
// connection (Run does).
func New(cfg Config, opt Options) (*Agent, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: opt.Logger, pins: opt.Pins, dial: opt.Dial, out: newOutbox(), discovery: newPublished(&cfg)}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.pins == nil {
		a.pins = backend(&cfg)
	}
	if a.dial == nil {
		a.dial = (&net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	var err error
	if a.tlsConf, err = clientTLS(&cfg); err != nil {
		return nil, err
	}
	src := opt.Tokens
	if src == nil {
		src = a.tokenSource()
	}
	a.tokens = newKeeper(src, cfg.Reconnect, a.log)
	now := opt.Now
	if now == nil {
		// Command expiry is judged by the broker's clock when ours is off.
		now = func() time.Time { return time.Now().Add(a.tokens.clockSkew()) }
	}
	byID := map[string]*device{}
	for _, dc := range cfg.Devices {
		d := &device{cfg: dc, log: a.log, notify: a.notify}
		a.devices = append(a.devices, d)
		byID[dc.ID] = d
	}
	a.cmd = newCommander(cfg.Home, cfg.Agent, byID, now, a.log)
	return a, nil
}

// clientTLS trusts only the configured CA (or the system roots when asked).
func clientTLS(cfg *Config) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName}
	if cfg.CAFile != "system" {
		pem, err := os.ReadFile(cfg.path(cfg.CAFile))
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: %s holds no PEM certificate", cfg.CAFile)
		}
	}
	if cfg.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(cfg.path(cfg.CertFile), cfg.path(cfg.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("cert_file, key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

func (a *Agent) tokenSource() TokenSource {
	if a.cfg.TokenFile != "" {
		return FileToken{Path: a.cfg.path(a.cfg.TokenFile)}
	}
	tr := &http.Transport{DialContext: a.dial, TLSClientConfig: a.tlsConf.Clone(), TLSHandshakeTimeout: connectTimeout, MaxIdleConns: 1, IdleConnTimeout: time.Minute}
	x := &Exchanger{URL: a.cfg.TokenURLs[0], Others: a.cfg.TokenURLs[1:], Credential: a.cfg.Credential, Client: &http.Client{Transport: tr, Timeout: 2 * connectTimeout}}
	if x.Credential == "" {
		x.CredentialFile = a.cfg.path(a.cfg.CredentialFile)
	}
	return x
}

// Pins returns the GPIO backend in use: with gpio: sim, a *gpiosim.Bank.
func (a *Agent) Pins() Pins { return a.pins }

// Config returns the agent's configuration, defaults applied.
func (a *Agent) Config() Config { return a.cfg }

// Run opens the pins at their safe levels, keeps the MQTT session up and
// handles commands until ctx ends; then it leaves every output at its safe
// level, publishes the final states and "offline", and disconnects. It
// returns an error only when the state folder or the pins cannot be
// opened.
func (a *Agent) Run(ctx context.Context) error {
	if path := a.cfg.nonceFile(); path != "" {
		n, live, err := openNonces(path, a.cmd.now)
		if err != nil {
			return fmt.Errorf("%w (state_dir must be a folder the agent can write, e.g. /var/lib/homemq-agent)", err)
		}
		defer n.close()
		a.cmd.useNonces(n, live)
	}
	now := time.Now()
	for i, d := range a.devices {
		pin, err := a.pins.Pin(d.cfg.Pin)
		if err == nil {
			d.pin = pin
			err = d.open(now)
		}
		if err != nil {
			for _, o := range a.devices[:i] {
				o.close()
			}
			return fmt.Errorf("device %s: %w", d.cfg.ID, err)
		}
	}
	work, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, d := range a.devices {
		if d.cfg.Kind == Input {
			d.watch(work)
		}
	}
	wg.Add(2)
	go func() { defer wg.Done(); a.tokens.run(work) }()
	go func() { defer wg.Done(); a.publish(work) }()
	a.log.Info("agent started", "home", a.cfg.Home, "agent", a.cfg.Agent, "brokers", a.cfg.Brokers, "devices", len(a.devices), "gpio", a.cfg.GPIO)

	last := a.supervise(ctx)

	for _, d := range a.devices {
		d.close() // safe levels; their states go to the outbox
	}
	stop()
	wg.Wait()
	if last != nil {
		a.farewell(last)
	}
	a.log.Info("agent stopped")
	return nil
}

// conn is one connection's client, its network connection and its loss
// signal.
type conn struct {
	client mqtt.Client
	lost   chan struct{}
	broker int // the index in Config.Brokers it is connected to

	mu  sync.Mutex
	net *graceConn
}

// disconnect ends the connection cleanly: DISCONNECT (so no will), then
// wait for the broker to close its side before anything reconnects.
func (c *conn) disconnect() {
	c.mu.Lock()
	if c.net != nil {
		c.net.leaving.Store(true)
	}
	c.mu.Unlock()
	c.client.Disconnect(quiesce)
}

// supervise connects, and reconnects after a loss with backoff and jitter
// or at once when the token was renewed, until ctx ends. It returns the
// connection that was up at the end, if any.
func (a *Agent) supervise(ctx context.Context) *conn {
	failures := 0
	for {
		if failures > 0 {
			t := time.NewTimer(jitter(a.cfg.Reconnect, failures))
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if _, err := a.tokens.get(ctx); err != nil {
			failures++
			a.log.Warn("no token to connect with; retrying", "error", err, "attempt", failures)
			continue
		}
		select { // this connection starts with the newest token
		case <-a.tokens.rotated:
		default:
		}
		c, err := a.connect(ctx)
		if err != nil {
			if errors.Is(err, errTokenRefused) {
				a.tokens.invalidate()
			}
			failures++
			a.log.Warn("cannot connect to the broker; retrying", "brokers", a.cfg.Brokers, "error", err, "attempt", failures)
			continue
		}
		failures = 0
		c.mu.Lock()
		a.first = c.broker
		c.mu.Unlock()
		a.log.Info("connected", "broker", a.cfg.Brokers[a.first])
		select {
		case <-ctx.Done():
			return c
		case <-c.lost:
			a.out.detach()
			failures = 1
			a.first++ // the node that dropped us may be going away: try the next first
		case <-a.tokens.rotated:
			a.log.Info("token renewed: reconnecting with it before the old one expires")
			a.out.detach()
			c.disconnect()
		}
	}
}

// connect makes one connection: a fresh paho client on the agent's
// persistent session, subscribed to its commands, announced online with
// every device's current state.
func (a *Agent) connect(ctx context.Context) (*conn, error) {
	c := &conn{lost: make(chan struct{})}
	var once sync.Once
	status := topics.StatusTopic(a.cfg.Home, a.cfg.Agent)
	sub := "agent:" + a.cfg.Agent
	o := mqtt.NewClientOptions()
	// paho tries the brokers in the order added, until one accepts
	order := rotate(a.cfg.Brokers, a.first)
	for _, b := range order {
		o.AddBroker(b)
	}
	o.SetClientID(sub).
		SetCredentialsProvider(func() (string, string) { return sub, a.tokens.password() }).
		SetProtocolVersion(4).
		SetCleanSession(false).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(connectTimeout).
		SetWriteTimeout(connectTimeout).
		SetKeepAlive(a.cfg.KeepAlive).
		SetPingTimeout(connectTimeout).
		SetOrderMatters(false).
		SetWill(status, "offline", 1, true).
		SetStore(mqtt.NewMemoryStore()).
		SetDefaultPublishHandler(a.onMessage).
		SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			nc, err := a.open(u)
			if err != nil {
				return nil, err
			}
			c.mu.Lock()
			c.net = nc
			c.broker = brokerIndex(a.cfg.Brokers, u)
			c.mu.Unlock()
			return nc, nil
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			a.log.Warn("connection lost", "error", err)
			once.Do(func() { close(c.lost) })
		})
	c.client = mqtt.NewClient(o)
	t := c.client.Connect()
	timeout := time.NewTimer(3 * connectTimeout)
	defer timeout.Stop()
	select {
	case <-t.Done():
	case <-ctx.Done():
		go func() { t.Wait(); c.disconnect() }() // let the attempt end cleanly
		return nil, ctx.Err()
	case <-timeout.C:
		go func() { t.Wait(); c.disconnect() }()
		return nil, errors.New("connect timed out")
	}
	if err := t.Error(); err != nil {
		return nil, explainConnect(err)
	}
	resumed := t.(*mqtt.ConnectToken).SessionPresent()
	if !resumed {
		// A new session: subscribe. A resumed one has the subscription
		// already, and its queued commands may be in flight under packet
		// ids that a SUBSCRIBE from this fresh client could collide with.
		filter := topics.CommandTopic(a.cfg.Home, a.cfg.Agent, "+")
		st := c.client.Subscribe(filter, 1, a.onMessage)
		if !st.WaitTimeout(ackWait) || st.Error() != nil {
			c.disconnect()
			return nil, fmt.Errorf("subscribing to %s: %v", filter, st.Error())
		}
		if q := st.(*mqtt.SubscribeToken).Result()[filter]; q > 2 {
			c.disconnect()
			return nil, fmt.Errorf("the broker refused the subscription to %s (is the token an agent token of home %s?)", filter, a.cfg.Home)
		}
	}
	c.client.Publish(status, 1, true, "online")
	a.out.dropStates()
	for _, d := range a.devices {
		c.client.Publish(topics.StateTopic(a.cfg.Home, a.cfg.Agent, d.cfg.ID), 1, true, mustJSON(d.state()))
	}
	// On every connect, not only a new session: the agent always resumes,
	// and its devices may have changed since (discoverystate.go).
	a.publishDiscovery(c.client)
	a.out.attach(c.client)
	return c, nil
}

// errTokenRefused marks a CONNACK that refused the token.
var errTokenRefused = errors.New("the broker refused the token")

// explainConnect turns paho's CONNACK errors into advice.
func explainConnect(err error) error {
	switch {
	case errors.Is(err, packets.ErrorRefusedNotAuthorised), errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword):
		return fmt.Errorf("%w (%v): expired, revoked, or not an agent token for this home and agent? a fresh one is fetched", errTokenRefused, err)
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		return fmt.Errorf("%w: the client id agent:ID must match the token's sub", err)
	}
	return err
}

// onMessage handles one command delivery; paho acknowledges it when this
// returns, after the pin was driven and the ack queued.
func (a *Agent) onMessage(_ mqtt.Client, m mqtt.Message) {
	topic, ack, ok := a.cmd.handle(m.Topic(), m.Payload())
	if !ok {
		return
	}
	a.out.push(outMsg{topic: topic, payload: mustJSON(ack)})
}

// notify is called by a device, under its lock, after every change.
func (a *Agent) notify(d *device, s State, ev *Event) {
	a.out.push(outMsg{topic: topics.StateTopic(a.cfg.Home, a.cfg.Agent, d.cfg.ID), payload: mustJSON(s), retain: true, state: d.cfg.ID})
	if ev != nil {
		a.out.push(outMsg{topic: topics.EventTopic(a.cfg.Home, a.cfg.Agent, d.cfg.ID), payload: mustJSON(ev)})
	}
}

// publish hands queued messages to the connected client until ctx ends.
func (a *Agent) publish(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.out.wake:
		}
		for ctx.Err() == nil {
			c, m, ok := a.out.next()
			if !ok {
				break
			}
			t := c.Publish(m.topic, 1, m.retain, m.payload)
			if !a.out.track(c, m, t) {
				break
			}
		}
	}
}

// farewell sends what is still queued, the final states and "offline" on a
// connection that is still up, then disconnects cleanly.
func (a *Agent) farewell(c *conn) {
	owed := a.out.drain()
	select {
	case <-c.lost:
		return
	default:
	}
	for _, m := range owed {
		c.client.Publish(m.topic, 1, m.retain, m.payload)
	}
	last := c.client.Publish(topics.StatusTopic(a.cfg.Home, a.cfg.Agent), 1, true, "offline")
	last.WaitTimeout(2 * time.Second)
	c.disconnect()
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own types are marshalled
	}
	return b
}
