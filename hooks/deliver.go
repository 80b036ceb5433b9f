package hooks

import (
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/decision"
	"homemq/topics"
)

// Rights that end. A message is judged when it is queued for a session
// (OnACLCheck), but it may wait: in flight for an offline session, handed
// on to the connection that takes the session over, or restored from the
// store after a restart. mochi resends those (Client.ResendInflightMessages)
// without asking any hook, so the Guard judges them again:
//   - when a connection is accepted, between mochi taking the old session
//     over (Server.inheritClientSession) and resending its in-flight
//     messages: at the CONNACK, the first packet written (dropSession);
//   - when a re-authentication changes the rights (OnAuthPacket);
//   - as a last line, every PUBLISH written to a client (OnPacketEncode).
// What the current token may not read is dropped from the session, and the
// subscriptions it may no longer hold are removed.

// SessionStore is the part of a storage hook that must hear of messages
// and subscriptions the Guard takes out of a session, so that a restart
// does not bring them back. mochi's hooks are not reachable from a hook,
// so the broker hands its storage hook to the Guard with UseStore.
type SessionStore interface {
	OnQosDropped(cl *mqtt.Client, pk packets.Packet)
	OnUnsubscribed(cl *mqtt.Client, pk packets.Packet)
}

// UseStore makes the Guard tell st what it drops from sessions. Call it
// before the server serves.
func (g *Guard) UseStore(st SessionStore) { g.store = st }

// dropUnreadable takes out of cl's session the in-flight and queued
// messages that gr may not read and the subscriptions it may not hold.
func (g *Guard) dropUnreadable(cl *mqtt.Client, s *session, gr *grant) {
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type != packets.Publish {
			continue // a PUBREL: the message was delivered already
		}
		if topic, ok := s.topicOf(pk); ok && readable(gr, topic) {
			continue
		}
		g.dropInflight(cl, gr, pk)
	}
	var gone []packets.Subscription
	for filter, sub := range cl.State.Subscriptions.GetAll() {
		d := topics.Authorize(gr.identity, topics.Subscribe, filter, false)
		if d.Allow {
			continue
		}
		cl.State.Subscriptions.Delete(filter)
		if g.server.Topics.Unsubscribe(filter, cl.ID) {
			atomic.AddInt64(&g.server.Info.Subscriptions, -1)
		}
		gone = append(gone, sub)
		g.emit(cl, gr, decision.Event{Kind: decision.EventSubscribe, Reason: "rights", Detail: "subscription removed: " + d.Reason, Topic: filter})
	}
	if len(gone) > 0 && g.store != nil {
		g.store.OnUnsubscribed(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe}, Filters: gone})
	}
}

// dropInflight deletes one in-flight message of cl and tells the store.
func (g *Guard) dropInflight(cl *mqtt.Client, gr *grant, pk packets.Packet) {
	if !cl.State.Inflight.Delete(pk.PacketID) {
		return
	}
	atomic.AddInt64(&g.server.Info.Inflight, -1)
	if pk.Expiry >= 0 { // -1: held back for the client's receive maximum, never sent
		cl.State.Inflight.IncreaseSendQuota()
	}
	if g.store != nil {
		g.store.OnQosDropped(cl, pk)
	}
	g.emit(cl, gr, decision.Event{Kind: decision.EventDelivery, Reason: "rights", Detail: "queued message dropped: the token may not read it", Topic: pk.TopicName})
}

// readable reports whether gr may read topic now.
func readable(gr *grant, topic string) bool {
	return topics.Authorize(gr.identity, topics.Subscribe, topic, false).Allow
}

// outAlias is an outbound topic alias mochi assigned on a connection.
type outAlias struct {
	topic string
	told  bool // a PUBLISH that sets it was written to the client
}

// topicOf returns the topic of an outbound PUBLISH, also when mochi sent
// it with an empty name and a topic alias this connection learnt before.
func (s *session) topicOf(pk packets.Packet) (string, bool) {
	if pk.TopicName != "" {
		return pk.TopicName, true
	}
	if pk.Properties.TopicAlias == 0 {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.aliases[pk.Properties.TopicAlias]
	if !ok {
		return "", false
	}
	return a.topic, true
}

// noteAlias keeps track of the outbound topic alias of pk, which is
// written if write. A PUBLISH that would have set an alias may have been
// withheld: the first one written with that alias then carries the topic
// name again, so that the client learns it.
func (s *session) noteAlias(pk *packets.Packet, write bool) {
	id := pk.Properties.TopicAlias
	if id == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.aliases[id]
	if !ok {
		if pk.TopicName == "" {
			return
		}
		if s.aliases == nil {
			s.aliases = map[uint16]*outAlias{}
		}
		a = &outAlias{topic: pk.TopicName}
		s.aliases[id] = a
	}
	if write {
		if pk.TopicName == "" && !a.told {
			pk.TopicName = a.topic
		}
		a.told = true
	}
}

// checkDelivery is the last line: a PUBLISH about to be written to a client
// whose current token may not read its topic is withheld (and dropped from
// the session). mochi's OnPacketEncode cannot cancel a write, and making
// the encoding fail would leave what Client.WritePacket buffered before it
// (an AUTH answer, say) unflushed until some later write, and would end the
// connection when it happens in Client.ResendInflightMessages. So the
// PUBLISH is replaced by a PINGRESP: two bytes every client ignores that
// carry nothing and flush the buffer. Not reported upstream (checked 2026-11).
func (g *Guard) checkDelivery(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	s := g.session(cl)
	var gr *grant
	var gen uint64
	ok := false
	if s != nil {
		gen = s.rights.Load() // before the grant (aclcache.go)
		gr, ok = s.alive(g.now().UnixNano())
	}
	topic, known := "", false
	if s != nil {
		topic, known = s.topicOf(pk)
	}
	if ok && known && s.readableCached(gen, gr, topic) {
		s.noteAlias(&pk, true)
		return pk
	}
	if s != nil {
		s.noteAlias(&pk, false)
	}
	if s != nil && pk.FixedHeader.Qos > 0 {
		if gr == nil {
			gr = s.grant.Load()
		}
		g.dropInflight(cl, gr, pk)
	}
	return withheld(pk)
}

// withheld is what is written instead of a withheld PUBLISH.
func withheld(pk packets.Packet) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingresp}, ProtocolVersion: pk.ProtocolVersion, Mods: pk.Mods}
}
