package hooks

import (
	"fmt"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/decision"
	"homemq/envelope"
	"homemq/topics"
)

// OnPublish checks a publish in the order of docs/architecture.md: token alive, topic
// rules, then for a cmd topic the rate limit, the envelope (well-formed, kid,
// iat, exp, lifetime, signature) and the replay cache. An accepted command's
// message expiry is set from the envelope's exp, so it dies in any queue.
func (g *Guard) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	s := g.session(cl)
	if s == nil {
		return pk, packets.ErrRejectPacket
	}
	now := g.now()
	gr, ok := s.alive(now.UnixNano())
	if !ok {
		g.cutOff(cl, s)
		return pk, packets.ErrRejectPacket
	}
	if sinkPublish(gr, pk) {
		return pk, packets.CodeSuccessIgnore
	}
	if d := topics.Authorize(gr.identity, topics.Publish, pk.TopicName, pk.FixedHeader.Retain); !d.Allow {
		return g.refusePublish(cl, s, gr, pk, packets.ErrNotAuthorized.Code, decision.Event{Kind: decision.EventPublish, Reason: "acl", Detail: d.Reason})
	}
	if code, why, detail := g.checkDevicePublish(gr, pk); code != 0 {
		return g.refusePublish(cl, s, gr, pk, code, decision.Event{Kind: decision.EventPublish, Reason: why, Detail: detail})
	}
	if !topics.IsCommand(pk.TopicName) {
		return pk, nil
	}
	if !g.commandLimiter(s).AllowN(now, 1) {
		return g.refusePublish(cl, s, gr, pk, packets.ErrMessageRateTooHigh.Code, decision.Event{Kind: decision.EventCommand, Reason: "rate", Detail: "too many commands; slow down"})
	}
	if gr.home != "" {
		return g.plainCommand(cl, s, gr, pk, now)
	}
	env, err := envelope.Parse(pk.Payload, g.cfg.Envelope)
	if err == nil {
		err = env.Verify(g.messageKey(gr), pk.TopicName, gr.claims.ID, now, g.cfg.Envelope)
	}
	if err == nil && (env.Iat < g.started || g.issuedEarlier(env.Iat)) {
		// The replay cache does not survive a restart, so a command issued
		// before this broker started, or one an earlier run may have
		// accepted (Config.Issued), may have been seen already.
		err = &envelope.Error{Reason: envelope.ReasonReplay, Detail: "issued before the broker (re)started, so it may have been seen already; seal it again (with a fresh iat, a few seconds after the restart)"}
	}
	if err == nil {
		err = g.replay.RecordFor(gr.claims.Subject, env.Kid, env.Nonce, time.Unix(env.Exp, 0), now)
	}
	if err == nil && g.ledger != nil {
		err = g.ledger.Claim(env.Kid, env.Nonce, time.Unix(env.Exp, 0))
	}
	if err != nil {
		return g.refuseCommand(cl, s, gr, pk, env.Nonce, err)
	}
	g.noteIssued(env)
	pk.Expiry = env.Exp
	pk.Properties.MessageExpiryInterval = uint32(max(1, env.Exp-now.Unix()))
	// mochi only honours Expiry on MQTT 5 packets, also when a 3.1.1 client
	// sent it (https://github.com/mochi-mqtt/server/issues/444).
	pk.ProtocolVersion = 5
	g.emit(cl, gr, decision.Event{Kind: decision.EventCommand, Allowed: true, Topic: pk.TopicName, Nonce: env.Nonce})
	return pk, nil
}

func (g *Guard) refuseCommand(cl *mqtt.Client, s *session, gr *grant, pk packets.Packet, nonce string, err error) (packets.Packet, error) {
	r := envelope.ReasonOf(err)
	code := packets.ErrNotAuthorized.Code
	switch r {
	case envelope.ReasonMalformed, envelope.ReasonVersion:
		code = packets.ErrPayloadFormatInvalid.Code
	case envelope.ReasonCacheFull, envelope.ReasonQuota:
		code = packets.ErrQuotaExceeded.Code
	case "":
		r = "envelope"
	}
	return g.refusePublish(cl, s, gr, pk, code, decision.Event{Kind: decision.EventCommand, Reason: string(r), Detail: "command refused: " + err.Error(), Nonce: nonce})
}

// refusePublish reports a refused publish (e says why: Kind, Reason,
// Detail, and for a command the Nonce if it was parsed, so the audit log
// can match a replay) and answers it: QoS 0 is dropped, QoS 1 and 2 get
// PUBACK or PUBREC with code and e.Detail as the reason string (MQTT 5) or
// a plain ack (MQTT 3.1.1 has no negative ack; the message is dropped all
// the same). It writes the ack itself and rejects the packet because mochi
// answers a refused QoS 2 publish with a PUBACK (https://github.com/mochi-mqtt/server/issues/465,
// https://github.com/mochi-mqtt/server/issues/510, fix https://github.com/mochi-mqtt/server/pull/476) and
// disconnects an MQTT 3.1.1 client at once (https://github.com/mochi-mqtt/server/issues/290).
func (g *Guard) refusePublish(cl *mqtt.Client, s *session, gr *grant, pk packets.Packet, code byte, e decision.Event) (packets.Packet, error) {
	e.Allowed, e.Topic = false, pk.TopicName
	g.emit(cl, gr, e)
	if q := pk.FixedHeader.Qos; q > 0 {
		ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID}
		if q == 2 {
			ack.FixedHeader.Type = packets.Pubrec
		}
		if cl.Properties.ProtocolVersion == 5 {
			ack.ReasonCode = code
			ack.Properties.ReasonString = e.Detail
		}
		_ = cl.WritePacket(ack)
	}
	if g.refuse(s) {
		g.tooManyRefusals(cl)
	}
	return pk, packets.ErrRejectPacket
}

func (g *Guard) tooManyRefusals(cl *mqtt.Client) {
	g.disconnect(cl, packets.Code{Code: packets.ErrNotAuthorized.Code, Reason: fmt.Sprintf("too many refused packets (%d within %v)", g.cfg.RefusalLimit, g.cfg.RefusalWindow)})
}
