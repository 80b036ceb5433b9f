package hooks

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/decision"
	"homemq/topics"
)

// OnACLCheck judges subscriptions and every delivery of a message to a
// subscriber against the topic rules of the subscriber's current token.
// Publishes are judged in OnPublish, where a reason string can be sent.
func (g *Guard) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write {
		return true
	}
	s := g.session(cl)
	if s == nil {
		id, ok := g.offlineIdentity(cl)
		return ok && topics.Authorize(id, topics.Subscribe, topic, false).Allow
	}
	gen := s.rights.Load() // before the grant (aclcache.go)
	gr, ok := s.alive(g.now().UnixNano())
	if !ok {
		return false
	}
	if over := s.overSubs.Load(); over != nil && (*over)[topic] {
		return false
	}
	return s.readableCached(gen, gr, topic) || mountedNothing(gr, topic)
}

// OnSubscribe records refused filters (mochi answers them with 0x87, or 0x80
// for MQTT 3.1.1, through OnACLCheck). A refused filter is answered in the
// SUBACK and does not count towards the refusal limit: a stock client such
// as Home Assistant subscribes to topics of its own that are not ours, and
// a refused subscription costs the broker nothing more than its answer.
func (g *Guard) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	s := g.session(cl)
	if s == nil {
		return pk
	}
	s.subackReason.Store(nil)
	gr, ok := s.alive(g.now().UnixNano())
	if !ok {
		return pk
	}
	var over map[string]bool
	var why subackReasons
	defer why.store(s)
	have := cl.State.Subscriptions.Len()
	for _, f := range pk.Filters {
		if d := topics.Authorize(gr.identity, topics.Subscribe, f.Filter, false); !d.Allow && !mountedNothing(gr, f.Filter) {
			why.add(f.Filter, d.Reason)
			g.emit(cl, gr, decision.Event{Kind: decision.EventSubscribe, Reason: "acl", Detail: d.Reason, Topic: f.Filter})
			continue
		}
		if _, exists := cl.State.Subscriptions.Get(f.Filter); exists {
			continue
		}
		if max := g.cfg.Limits.MaxSubscriptions; max > 0 && have >= max {
			if over == nil {
				over = map[string]bool{}
			}
			over[f.Filter] = true
			why.add(f.Filter, "too many subscriptions on this connection")
			g.emit(cl, gr, decision.Event{Kind: decision.EventSubscribe, Reason: "quota", Detail: "too many subscriptions on this connection", Topic: f.Filter})
			continue
		}
		have++
	}
	if over != nil {
		s.overSubs.Store(&over)
	}
	return pk
}

// OnSubscribed forgets the quota refusals of the SUBSCRIBE just answered.
func (g *Guard) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) {
	if s := g.session(cl); s != nil {
		s.overSubs.Store(nil)
	}
}
