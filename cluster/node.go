package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"homemq/auth"
	"homemq/registry"
)

// The JetStream names the nodes share (docs/cluster.md).
const (
	MessagesStream    = "HOMEMQ_MSGS"
	ReplayBucket      = "HOMEMQ_REPLAY"
	RevocationsStream = "HOMEMQ_REVOKED"
	revokeSubject     = "homemq.revoke"
)

// StartTimeout bounds how long Start waits for JetStream: an embedded node
// waits for enough peers to hold the replicas.
const StartTimeout = 2 * time.Minute

// opTimeout bounds one JetStream request made while serving a client.
const opTimeout = 5 * time.Second

// Deps is what a node works with: the local broker's parts.
type Deps struct {
	// Server is the node's mochi server.
	Server *mqtt.Server
	// Data is the data folder; an embedded node keeps JetStream in Data/nats.
	Data string
	// Revocations is the node's revocation list, shared with the others.
	Revocations *auth.Revocations
	// ReplayTTL is how long an accepted envelope must be remembered: its
	// longest lifetime plus the clock skew allowed.
	ReplayTTL time.Duration
	// Registry is the node's registry, shared with the others through
	// the log RegistryStream (registry.go); nil shares none.
	Registry *registry.Registry
	// Log is the structured log (nil: slog.Default()).
	Log *slog.Logger
	// Disconnect closes a connection taken over on another node, telling
	// an MQTT 5 client why (the Guard's Disconnect; nil: mochi's
	// DisconnectClient).
	Disconnect func(cl *mqtt.Client, code packets.Code)
	// StartTimeout bounds how long Start waits for JetStream (0:
	// StartTimeout).
	StartTimeout time.Duration
	// Forget drops what the node's other hooks keep of a session handed to
	// another node, as mochi's session expiry does (the store's records,
	// the Guard's offline rights); nil: nothing.
	Forget func(cl *mqtt.Client)
	// Adopt stores the subscriptions of a session moved to this node (the
	// store's OnSubscribed); nil: nothing.
	Adopt func(cl *mqtt.Client, pk packets.Packet)
	// CanRead reports whether a connecting client may receive a message of
	// topic: the Guard's judgement of a queue recovered from a dead node
	// (sessions.go); nil: every message.
	CanRead func(cl *mqtt.Client, topic string) bool
	// LendRights gives a connecting client's rights to the offline session
	// of its id the node installs for it from another node, for what is
	// queued for it before the CONNACK; nil: nothing.
	LendRights func(cl *mqtt.Client)
	// OfflineClaims returns the claims an offline session is judged with,
	// kept with its record; RestoreRights gives them back to the session
	// when the node restores it from its store (unless revoked). nil:
	// nothing is kept, and a restored session is judged only once its
	// owner reconnects.
	OfflineClaims func(clientID string) (*auth.Claims, bool)
	RestoreRights func(clientID string, c *auth.Claims)
}

// Node is this homemq process as a member of the cluster: its NATS
// connection (and embedded server), the hook that carries messages, the
// shared replay ledger and the revocation feed.
type Node struct {
	cfg    Config
	name   string
	secret Secret // cluster.secret_file
	d      Deps
	log    *slog.Logger

	ns *server.Server // nil when connected to an external NATS
	nc *nats.Conn
	js jetstream.JetStream

	hook   *Hook
	ledger *Ledger
	keys   *Keys                    // the shared signing keys (keys.go); nil until ShareKeys
	sig    *msgSigner               // signs what crosses nodes (msgsig.go)
	feed   jetstream.ConsumeContext // revocations
	msgsMu sync.Mutex
	msgs   jetstream.ConsumeContext // messages for local subscribers, once started (Hook.start)

	retained *retained    // the cluster's retained store (retained.go)
	registry *registryLog // the registry's change log (registry.go)

	revoked sync.Map      // entry keys this node has seen (revocations.go)
	done    chan struct{} // closed by Close
	closing sync.Once

	clients  *Clients  // client-id owners (clients.go)
	sessions *Sessions // persistent sessions moving between nodes (sessions.go)

	status // counters and the last Health (status.go)
}

// Start joins the cluster cfg describes: it starts the embedded NATS
// server or connects to the configured one, makes the shared streams and
// bucket (waiting up to StartTimeout for JetStream), and starts receiving
// messages and revocations. Add Hook to the mochi server after the Guard
// and give Ledger to the Guard.
func Start(cfg Config, d Deps) (*Node, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cluster: config: cluster.%w", err)
	}
	secret, err := LoadSecret(cfg.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n := &Node{cfg: cfg, name: cfg.name(), secret: secret, d: d, log: d.Log, done: make(chan struct{})}
	if n.log == nil {
		n.log = slog.Default()
	}
	n.log = n.log.With("node", n.name)
	n.sig = newMsgSigner(secret, n.log)
	if err := n.connect(); err != nil {
		n.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmp.Or(d.StartTimeout, StartTimeout))
	defer cancel()
	if err := n.setup(ctx); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// connect starts the embedded server or dials the external one.
func (n *Node) connect() error {
	opts := []nats.Option{nats.Name("homemq " + n.name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	if e := n.cfg.Embedded; e != nil {
		so, err := serverOptions(*e, filepath.Join(n.d.Data, "nats"), n.secret)
		if err != nil {
			return err
		}
		if n.ns, err = server.NewServer(so); err != nil {
			return fmt.Errorf("cluster: embedded NATS: %w", err)
		}
		n.ns.SetLoggerV2(natsLog{n.log}, false, false, false)
		go n.ns.Start()
		if !n.ns.ReadyForConnections(30 * time.Second) {
			return errors.New("cluster: embedded NATS did not start within 30s; check cluster.embedded.listen and cluster_listen are free")
		}
		opts = append(opts, nats.InProcessServer(n.ns), nats.UserInfo(ClientUser, n.secret.ClientPassword()))
	}
	url := ""
	if x := n.cfg.NATS; x != nil {
		url = x.URL
		xo, err := x.options()
		if err != nil {
			return err
		}
		opts = append(opts, xo...)
	}
	var err error
	if n.nc, err = nats.Connect(url, opts...); err != nil {
		if n.cfg.NATS != nil {
			return fmt.Errorf("cluster: connect to NATS at cluster.nats.url: %w (check cluster.nats.user with password_file or creds_file, and cluster.nats.tls)", err)
		}
		return fmt.Errorf("cluster: connect to NATS: %w", err)
	}
	if n.js, err = jetstream.New(n.nc); err != nil {
		return fmt.Errorf("cluster: JetStream: %w", err)
	}
	return nil
}

// serverOptions are the embedded NATS server's options: routes and the
// client port require TLS and credentials derived from the secret
// (links.go).
func serverOptions(e Embedded, store string, s Secret) (*server.Options, error) {
	so := &server.Options{
		ServerName: e.Name,
		JetStream:  true,
		StoreDir:   store,
		NoSigs:     true,
		NoLog:      true,
		Host:       "127.0.0.1",
		Port:       -1, // no listen address: a random loopback port nobody is told of
	}
	if e.Listen != "" {
		host, port, err := hostPort(e.Listen)
		if err != nil {
			return nil, fmt.Errorf("cluster: cluster.embedded.listen: %w", err)
		}
		so.Host, so.Port = host, port
	}
	if len(e.Routes) > 0 {
		host, port, err := hostPort(e.ClusterListen)
		if err != nil {
			return nil, fmt.Errorf("cluster: cluster.embedded.cluster_listen: %w", err)
		}
		so.Cluster = server.ClusterOpts{Name: "homemq", Host: host, Port: port}
		so.Routes = server.RoutesFromStr(strings.Join(e.Routes, ","))
	}
	l, err := newLinks(s, e.Name, clientNames(e.Listen))
	if err != nil {
		return nil, err
	}
	l.secure(so)
	return so, nil
}

func hostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	if port == 0 {
		port = -1 // nats-server: a random port
	}
	return host, port, nil
}

// setup makes the shared streams and bucket, retrying until ctx ends while
// JetStream has no leader or too few peers yet.
func (n *Node) setup(ctx context.Context) error {
	r := n.cfg.replicas()
	streams := []jetstream.StreamConfig{{
		Name:       MessagesStream,
		Subjects:   []string{msgPrefix + ">"},
		Retention:  jetstream.InterestPolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   r,
		MaxAge:     24 * time.Hour,
		Duplicates: time.Minute,
	}, {
		Name:       RevocationsStream,
		Subjects:   []string{revokeSubject},
		Storage:    jetstream.FileStorage,
		Replicas:   r,
		MaxAge:     auth.MaxTTL + time.Hour, // longer than any revoked token lives
		Duplicates: time.Minute,
	}}
	var last error
	for {
		last = n.trySetup(ctx, streams, r)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: JetStream not ready within %v (are enough nodes up for %d replicas, all with the same cluster.secret_file?): %w", cmp.Or(n.d.StartTimeout, StartTimeout), r, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (n *Node) trySetup(ctx context.Context, streams []jetstream.StreamConfig, r int) error {
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	for _, sc := range streams {
		if _, err := n.js.CreateOrUpdateStream(octx, sc); err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
	}
	if n.ledger == nil {
		kv, err := n.sharedBucket(octx, jetstream.KeyValueConfig{
			Bucket: ReplayBucket,
			TTL:    max(n.d.ReplayTTL, time.Second),
		}, r)
		if err != nil {
			return err
		}
		n.ledger = &Ledger{kv: kv, counts: &n.counters}
	}
	if n.clients == nil {
		c, err := newClients(octx, n, r)
		if err != nil {
			return err
		}
		n.clients = c
	}
	if n.retained == nil {
		if err := n.followRetained(octx, r); err != nil {
			return err
		}
	}
	if n.hook == nil {
		h, err := newHook(n)
		if err != nil {
			return err
		}
		n.hook = h
	}
	if n.sessions == nil {
		s, err := newSessions(octx, n, r)
		if err != nil {
			return err
		}
		n.sessions = s
	}
	if n.feed == nil {
		if err := n.followRevocations(octx); err != nil {
			return err
		}
	}
	if n.registry == nil && n.d.Registry != nil {
		return n.followRegistry(ctx)
	}
	return nil
}

// sharedBucket makes (or updates) the replicated KV bucket name the nodes
// share: file storage and replicas copies, with what the caller sets in
// cfg (description, TTL, history). Every shared bucket is made here, so
// they all keep their state the same way.
func (n *Node) sharedBucket(ctx context.Context, cfg jetstream.KeyValueConfig, replicas int) (jetstream.KeyValue, error) {
	cfg.Replicas, cfg.Storage = replicas, jetstream.FileStorage
	kv, err := n.js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// Name is this node's name.
func (n *Node) Name() string { return n.name }

// Hook is the mochi hook that carries this node's accepted publishes to
// the others; add it after the Guard.
func (n *Node) Hook() *Hook { return n.hook }

// Ledger is the cluster-wide replay ledger, for the Guard.
func (n *Node) Ledger() *Ledger { return n.ledger }

// Clients is the mochi hook that keeps client ids unique across the
// nodes, and the Guard's count of connections on the other nodes.
func (n *Node) Clients() *Clients { return n.clients }

// Sessions is the mochi hook that moves persistent sessions between
// nodes; add it after the Guard and the store.
func (n *Node) Sessions() *Sessions { return n.sessions }

// setMsgs keeps the consumption Close stops; one that starts after Close
// is stopped at once.
func (n *Node) setMsgs(cc jetstream.ConsumeContext) {
	n.msgsMu.Lock()
	defer n.msgsMu.Unlock()
	select {
	case <-n.done:
		cc.Stop()
	default:
		n.msgs = cc
	}
}

// Close stops receiving and leaves the cluster: the NATS connection and
// the embedded server.
func (n *Node) Close() {
	n.closing.Do(func() {
		close(n.done)
		n.msgsMu.Lock()
		if n.msgs != nil {
			n.msgs.Stop()
		}
		n.msgsMu.Unlock()
		if n.feed != nil {
			n.feed.Stop()
		}
		if n.retained != nil {
			_ = n.retained.w.Stop()
		}
		if n.registry != nil {
			n.registry.stop()
		}
		if n.nc != nil {
			n.nc.Close()
		}
		if n.ns != nil {
			n.ns.Shutdown()
			n.ns.WaitForShutdown()
		}
	})
}
