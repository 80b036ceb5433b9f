package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"homemq/auth"
)

// SessionsBucket is the JetStream KV bucket of persistent sessions: the
// node holding each one, its subscriptions and expiry (docs/cluster.md).
const SessionsBucket = "HOMEMQ_SESSIONS"

// sessionPrefix starts a key of SessionsBucket: "s." + hex sha256 of the
// session key, as ownerKey does for HOMEMQ_CLIENTS.
const sessionPrefix = "s."

// takePrefix starts the subject a node answers "hand me this session" on:
// takePrefix + the node's token + "." + the key's hash. A request to a
// node that is gone has no responder and fails at once.
const takePrefix = "homemq.session.take."

// takeTimeout bounds how long a CONNECT waits for the node that holds its
// session; past it the node starts from the bucket's record.
const takeTimeout = 2 * time.Second

// sessionsTTL is the bucket's age limit: longer than any session expiry
// mochi grants (a day by default), so a record of a node that never comes
// back goes away.
const sessionsTTL = 7 * 24 * time.Hour

// sessionRecord is the value of a session key, and the session a node
// hands to another.
type sessionRecord struct {
	Node   string                 `json:"node"`           // the node holding the session
	Client string                 `json:"client"`         // the session key
	Expiry uint32                 `json:"expiry"`         // session expiry interval, seconds
	Gone   int64                  `json:"gone,omitempty"` // unix seconds the connection ended; 0 while connected
	Subs   []packets.Subscription `json:"subs,omitempty"`
	Claims *auth.Claims           `json:"claims,omitempty"` // the rights it is judged with while offline
}

// expired reports whether the session's expiry passed while it was offline.
func (r sessionRecord) expired(now time.Time) bool {
	return r.Gone > 0 && r.Gone+int64(r.Expiry) < now.Unix()
}

// takeReply answers a take request.
type takeReply struct {
	Found   bool             `json:"found"`
	Session sessionRecord    `json:"session"`
	Queue   []packets.Packet `json:"queue,omitempty"` // outbound QoS 1/2 publishes queued or in flight
}

// Sessions lets a persistent session follow its client to another node.
// It is a mochi hook: the node holding a persistent session records it
// (subscriptions, expiry) in SessionsBucket; when a client with clean
// start off connects to a node that does not hold its session, that node
// asks the recorded holder for it before the CONNACK (the holder
// disconnects its connection, stops queueing and hands over the
// subscriptions and queue), and installs it as an offline session mochi
// then inherits, so the client finds it with session present. While a
// client is away, its node copies the session's queue to QueuesBucket
// (queue.go); for a holder that does not answer, the node installs the
// record's subscriptions and recovers the copy and what the dead node
// never handled (recovery.go). A clean start ends the session on its
// holder, as mochi ends a local one.
type Sessions struct {
	mqtt.HookBase
	n     *Node
	kv    jetstream.KeyValue
	sub   *nats.Subscription
	token string // this node's subject token
	queue *queueMirror

	mu        sync.Mutex
	handing   map[*mqtt.Client]chan struct{} // sessions being handed to another node; closed at their OnDisconnect
	recorded  sync.Map                       // session key -> struct{}: this node wrote its record
	moved     sync.Map                       // session key -> struct{}: installed from another node, not yet established
	restoring sync.Map                       // session key -> sessionRecord read by Elsewhere at start, until OnStarted
}

// nodeToken is a node name as one subject token.
func nodeToken(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:8])
}

// sessionKey is the bucket key and take-subject hash of a session key.
func sessionKey(clientID string) string {
	sum := sha256.Sum256([]byte(clientID))
	return hex.EncodeToString(sum[:])
}

// newSessions makes the bucket and answers take requests for this node.
func newSessions(ctx context.Context, n *Node, replicas int) (*Sessions, error) {
	kv, err := n.sharedBucket(ctx, jetstream.KeyValueConfig{
		Bucket:      SessionsBucket,
		Description: "homemq: each persistent session's node, subscriptions and expiry",
		TTL:         sessionsTTL,
	}, replicas)
	if err != nil {
		return nil, err
	}
	s := &Sessions{n: n, kv: kv, token: nodeToken(n.name), handing: map[*mqtt.Client]chan struct{}{}}
	if s.queue, err = newQueueMirror(ctx, n, replicas, s.token); err != nil {
		return nil, err
	}
	if s.sub, err = n.nc.Subscribe(takePrefix+s.token+".*", s.serveTake); err != nil {
		return nil, fmt.Errorf("subscribe to session requests: %w", err)
	}
	if err := n.nc.FlushWithContext(ctx); err != nil {
		return nil, fmt.Errorf("subscribe to session requests: %w", err)
	}
	return s, nil
}

// ID names the hook.
func (s *Sessions) ID() string { return "homemq-cluster-sessions" }

// Provides lists the hook methods Sessions implements.
func (s *Sessions) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnSubscribed,
		mqtt.OnUnsubscribed, mqtt.OnDisconnect, mqtt.OnClientExpired, mqtt.OnQosPublish, mqtt.OnQosDropped,
		mqtt.OnStarted}, []byte{b})
}

// persistentSession reports whether cl's session outlives its connection.
func persistentSession(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// OnSessionEstablish runs before mochi looks for a session to inherit:
// when this node holds none for a client that asks to keep its session,
// it fetches the session from the node the bucket names and installs it
// as an offline session, which mochi inherits (session present, queued
// messages sent after the CONNACK). A stale copy this node still holds of
// a session another node took since is emptied and replaced by that
// node's. A holder that does not answer is taken for dead: the session is
// recovered from the cluster (recovery.go).
func (s *Sessions) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	if pk.Connect.Clean {
		s.discard(cl)
		return
	}
	local, held := s.n.d.Server.Clients.Get(cl.ID)
	if _, mine := s.recorded.Load(cl.ID); held && mine {
		return // this node's in this run: mochi inherits it
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	rec, ok := s.lookup(ctx, cl.ID)
	if !ok || held && rec.Node == s.n.name {
		return // mochi inherits what this node restored
	}
	var queue []packets.Packet
	var err error
	r := takeReply{Found: true, Session: rec}
	if rec.Node != s.n.name { // else: recorded here, lost from the store; its subscriptions
		r, err = s.take(cl.ID, rec.Node)
	}
	dead := err != nil
	switch {
	case dead:
		s.n.log.Info("cluster: the node holding a session did not answer; its queue is recovered from the cluster",
			"client", cl.ID, "holder", rec.Node, "error", err)
	case !r.Found:
		return // the holder has no such session (expired, or cleaned): a new one
	default:
		rec, queue = r.Session, r.Queue
	}
	if s.n.d.LendRights != nil {
		s.n.d.LendRights(cl) // what is queued for it from now on is judged with cl's rights
	}
	if held {
		s.reset(local) // a stale copy: the holder's session replaces it
	} else {
		local = s.n.d.Server.NewClient(nil, cl.Net.Listener, cl.ID, false)
		local.Properties.ProtocolVersion = cl.Properties.ProtocolVersion
		local.Properties.Props.SessionExpiryInterval, local.Properties.Props.SessionExpiryIntervalFlag = rec.Expiry, true
		local.Stop(packets.ErrSessionTakenOver)
	}
	s.installSubs(local, rec)
	if !held {
		s.n.d.Server.Clients.Add(local) // its subscriptions count in the interest
	}
	if !dead {
		s.widen(ctx, rec.Subs)
	} else {
		// the dead node may have led the streams, whose new leaders can take
		// seconds: what cannot be read now is delivered once it can be
		r := &recovery{rec: rec}
		rctx, rcancel := context.WithTimeout(context.Background(), recoverTimeout)
		queue = s.recover(rctx, r)
		rcancel()
		if !r.done() {
			s.recoverLater(cl.ID, r)
		}
	}
	s.installQueue(local, cl, rec.Node, queue)
	s.moved.Store(cl.ID, struct{}{})
}

// widen makes this node's consumer carry subs, the subscriptions of a
// session being installed; false if JetStream did not answer in time (the
// hook tries again later). Subscriptions in shards the consumer has cost
// nothing; others share the hook's batched update with SUBSCRIBEs.
func (s *Sessions) widen(ctx context.Context, subs []packets.Subscription) bool {
	if s.n.hook == nil || s.n.hook.taken(subs) {
		return true // nil: a unit test's node
	}
	if err := s.n.hook.widen(ctx); err != nil {
		s.n.log.Warn("cluster: could not update this node's interest for a moved session", "error", err)
		s.n.hook.poke()
		return false
	}
	return true
}

// reset empties a stale copy of a session this node restored from its
// store before the session of the node holding it replaces it.
func (s *Sessions) reset(local *mqtt.Client) {
	s.n.d.Server.UnsubscribeClient(local)
	for _, m := range local.State.Inflight.GetAll(false) {
		if local.State.Inflight.Delete(m.PacketID) {
			atomic.AddInt64(&s.n.d.Server.Info.Inflight, -1)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	s.queue.removeAll(ctx, local.ID)
}

// discard ends the session another node holds for a client that connects
// here with clean start, as mochi ends a local one: the holder hands it
// over and forgets it, and its queue is dropped.
func (s *Sessions) discard(cl *mqtt.Client) {
	if _, held := s.n.d.Server.Clients.Get(cl.ID); held {
		return // mochi ends it
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	rec, ok := s.lookup(ctx, cl.ID)
	if !ok || rec.Node == s.n.name {
		return
	}
	if _, err := s.take(cl.ID, rec.Node); err != nil {
		// the holder is gone: end the record (this node, expired), so that
		// it does not restore the session when it returns, and the copy of
		// its queue
		s.n.log.Debug("cluster: the node holding a session did not answer; ended its record", "client", cl.ID, "holder", rec.Node, "error", err)
		val, _ := json.Marshal(sessionRecord{Node: s.n.name, Client: cl.ID, Gone: 1})
		if _, err := s.kv.Put(ctx, sessionPrefix+sessionKey(cl.ID), val); err != nil {
			s.n.log.Warn("cluster: could not end a session's record", "client", cl.ID, "error", err)
		}
		if _, keys, err := s.queue.load(ctx, cl.ID); err == nil {
			s.queue.purge(ctx, keys)
		}
	}
}

// lookup reads the record of a session key; ok is false when there is
// none, or it expired.
func (s *Sessions) lookup(ctx context.Context, clientID string) (sessionRecord, bool) {
	var rec sessionRecord
	e, err := s.kv.Get(ctx, sessionPrefix+sessionKey(clientID))
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			s.n.log.Warn("cluster: could not read a session's record; the client starts without it", "client", clientID, "error", err)
		}
		return rec, false
	}
	if json.Unmarshal(e.Value(), &rec) != nil || rec.Client != clientID || rec.expired(time.Now()) {
		return rec, false
	}
	return rec, true
}

// installSubs adds rec's subscriptions to old, an offline session of the
// connecting client's id, for mochi to inherit.
func (s *Sessions) installSubs(old *mqtt.Client, rec sessionRecord) {
	srv := s.n.d.Server
	for _, sub := range rec.Subs {
		if srv.Topics.Subscribe(old.ID, sub) {
			atomic.AddInt64(&srv.Info.Subscriptions, 1)
		}
		old.State.Subscriptions.Add(sub.Filter, sub)
	}
}

// installQueue adds a moved session's queue to old with packet ids free
// there. A message cl may not read is left out; one that expired on the
// way is dropped as mochi drops it, so the broker answers "expired" for
// a command, once.
func (s *Sessions) installQueue(old, cl *mqtt.Client, from string, queue []packets.Packet) {
	installed := 0
	for _, m := range queue {
		if _, ok := s.enqueue(old, cl, m); ok {
			installed++
		}
	}
	dropped := old.ClearExpiredInflights(time.Now().Unix(), s.n.d.Server.Options.Capabilities.MaximumMessageExpiryInterval)
	s.n.log.Info("cluster: session moved to this node", "client", old.ID, "from", from,
		"subscriptions", old.State.Subscriptions.Len(), "queued", installed-len(dropped), "expired", len(dropped))
}

// enqueue adds m, a message moved or recovered for a session, to into's
// queue with a packet id free there, unless it is not a publish or reader,
// the session's connecting or connected client, may not read it.
func (s *Sessions) enqueue(into, reader *mqtt.Client, m packets.Packet) (packets.Packet, bool) {
	if m.FixedHeader.Type != packets.Publish {
		return m, false
	}
	if s.n.d.CanRead != nil && !s.n.d.CanRead(reader, m.TopicName) {
		s.n.log.Info("cluster: left out a queued message the client may no longer read", "client", into.ID, "topic", m.TopicName)
		return m, false
	}
	id, err := into.NextPacketID()
	if err != nil {
		s.n.log.Warn("cluster: no packet id left for a message of a moved session", "client", into.ID, "topic", m.TopicName)
		return m, false
	}
	m.PacketID = uint16(id)
	if m.ProtocolVersion == 0 {
		m.ProtocolVersion = into.Properties.ProtocolVersion
	}
	if into.State.Inflight.Set(m) {
		atomic.AddInt64(&s.n.d.Server.Info.Inflight, 1)
	}
	return m, true
}

// OnSessionEstablished records a persistent session as this node's, with
// the subscriptions it inherited.
func (s *Sessions) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline || !persistentSession(cl) {
		return
	}
	if _, ok := s.moved.LoadAndDelete(cl.ID); ok && s.n.d.Adopt != nil && cl.State.Subscriptions.Len() > 0 {
		// this node's store has not seen the subscriptions of a moved session
		var subs packets.Subscriptions
		for _, sub := range cl.State.Subscriptions.GetAll() {
			subs = append(subs, sub)
		}
		s.n.d.Adopt(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}, Filters: subs})
	}
	s.record(cl, 0)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	s.queue.removeAll(ctx, cl.ID) // online: its queue is the connection's
}

// OnSubscribed records a persistent session's new subscriptions.
func (s *Sessions) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) {
	if !cl.Net.Inline && persistentSession(cl) && !s.handingOver(cl) {
		s.record(cl, 0)
	}
}

// OnUnsubscribed records a persistent session's remaining subscriptions.
func (s *Sessions) OnUnsubscribed(cl *mqtt.Client, _ packets.Packet) {
	if !cl.Net.Inline && !cl.Closed() && persistentSession(cl) && !s.handingOver(cl) {
		s.record(cl, 0)
	}
}

// OnDisconnect records when a persistent session went offline (its expiry
// counts from then), or deletes the record of one that ends.
func (s *Sessions) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	s.mu.Lock()
	done, handing := s.handing[cl]
	s.mu.Unlock()
	if handing {
		close(done)
		return
	}
	if cl.Net.Inline || cl.Net.Conn == nil || cl.StopCause() == packets.ErrSessionTakenOver {
		return // a session mochi restores from its store, or one whose successor records it
	}
	if expire {
		s.forget(cl.ID)
		return
	}
	if persistentSession(cl) {
		s.mirror(cl)
		s.record(cl, time.Now().Unix())
	}
}

// restoreRights gives a session restored from the store the rights its
// record kept, so that what other nodes sent it while this node was down
// is judged with them, not refused; false if the record kept none.
func (s *Sessions) restoreRights(clientID string) bool {
	if s.n.d.RestoreRights == nil {
		return false
	}
	var rec sessionRecord
	if v, read := s.restoring.LoadAndDelete(clientID); read {
		rec = v.(sessionRecord) // read by Elsewhere while the store was loaded
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		rec, _ = s.lookup(ctx, clientID)
	}
	if rec.Node != s.n.name || rec.Claims == nil || rec.expired(time.Now()) {
		return false
	}
	s.n.d.RestoreRights(clientID, rec.Claims)
	return true
}

// Elsewhere reports whether another node holds the session of clientID
// now: this node's store does not restore it (hooks.Store.Elsewhere).
func (s *Sessions) Elsewhere(clientID string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	e, err := s.kv.Get(ctx, sessionPrefix+sessionKey(clientID))
	if err != nil {
		s.restoring.Store(clientID, sessionRecord{}) // none: nothing to read again at OnStarted
		return false
	}
	var rec sessionRecord
	if json.Unmarshal(e.Value(), &rec) != nil || rec.Client != clientID {
		s.restoring.Store(clientID, sessionRecord{})
		return false
	}
	if rec.Node != s.n.name {
		return true
	}
	s.restoring.Store(clientID, rec) // restored: OnStarted gives it its rights
	return false
}

// OnStarted runs once mochi restored this node's sessions from its store:
// it notes the copies of their queues this node wrote before it stopped,
// then starts receiving the other nodes' messages, so that those sent
// while this node was down reach the sessions it restored.
func (s *Sessions) OnStarted() {
	restored, judged := 0, 0
	for _, cl := range s.n.d.Server.Clients.GetAll() {
		if cl.Net.Inline {
			continue
		}
		if cl.State.Inflight.Len() > 0 {
			s.queue.adopt(cl)
		}
		restored++
		if s.restoreRights(cl.ID) {
			judged++
		}
	}
	s.restoring.Clear()
	if restored > 0 {
		s.n.log.Info("cluster: sessions restored from the store", "sessions", restored, "with their rights", judged)
	}
	if s.n.hook != nil {
		s.n.hook.start()
	}
}

// OnClientExpired deletes the record of a session mochi expired.
func (s *Sessions) OnClientExpired(cl *mqtt.Client) { s.forget(cl.ID) }

// record writes cl's session as this node's.
func (s *Sessions) record(cl *mqtt.Client, gone int64) {
	rec := sessionRecord{Node: s.n.name, Client: cl.ID, Expiry: s.expiryOf(cl), Gone: gone}
	if gone > 0 && s.n.d.OfflineClaims != nil {
		rec.Claims, _ = s.n.d.OfflineClaims(cl.ID)
	}
	for _, sub := range cl.State.Subscriptions.GetAll() {
		rec.Subs = append(rec.Subs, sub)
	}
	val, _ := json.Marshal(rec)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := s.kv.Put(ctx, sessionPrefix+sessionKey(cl.ID), val); err != nil {
		s.n.log.Warn("cluster: could not record a session; on another node its client would start without it", "client", cl.ID, "error", err)
		return
	}
	s.recorded.Store(cl.ID, struct{}{})
}

// forget deletes the record of a session this node recorded, if it still
// names this node.
func (s *Sessions) forget(clientID string) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	s.queue.removeAll(ctx, clientID)
	if _, ok := s.recorded.LoadAndDelete(clientID); !ok {
		return
	}
	key := sessionPrefix + sessionKey(clientID)
	e, err := s.kv.Get(ctx, key)
	if err != nil {
		return
	}
	var rec sessionRecord
	if json.Unmarshal(e.Value(), &rec) == nil && rec.Node != s.n.name {
		return
	}
	if err := s.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil && !conflict(err) {
		s.n.log.Debug("cluster: could not delete a session's record (it ages out)", "client", clientID, "error", err)
	}
}
