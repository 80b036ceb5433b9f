package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/xid"

	"homemq/auth"
	"homemq/topics"
)

// ClientsBucket is the JetStream KV bucket of client-id owners: which node
// holds the live connection of each session key (docs/cluster.md).
const ClientsBucket = "HOMEMQ_CLIENTS"

// Keys of ClientsBucket: "c." + hex sha256 of a session key (the client
// id after the Guard namespaced it) names its owner; "n." + a node's name
// is that node's heartbeat.
const (
	ownerPrefix = "c."
	nodePrefix  = "n."
)

// A node writes its heartbeat every heartbeatEvery; the connections of a
// node whose heartbeat is older than nodeDeadAfter do not count against
// limits.conns_per_sub on the others (the node crashed or is cut off).
const (
	heartbeatEvery = 5 * time.Second
	nodeDeadAfter  = 4 * heartbeatEvery
)

// clientsTTL bounds how long an entry is kept (the bucket's age limit),
// so that the entries of a node that never comes back go away. A node
// writes the entry of a connection that lives longer (re-authenticated)
// again every refreshAfter, and checks its connections for it every
// refreshEvery.
const (
	clientsTTL   = auth.MaxTTL + time.Hour
	refreshAfter = clientsTTL / 2
	refreshEvery = time.Minute
)

// owner is the value of an owner key.
type owner struct {
	Node string `json:"node"` // the node holding the connection
	Gen  string `json:"gen"`  // the connection's generation: unique per connection
	Sub  string `json:"sub"`  // the token sub it is counted under (limits.conns_per_sub)
	At   int64  `json:"at"`   // unix seconds, when it was written
}

// ownerEntry is an owner as last seen in the bucket.
type ownerEntry struct {
	owner
	rev uint64
}

// localConn is a live connection of this node registered in the bucket.
type localConn struct {
	cl      *mqtt.Client
	gen     string
	rev     uint64    // the revision it was written at (or the last seen, when not written)
	written bool      // the bucket holds this connection's entry at rev
	at      time.Time // when it was written
}

// Clients keeps client ids unique across the cluster and counts every
// node's connections per sub. It is a mochi hook: when a connection is
// established it writes this node as the owner of the connection's
// session key; it mirrors the whole bucket through a watch, and when a
// newer revision names another owner of a key whose connection this node
// holds, it disconnects that connection with 0x8E (session taken over),
// as mochi does for a takeover on one node. When the connection ends, its
// key is deleted if it still names that connection. Clients satisfies
// hooks.ConnectionCounter.
type Clients struct {
	mqtt.HookBase
	n  *Node
	kv jetstream.KeyValue

	mu     sync.Mutex
	owners map[string]ownerEntry     // the bucket's owner keys, mirrored
	local  map[string]localConn      // owner key -> this node's live connection
	subs   map[string]map[string]int // sub -> node -> connections
	beats  map[string]time.Time      // node -> when its heartbeat was seen (this node's clock)
	onTake func(cl *mqtt.Client)     // disconnects a connection taken over elsewhere
}

// newClients makes the bucket, mirrors it (waiting for its current
// content), deletes what an earlier run of this node left in it and starts
// the heartbeat.
func newClients(ctx context.Context, n *Node, replicas int) (*Clients, error) {
	kv, err := n.sharedBucket(ctx, jetstream.KeyValueConfig{
		Bucket:      ClientsBucket,
		Description: "homemq: the node holding each client id's connection, and node heartbeats",
		TTL:         clientsTTL,
	}, replicas)
	if err != nil {
		return nil, err
	}
	c := &Clients{n: n, kv: kv, owners: map[string]ownerEntry{}, local: map[string]localConn{},
		subs: map[string]map[string]int{}, beats: map[string]time.Time{}}
	c.onTake = c.disconnect
	w, err := kv.WatchAll(context.Background())
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", ClientsBucket, err)
	}
	ready := make(chan struct{})
	go c.watch(w, ready)
	select {
	case <-ready:
	case <-ctx.Done():
		_ = w.Stop()
		return nil, fmt.Errorf("watch %s: %w", ClientsBucket, ctx.Err())
	}
	c.forgetEarlierRun(ctx)
	c.beat(ctx)
	go c.heartbeat()
	return c, nil
}

// ownerKey is the bucket key of a session key.
func ownerKey(clientID string) string {
	sum := sha256.Sum256([]byte(clientID))
	return ownerPrefix + hex.EncodeToString(sum[:])
}

// ID names the hook.
func (c *Clients) ID() string { return "homemq-cluster-clients" }

// Provides lists the hook methods Clients implements.
func (c *Clients) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnSessionEstablished, mqtt.OnDisconnect}, []byte{b})
}

// OnSessionEstablished makes this node the owner of the connection's
// session key, after the Guard accepted it and mochi answered CONNACK
// (and took over any local connection of the same id). If the bucket
// cannot be written the connection stays (availability: docs/decisions.md)
// and is still taken over by a newer connection elsewhere.
func (c *Clients) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	key := ownerKey(cl.ID)
	o := owner{Node: c.n.name, Gen: xid.New().String(), Sub: topics.ClientIDOwner(cl.ID), At: time.Now().Unix()}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	rev, err := c.claim(ctx, key, o)
	if err != nil {
		c.n.log.Warn("cluster: could not record this connection's owner; a connection of the same client id on another node stays up",
			"client", cl.ID, "error", err)
	}
	c.mu.Lock()
	l := localConn{cl: cl, gen: o.Gen, rev: rev, written: err == nil, at: time.Unix(o.At, 0)}
	cur, seen := c.owners[key]
	if !l.written {
		l.rev = cur.rev // only an owner newer than what is known takes it over
	}
	taken := l.written && seen && cur.rev > l.rev && cur.Gen != l.gen
	if !taken {
		c.local[key] = l
	}
	c.mu.Unlock()
	if taken { // a newer connect elsewhere came in while this one was written
		go c.onTake(cl)
	}
}

// claim writes o as the owner of key on the revision this node knows, or
// on the one it reads when that was stale, and returns the revision
// written. Of simultaneous claims each is written on the revision before
// it, so they have one order and the last one is the owner.
func (c *Clients) claim(ctx context.Context, key string, o owner) (uint64, error) {
	val, _ := json.Marshal(o)
	c.mu.Lock()
	cur, known := c.owners[key]
	c.mu.Unlock()
	for try := 0; ; try++ {
		var rev uint64
		var err error
		if known {
			rev, err = c.kv.Update(ctx, key, val, cur.rev)
		} else {
			rev, err = c.kv.Create(ctx, key, val)
		}
		if !conflict(err) || try == 4 {
			return rev, err
		}
		e, err := c.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			known = false
		case err != nil:
			return 0, err
		default:
			known, cur.rev = true, e.Revision()
		}
	}
}

// conflict reports whether err is a write on a revision that is no
// longer the key's last.
func conflict(err error) bool {
	var api *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &api) &&
		(api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant))
}

// OnDisconnect deletes the key of a connection that ends while it is still
// its owner: the delete is conditional on the revision it wrote.
func (c *Clients) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if cl.Net.Inline {
		return
	}
	key := ownerKey(cl.ID)
	c.mu.Lock()
	l, ok := c.local[key]
	if ok && l.cl == cl {
		delete(c.local, key)
	}
	c.mu.Unlock()
	if !ok || l.cl != cl || !l.written {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := c.kv.Delete(ctx, key, jetstream.LastRevision(l.rev)); err != nil && !conflict(err) {
		c.n.log.Debug("cluster: could not delete a client id's owner (it expires)", "client", cl.ID, "error", err)
	}
}

// Elsewhere returns how many live connections sub holds on the other
// nodes whose heartbeat is recent.
func (c *Clients) Elsewhere(sub string) int {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	for node, k := range c.subs[sub] {
		if node != c.n.name && now.Sub(c.beats[node]) < nodeDeadAfter {
			total += k
		}
	}
	return total
}

// watch applies the bucket's entries as they come; ready is closed once
// the current content is applied.
func (c *Clients) watch(w jetstream.KeyWatcher, ready chan struct{}) {
	defer func() { _ = w.Stop() }()
	initial := true
	for {
		select {
		case <-c.n.done:
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				if initial {
					initial = false
					close(ready)
				}
				continue
			}
			seen := time.Now()
			if initial {
				seen = e.Created() // an old heartbeat is not a live node
			}
			c.apply(e, seen)
		}
	}
}

// apply mirrors one entry, and disconnects the local connection of a key
// that a newer entry gives to another connection.
func (c *Clients) apply(e jetstream.KeyValueEntry, seen time.Time) {
	key := e.Key()
	if node, ok := strings.CutPrefix(key, nodePrefix); ok {
		c.mu.Lock()
		c.beats[node] = seen
		c.mu.Unlock()
		return
	}
	if !strings.HasPrefix(key, ownerPrefix) {
		return
	}
	var o owner
	put := e.Operation() == jetstream.KeyValuePut
	if put && json.Unmarshal(e.Value(), &o) != nil {
		c.n.log.Warn("cluster: ignored a malformed client id owner", "key", key)
		return
	}
	c.mu.Lock()
	if old, ok := c.owners[key]; ok {
		c.count(old.Sub, old.Node, -1)
		delete(c.owners, key)
	}
	var taken *mqtt.Client
	if put {
		c.owners[key] = ownerEntry{owner: o, rev: e.Revision()}
		c.count(o.Sub, o.Node, 1)
		switch l, ok := c.local[key]; {
		case !ok:
		case o.Gen == l.gen && !l.written:
			// a write that timed out did land: its key is to delete at the end
			l.rev, l.written = e.Revision(), true
			c.local[key] = l
		case o.Gen != l.gen && e.Revision() > l.rev:
			delete(c.local, key)
			taken = l.cl
		}
	}
	c.mu.Unlock()
	if taken != nil {
		go c.onTake(taken)
	}
}

// count adds d to the connections of sub on node; c.mu is held.
func (c *Clients) count(sub, node string, d int) {
	m := c.subs[sub]
	if m == nil {
		m = map[string]int{}
		c.subs[sub] = m
	}
	if m[node] += d; m[node] <= 0 {
		delete(m, node)
	}
	if len(m) == 0 {
		delete(c.subs, sub)
	}
}

// disconnect closes a connection that a node took over, as mochi closes
// one taken over locally: DISCONNECT 0x8E to an MQTT 5 client.
func (c *Clients) disconnect(cl *mqtt.Client) {
	if cl.Closed() {
		return // taken over on this node: mochi closed it already
	}
	c.n.log.Info("cluster: session taken over on another node", "client", cl.ID, "remote", cl.Net.Remote)
	if c.n.d.Disconnect != nil {
		c.n.d.Disconnect(cl, packets.ErrSessionTakenOver)
		return
	}
	_ = c.n.d.Server.DisconnectClient(cl, packets.ErrSessionTakenOver)
}

// forgetEarlierRun deletes the owner keys that name this node: they are
// connections of an earlier run, all gone.
func (c *Clients) forgetEarlierRun(ctx context.Context) {
	c.mu.Lock()
	var stale []string
	revs := map[string]uint64{}
	for key, o := range c.owners {
		if o.Node == c.n.name {
			stale = append(stale, key)
			revs[key] = o.rev
		}
	}
	c.mu.Unlock()
	for _, key := range stale {
		if err := c.kv.Delete(ctx, key, jetstream.LastRevision(revs[key])); err != nil && !conflict(err) {
			c.n.log.Debug("cluster: could not delete a client id owner of an earlier run (it expires)", "error", err)
		}
	}
}

// heartbeat writes this node's heartbeat every heartbeatEvery, and
// refreshes old entries every refreshEvery, until the node closes.
func (c *Clients) heartbeat() {
	beat, refresh := time.NewTicker(heartbeatEvery), time.NewTicker(refreshEvery)
	defer beat.Stop()
	defer refresh.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		select {
		case <-c.n.done:
			cancel()
			return
		case <-beat.C:
			c.beat(ctx)
		case now := <-refresh.C:
			c.refresh(ctx, now)
		}
		cancel()
	}
}

// refresh writes again the entries of this node's connections written
// refreshAfter before now, so that a connection's entry never reaches the
// bucket's age limit while it lives, and drops from the mirror the
// entries that reached it (the bucket dropped them without a word).
func (c *Clients) refresh(ctx context.Context, now time.Time) {
	type due struct {
		key string
		l   localConn
	}
	var todo []due
	c.mu.Lock()
	for key, l := range c.local {
		if l.written && now.Sub(l.at) >= refreshAfter {
			todo = append(todo, due{key, l})
		}
	}
	for key, o := range c.owners {
		if now.Sub(time.Unix(o.At, 0)) >= clientsTTL {
			c.count(o.Sub, o.Node, -1)
			delete(c.owners, key)
		}
	}
	c.mu.Unlock()
	for _, d := range todo {
		o := owner{Node: c.n.name, Gen: d.l.gen, Sub: topics.ClientIDOwner(d.l.cl.ID), At: now.Unix()}
		val, _ := json.Marshal(o)
		rev, err := c.kv.Update(ctx, d.key, val, d.l.rev)
		if err != nil {
			continue // taken over (the watch tells), or no quorum: the next round
		}
		c.mu.Lock()
		if l, ok := c.local[d.key]; ok && l.gen == d.l.gen {
			l.rev, l.at = rev, now
			c.local[d.key] = l
		}
		c.mu.Unlock()
	}
}

func (c *Clients) beat(ctx context.Context) {
	if _, err := c.kv.PutString(ctx, nodePrefix+c.n.name, time.Now().UTC().Format(time.RFC3339)); err != nil {
		c.n.log.Debug("cluster: could not write this node's heartbeat", "error", err)
	}
}
