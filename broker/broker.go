package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/addrlimit"
	"homemq/auth"
	"homemq/bridge"
	"homemq/certs"
	"homemq/certs/acme"
	"homemq/cluster"
	"homemq/decision"
	"homemq/hooks"
	"homemq/registry"
	"homemq/tokenapi"
	"homemq/webapp"
)

// Broker is a running homemq: the MQTT server, its listeners, the HTTPS
// server and the identity material of the data folder.
type Broker struct {
	cfg      Config
	log      *slog.Logger
	Server   *mqtt.Server
	Guard    *hooks.Guard
	Keys     *auth.KeySet
	Issuer   *auth.Issuer
	Verifier *auth.Verifier
	Revoked  *auth.Revocations
	// Registry is the homes, agents and memberships of registry.db.
	Registry *registry.Registry
	// CAFile is the CA clients must trust ("" when none is known).
	CAFile string
	// CAPages serves the CA install page and the CA's certificate (ca.go);
	// nil when no CA is known.
	CAPages *CAPages
	// Bridge is the SignalR hub served at /signalr/.
	Bridge *bridge.Server
	// Mux is the HTTPS server's router: other parts mount their handlers here
	// before Start.
	Mux *http.ServeMux

	tokenAPI *tokenapi.Exchange
	cluster  *cluster.Node // nil: a single node (cluster.go)
	drain    drain         // drain.go

	master []byte             // the message master secret (MessageKey); never exported
	issued hooks.IssuedRecord // what earlier runs may have accepted (restart.go)

	observability // Audit, Metrics and the store (observe.go)

	tlsConf   *tls.Config
	mqttTLS   *TCPListener
	mqttPlain *TCPListener
	ws        *WebSocketListener
	pipe      *PipeListener
	https     *http.Server
	httpsLn   net.Listener
	httpCA    *httpCAServer // listeners.http_ca (ca.go)
	acme      *acme.Manager // tls.acme (ca.go)
	observers []decision.Observer
	slow      atomic.Uint64 // connections closed because their client did not read (slowconsumer.go)
	stopOnce  sync.Once
	stop      chan struct{}
}

// Option changes how New assembles the broker.
type Option func(*Broker)

// WithLogger sets the structured logger.
func WithLogger(l *slog.Logger) Option { return func(b *Broker) { b.log = l } }

// New prepares a broker from cfg: it makes the data folder, takes its lock
// (registry.db, held until Shutdown) and only then reads it, making on
// first start the keys and (in dev mode) certificates. Nothing listens
// until Start.
func New(cfg Config, opts ...Option) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Broker{cfg: cfg, log: slog.Default(), Mux: http.NewServeMux(), stop: make(chan struct{})}
	b.observeCfg = cfg.Observe
	for _, o := range opts {
		o(b)
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("broker: data folder: %w", err)
	}
	if err := b.lockData(); err != nil {
		return nil, err
	}
	if err := b.open(); err != nil {
		b.closeTokenService() // releases the data folder's lock
		return nil, err
	}
	return b, nil
}

// open reads the data folder and assembles the broker; lockData has taken
// the data folder's lock.
func (b *Broker) open() error {
	freshSecret := !exists(filepath.Join(b.cfg.Data, auth.MasterSecretFile))
	if err := b.loadIdentity(); err != nil {
		return err
	}
	if err := b.loadIssued(freshSecret); err != nil {
		return err
	}
	if err := b.loadTLS(); err != nil {
		return err
	}
	if err := b.openObservability(); err != nil {
		return err
	}
	if err := b.assemble(); err != nil {
		return err
	}
	if err := b.attachObservability(); err != nil {
		return err
	}
	if err := b.joinCluster(); err != nil {
		return err
	}
	return b.openTokenService()
}

// loadIdentity reads the signing keys, the message-key master secret and
// the revocation list, making the first two on first start. It runs under
// the data folder's lock (lockData): an offline homemq keys rotate or
// homemq revoke either finished before it or waits for the broker to stop.
func (b *Broker) loadIdentity() error {
	var err error
	if b.Keys, err = auth.LoadOrCreateKeys(b.cfg.Data); err != nil {
		return err
	}
	if b.master, err = auth.LoadOrCreateMasterSecret(b.cfg.Data); err != nil {
		return err
	}
	if b.Revoked, err = auth.LoadRevocations(b.cfg.Data); err != nil {
		return err
	}
	b.Issuer = auth.NewIssuer(b.cfg.Tokens, b.Keys)
	b.Verifier = auth.NewVerifier(b.cfg.Tokens, b.Keys, b.Revoked)
	return nil
}

// loadTLS reads the configured certificate, or in dev mode provisions one.
func (b *Broker) loadTLS() error {
	if b.cfg.TLS.ACME.Enabled() {
		return b.loadACME()
	}
	certFile, keyFile := b.cfg.TLS.Cert, b.cfg.TLS.Key
	b.CAFile = b.cfg.TLS.CA
	if b.cfg.DevMode() {
		d, err := certs.EnsureDev(filepath.Join(b.cfg.Data, "certs"), b.cfg.DevNames()...)
		if err != nil {
			return err
		}
		if d.Created || d.Reissued {
			b.log.Info("dev server certificate issued", "names", d.Names, "ca", d.CAFile)
		}
		certFile, keyFile, b.CAFile = d.CertFile, d.KeyFile, d.CAFile
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("broker: tls.cert/tls.key: %w", err)
	}
	b.tlsConf = ServerTLS(pair)
	if b.CAFile != "" {
		if b.CAPages, err = NewCAPages(b.CAFile); err != nil {
			return fmt.Errorf("%w (tls.ca)", err)
		}
		b.CAPages.Register(b.Mux)
	}
	if b.cfg.TLS.ClientCA != "" {
		pool, err := certs.CertPool(b.cfg.TLS.ClientCA)
		if err != nil {
			return fmt.Errorf("broker: tls.client_ca: %w", err)
		}
		b.tlsConf.ClientCAs = pool
		b.tlsConf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return nil
}

// ServerTLS is TLS 1.2+ with only forward-secret AEAD suites.
func ServerTLS(pair tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,
		},
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// assemble builds the mochi server with safe capabilities and the Guard.
func (b *Broker) assemble() error {
	l := b.cfg.Limits
	b.Server = mqtt.New(ServerOptions(l, slog.New(Redact(b.log.Handler()))))
	gcfg := b.cfg.Guard()
	gcfg.Issued = b.issued
	var err error
	if b.Guard, err = hooks.New(b.Server, b.Verifier, b.master, gcfg, b.observers...); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	b.addDrainHook() // before the Guard; a cluster node only (drain.go)
	_ = b.Server.AddHook(b.Guard, nil)
	b.Revoked.OnRevoke(b.Guard.Revoked)

	queue := b.writeQueue()
	if a := b.cfg.Listeners.MQTT; a != "" {
		b.mqttTLS = NewTCPListener("mqtts", a, b.tlsConf, l.ConnectTimeout)
		b.mqttTLS.closer, b.mqttTLS.queue = b.closeClientsOf, queue
		b.mqttTLS.gate = b.Guard
		_ = b.Server.AddListener(b.mqttTLS)
	}
	if a := b.cfg.Listeners.MQTTPlain; a != "" {
		b.mqttPlain = NewTCPListener("mqtt", a, nil, l.ConnectTimeout)
		b.mqttPlain.closer, b.mqttPlain.queue = b.closeClientsOf, queue
		b.mqttPlain.gate = b.Guard
		_ = b.Server.AddListener(b.mqttPlain)
	}
	if b.cfg.Listeners.HTTPS != "" {
		b.ws = NewWebSocketListener("wss", l.WebSocketOrigins, l.WebSocketReadLimit, l.ConnectTimeout)
		b.ws.closer, b.ws.queue = b.closeClientsOf, queue
		b.ws.gate = b.Guard
		_ = b.Server.AddListener(b.ws)
		b.Mux.Handle("/mqtt", b.ws)
	}
	b.pipe = NewPipeListener("internal", l.ConnectTimeout)
	b.pipe.closer, b.pipe.queue = b.closeClientsOf, queue
	_ = b.Server.AddListener(b.pipe)
	b.Mux.HandleFunc("GET /healthz", b.handleHealthz) // clusterstatus.go; 503 draining (drain.go)
	b.Mux.Handle("POST "+DrainPath, b.requireOperator(http.HandlerFunc(b.handleDrain)))
	b.Mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=300")
		_, _ = w.Write(b.Keys.JWKS())
	})
	b.Mux.Handle("POST /api/admin/revoke", b.requireOperator(http.HandlerFunc(b.handleRevoke)))
	b.Mux.Handle("GET "+ClusterStatusPath, b.requireOperator(http.HandlerFunc(b.handleClusterStatus)))
	b.Bridge = bridge.New(bridge.DefaultConfig(), b.Verifier, b.DialInternal)
	b.Mux.Handle("/signalr/", b.Bridge) // the SignalR bridge (docs/bridge.md)
	if b.Metrics != nil {
		b.Metrics.WatchBridge(b.Bridge.Connections)
	}
	// the web app (GET/HEAD) at "/": every more specific pattern above wins over it
	b.Mux.Handle("/", webapp.Handler())
	return nil
}

// ServerOptions are the mochi options homemq runs with for limits l: safe
// capabilities (docs/security.md) and the logger. A bare comparison server
// uses the same, so that it differs from homemq only by its hooks.
func ServerOptions(l LimitsConfig, log *slog.Logger) *mqtt.Options {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = l.MaxPacketSize
	caps.MaximumSessionExpiryInterval = uint32(l.MaxSessionExpiry / time.Second)
	// No cap: mochi would delete retained state after it (https://github.com/mochi-mqtt/server/issues/306,
	// https://github.com/mochi-mqtt/server/pull/315); commands carry their own expiry (the Guard sets it).
	caps.MaximumMessageExpiryInterval = 0
	caps.ReceiveMaximum = l.MaxInflight
	caps.MaximumInflight = uint16(min(l.MaxQueued, 65535))
	// mochi's NewClient allocates this outbound channel in full at connect
	// (8 KB a connection at 1024), and publishToClient drops a PUBLISH,
	// QoS 1 too, when it is full. A subscribe that matches many retained
	// states queues them all at once, so a smaller channel would lose
	// retained messages of a large home: it stays at max_queued
	// (docs/performance.md, upstream proposal).
	caps.MaximumClientWritesPending = int32(l.MaxQueued)
	caps.TopicAliasMaximum = 32
	caps.Compatibilities.NoInheritedPropertiesOnAck = true // mochi's buildAck otherwise copies the PUBLISH's properties (user properties too) onto PUBACK/PUBREC
	// ClientNetReadBufferSize stays at mochi's 2 KiB: 1 KiB saves a
	// kilobyte per idle connection but costs a busy publisher read calls
	// (BenchmarkCommand); ClientNetWriteBufferSize is only a flush
	// threshold and allocates nothing for an idle connection.
	return &mqtt.Options{
		Capabilities:           caps,
		Logger:                 log,
		SysTopicResendInterval: 10,
		InlineClient:           true, // only the broker itself publishes through it: acks for commands that expired in a queue
	}
}

// closeClientsOf disconnects the clients of one listener at shutdown, all
// at once, each within limits.write_timeout (Guard.Disconnect), so that no
// client can hold the shutdown. It stands in for mochi's
// closeListenerClients, whose Clients.GetByListener takes the read lock
// twice and deadlocks against a concurrent Delete, and which disconnects
// one client after the other. Upstream: https://github.com/mochi-mqtt/server/issues/488, fix https://github.com/mochi-mqtt/server/pull/489.
func (b *Broker) closeClientsOf(listener string) {
	var wg sync.WaitGroup
	for _, cl := range b.Server.Clients.GetAll() {
		if cl.Net.Listener == listener && !cl.Closed() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.Guard.Disconnect(cl, packets.ErrServerShuttingDown)
			}()
		}
	}
	wg.Wait()
}

// Start binds the HTTPS listener and starts serving everything.
func (b *Broker) Start() error {
	if a := b.cfg.Listeners.HTTPS; a != "" {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("broker: listeners.https: %w", err)
		}
		b.httpsLn = ln
		if b.CAPages != nil {
			_, b.CAPages.HTTPSPort, _ = net.SplitHostPort(ln.Addr().String())
		}
		l := b.cfg.Limits
		// sockets per address are counted from accept, before the TLS handshake
		httpsAddrs := addrlimit.New(addrlimit.Config{MaxConns: l.HTTPSConnsPerAddr})
		b.https = &http.Server{
			Handler:           securityHeaders(limitBodies(l.HTTPMaxBody, b.Mux)),
			TLSConfig:         b.tlsConf,
			ReadHeaderTimeout: l.HTTPReadHeaderTimeout,
			ReadTimeout:       l.HTTPReadTimeout, // net/http lifts it once the body is read (limitBodies)
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    32 << 10,
			ErrorLog:          slog.NewLogLogger(b.log.Handler(), slog.LevelDebug),
		}
		go func() {
			if err := b.https.ServeTLS(httpsAddrs.Listener(ln, nil), "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				b.log.Error("https server stopped", "error", err)
			}
		}()
	}
	if err := b.startHTTPCA(); err != nil {
		b.Close()
		return err
	}
	if err := b.Server.Serve(); err != nil {
		b.Close()
		return fmt.Errorf("broker: %w", err)
	}
	go b.pruneRevocations()
	return nil
}

func (b *Broker) pruneRevocations() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = b.Revoked.Prune(time.Now())
		case <-b.stop:
			return
		}
	}
}

// Addrs lists where the broker listens, by name: "mqtts", "mqtt", "https",
// "http_ca".
func (b *Broker) Addrs() map[string]string {
	m := map[string]string{}
	if b.mqttTLS != nil {
		m["mqtts"] = b.mqttTLS.Address()
	}
	if b.mqttPlain != nil {
		m["mqtt"] = b.mqttPlain.Address()
	}
	if b.httpsLn != nil {
		m["https"] = b.httpsLn.Addr().String()
	}
	if b.httpCA != nil {
		m["http_ca"] = b.httpCA.ln.Addr().String()
	}
	return m
}

// DialInternal opens an in-process MQTT connection to the broker (listener
// "internal"), for parts of homemq that act as clients on behalf of a
// token holder, such as the SignalR bridge.
func (b *Broker) DialInternal() (net.Conn, error) { return b.pipe.Dial() }

// Config returns the configuration the broker runs with.
func (b *Broker) Config() Config { return b.cfg }

// TLSConfig returns the server TLS configuration.
func (b *Broker) TLSConfig() *tls.Config { return b.tlsConf }

// Shutdown stops accepting, closes clients (their wills are sent) and the
// HTTPS server, and waits up to ctx for them.
func (b *Broker) Shutdown(ctx context.Context) error {
	var err error
	b.stopOnce.Do(func() {
		close(b.stop)
		if b.Bridge != nil {
			b.Bridge.Close() // ends SSE streams and long polls, which would hold the HTTPS shutdown
		}
		if b.https != nil {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_ = b.https.Shutdown(sctx)
			cancel()
		}
		b.closeHTTPCA()
		if b.acme != nil {
			b.acme.Close()
		}
		err = b.Server.Close()
		b.leaveCluster()
		b.saveIssued()
		b.closeTokenService()
		b.closeObservability()
	})
	return err
}

// Close is Shutdown without waiting.
func (b *Broker) Close() { _ = b.Shutdown(context.Background()) }
