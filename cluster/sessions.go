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
// then inherits, so the client finds it with session present. A holder
// that does not answer leaves the node the record's subscriptions. A
// clean start ends the session on its holder, as mochi ends a local one.
type Sessions struct {
	mqtt.HookBase
	n     *Node
	kv    jetstream.KeyValue
	sub   *nats.Subscription
	token string // this node's subject token

	mu       sync.Mutex
	handing  map[*mqtt.Client]chan struct{} // sessions being handed to another node; closed at their OnDisconnect
	recorded sync.Map                       // session key -> struct{}: this node wrote its record
	moved    sync.Map                       // session key -> struct{}: installed from another node, not yet established
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
		mqtt.OnUnsubscribed, mqtt.OnDisconnect, mqtt.OnClientExpired, mqtt.OnStarted}, []byte{b})
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
// messages sent after the CONNACK). A session this node restored from its
// store that has since moved to another node (this node was down) gets
// that node's subscriptions and queue added.
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
		return
	}
	var queue []packets.Packet
	if rec.Node != s.n.name {
		r, err := s.take(cl.ID, rec.Node)
		switch {
		case err != nil && held:
			return // keep the restored session as it is
		case err != nil:
			s.n.log.Warn("cluster: the node holding a session did not hand it over; the client gets its recorded subscriptions, not its queue",
				"client", cl.ID, "holder", rec.Node, "error", err)
		case !r.Found:
			return // the holder has no such session (expired, or cleaned): a new one
		default:
			rec, queue = r.Session, r.Queue
		}
	}
	if !held {
		local = s.n.d.Server.NewClient(nil, cl.Net.Listener, cl.ID, false)
		local.Properties.ProtocolVersion = cl.Properties.ProtocolVersion
		local.Properties.Props.SessionExpiryInterval, local.Properties.Props.SessionExpiryIntervalFlag = rec.Expiry, true
		local.Stop(packets.ErrSessionTakenOver)
	}
	s.install(local, rec, queue)
	if !held {
		s.n.d.Server.Clients.Add(local)
	}
	s.moved.Store(cl.ID, struct{}{})
	if s.n.hook == nil {
		return // a unit test's node
	}
	if err := s.n.hook.refresh(ctx); err != nil {
		s.n.log.Warn("cluster: could not update this node's interest for a moved session", "error", err)
		s.n.hook.poke()
	}
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
		s.n.log.Debug("cluster: the node holding a session did not end it; it expires there", "client", cl.ID, "holder", rec.Node, "error", err)
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

// take asks node for the session of clientID.
func (s *Sessions) take(clientID, node string) (takeReply, error) {
	var r takeReply
	msg, err := s.n.nc.Request(takePrefix+nodeToken(node)+"."+sessionKey(clientID), []byte(clientID), takeTimeout)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return r, fmt.Errorf("malformed session from %s: %w", node, err)
	}
	return r, nil
}

// install adds rec's subscriptions and queue to old, an offline session
// of the connecting client's id, for mochi to inherit. Queued messages get
// packet ids free in old.
func (s *Sessions) install(old *mqtt.Client, rec sessionRecord, queue []packets.Packet) {
	srv := s.n.d.Server
	for _, sub := range rec.Subs {
		if srv.Topics.Subscribe(old.ID, sub) {
			atomic.AddInt64(&srv.Info.Subscriptions, 1)
		}
		old.State.Subscriptions.Add(sub.Filter, sub)
	}
	now := time.Now().Unix()
	for _, m := range queue {
		if m.FixedHeader.Type != packets.Publish || m.Expiry > 0 && m.Expiry <= now {
			continue // expired while queued: never delivered
		}
		id, err := old.NextPacketID()
		if err != nil {
			s.n.log.Warn("cluster: no packet id left for a message of a moved session", "client", old.ID, "topic", m.TopicName)
			continue
		}
		m.PacketID = uint16(id)
		old.State.Inflight.Set(m)
		atomic.AddInt64(&srv.Info.Inflight, 1)
	}
	s.n.log.Info("cluster: session moved to this node", "client", old.ID, "from", rec.Node,
		"subscriptions", len(rec.Subs), "queued", len(queue))
}

// serveTake hands a session this node holds to the node asking for it:
// it disconnects the session's connection (0x8E), stops queueing for it,
// and answers with its subscriptions and queue, then forgets it.
func (s *Sessions) serveTake(msg *nats.Msg) {
	id := string(msg.Data)
	reply := func(r takeReply) {
		b, _ := json.Marshal(r)
		_ = msg.Respond(b)
	}
	srv := s.n.d.Server
	cl, ok := srv.Clients.Get(id)
	if !ok || cl.Net.Inline || takePrefix+s.token+"."+sessionKey(id) != msg.Subject {
		reply(takeReply{})
		return
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.handing[cl] = done
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.handing, cl)
		s.mu.Unlock()
	}()
	if !cl.Closed() {
		s.n.clients.disconnect(cl)
		select { // its hooks run: nothing of it is written after the hand-over
		case <-done:
		case <-time.After(opTimeout):
		}
	}
	rec := sessionRecord{Node: s.n.name, Client: id, Expiry: s.expiryOf(cl)}
	for _, sub := range cl.State.Subscriptions.GetAll() {
		rec.Subs = append(rec.Subs, sub)
	}
	srv.UnsubscribeClient(cl) // nothing more is queued for it here
	now := time.Now().Unix()
	var queue []packets.Packet
	for _, m := range cl.State.Inflight.GetAll(false) {
		if m.FixedHeader.Type == packets.Publish && (m.Expiry == 0 || m.Expiry > now) {
			queue = append(queue, m)
		}
	}
	srv.Clients.Delete(id)
	cl.ClearInflights()
	if s.n.d.Forget != nil {
		s.n.d.Forget(cl)
	}
	s.forget(id) // the taker records it again, unless it ends it
	reply(takeReply{Found: true, Session: rec, Queue: queue})
	s.n.log.Info("cluster: session handed to another node", "client", id, "subscriptions", len(rec.Subs), "queued", len(queue))
}

// expiryOf is the session expiry interval of cl, as mochi applies it.
func (s *Sessions) expiryOf(cl *mqtt.Client) uint32 {
	limit := s.n.d.Server.Options.Capabilities.MaximumSessionExpiryInterval
	if cl.Properties.ProtocolVersion == 5 {
		return min(cl.Properties.Props.SessionExpiryInterval, limit)
	}
	return limit
}

// handingOver reports whether cl's session is being handed to another node.
func (s *Sessions) handingOver(cl *mqtt.Client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.handing[cl]
	return ok
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
		s.record(cl, time.Now().Unix())
	}
}

// OnStarted runs once mochi restored this node's sessions from its store,
// and starts receiving the other nodes' messages, so that those sent while
// this node was down reach the sessions it restored.
func (s *Sessions) OnStarted() {
	if s.n.hook != nil {
		s.n.hook.start()
	}
}

// OnClientExpired deletes the record of a session mochi expired.
func (s *Sessions) OnClientExpired(cl *mqtt.Client) { s.forget(cl.ID) }

// record writes cl's session as this node's.
func (s *Sessions) record(cl *mqtt.Client, gone int64) {
	rec := sessionRecord{Node: s.n.name, Client: cl.ID, Expiry: s.expiryOf(cl), Gone: gone}
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
	if _, ok := s.recorded.LoadAndDelete(clientID); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
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
