package hooks

import (
	"fmt"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
	"homemq/decision"
	"homemq/topics"
)

// Session caps. mochi keeps a persistent session, and the queue of every
// subscription it holds, in server.Clients until its expiry passes, also
// while it is offline. Two things bound that memory per identity: the
// expiry (capped at CONNECT by mochi, at DISCONNECT by the Guard) and the
// number of persistent sessions per token sub.

// pendingGrace is how long a session admitted by OnConnect counts before
// mochi has added it to server.Clients (or given up on the connection).
const pendingGrace = 10 * time.Second

// sweepEvery is how many admitted sessions pass between sweeps of the whole
// index, which drop the subs whose sessions have all gone.
const sweepEvery = 1024

// sessionIndex remembers, per sub, the client IDs of the persistent
// sessions the Guard admitted; whether a session still exists is always
// asked of server.Clients, so sessions that expired, were cleaned or taken
// over drop out by themselves.
type sessionIndex struct {
	once    sync.Once
	mu      sync.Mutex
	bySub   map[string]map[string]int64 // sub -> client ID -> unix nanos admitted (0: found in server.Clients)
	admits  int
	clients *mqtt.Clients
}

// persistent reports whether cl asked for a session that outlives its
// connection: a session expiry above 0 (MQTT 5) or clean session off (3.1.1).
func persistent(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// admitSession enforces Quotas.SessionsPerSub at CONNECT, after the
// connection was counted under sub: a refusal uncounts it and answers
// CONNACK 0x97 with a reason string.
func (g *Guard) admitSession(cl *mqtt.Client, c *auth.Claims) error {
	max := g.cfg.Quotas.SessionsPerSub
	if max <= 0 || !persistent(cl) {
		return nil
	}
	if n, ok := g.sessionIdx.admit(g.server, c.Subject, cl.ID, max, g.now()); !ok {
		g.counts.release(c.Subject)
		return g.refuseConnect(cl, c, packets.ErrQuotaExceeded.Code, decision.Event{Reason: "session_quota", Detail: fmt.Sprintf(
			"too many persistent sessions for %s (%d of %d): reconnect with the client ID of one of them, or end one with session expiry 0", c.Subject, n, max)})
	}
	return nil
}

// admit reports whether the session of id may exist: it does already, or
// sub holds fewer than max others. It returns how many sub holds.
func (x *sessionIndex) admit(server *mqtt.Server, sub, id string, max int, now time.Time) (int, bool) {
	x.once.Do(func() { x.seed(server) })
	x.mu.Lock()
	defer x.mu.Unlock()
	ids := x.bySub[sub]
	if ids == nil {
		ids = map[string]int64{}
		x.bySub[sub] = ids
	}
	if old, ok := x.clients.Get(id); ok && persistent(old) {
		ids[id] = 0 // a reconnect to an existing session is not a new one
		return len(ids), true
	}
	// A clean connection of the same ID that this one takes over is no
	// session to keep: making it persistent is a new session.
	x.prune(ids, now)
	if _, counted := ids[id]; !counted && len(ids) >= max {
		return len(ids), false
	}
	ids[id] = now.UnixNano()
	if x.admits++; x.admits%sweepEvery == 0 {
		x.sweep(now)
	}
	return len(ids), true
}

// seed indexes the sessions mochi already holds: those restored from the
// store at start.
func (x *sessionIndex) seed(server *mqtt.Server) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.clients = server.Clients
	x.bySub = map[string]map[string]int64{}
	for id := range server.Clients.GetAll() {
		sub := topics.ClientIDOwner(id)
		if x.bySub[sub] == nil {
			x.bySub[sub] = map[string]int64{}
		}
		x.bySub[sub][id] = 0
	}
}

// prune drops the IDs whose session is gone: not in server.Clients, and
// either seen there before or admitted longer than pendingGrace ago.
func (x *sessionIndex) prune(ids map[string]int64, now time.Time) {
	cut := now.Add(-pendingGrace).UnixNano()
	for id, at := range ids {
		switch _, ok := x.clients.Get(id); {
		case ok:
			ids[id] = 0
		case at == 0 || at < cut:
			delete(ids, id)
		}
	}
}

func (x *sessionIndex) sweep(now time.Time) {
	for sub, ids := range x.bySub {
		if x.prune(ids, now); len(ids) == 0 {
			delete(x.bySub, sub)
		}
	}
}

// capDisconnectExpiry caps the session expiry a DISCONNECT asks for at the
// server's maximum. It works around mochi's processDisconnect, which copies
// the DISCONNECT's session expiry without the cap that SendConnack applies
// at CONNECT, so that a client could keep its session and queue for 136
// years. (Raising it from 0 mochi refuses itself, 0x82, as MQTT 5 asks.)
// Not reported upstream (checked 2026-11).
func (g *Guard) capDisconnectExpiry(pk packets.Packet) packets.Packet {
	max := g.server.Options.Capabilities.MaximumSessionExpiryInterval
	if pk.Properties.SessionExpiryIntervalFlag && pk.Properties.SessionExpiryInterval > max {
		pk.Properties.SessionExpiryInterval = max
	}
	return pk
}
