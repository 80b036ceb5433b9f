package hooks

import (
	"homemq/topics"
)

// The delivery ACL cache. Every message is judged once per subscriber when
// mochi queues it (OnACLCheck) and again when it is written (checkDelivery):
// with sixteen subscribers that is thirty-two evaluations of the topic
// rules per publish, most of them for the few topics a home publishes
// again and again. A session remembers, per topic, whether its rights let
// it read it.
//
// A remembered decision can never outlive the rights it was computed from:
// every entry belongs to one rights generation of its session, and every
// change of rights bumps the generation before anything else is decided
// (session.setGrant at CONNECT and re-authentication, Guard.Revoked for
// every live session at any revocation, which is also how membership and
// registry changes reach the Guard, and the cut-off at expiry). An entry of
// another generation is never used. The token-alive check (closed flag and
// deadline) still runs on every delivery before the cache is asked, so an
// expired or revoked session is refused whatever it remembers.
//
// The cache is a snapshot behind an atomic pointer: a lookup is one atomic
// load and a map read, with no lock and no write shared between the
// publishing goroutines and the subscriber's writer. A new topic replaces
// the snapshot with a copy that has one entry more (topics are few and
// repeat, so copies are rare). A full cache keeps its aclCacheSize topics
// until the next generation and judges other topics without remembering
// them: a session that reads more topics than that never pays for
// copying or evicting, only for the rules it paid for without a cache.
// Nothing is allocated for a session until it receives its first message.

// aclCacheSize bounds the topics one session remembers.
const aclCacheSize = 256

// aclSnapshot is one immutable state of a session's cache.
type aclSnapshot struct {
	gen  uint64          // the rights generation every entry was computed in
	read map[string]bool // topic -> readable
}

// bumpRights starts a new rights generation: what the cache remembers is
// forgotten. Call it after the rights changed (the new grant stored, or
// closed set), before anything else is decided with them.
func (s *session) bumpRights() { s.rights.Add(1) }

// setGrant makes gr the session's rights.
func (s *session) setGrant(gr *grant) {
	s.grant.Store(gr)
	s.bumpRights()
}

// readableCached reports whether the session, whose alive check returned
// gr, may read topic: topics.Authorize for the Subscribe action, remembered
// per rights generation. gen must have been loaded (s.rights.Load) before
// gr was, so that a decision made with an old grant is never stored under
// the generation of a newer one.
func (s *session) readableCached(gen uint64, gr *grant, topic string) bool {
	snap := s.acl.Load()
	if snap != nil && snap.gen == gen {
		if allow, ok := snap.read[topic]; ok {
			return allow
		}
	}
	allow := topics.Authorize(gr.identity, topics.Subscribe, topic, false).Allow
	s.remember(snap, gen, topic, allow)
	return allow
}

// remember stores one decision in a new snapshot, unless the cache of
// this generation is full or another goroutine replaced the snapshot
// meanwhile (then the decision is simply not kept).
func (s *session) remember(old *aclSnapshot, gen uint64, topic string, allow bool) {
	var m map[string]bool
	switch {
	case old == nil || old.gen < gen:
		m = make(map[string]bool, 1)
	case old.gen > gen || len(old.read) >= aclCacheSize:
		return // decided with rights that have changed since, or full
	default:
		m = make(map[string]bool, len(old.read)+1)
		for k, v := range old.read {
			m[k] = v
		}
	}
	m[topic] = allow
	s.acl.CompareAndSwap(old, &aclSnapshot{gen: gen, read: m})
}
