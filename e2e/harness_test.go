package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paholog "github.com/eclipse/paho.golang/paho/log"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"homemq/auth"
	"homemq/broker"
	"homemq/certs"
	poll "homemq/internal/eventually"
)

// testBroker is an in-process homemq on free loopback ports.
type testBroker struct {
	*broker.Broker
	t    testing.TB
	Data string
	pool *x509.CertPool
}

// startBroker runs a broker with every listener (TLS, HTTPS, plain) on
// 127.0.0.1:0 in a fresh data folder; edit may change the config.
func startBroker(t testing.TB, edit ...func(*broker.Config)) *testBroker {
	t.Helper()
	return startBrokerIn(t, t.TempDir(), edit...)
}

func startBrokerIn(t testing.TB, data string, edit ...func(*broker.Config)) *testBroker {
	t.Helper()
	cfg := broker.DefaultConfig()
	cfg.Data = data
	cfg.Listeners = broker.ListenersConfig{MQTT: "127.0.0.1:0", HTTPS: "127.0.0.1:0", MQTTPlain: "127.0.0.1:0"}
	cfg.Log.Level = "warn"
	cfg.Limits.ConnectRate = 0 // every test client comes from 127.0.0.1; TestConnectRatePerAddress sets it
	for _, e := range edit {
		e(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if lvl := os.Getenv("HOMEMQ_E2E_LOG"); lvl != "" {
		var l slog.Level
		_ = l.UnmarshalText([]byte(lvl))
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
	}
	b, err := broker.New(cfg, broker.WithLogger(log))
	if err != nil {
		t.Fatalf("broker.New: %v", err)
	}
	if err := b.Start(); err != nil {
		t.Fatalf("broker.Start: %v", err)
	}
	tb := &testBroker{Broker: b, t: t, Data: data}
	t.Cleanup(func() { b.Close() })
	if tb.pool, err = certs.CertPool(b.CAFile); err != nil {
		t.Fatal(err)
	}
	return tb
}

// mint returns a token for sub with the given home roles ("h1=admin").
func (b *testBroker) mint(sub string, homes ...string) string {
	b.t.Helper()
	tok, _ := b.mintSpec(auth.Spec{Sub: sub, Homes: parseHomes(homes)})
	return tok
}

func (b *testBroker) mintSpec(s auth.Spec) (string, *auth.Claims) {
	b.t.Helper()
	if s.Homes == nil {
		s.Homes = map[string]string{}
	}
	tok, c, err := b.Issuer.Mint(s)
	if err != nil {
		b.t.Fatalf("mint: %v", err)
	}
	return tok, c
}

func parseHomes(homes []string) map[string]string {
	m := map[string]string{}
	for _, h := range homes {
		k, v, _ := strings.Cut(h, "=")
		m[k] = v
	}
	return m
}

func (b *testBroker) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: b.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

// transport names a way to reach the broker.
type transport string

const (
	overTLS   transport = "tls"
	overWSS   transport = "wss"
	overPlain transport = "tcp"
)

var allTransports = []transport{overTLS, overWSS, overPlain}

func (b *testBroker) url(tr transport) string {
	a := b.Addrs()
	switch tr {
	case overTLS:
		return "ssl://" + a["mqtts"]
	case overWSS:
		return "wss://" + a["https"] + "/mqtt"
	default:
		return "tcp://" + a["mqtt"]
	}
}

// v3 connects an MQTT 3.1.1 paho.mqtt.golang client; it returns the client
// and the CONNECT error, if any.
func (b *testBroker) v3(tr transport, clientID, token string, opts ...func(*pahov3.ClientOptions)) (pahov3.Client, error) {
	o := pahov3.NewClientOptions().AddBroker(b.url(tr)).SetClientID(clientID).
		SetUsername("u").SetPassword(token).SetTLSConfig(b.tlsConfig()).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
		SetProtocolVersion(4).SetCleanSession(true).SetOrderMatters(false)
	for _, f := range opts {
		f(o)
	}
	c := pahov3.NewClient(o)
	tk := c.Connect()
	if !tk.WaitTimeout(10 * time.Second) {
		return c, fmt.Errorf("connect timed out")
	}
	return c, tk.Error()
}

// mustV3 is v3 that fails the test on error and disconnects at cleanup.
func (b *testBroker) mustV3(tr transport, clientID, token string, opts ...func(*pahov3.ClientOptions)) pahov3.Client {
	b.t.Helper()
	c, err := b.v3(tr, clientID, token, opts...)
	if err != nil {
		b.t.Fatalf("connect %s over %s: %v", clientID, tr, err)
	}
	b.t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// dial opens a raw connection for an MQTT 5 client.
func (b *testBroker) dial(tr transport) net.Conn {
	b.t.Helper()
	a := b.Addrs()
	var conn net.Conn
	var err error
	switch tr {
	case overTLS:
		conn, err = tls.Dial("tcp", a["mqtts"], b.tlsConfig())
	case overPlain:
		conn, err = net.Dial("tcp", a["mqtt"])
	case overWSS:
		conn, err = dialWS(b.url(overWSS), b.tlsConfig())
	}
	if err != nil {
		b.t.Fatalf("dial %s: %v", tr, err)
	}
	return conn
}

// v5client is an MQTT 5 client with what it has received.
type v5client struct {
	*paho.Client
	conn        net.Conn
	mu          sync.Mutex
	got         []*paho.Publish
	disconnect  chan *paho.Disconnect
	clientError chan error
}

// v5 connects a paho.golang MQTT 5 client; connect may change the CONNECT.
func (b *testBroker) v5(tr transport, clientID, token string, connect ...func(*paho.Connect)) (*v5client, *paho.Connack, error) {
	b.t.Helper()
	return b.v5over(b.dial(tr), clientID, token, connect...)
}

// v5over is v5 on an already open connection.
func (b *testBroker) v5over(conn net.Conn, clientID, token string, connect ...func(*paho.Connect)) (*v5client, *paho.Connack, error) {
	b.t.Helper()
	vc := &v5client{disconnect: make(chan *paho.Disconnect, 1), clientError: make(chan error, 1), conn: conn}
	vc.Client = paho.NewClient(paho.ClientConfig{
		Conn: vc.conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			vc.mu.Lock()
			vc.got = append(vc.got, pr.Packet)
			vc.mu.Unlock()
			return true, nil
		}},
		AuthHandler:        reauther{},
		PingHandler:        quietPinger{},
		OnServerDisconnect: func(d *paho.Disconnect) { vc.disconnect <- d },
		OnClientError: func(err error) {
			select {
			case vc.clientError <- err:
			default:
			}
		},
	})
	cp := &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true, Password: []byte(token), PasswordFlag: token != "", Username: "u", UsernameFlag: true}
	for _, f := range connect {
		f(cp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := vc.Connect(ctx, cp)
	if err == nil {
		b.t.Cleanup(func() { _ = vc.Disconnect(&paho.Disconnect{}) })
	}
	return vc, ca, err
}

func (b *testBroker) mustV5(tr transport, clientID, token string, connect ...func(*paho.Connect)) *v5client {
	b.t.Helper()
	c, ca, err := b.v5(tr, clientID, token, connect...)
	if err != nil {
		reason := ""
		if ca != nil && ca.Properties != nil {
			reason = ca.Properties.ReasonString
		}
		b.t.Fatalf("MQTT 5 connect %s over %s: %v (%s)", clientID, tr, err, reason)
	}
	return c
}

// reauther lets paho.golang accept a CONNACK that names an authentication
// method; re-authentication itself is driven by the test with Authenticate.
type reauther struct{}

func (reauther) Authenticate(a *paho.Auth) *paho.Auth { return a }
func (reauther) Authenticated()                       {}

// quietPinger never pings. paho.golang v0.23's default pinger writes
// PINGREQ from its own goroutine while another packet may be half written
// (over TLS, packets go out in several Write calls), which corrupts the
// stream; tests are far shorter than the keep-alive, so they need no pings.
type quietPinger struct{}

func (quietPinger) Run(ctx context.Context, _ net.Conn, _ uint16) error {
	<-ctx.Done()
	return nil
}
func (quietPinger) PacketSent()             {}
func (quietPinger) PacketReceived()         {}
func (quietPinger) PingResp()               {}
func (quietPinger) SetDebug(paholog.Logger) {}

// received returns the publishes received so far.
func (c *v5client) received() []*paho.Publish {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*paho.Publish(nil), c.got...)
}

func (c *v5client) subscribe(t testing.TB, filter string, qos byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if sa != nil && len(sa.Reasons) == 1 {
		return sa.Reasons[0]
	}
	if err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return 0xFF
}

func (c *v5client) publish(t testing.TB, topic string, payload []byte, qos byte, retain bool) *paho.PublishResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, Payload: payload, QoS: qos, Retain: retain})
	if pr != nil {
		return pr
	}
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return &paho.PublishResponse{}
}

// eventually polls cond until it holds; it fails the test, naming what,
// if cond is still false after within (see the eventually package).
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	poll.That(t, within, what, cond)
}

// never checks that cond stays false for the whole of d.
func never(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	poll.Never(t, d, what, cond)
}

// repoRoot is the module root (for building the binary and finding clients/).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// homemqBinary builds cmd/homemq once per test run.
func homemqBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "homemq-e2e-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "homemq")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/homemq")
		cmd.Dir = repoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// needTool skips when an external client is missing outside CI, and fails
// in CI, where .ci/run installs it.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed; .ci/run must install it", name)
		}
		t.Skipf("%s is not installed (apt-get install it, or run .ci/run)", name)
	}
	return p
}

// v5conn connects an MQTT 5 client on conn and fails the test on error.
func (b *testBroker) v5conn(conn net.Conn, clientID, token string) *v5client {
	b.t.Helper()
	c, ca, err := b.v5over(conn, clientID, token)
	if err != nil {
		b.t.Fatalf("connect %s: %v %+v", clientID, err, ca)
	}
	return c
}

// disconnected waits up to within for the server's DISCONNECT to c and
// returns it; without one the test fails, naming what should have cut c.
func (c *v5client) disconnected(t testing.TB, within time.Duration, what string) *paho.Disconnect {
	t.Helper()
	select {
	case d := <-c.disconnect:
		return d
	case <-time.After(within):
		t.Fatalf("%s did not disconnect the client within %v", what, within)
		return nil
	}
}

// tampered returns s with one character near its end changed, so a token's
// signature or a credential's secret is always wrong (replacing the last few
// characters with fixed ones could, by chance, leave them as they were).
func tampered(s string) string {
	b := []byte(s)
	i := len(b) - 5
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
