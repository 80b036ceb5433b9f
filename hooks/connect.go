package hooks

import (
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
	packets.ErrClientIdentifierNotValid.Code: packets.Err3ClientIdentifierNotValid.Code,   // identifier rejected
	packets.ErrBadUsernameOrPassword.Code:    packets.ErrMalformedUsernameOrPassword.Code, // bad user name or password
	packets.ErrNotAuthorized.Code:            packets.Err3NotAuthorized.Code,
	packets.ErrBadAuthenticationMethod.Code:  packets.Err3NotAuthorized.Code,
	packets.ErrQuotaExceeded.Code:            packets.Err3ServerUnavailable.Code,
	packets.ErrConnectionRateExceeded.Code:   packets.Err3ServerUnavailable.Code,
}

// OnConnect authenticates the CONNECT: the JWT (password, or authentication
// data with method homemq-jwt), the client-ID rule and the will. A refused
// client gets a CONNACK with a reason code and reason string and is closed.
func (g *Guard) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	addr := addrlimit.Key(cl.Net.Remote)
	if cl.Net.Listener != internalListener && !g.counts.allowAttempt(addr, g.now()) {
		return g.refuseConnect(cl, nil, packets.ErrConnectionRateExceeded.Code, decision.Event{Reason: "rate", Detail: "connection rate exceeded for " + addr + "; slow down"})
	}
	pk = dropMountedWill(cl, pk)
	c, code, why, detail := g.authenticate(cl, pk)
	if code != 0 {
		return g.refuseConnect(cl, c, code, decision.Event{Reason: why, Detail: detail})
	}
	// sockets per address were counted at accept (Guard.Addresses)
	if !g.counts.admit(g.cfg.Limits, c.Subject, g.connsElsewhere(c.Subject)) {
		return g.refuseConnect(cl, c, packets.ErrQuotaExceeded.Code, decision.Event{Reason: "quota", Detail: "too many connections for " + c.Subject})
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
	g.emit(cl, gr, decision.Event{Kind: decision.EventConnect, Allowed: true})
	return nil
}

func (g *Guard) authenticate(cl *mqtt.Client, pk packets.Packet) (c *auth.Claims, code byte, why, detail string) {
	if isIntegrationConnect(pk) {
		c, code, why, detail = g.authenticateIntegration(cl, pk)
	} else {
		c, code, why, detail = g.verifyToken(pk)
	}
	if code != 0 {
		return c, code, why, detail
	}
	if code, why, detail := g.checkClientID(cl, pk, c.Subject); code != 0 {
		return c, code, why, detail
	}
	if cl.Properties.Will.Flag == 1 {
		if why, detail := willRefusal(c.Identity(), cl.Properties.Will); why != "" {
			return c, packets.ErrNotAuthorized.Code, why, detail
		}
	}
	return c, 0, "", ""
}

// verifyToken verifies the CONNECT's JWT: the password, or the
// authentication data with method homemq-jwt.
func (g *Guard) verifyToken(pk packets.Packet) (*auth.Claims, byte, string, string) {
	token := string(pk.Connect.Password)
	if m := pk.Properties.AuthenticationMethod; m != "" {
		if m != auth.MQTTMethod {
			return nil, packets.ErrBadAuthenticationMethod.Code, "auth_method", "authentication method must be " + auth.MQTTMethod
		}
		if len(pk.Properties.AuthenticationData) > 0 {
			token = string(pk.Properties.AuthenticationData)
		}
	}
	c, err := g.verifier.Verify(token)
	if err != nil {
		code := packets.ErrBadUsernameOrPassword.Code
		if auth.ReasonOf(err) == auth.ReasonRevoked {
			code = packets.ErrNotAuthorized.Code
		}
		return nil, code, string(auth.ReasonOf(err)), err.Error()
	}
	if c.Issuer == integrationIssuer {
		return nil, packets.ErrBadUsernameOrPassword.Code, "issuer", "token issuer " + integrationIssuer + " is reserved for integration credentials; set tokens.issuer to another name"
	}
	return c, 0, "", ""
}

// checkClientID keys every session by identity: a client ID that is the
// token's sub or starts with sub + "/" is kept, an empty one becomes
// sub/ + a random suffix (told to MQTT 5 clients as the assigned client
// ID, since they asked for one), and any other becomes sub/ + the requested
// ID, silently: the client keeps using the ID it chose, and it resumes its
// own persistent session under it. No sub contains "/", so no identity can
// reach a session under another identity's prefix, and a stock client with
// a random or fixed ID of its own (Home Assistant, Node-RED) connects
// unchanged.
func (g *Guard) checkClientID(cl *mqtt.Client, pk packets.Packet, sub string) (byte, string, string) {
	if pk.Connect.ClientIdentifier == "" {
		cl.ID = sub + "/" + xid.New().String()
		if cl.Properties.ProtocolVersion == 5 {
			cl.Properties.Props.AssignedClientID = cl.ID
		}
		return 0, "", ""
	}
	if topics.ClientIDBelongsTo(cl.ID, sub) {
		return 0, "", ""
	}
	cl.ID = sub + "/" + pk.Connect.ClientIdentifier
	return 0, "", ""
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

// refuseConnect reports a refused CONNECT (e says why: Reason, and Detail,
// the reason string) and answers it with a CONNACK carrying code; c is the
// verified token, if it got that far.
func (g *Guard) refuseConnect(cl *mqtt.Client, c *auth.Claims, code byte, e decision.Event) error {
	e.Kind, e.Allowed = decision.EventConnect, false
	if c != nil {
		e.Sub, e.JTI = c.Subject, c.ID
	}
	g.emit(cl, nil, e)
	reason := packets.Code{Code: code, Reason: e.Detail}
	if cl.Properties.ProtocolVersion < 5 {
		reason = packets.Code{Code: v3Connack[code], Reason: e.Detail}
	}
	_ = g.server.SendConnack(cl, reason, false, nil)
	return packets.Code{Code: code, Reason: e.Detail}
}

// OnConnectAuthenticate admits exactly the clients OnConnect accepted.
func (g *Guard) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return g.session(cl) != nil
}
