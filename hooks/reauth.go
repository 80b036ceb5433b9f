package hooks

import (
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
	"homemq/decision"
)

// OnAuthPacket handles MQTT 5 re-authentication: AUTH with reason 0x19,
// method homemq-jwt and a fresh JWT as data. The new token must name the
// same sub; its rights replace the old ones at once (queued messages and
// subscriptions they no longer allow are dropped, deliver.go) and the
// expiry deadline moves. The broker answers AUTH 0x00; a bad token gets a DISCONNECT.
func (g *Guard) OnAuthPacket(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Properties.Props.AuthenticationMethod == "" { // [MQTT-4.12.0-4]: no method at CONNECT, no AUTH
		return pk, g.refuseReauth(cl, nil, packets.ErrProtocolViolation.Code, decision.Event{Reason: "protocol", Detail: "protocol error: AUTH on a connection that announced no authentication method; connect with authentication method " + auth.MQTTMethod + " to re-authenticate"})
	}
	s := g.session(cl)
	if s == nil {
		return pk, packets.ErrNotAuthorized
	}
	old, ok := s.alive(g.now().UnixNano())
	if !ok {
		g.cutOff(cl, s)
		return pk, packets.ErrRejectPacket
	}
	if pk.ReasonCode != packets.CodeReAuthenticate.Code {
		return pk, g.refuseReauth(cl, old, packets.ErrProtocolViolation.Code, decision.Event{Reason: "protocol", Detail: "only re-authentication (AUTH 0x19) is supported"})
	}
	if pk.Properties.AuthenticationMethod != auth.MQTTMethod {
		return pk, g.refuseReauth(cl, old, packets.ErrBadAuthenticationMethod.Code, decision.Event{Reason: "auth_method", Detail: "authentication method must be " + auth.MQTTMethod})
	}
	c, err := g.verifier.VerifyShared(string(pk.Properties.AuthenticationData)) // the Guard never changes claims
	if err != nil {
		return pk, g.refuseReauth(cl, old, packets.ErrNotAuthorized.Code, decision.Event{Reason: "token", Detail: "re-authentication refused: " + err.Error()})
	}
	if c.Subject != old.claims.Subject {
		return pk, g.refuseReauth(cl, old, packets.ErrNotAuthorized.Code, decision.Event{Reason: "sub", Detail: "re-authentication refused: the new token is for " + c.Subject + ", this connection is " + old.claims.Subject})
	}
	gr := g.newGrant(c)
	s.setGrant(gr)
	g.dropUnreadable(cl, s, gr)
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Reset(time.Until(time.Unix(0, gr.deadline)))
	}
	s.mu.Unlock()
	g.emit(cl, gr, decision.Event{Kind: decision.EventReauth, Allowed: true})
	err = cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Auth},
		ReasonCode:  packets.CodeSuccess.Code,
		Properties:  packets.Properties{AuthenticationMethod: auth.MQTTMethod},
	})
	return pk, err
}

// refuseReauth reports a refused re-authentication (e says why) and returns
// the error mochi answers it with: code and e.Detail as the reason string.
func (g *Guard) refuseReauth(cl *mqtt.Client, gr *grant, code byte, e decision.Event) error {
	e.Kind, e.Allowed = decision.EventReauth, false
	g.emit(cl, gr, e)
	return packets.Code{Code: code, Reason: e.Detail}
}
