package hooks

import (
	"bytes"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.etcd.io/bbolt"
)

// StoreFile is the MQTT state in the data folder: sessions, subscriptions,
// retained messages and QoS 1/2 messages in flight or queued for offline
// sessions (docs/operations.md says what is in it).
const StoreFile = "store.db"

// walPrefix marks the records of acknowledged publishes not yet handed to
// every subscriber: they are stored as in-flight messages of a pseudo
// client "$wal/{publisher}", a client id no token can have.
const walPrefix = "$wal/"

// Store is mochi's bbolt storage hook with what homemq needs on top:
//   - no secret reaches the disk: a client record is written without its
//     user name and MQTT 5 authentication data (a token when a client
//     authenticates with method homemq-jwt);
//   - no acknowledged QoS 1/2 message is lost by a crash: mochi sends the
//     PUBACK before it queues the message for subscribers, so the message
//     is written first (a write-ahead record) and replayed at start if the
//     crash came in between; the transient record mochi writes and deletes
//     for each inbound QoS 1 PUBACK is skipped instead;
//   - what mochi's bolt hook loses is restored: packet ids of in-flight
//     messages (so queued messages do not collapse into one) and message
//     expiry, so a command whose envelope expired while the broker was down
//     is dropped, never delivered;
//   - nothing is written while idle ($SYS info is not stored), and expired
//     sessions take their subscriptions and queued messages with them.
//
// The crash window and what the bolt hook loses are mochi's; not reported
// upstream (checked 2026-11).
//
// Add it to the server after the Guard and before Serve, which reads it.
type Store struct {
	*bolt.Hook
	server  *mqtt.Server
	pending []storage.Message // write-ahead records found at start
	skipped sync.Map          // inbound QoS 1 acks not stored, by storeKey
	logged  sync.Map          // write-ahead records written, by storeKey
	stored  sync.Map          // client ids with a session record on disk

	// Elsewhere, when set before Serve, reports whether another node of a
	// cluster holds a stored session now (it took the session while this
	// node was down): such a session is not restored, and its records are
	// deleted (docs/cluster.md).
	Elsewhere func(clientID string) bool
	moved     map[string]bool // sessions Elsewhere named at start
}

// NewStore returns the storage hook for server.
func NewStore(server *mqtt.Server) *Store {
	return &Store{Hook: new(bolt.Hook), server: server}
}

// StoreOptions returns the hook options for the store in the data folder.
func StoreOptions(data string) *bolt.Options {
	return &bolt.Options{
		Path:    filepath.Join(data, StoreFile),
		Options: &bbolt.Options{Timeout: 2 * time.Second, FreelistType: bbolt.FreelistMapType},
	}
}

// ID names the hook.
func (s *Store) ID() string { return "homemq-store" }

// Provides lists the hook methods of mochi's bolt hook, without the $SYS
// info writes, plus the write-ahead records around a publish.
func (s *Store) Provides(b byte) bool {
	switch b {
	case mqtt.OnSysInfoTick:
		return false
	case mqtt.OnPublish, mqtt.OnPublished:
		return true
	}
	return s.Hook.Provides(b)
}

// Stop waits (up to a few seconds) for the connections mochi is closing to
// finish their last writes (mochi counts a connection out after its
// OnDisconnect hooks ran), then closes the file.
func (s *Store) Stop() error {
	for deadline := time.Now().Add(5 * time.Second); atomic.LoadInt64(&s.server.Info.ClientsConnected) > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	return s.Hook.Stop()
}

func storeKey(clientID string, id uint16) string {
	return clientID + ":" + strconv.Itoa(int(id))
}

// storable is the part of a client that is written to disk: no user name
// and no authentication data.
func storable(cl *mqtt.Client) *mqtt.Client {
	p := cl.Properties.Props.Copy(false)
	p.AuthenticationData = nil
	w := &cl.Properties.Will
	return &mqtt.Client{
		ID:  cl.ID,
		Net: mqtt.ClientConnection{Remote: cl.Net.Remote, Listener: cl.Net.Listener},
		Properties: mqtt.ClientProperties{
			Props:           p,
			ProtocolVersion: cl.Properties.ProtocolVersion,
			Clean:           cl.Properties.Clean,
			Will: mqtt.Will{Payload: w.Payload, User: w.User, TopicName: w.TopicName, Flag: atomic.LoadUint32(&w.Flag),
				WillDelayInterval: w.WillDelayInterval, Qos: w.Qos, Retain: w.Retain},
		},
	}
}

// OnSessionEstablished stores the client without its secrets.
// A session that ends with its connection (MQTT 5 session expiry 0, or
// clean session in 3.1.1) is not written at all: nothing of it could be
// restored, and each write is an fsync. A stale record of an earlier
// persistent session with the same client id is deleted instead.
func (s *Store) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if !persistentClient(cl) {
		if _, ok := s.stored.LoadAndDelete(cl.ID); ok {
			s.Hook.OnDisconnect(storable(cl), nil, true)
		}
		return
	}
	s.stored.Store(cl.ID, struct{}{})
	s.Hook.OnSessionEstablished(storable(cl), pk)
}

// OnWillSent stores the client, now without its will, without its secrets.
func (s *Store) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if persistentClient(cl) {
		s.Hook.OnWillSent(storable(cl), pk)
	}
}

// OnDisconnect forgets a stored session that ends now.
func (s *Store) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if _, ok := s.stored.Load(cl.ID); ok && expire && cl.StopCause() != packets.ErrSessionTakenOver {
		s.stored.Delete(cl.ID)
		s.Hook.OnDisconnect(cl, err, expire)
	}
}

// OnSubscribed stores the subscriptions of a persistent session.
func (s *Store) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	if persistentClient(cl) {
		s.Hook.OnSubscribed(cl, pk, reasonCodes)
	}
}

// OnUnsubscribed deletes stored subscriptions.
func (s *Store) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if _, ok := s.stored.Load(cl.ID); ok {
		s.Hook.OnUnsubscribed(cl, pk)
	}
}

// StoredClients reads the stored sessions and remembers their ids.
func (s *Store) StoredClients() ([]storage.Client, error) {
	v, err := s.Hook.StoredClients()
	keep := v[:0]
	for _, c := range v {
		if s.Elsewhere != nil && s.Elsewhere(c.ID) {
			if s.moved == nil {
				s.moved = map[string]bool{}
			}
			s.moved[c.ID] = true
			s.Hook.OnClientExpired(&mqtt.Client{ID: c.ID})
			continue
		}
		s.stored.Store(c.ID, struct{}{})
		keep = append(keep, c)
	}
	return keep, err
}

// StoredSubscriptions reads the stored subscriptions, minus (deleted)
// those of sessions another node holds now.
func (s *Store) StoredSubscriptions() ([]storage.Subscription, error) {
	v, err := s.Hook.StoredSubscriptions()
	keep := v[:0]
	for _, sub := range v {
		if s.moved[sub.Client] {
			s.Hook.OnUnsubscribed(&mqtt.Client{ID: sub.Client}, packets.Packet{Filters: packets.Subscriptions{{Filter: sub.Filter}}})
			continue
		}
		keep = append(keep, sub)
	}
	return keep, err
}

// OnQosPublish stores an in-flight message, except the PUBACK mochi holds
// for a moment while it answers an inbound QoS 1 publish: the write-ahead
// record covers that message.
func (s *Store) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, resends int) {
	if !persistentClient(cl) {
		return // nothing of a session that ends with its connection is restored
	}
	if pk.FixedHeader.Type == packets.Puback {
		s.skipped.Store(storeKey(cl.ID, pk.PacketID), struct{}{})
		return
	}
	s.Hook.OnQosPublish(cl, pk, sent, resends)
}

// OnQosComplete deletes a completed in-flight message.
func (s *Store) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if !persistentClient(cl) {
		return
	}
	if _, ok := s.skipped.LoadAndDelete(storeKey(cl.ID, pk.PacketID)); ok {
		return
	}
	s.Hook.OnQosComplete(cl, pk)
}

// OnQosDropped deletes a dropped in-flight message of a persistent session.
func (s *Store) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if persistentClient(cl) {
		s.Hook.OnQosDropped(cl, pk)
	}
}

// OnPublish writes a QoS 1/2 publish that the Guard accepted, before mochi
// acknowledges it, when a session that outlives the connection is waiting
// for it. It runs after the Guard, so refused publishes never get here.
func (s *Store) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Qos == 0 || cl.Net.Inline || !s.persistentSubscriber(pk.TopicName) {
		return pk, nil
	}
	s.Hook.OnQosPublish(&mqtt.Client{ID: walPrefix + cl.ID}, pk, pk.Created, 0)
	s.logged.Store(storeKey(cl.ID, pk.PacketID), struct{}{})
	return pk, nil
}

// OnPublished deletes the write-ahead record once mochi has queued the
// message for every subscriber (and stored it for the offline ones).
func (s *Store) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Qos == 0 || cl.Net.Inline {
		return
	}
	if _, ok := s.logged.LoadAndDelete(storeKey(cl.ID, pk.PacketID)); ok {
		s.Hook.OnQosComplete(&mqtt.Client{ID: walPrefix + cl.ID}, pk)
	}
}

// persistentSubscriber reports whether a QoS 1/2 subscription of a session
// that survives its connection matches topic: only such a session can
// lose the message in a crash.
func (s *Store) persistentSubscriber(topic string) bool {
	subs := s.server.Topics.Subscribers(topic)
	for id, sub := range subs.Subscriptions {
		if sub.Qos > 0 && s.persistent(id) {
			return true
		}
	}
	for _, group := range subs.Shared {
		for id, sub := range group {
			if sub.Qos > 0 && s.persistent(id) {
				return true
			}
		}
	}
	return false
}

func (s *Store) persistent(clientID string) bool {
	cl, ok := s.server.Clients.Get(clientID)
	return ok && persistentClient(cl)
}

// persistentClient reports whether cl's session outlives its connection.
func persistentClient(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// OnClientExpired deletes an expired session with its subscriptions and
// queued messages (mochi forgets only the session itself).
func (s *Store) OnClientExpired(cl *mqtt.Client) {
	s.Hook.OnClientExpired(cl)
	s.server.UnsubscribeClient(cl)
	cl.ClearInflights()
}

// expiry returns when a stored message expires (0: never), as mochi
// computes it at publish time.
func (s *Store) expiry(m storage.Message) int64 {
	limit := s.server.Options.Capabilities.MaximumMessageExpiryInterval
	iv := int64(m.Properties.MessageExpiryInterval)
	if limit > 0 && (iv == 0 || iv > limit) {
		iv = limit
	}
	if iv == 0 {
		return 0
	}
	return m.Created + iv
}

// packetIDOf reads the packet id from a stored in-flight message's key,
// "IFM_{client}:{packet id}"; mochi's bolt hook does not store it.
func packetIDOf(key string) (uint16, bool) {
	i := strings.LastIndexByte(key, ':')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(key[i+1:], 10, 16)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint16(n), true
}

// StoredInflightMessages returns the stored in-flight messages with their
// packet ids, minus those that expired while the broker was down (deleted)
// and minus the write-ahead records (kept for replay).
func (s *Store) StoredInflightMessages() ([]storage.Message, error) {
	all, err := s.Hook.StoredInflightMessages()
	if err != nil {
		return nil, err
	}
	now := time.Now().Unix()
	keep := all[:0]
	for _, m := range all {
		id, ok := packetIDOf(m.ID)
		if !ok {
			s.Log.Warn("store: skipping an in-flight record without a packet id", "key", m.ID)
			continue
		}
		m.PacketID = id
		if strings.HasPrefix(m.Client, walPrefix) {
			s.pending = append(s.pending, m)
			continue
		}
		if s.moved[m.Client] {
			s.Hook.OnQosDropped(&mqtt.Client{ID: m.Client}, packets.Packet{PacketID: id})
			continue
		}
		if exp := s.expiry(m); m.FixedHeader.Type == packets.Publish && exp > 0 && exp <= now {
			s.Hook.OnQosDropped(&mqtt.Client{ID: m.Client}, packets.Packet{PacketID: id})
			continue
		}
		keep = append(keep, m)
	}
	return keep, nil
}

// StoredRetainedMessages returns the stored retained messages minus those
// that expired while the broker was down (deleted).
func (s *Store) StoredRetainedMessages() ([]storage.Message, error) {
	all, err := s.Hook.StoredRetainedMessages()
	if err != nil {
		return nil, err
	}
	now := time.Now().Unix()
	keep := all[:0]
	for _, m := range all {
		if exp := s.expiry(m); exp > 0 && exp <= now {
			s.Hook.OnRetainedExpired(m.TopicName)
			continue
		}
		keep = append(keep, m)
	}
	return keep, nil
}

// StoredSysInfo finishes loading, after mochi has loaded sessions,
// subscriptions, in-flight and retained messages and before it starts the
// listeners: it replays the write-ahead records, gives the loaded messages
// back the expiry mochi's storage format drops, and returns the counts of
// what was loaded (no $SYS info is stored).
func (s *Store) StoredSysInfo() (storage.SystemInfo, error) {
	s.replay()
	s.restoreExpiry()
	var info storage.SystemInfo
	info.Retained = int64(s.server.Topics.Retained.Len())
	for _, cl := range s.server.Clients.GetAll() {
		info.Inflight += int64(cl.State.Inflight.Len())
		info.Subscriptions += int64(cl.State.Subscriptions.Len())
	}
	return info, nil
}

// replay queues again each acknowledged message that may not have reached
// every subscriber before a crash (a subscriber may get it twice, as QoS 1
// allows) unless it has expired, and deletes its record. It runs before
// the listeners start, so every session is a restored, offline one; the
// message goes straight into their queues, as mochi would have queued it,
// for the subscriptions (authorized when they were made) that match it.
// The Guard does not judge restored sessions, whose owners' rights it only
// learns at their next CONNECT; an acknowledged message must not be lost.
func (s *Store) replay() {
	now := time.Now().Unix()
	for _, m := range s.pending {
		if exp := s.expiry(m); exp == 0 || exp > now {
			pk := m.ToPacket()
			pk.Origin = strings.TrimPrefix(m.Client, walPrefix)
			pk.Expiry = exp
			// mochi honours message expiry only on MQTT 5 packets (https://github.com/mochi-mqtt/server/issues/444).
			pk.ProtocolVersion = 5
			s.requeue(pk)
		}
		s.Hook.OnQosComplete(&mqtt.Client{ID: m.Client}, packets.Packet{PacketID: m.PacketID})
	}
	s.pending = nil
}

// requeue adds pk to the queue of every session with a QoS 1/2
// subscription that matches it (one member per shared group), and stores it.
func (s *Store) requeue(pk packets.Packet) {
	subs := s.server.Topics.Subscribers(pk.TopicName)
	subs.SelectShared()
	subs.MergeSharedSelected()
	for id, sub := range subs.Subscriptions {
		cl, ok := s.server.Clients.Get(id)
		if !ok || sub.Qos == 0 || sub.NoLocal && pk.Origin == id || holds(cl, pk) {
			continue
		}
		out := pk.Copy(false)
		out.FixedHeader.Qos = min(pk.FixedHeader.Qos, sub.Qos)
		out.FixedHeader.Retain = pk.FixedHeader.Retain && sub.RetainAsPublished && cl.Properties.ProtocolVersion == 5
		out.FixedHeader.Dup = false
		for _, n := range sub.Identifiers {
			out.Properties.SubscriptionIdentifier = append(out.Properties.SubscriptionIdentifier, n)
		}
		n, err := cl.NextPacketID()
		if err != nil {
			s.Log.Warn("store: no packet id left to requeue an acknowledged publish", "client", id, "topic", pk.TopicName)
			continue
		}
		out.PacketID = uint16(n)
		cl.State.Inflight.Set(out)
		s.Hook.OnQosPublish(cl, out, out.Created, 0)
	}
}

// holds reports whether cl's restored queue already has pk: the crash came
// after the message was queued for cl and stored, but before its
// write-ahead record was deleted. Queuing it again would deliver it twice.
func holds(cl *mqtt.Client, pk packets.Packet) bool {
	for _, q := range cl.State.Inflight.GetAll(false) {
		if q.TopicName == pk.TopicName && q.Origin == pk.Origin && bytes.Equal(q.Payload, pk.Payload) {
			return true
		}
	}
	return false
}

// restoreExpiry sets the expiry of loaded in-flight and retained messages
// from their creation time and message expiry interval, which is what
// mochi's expiry sweep looks at.
func (s *Store) restoreExpiry() {
	restore := func(pk *packets.Packet) bool {
		if pk.Expiry != 0 || pk.FixedHeader.Type != packets.Publish {
			return false
		}
		m := storage.Message{Created: pk.Created, Properties: storage.MessageProperties{MessageExpiryInterval: pk.Properties.MessageExpiryInterval}}
		if pk.Expiry = s.expiry(m); pk.Expiry == 0 {
			return false
		}
		// mochi honours message expiry only on MQTT 5 packets (https://github.com/mochi-mqtt/server/issues/444).
		pk.ProtocolVersion = 5
		return true
	}
	for _, cl := range s.server.Clients.GetAll() {
		for _, pk := range cl.State.Inflight.GetAll(false) {
			if restore(&pk) {
				cl.State.Inflight.Set(pk)
			}
		}
	}
	for topic, pk := range s.server.Topics.Retained.GetAll() {
		if restore(&pk) {
			s.server.Topics.Retained.Add(topic, pk)
		}
	}
}
