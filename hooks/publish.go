package hooks

import (
	"fmt"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/envelope"
	"homemq/topics"
)

// OnPacketRead re-checks, before anything else, that the token of a client
// sending PUBLISH or SUBSCRIBE is alive: an atomic deadline compare, no JWT
// parsing. A dead token closes the connection.
func (g *Guard) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Disconnect {
		return g.capDisconnectExpiry(pk), nil
	}
	if t := pk.FixedHeader.Type; t != packets.Publish && t != packets.Subscribe {
		return pk, nil
	}
	s := g.session(cl)
	if s == nil {
		return pk, packets.ErrRejectPacket
	}
	if _, ok := s.alive(g.now().UnixNano()); !ok {
		g.cutOff(cl, s)
		return pk, packets.ErrRejectPacket
	}
	if g.unknownAlias(cl, pk) {
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

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
	gr, ok := s.alive(g.now().UnixNano())
	if !ok {
		return false
	}
	if over := s.overSubs.Load(); over != nil && (*over)[topic] {
		return false
	}
	return topics.Authorize(gr.identity, topics.Subscribe, topic, false).Allow
}

// OnSubscribe records refused filters (mochi answers them with 0x87, or 0x80
// for MQTT 3.1.1, through OnACLCheck) and disconnects a client that keeps
// asking for what it may not have.
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
		if d := topics.Authorize(gr.identity, topics.Subscribe, f.Filter, false); !d.Allow {
			why.add(f.Filter, d.Reason)
			g.emit(g.event(cl, gr, EventSubscribe, false, "acl", d.Reason, f.Filter))
			if g.refuse(s) {
				g.tooManyRefusals(cl)
			}
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
			g.emit(g.event(cl, gr, EventSubscribe, false, "quota", "too many subscriptions on this connection", f.Filter))
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

// OnPublish checks a publish in the order of design.md: token alive, topic
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
	if d := topics.Authorize(gr.identity, topics.Publish, pk.TopicName, pk.FixedHeader.Retain); !d.Allow {
		return g.refusePublish(cl, s, gr, pk, EventPublish, 0x87, "acl", d.Reason)
	}
	if code, why, detail := g.checkDevicePublish(gr, pk); code != 0 {
		return g.refusePublish(cl, s, gr, pk, EventPublish, code, why, detail)
	}
	if !topics.IsCommand(pk.TopicName) {
		return pk, nil
	}
	if !s.commands.AllowN(now, 1) {
		return g.refusePublish(cl, s, gr, pk, EventCommand, 0x96, "rate", "too many commands; slow down")
	}
	env, err := envelope.Parse(pk.Payload, g.cfg.Envelope)
	if err == nil {
		err = env.Verify(gr.key, pk.TopicName, gr.claims.ID, now, g.cfg.Envelope)
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
	pk.ProtocolVersion = 5 // mochi only honours Expiry on MQTT 5 packets, also when a 3.1.1 client sent it
	e := g.event(cl, gr, EventCommand, true, "", "", pk.TopicName)
	e.Nonce = env.Nonce
	g.emit(e)
	return pk, nil
}

func (g *Guard) refuseCommand(cl *mqtt.Client, s *session, gr *grant, pk packets.Packet, nonce string, err error) (packets.Packet, error) {
	r := envelope.ReasonOf(err)
	code := byte(0x87)
	switch r {
	case envelope.ReasonMalformed, envelope.ReasonVersion:
		code = 0x99
	case envelope.ReasonCacheFull, envelope.ReasonQuota:
		code = 0x97
	case "":
		r = "envelope"
	}
	return g.refusePublishNonce(cl, s, gr, pk, EventCommand, code, string(r), "command refused: "+err.Error(), nonce)
}

// refusePublish answers a refused publish: QoS 0 is dropped, QoS 1 and 2 get
// PUBACK or PUBREC with the reason code and string (MQTT 5) or a plain ack
// (MQTT 3.1.1 has no negative ack; the message is dropped all the same).
func (g *Guard) refusePublish(cl *mqtt.Client, s *session, gr *grant, pk packets.Packet, kind string, code byte, why, detail string) (packets.Packet, error) {
	return g.refusePublishNonce(cl, s, gr, pk, kind, code, why, detail, "")
}

// refusePublishNonce is refusePublish for a command whose nonce is known
// (parsed before it was refused), so the audit log can match a replay.
func (g *Guard) refusePublishNonce(cl *mqtt.Client, s *session, gr *grant, pk packets.Packet, kind string, code byte, why, detail, nonce string) (packets.Packet, error) {
	e := g.event(cl, gr, kind, false, why, detail, pk.TopicName)
	e.Nonce = nonce
	g.emit(e)
	if q := pk.FixedHeader.Qos; q > 0 {
		ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID}
		if q == 2 {
			ack.FixedHeader.Type = packets.Pubrec
		}
		if cl.Properties.ProtocolVersion == 5 {
			ack.ReasonCode = code
			ack.Properties.ReasonString = detail
		}
		_ = cl.WritePacket(ack)
	}
	if g.refuse(s) {
		g.tooManyRefusals(cl)
	}
	return pk, packets.ErrRejectPacket
}

func (g *Guard) tooManyRefusals(cl *mqtt.Client) {
	g.disconnect(cl, packets.Code{Code: 0x87, Reason: fmt.Sprintf("too many refused packets (%d within %v)", g.cfg.RefusalLimit, g.cfg.RefusalWindow)})
}
