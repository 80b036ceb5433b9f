package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The health of a node, in Status.Health and Health.Status.
const (
	// HealthOK: this node reaches JetStream and the replay ledger has a
	// leader, so it can accept commands.
	HealthOK = "ok"
	// HealthDegraded: this node cannot accept commands (no NATS
	// connection, no JetStream quorum, or the replay ledger unreachable);
	// Problems says why.
	HealthDegraded = "degraded"
)

// The state of a JetStream peer, in Peer.State.
const (
	PeerCurrent = "current" // seen recently and caught up
	PeerLagging = "lagging" // seen, but behind its leader
	PeerOffline = "offline" // not seen recently
)

// sharedPrefixes select the streams the nodes share among all of an
// external NATS account's: the streams and the KV buckets' streams.
var sharedPrefixes = []string{"HOMEMQ_", "KV_HOMEMQ_"}

// Status is what `homemq cluster status` prints: this node's view of
// the cluster, its NATS connection and JetStream.
type Status struct {
	// Node is this node's name.
	Node string `json:"node"`
	// NATS is "embedded" or "external".
	NATS string `json:"nats"`
	// Connected tells whether this node's NATS connection is up.
	Connected bool `json:"connected"`
	// Server is the NATS server this node is connected to.
	Server string `json:"server,omitempty"`
	// Health is HealthOK or HealthDegraded.
	Health string `json:"health"`
	// Problems say why the node is degraded.
	Problems []string `json:"problems,omitempty"`
	// MetaLeader is JetStream's meta leader; an external NATS tells it
	// only to its system account, so it is empty there.
	MetaLeader string `json:"meta_leader,omitempty"`
	// Peers are the JetStream servers: the meta group's (embedded) or
	// those that hold a shared stream (external).
	Peers []Peer `json:"peers"`
	// Shared are the shared streams and buckets.
	Shared []Shared `json:"shared"`
	// Consumer is this node's message consumer: what waits for it.
	Consumer *ConsumerLag `json:"consumer,omitempty"`
	// Counters are this node's cross-node counts since it started.
	Counters Counts `json:"counters"`
}

// Peer is one JetStream server as this node sees it.
type Peer struct {
	Name string `json:"name"`
	// State is PeerCurrent, PeerLagging or PeerOffline.
	State string `json:"state"`
	// Lag is how many operations it is behind its leader.
	Lag uint64 `json:"lag,omitempty"`
	// SeenMillis is how long ago it was last heard from, in milliseconds.
	SeenMillis int64 `json:"seen_ms"`
	// Leader tells whether it leads (the meta group, or the stream).
	Leader bool `json:"leader,omitempty"`
}

// Shared is one shared stream or bucket's replication.
type Shared struct {
	Name string `json:"name"`
	// Replicas is the configured number of copies.
	Replicas int `json:"replicas"`
	// Leader is the server that takes its writes; "" means none: writes fail.
	Leader string `json:"leader"`
	// Peers are its replicas, the leader first.
	Peers []Peer `json:"peers,omitempty"`
	// Messages it holds.
	Messages uint64 `json:"messages"`
	// Error is why its state could not be read.
	Error string `json:"error,omitempty"`
}

// ConsumerLag is what this node's consumer of the messages stream has not
// yet taken or acknowledged.
type ConsumerLag struct {
	Name string `json:"name"`
	// Pending is how many messages wait to be delivered to this node.
	Pending uint64 `json:"pending"`
	// AckPending is how many were delivered and are not yet acknowledged.
	AckPending int `json:"ack_pending"`
	// Redelivered is how many were delivered more than once.
	Redelivered int `json:"redelivered"`
	// Error is why the consumer could not be read.
	Error string `json:"error,omitempty"`
}

// Health is a node's short answer for /healthz, which anyone may read:
// why a node is degraded is in its Status, for operators.
type Health struct {
	Node string `json:"node"`
	// Status is HealthOK or HealthDegraded.
	Status string `json:"status"`
	// Peers is how many JetStream servers this node sees online, itself
	// (embedded) included.
	Peers int `json:"peers"`
}

// statusTimeout bounds the JetStream requests of one Status.
const statusTimeout = 3 * time.Second

// healthEvery is how often a node that was asked for its health checks
// it again in the background: /healthz answers from the last check at
// once, so a load balancer's short timeout never meets a slow JetStream,
// and polling costs JetStream one request a second however often it comes.
const healthEvery = time.Second

// healthStale is the age after which the last check no longer counts: the
// background check is stuck, and the node reports itself degraded.
const healthStale = healthEvery + statusTimeout + 5*time.Second

// status is what a Node keeps for Status and Health: its cross-node
// counters and the last Health.
type status struct {
	counters counters
	health   healthCache
}

// healthCache keeps the last Health.
type healthCache struct {
	start sync.Once // the background check, from the first Health
	mu    sync.Mutex
	at    time.Time
	last  Health
}

// Status gathers this node's view of the cluster. It never fails: what
// cannot be read is reported in the Status (and makes it degraded where
// it keeps the node from accepting commands).
func (n *Node) Status(ctx context.Context) Status {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	s := n.connection()
	s.Shared = n.sharedStreams(ctx)
	n.peers(&s)
	s.Consumer = n.consumerLag(ctx)
	s.Counters = n.counters.Snapshot()
	s.judge(n.ledgerStream())
	return s
}

// Health is the short status /healthz serves: whether this node can
// accept commands (its replay ledger has a leader), and the peers it
// sees. The first call starts a check every healthEvery until the node
// closes, and later calls answer from the last one.
func (n *Node) Health(ctx context.Context) Health {
	n.health.start.Do(func() { go n.checkHealthEvery(healthEvery) })
	n.health.mu.Lock()
	h, at := n.health.last, n.health.at
	n.health.mu.Unlock()
	switch {
	case at.IsZero():
		return n.checkHealth(ctx)
	case time.Since(at) > healthStale:
		h.Status = HealthDegraded // the check is stuck: JetStream does not answer
	}
	return h
}

// checkHealthEvery checks the node's health every d until it closes.
func (n *Node) checkHealthEvery(d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		n.checkHealth(context.Background())
		select {
		case <-t.C:
		case <-n.done:
			return
		}
	}
}

// checkHealth checks the node's health now and keeps the answer.
func (n *Node) checkHealth(ctx context.Context) Health {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	s := n.connection()
	if s.Connected {
		s.Shared = []Shared{n.sharedStream(ctx, n.ledgerStream())}
	}
	n.peers(&s)
	s.judge(n.ledgerStream())
	h := Health{Node: s.Node, Status: s.Health}
	for _, p := range s.Peers {
		if p.State != PeerOffline {
			h.Peers++
		}
	}
	n.health.mu.Lock()
	n.health.at, n.health.last = time.Now(), h
	n.health.mu.Unlock()
	return h
}

// ledgerStream is the name of the replay ledger's stream.
func (n *Node) ledgerStream() string { return "KV_" + ReplayBucket }

// connection is the part of the Status the NATS connection tells.
func (n *Node) connection() Status {
	s := Status{Node: n.name, NATS: "external", Peers: []Peer{}, Shared: []Shared{}}
	if n.ns != nil {
		s.NATS = "embedded"
	}
	if n.nc != nil {
		s.Connected = n.nc.Status() == nats.CONNECTED
		s.Server = n.nc.ConnectedServerName()
	}
	return s
}

// sharedStreams reads every shared stream and bucket, sorted by name.
func (n *Node) sharedStreams(ctx context.Context) []Shared {
	out := []Shared{}
	if n.js == nil || n.nc.Status() != nats.CONNECTED {
		return out
	}
	names := n.js.StreamNames(ctx)
	var list []string
	for name := range names.Name() {
		if isShared(name) {
			list = append(list, name)
		}
	}
	if err := names.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		out = append(out, Shared{Name: "(stream list)", Error: err.Error()})
	}
	slices.Sort(list)
	for _, name := range list {
		out = append(out, n.sharedStream(ctx, name))
	}
	return out
}

func isShared(stream string) bool {
	for _, p := range sharedPrefixes {
		if strings.HasPrefix(stream, p) {
			return true
		}
	}
	return false
}

// sharedStream reads one stream's replication.
func (n *Node) sharedStream(ctx context.Context, name string) Shared {
	sh := Shared{Name: name}
	st, err := n.js.Stream(ctx, name)
	if err != nil {
		sh.Error = err.Error()
		return sh
	}
	info := st.CachedInfo()
	sh.Replicas, sh.Messages = info.Config.Replicas, info.State.Msgs
	if ci := info.Cluster; ci != nil {
		sh.Leader = ci.Leader
		if ci.Leader != "" {
			sh.Peers = append(sh.Peers, Peer{Name: ci.Leader, State: PeerCurrent, Leader: true})
		}
		for _, p := range ci.Replicas {
			sh.Peers = append(sh.Peers, peerOf(p.Name, p.Current, p.Offline, p.Lag, p.Active, false))
		}
	}
	return sh
}

// peerOf judges a peer from what JetStream reports of it.
func peerOf(name string, current, offline bool, lag uint64, active time.Duration, leader bool) Peer {
	p := Peer{Name: name, State: PeerCurrent, Lag: lag, SeenMillis: active.Milliseconds(), Leader: leader}
	switch {
	case offline:
		p.State = PeerOffline
	case !current || lag > 0:
		p.State = PeerLagging
	}
	return p
}

// peers fills the meta leader and the peers: from the embedded server's
// meta group, else from the replicas of the shared streams read.
func (n *Node) peers(s *Status) {
	if n.ns != nil {
		jsz, err := n.ns.Jsz(&server.JSzOptions{})
		if err != nil || jsz.Meta == nil {
			return
		}
		s.MetaLeader = jsz.Meta.Leader
		s.Peers = append(s.Peers, Peer{Name: n.ns.Name(), State: PeerCurrent, Leader: jsz.Meta.Leader == n.ns.Name()})
		for _, p := range jsz.Meta.Replicas {
			if p.Name == n.ns.Name() {
				continue // a follower lists itself among the replicas
			}
			s.Peers = append(s.Peers, peerOf(p.Name, p.Current, p.Offline, p.Lag, p.Active, p.Name == jsz.Meta.Leader))
		}
		return
	}
	seen := map[string]int{}
	for _, sh := range s.Shared {
		for _, p := range sh.Peers {
			p.Leader = false
			i, ok := seen[p.Name]
			switch {
			case !ok:
				seen[p.Name] = len(s.Peers)
				s.Peers = append(s.Peers, p)
			case worse(p.State, s.Peers[i].State):
				s.Peers[i].State = p.State
			}
			if ok {
				s.Peers[i].Lag = max(s.Peers[i].Lag, p.Lag)
			}
		}
	}
	slices.SortFunc(s.Peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
}

// worse tells whether state a is worse than b.
func worse(a, b string) bool {
	rank := map[string]int{PeerCurrent: 0, PeerLagging: 1, PeerOffline: 2}
	return rank[a] > rank[b]
}

// consumerLag reads this node's consumer of the messages stream.
func (n *Node) consumerLag(ctx context.Context) *ConsumerLag {
	c := &ConsumerLag{Name: "node-" + n.name}
	if n.js == nil {
		return c
	}
	cons, err := n.js.Consumer(ctx, MessagesStream, c.Name)
	if err != nil {
		c.Error = err.Error()
		return c
	}
	info := cons.CachedInfo()
	c.Pending, c.AckPending, c.Redelivered = info.NumPending, info.NumAckPending, info.NumRedelivered
	return c
}

// ConsumerPending is how many messages wait for this node, delivered or
// not yet acknowledged, for the metrics; ok is false when JetStream does
// not answer.
func (n *Node) ConsumerPending(ctx context.Context) (pending uint64, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c := n.consumerLag(ctx)
	return c.Pending + uint64(c.AckPending), c.Error == ""
}

// judge sets Health and Problems: the node is degraded when it cannot
// accept commands, that is when the replay ledger (stream ledger) cannot
// take a write.
func (s *Status) judge(ledger string) {
	if !s.Connected {
		s.Problems = append(s.Problems, "not connected to NATS (reconnecting)")
	}
	if s.NATS == "embedded" && s.Connected && s.MetaLeader == "" {
		s.Problems = append(s.Problems, "JetStream has no meta leader (no quorum of the servers)")
	}
	for _, sh := range s.Shared {
		switch {
		case sh.Error != "":
			s.Problems = append(s.Problems, fmt.Sprintf("%s: %s", sh.Name, sh.Error))
		case sh.Leader == "":
			s.Problems = append(s.Problems, sh.Name+": no leader (no quorum of its replicas)")
		}
	}
	if s.Connected && !slices.ContainsFunc(s.Shared, func(sh Shared) bool { return sh.Name == ledger }) {
		s.Problems = append(s.Problems, ledger+": not read")
	}
	s.Health = HealthOK
	if len(s.Problems) > 0 {
		s.Health = HealthDegraded
	}
}

// Counts are a node's cross-node counters since it started.
type Counts struct {
	// Sent counts messages this node published to the other nodes.
	Sent uint64 `json:"sent"`
	// Received counts messages from other nodes delivered here.
	Received uint64 `json:"received"`
	// PublishErrors counts messages that could not be published to the
	// other nodes (a QoS 1 publisher got PUBACK 0x80).
	PublishErrors uint64 `json:"publish_errors"`
	// LedgerChecks counts claims on the shared replay ledger.
	LedgerChecks uint64 `json:"ledger_checks"`
	// LedgerRefusals counts claims refused because a node had accepted
	// the envelope before (replays).
	LedgerRefusals uint64 `json:"ledger_refusals"`
	// LedgerErrors counts claims the ledger could not answer (the command
	// was refused: fail closed).
	LedgerErrors uint64 `json:"ledger_errors"`
}

// counters are the live Counts, updated without locks.
type counters struct {
	sent, received, publishErrors            atomic.Uint64
	ledgerChecks, ledgerRefusals, ledgerErrs atomic.Uint64
}

// Snapshot reads the counters.
func (c *counters) Snapshot() Counts {
	if c == nil {
		return Counts{}
	}
	return Counts{
		Sent: c.sent.Load(), Received: c.received.Load(), PublishErrors: c.publishErrors.Load(),
		LedgerChecks: c.ledgerChecks.Load(), LedgerRefusals: c.ledgerRefusals.Load(), LedgerErrors: c.ledgerErrs.Load(),
	}
}

// Counters reads this node's cross-node counters, for the metrics.
func (n *Node) Counters() Counts { return n.counters.Snapshot() }
