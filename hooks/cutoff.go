package hooks

import (
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
	"homemq/decision"
)

// Cutting a connection off. A connection ends when its token passes its
// deadline (exp + leeway), when its token is revoked, at shutdown, or when
// the client leaves; the Guard then closes it, telling an MQTT 5 client why,
// and gives back what it held.

// onDeadline closes the connection if its token has passed its deadline; a
// re-authentication may have moved the deadline since the timer was set.
func (g *Guard) onDeadline(cl *mqtt.Client, s *session) {
	if cl.Closed() {
		// mochi gave up on the connection before it was established (the
		// CONNACK could not be written) and never called OnDisconnect.
		g.forget(cl, s)
		return
	}
	gr := s.grant.Load()
	if left := time.Until(time.Unix(0, gr.deadline)); left > 0 {
		s.mu.Lock()
		s.timer.Reset(left)
		s.mu.Unlock()
		return
	}
	g.cutOff(cl, s)
}

// cutOff closes a connection whose token has expired or been revoked, with
// a DISCONNECT that says so (MQTT 5), once. It refuses everything for the
// session at once and gives its connection slots back at once; the
// connection itself is closed within Config.DisconnectWait however the
// client behaves.
func (g *Guard) cutOff(cl *mqtt.Client, s *session) {
	if g.startCutOff(s) {
		g.finishCutOff(cl, s)
	}
}

// startCutOff is the part of a cut-off that never waits: the session
// refuses everything and gives its connection slots back. It reports
// whether this call started the cut-off (it runs once per session).
func (g *Guard) startCutOff(s *session) bool {
	s.closed.Store(true)
	s.bumpRights()
	if !s.cut.CompareAndSwap(false, true) {
		return false
	}
	g.release(s)
	return true
}

// finishCutOff reports the cut-off and closes the connection.
func (g *Guard) finishCutOff(cl *mqtt.Client, s *session) {
	gr := s.grant.Load()
	code := packets.Code{Code: packets.ErrMaxConnectTime.Code, Reason: "token expired at " + gr.claims.ExpiresAtTime().UTC().Format(time.RFC3339) + "; reconnect or re-authenticate with a fresh token"}
	kind, why := decision.EventExpire, "expired"
	if s.revoked.Load() {
		code = packets.Code{Code: packets.ErrNotAuthorized.Code, Reason: "token revoked"}
		kind, why = decision.EventRevoke, "revoked"
	}
	g.emit(cl, gr, decision.Event{Kind: kind, Reason: why, Detail: code.Reason})
	g.disconnect(cl, code)
}

// Disconnect closes cl, telling an MQTT 5 client why, within
// Config.DisconnectWait. The broker uses it at shutdown.
func (g *Guard) Disconnect(cl *mqtt.Client, code packets.Code) { g.disconnect(cl, code) }

// disconnect closes cl, telling MQTT 5 clients why, and returns within
// Config.DisconnectWait: mochi's Server.DisconnectClient writes the
// DISCONNECT under the client's lock, which a writer stuck on a client that
// does not read would hold for good; past the wait, cl.Stop closes the
// connection without that lock (upstream: https://github.com/mochi-mqtt/server/issues/95, https://github.com/mochi-mqtt/server/pull/160).
// MQTT 3.1.1 has no server DISCONNECT: the connection is closed.
func (g *Guard) disconnect(cl *mqtt.Client, code packets.Code) {
	if cl.Properties.ProtocolVersion < 5 {
		cl.Stop(code)
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.server.DisconnectClient(cl, code)
	}()
	t := time.NewTimer(g.cfg.DisconnectWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		cl.Stop(code)
	}
}

// OnDisconnect sends the connection's will where it is due (will.go) and
// forgets the connection's session.
func (g *Guard) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	s := g.session(cl)
	if s == nil {
		return
	}
	g.willOnDisconnect(cl, s)
	if !expire && !s.closed.Load() {
		g.keepOffline(cl, s.grant.Load()) // mochi keeps the session and queues for it
	}
	if !g.forget(cl, s) {
		return
	}
	e := decision.Event{Kind: decision.EventDisconnect, Allowed: true}
	if err != nil {
		e.Detail = err.Error()
	}
	g.emit(cl, s.grant.Load(), e)
}

// forget drops a connection's session and uncounts it, once; it reports
// whether this call did it.
func (g *Guard) forget(cl *mqtt.Client, s *session) bool {
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	if _, ok := g.sessions.LoadAndDelete(cl); !ok {
		return false
	}
	g.release(s)
	return true
}

// release gives back the connection slots a session was counted in, once,
// whichever of a cut-off and the end of the connection comes first.
func (g *Guard) release(s *session) {
	if s.released.CompareAndSwap(false, true) {
		g.counts.release(s.sub)
	}
}

// Revoked closes every connection whose token r revokes. Register it with
// auth.Revocations.OnRevoke. Before Revoked returns, every such session
// refuses everything and its connection slots are free; each connection is
// then closed on its own goroutine, so that none waits for another.
func (g *Guard) Revoked(r auth.Revocation) {
	g.revokeOffline(r)
	g.sessions.Range(func(k, v any) bool {
		s := v.(*session)
		s.bumpRights() // any revocation: forget every remembered delivery decision
		if gr := s.grant.Load(); gr != nil && r.Matches(gr.claims) {
			s.revoked.Store(true)
			if g.startCutOff(s) {
				go g.finishCutOff(k.(*mqtt.Client), s)
			}
		}
		return true
	})
}
