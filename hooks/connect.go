package hooks

import (
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/xid"
	"golang.org/x/time/rate"

	"homemq/addrlimit"
	"homemq/auth"
	"homemq/decision"
	"homemq/topics"
)

// internalListener is the broker's in-process listener (the SignalR bridge):
// its connections all come from one process, so the per-address connect
// rate does not apply to them (the per-sub limit still does), and an
// in-process pipe cannot vanish, so it may use keep-alive 0.
const internalListener = "internal"

// CONNACK reason codes the Guard uses, with their MQTT 3.1.1 return codes.
var v3Connack = map[byte]byte{
	0x85: 0x02, // client identifier not valid -> identifier rejected
	0x86: 0x04, // bad user name or password
	0x87: 0x05, // not authorized
	0x8C: 0x05, // bad authentication method
	0x97: 0x03, // quota exceeded -> server unavailable
	0x9F: 0x03, // connection rate exceeded -> server unavailable
}

// OnConnect authenticates the CONNECT: the JWT (password, or authentication
// data with method homemq-jwt), the client-ID rule and the will. A refused
// client gets a CONNACK with a reason code and reason string and is closed.
func (g *Guard) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	addr := addrlimit.Key(cl.Net.Remote)
	if cl.Net.Listener != internalListener && !g.counts.allowAttempt(addr, g.now()) {
		return g.refuseConnect(cl, nil, 0x9F, "rate", "connection rate exceeded for "+addr+"; slow down")
	}
	c, code, why, detail := g.authenticate(cl, pk)
	if code != 0 {
		return g.refuseConnect(cl, c, code, why, detail)
	}
	// sockets per address were counted at accept (Guard.Addresses)
	if !g.counts.admit(g.cfg.Limits, c.Subject) {
		return g.refuseConnect(cl, c, 0x97, "quota", "too many connections for "+c.Subject)
	}
	if err := g.admitSession(cl, c); err != nil {
		return err
	}
	if cl.Net.Listener != internalListener && (pk.Connect.Keepalive == 0 || pk.Connect.Keepalive > g.cfg.MaxKeepalive) {
		cl.State.Keepalive = g.cfg.MaxKeepalive
		cl.State.ServerKeepalive = true
	}
	g.offline.Delete(cl.ID) // a live connection takes over any offline session of this ID
	g.cancelWill(cl.ID)
	s := &session{commands: rate.NewLimiter(rate.Limit(g.cfg.CommandRate), g.cfg.CommandBurst), sub: c.Subject,
		will: takeWill(cl, pk)}
	gr := g.newGrant(c)
	s.grant.Store(gr)
	g.sessions.Store(cl, s)
	s.mu.Lock()
	s.timer = time.AfterFunc(time.Until(time.Unix(0, gr.deadline)), func() { g.onDeadline(cl, s) })
	s.mu.Unlock()
	g.emit(g.event(cl, gr, decision.EventConnect, true, "", "", ""))
	return nil
}

func (g *Guard) authenticate(cl *mqtt.Client, pk packets.Packet) (c *auth.Claims, code byte, why, detail string) {
	token := string(pk.Connect.Password)
	if m := pk.Properties.AuthenticationMethod; m != "" {
		if m != AuthMethod {
			return nil, 0x8C, "auth_method", "authentication method must be " + AuthMethod
		}
		if len(pk.Properties.AuthenticationData) > 0 {
			token = string(pk.Properties.AuthenticationData)
		}
	}
	c, err := g.verifier.Verify(token)
	if err != nil {
		code = 0x86
		if auth.ReasonOf(err) == auth.ReasonRevoked {
			code = 0x87
		}
		return nil, code, string(auth.ReasonOf(err)), err.Error()
	}
	if code, why, detail := g.checkClientID(cl, pk, c.Subject); code != 0 {
		return c, code, why, detail
	}
	if cl.Properties.Will.Flag == 1 {
		if why, detail := willRefusal(c.Identity(), cl.Properties.Will); why != "" {
			return c, 0x87, why, detail
		}
	}
	return c, 0, "", ""
}

// checkClientID enforces that a client ID is the token's sub or starts with
// sub + "/", and assigns sub/ + a random suffix to an empty one.
func (g *Guard) checkClientID(cl *mqtt.Client, pk packets.Packet, sub string) (byte, string, string) {
	if pk.Connect.ClientIdentifier == "" {
		cl.ID = sub + "/" + xid.New().String()
		if cl.Properties.ProtocolVersion == 5 {
			cl.Properties.Props.AssignedClientID = cl.ID
		}
		return 0, "", ""
	}
	if cl.ID == sub || strings.HasPrefix(cl.ID, sub+"/") {
		return 0, "", ""
	}
	return 0x85, "client_id", "client ID must be " + sub + " or start with " + sub + "/"
}

// willRefusal judges a will like a publish by the connecting identity; a
// will may never target a cmd topic.
func willRefusal(id *topics.Identity, w mqtt.Will) (string, string) {
	if topics.IsCommand(w.TopicName) {
		return "will", "will refused: a will may not target a cmd topic"
	}
	if d := topics.Authorize(id, topics.Publish, w.TopicName, w.Retain); !d.Allow {
		return "will", "will refused: " + d.Reason
	}
	return "", ""
}

func (g *Guard) refuseConnect(cl *mqtt.Client, c *auth.Claims, code byte, why, detail string) error {
	e := g.event(cl, nil, decision.EventConnect, false, why, detail, "")
	if c != nil {
		e.Sub, e.JTI = c.Subject, c.ID
	}
	g.emit(e)
	reason := packets.Code{Code: code, Reason: detail}
	if cl.Properties.ProtocolVersion < 5 {
		reason = packets.Code{Code: v3Connack[code], Reason: detail}
	}
	_ = g.server.SendConnack(cl, reason, false, nil)
	return packets.Code{Code: code, Reason: detail}
}

// OnConnectAuthenticate admits exactly the clients OnConnect accepted.
func (g *Guard) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return g.session(cl) != nil
}

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
	if !s.cut.CompareAndSwap(false, true) {
		return false
	}
	g.release(s)
	return true
}

// finishCutOff reports the cut-off and closes the connection.
func (g *Guard) finishCutOff(cl *mqtt.Client, s *session) {
	gr := s.grant.Load()
	code := packets.Code{Code: 0xA0, Reason: "token expired at " + gr.claims.ExpiresAtTime().UTC().Format(time.RFC3339) + "; reconnect or re-authenticate with a fresh token"}
	kind, why := decision.EventExpire, "expired"
	if s.revoked.Load() {
		code = packets.Code{Code: 0x87, Reason: "token revoked"}
		kind, why = decision.EventRevoke, "revoked"
	}
	g.emit(g.event(cl, gr, kind, false, why, code.Reason, ""))
	g.disconnect(cl, code)
}

// Disconnect closes cl, telling an MQTT 5 client why, within
// Config.DisconnectWait. The broker uses it at shutdown.
func (g *Guard) Disconnect(cl *mqtt.Client, code packets.Code) { g.disconnect(cl, code) }

// disconnect closes cl, telling MQTT 5 clients why, and returns within
// Config.DisconnectWait: mochi's Server.DisconnectClient writes the
// DISCONNECT under the client's lock, which a writer stuck on a client that
// does not read would hold for good; past the wait, cl.Stop closes the
// connection without that lock. MQTT 3.1.1 has no server DISCONNECT: the
// connection is closed.
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
	e := g.event(cl, s.grant.Load(), decision.EventDisconnect, true, "", "", "")
	if err != nil {
		e.Detail = err.Error()
	}
	g.emit(e)
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
		if gr := s.grant.Load(); gr != nil && r.Matches(gr.claims) {
			s.revoked.Store(true)
			if g.startCutOff(s) {
				go g.finishCutOff(k.(*mqtt.Client), s)
			}
		}
		return true
	})
}
