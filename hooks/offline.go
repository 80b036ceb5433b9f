package hooks

import (
	mqtt "github.com/mochi-mqtt/server/v2"

	"homemq/auth"
	"homemq/topics"
)

// Offline sessions. When a client with a persistent session disconnects,
// mochi keeps its session and queues the messages its subscriptions match
// (a command sent while a Pi agent is briefly offline). Every such delivery
// is still judged, by the rights of the last token the session was
// authenticated with. Its expiry does not matter here: queued messages are
// only read after a reconnect, which needs a valid token for the same sub
// (the client-ID rule), and commands carry their own, much shorter, expiry.
// A revocation drops the session's rights at once. These rights live in
// memory: after a broker restart, nothing new is queued for a restored
// offline session until its owner reconnects (what was queued before the
// restart is kept by the storage hook and delivered), unless a cluster
// kept them with the session's record and gives them back
// (RestoreRights).

// offlineIdentity returns the rights of the offline session with cl's
// client ID, if there is one.
func (g *Guard) offlineIdentity(cl *mqtt.Client) (*topics.Identity, bool) {
	v, ok := g.offline.Load(cl.ID)
	if !ok {
		return nil, false
	}
	return v.(*grant).identity, true
}

// keepOffline remembers the rights of a session that outlives its connection.
func (g *Guard) keepOffline(cl *mqtt.Client, gr *grant) {
	if gr != nil && !cl.IsTakenOver() {
		g.offline.Store(cl.ID, gr)
	}
}

// LendRights makes cl's rights those of the offline session of its id that
// cl is about to inherit: a session a cluster node installs for cl from
// another node before the CONNACK (cluster.Deps.LendRights). What mochi
// queues for that session meanwhile is judged with them, not refused for
// a session this Guard never saw.
func (g *Guard) LendRights(cl *mqtt.Client) {
	if s := g.session(cl); s != nil {
		if gr := s.grant.Load(); gr != nil {
			g.offline.Store(cl.ID, gr)
		}
	}
}

// OfflineClaims returns the claims whose rights the offline session of
// clientID is judged with, for a cluster to keep with the session's
// record (cluster.Deps.OfflineClaims).
func (g *Guard) OfflineClaims(clientID string) (*auth.Claims, bool) {
	v, ok := g.offline.Load(clientID)
	if !ok {
		return nil, false
	}
	return v.(*grant).claims, true
}

// RestoreRights gives an offline session restored from the store the
// rights of c, the claims a cluster kept with its record: what is queued
// for it before its owner reconnects is judged with them instead of
// refused. The caller checks that c is not revoked.
func (g *Guard) RestoreRights(clientID string, c *auth.Claims) {
	g.offline.Store(clientID, g.newGrant(c))
}

// OnClientExpired forgets an offline session mochi has expired.
func (g *Guard) OnClientExpired(cl *mqtt.Client) {
	g.offline.Delete(cl.ID)
}

// revokeOffline drops the rights of offline sessions that r revokes, and
// their delayed wills.
func (g *Guard) revokeOffline(r auth.Revocation) {
	g.revokeWills(r)
	g.offline.Range(func(k, v any) bool {
		if r.Matches(v.(*grant).claims) {
			g.offline.Delete(k)
		}
		return true
	})
}
