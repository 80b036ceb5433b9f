package hooks

import (
	"bytes"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
	"homemq/decision"
	"homemq/topics"
)

// Wills. mochi publishes a client's will when its connection ends
// (Server.sendLWT) or after its Will Delay Interval (Server.sendDelayedLWT,
// which asks no hook at all), and its OnWill hook cannot suppress one
// (upstream: https://github.com/mochi-mqtt/server/issues/503). So
// the Guard owns wills: at CONNECT it judges the will (a refused will
// refuses the CONNECT), takes it out of mochi's hands and keeps it in the
// session; when mochi would have sent it, the Guard judges it again against
// the session's rights at that moment and publishes it itself on the
// client's behalf:
//   - a DISCONNECT with reason 0x00 deletes the will; any other end of the
//     connection (DISCONNECT 0x04, a network error, keep-alive, the broker
//     closing it) sends it, after the Will Delay Interval if there is one
//     (at most the session expiry), unless the same client ID connects
//     again within the delay (a take-over of a live connection counts);
//   - a connection closed for revocation never sends its will, nor does a
//     delayed will of an identity revoked during the delay;
//   - once the token has expired, only an agent's will on its own status
//     topic with payload "offline" is sent (it is true then); any other
//     will is dropped, since the identity no longer vouches for it.

// offlineStatus is the payload of an agent's status topic when it is away.
const offlineStatus = "offline"

// will is a client's will as the Guard keeps it.
type will struct {
	pk    packets.Packet // the PUBLISH to send, with the will's properties
	delay uint32         // Will Delay Interval, seconds (MQTT 5)
}

// pendingWill is a delayed will waiting for its interval to pass.
type pendingWill struct {
	timer *time.Timer
	s     *session
	w     *will
}

// takeWill keeps the will of a CONNECT the Guard accepted and clears it in
// mochi, which then never sends it (sendLWT and sendDelayedLWT check the
// flag). It keeps what mochi's Will drops: content type, payload format,
// message expiry, response topic and correlation data. Not reported upstream (checked 2026-11).
func takeWill(cl *mqtt.Client, pk packets.Packet) *will {
	if !pk.Connect.WillFlag {
		return nil
	}
	wp := pk.Connect.WillProperties
	w := &will{pk: packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: pk.Connect.WillQos, Retain: pk.Connect.WillRetain},
		TopicName:   pk.Connect.WillTopic,
		Payload:     bytes.Clone(pk.Connect.WillPayload),
		Properties: packets.Properties{
			PayloadFormat: wp.PayloadFormat, PayloadFormatFlag: wp.PayloadFormatFlag,
			MessageExpiryInterval: wp.MessageExpiryInterval, ContentType: wp.ContentType,
			ResponseTopic: wp.ResponseTopic, CorrelationData: bytes.Clone(wp.CorrelationData),
			User: append([]packets.UserProperty(nil), wp.User...),
		},
	}}
	if pk.ProtocolVersion == 5 {
		w.delay = wp.WillDelayInterval
	}
	if w.pk.FixedHeader.Qos > 0 {
		w.pk.PacketID = 1 // mochi's inline publish needs one to pass validation; it is never used
	}
	cl.Properties.Will = mqtt.Will{}
	return w
}

// cancelWill forgets the delayed will of clientID: the client is back
// within the delay [MQTT-3.1.3-9].
func (g *Guard) cancelWill(clientID string) {
	if v, ok := g.wills.LoadAndDelete(clientID); ok {
		v.(*pendingWill).timer.Stop()
	}
}

// willOnDisconnect sends or schedules the will of a connection that ended,
// where mochi would have.
func (g *Guard) willOnDisconnect(cl *mqtt.Client, s *session) {
	w := s.will
	if w == nil {
		return
	}
	cause := cl.StopCause()
	if cause == packets.CodeDisconnect {
		return // a normal DISCONNECT deletes the will [MQTT-3.14.4-3]
	}
	delay := w.delay
	if cl.Properties.ProtocolVersion == 5 {
		delay = min(delay, cl.Properties.Props.SessionExpiryInterval)
	}
	if delay == 0 {
		g.sendWill(cl.ID, s, w)
		return
	}
	if cause == packets.ErrSessionTakenOver {
		return // the client connected again within the delay
	}
	p := &pendingWill{s: s, w: w}
	p.timer = time.AfterFunc(time.Duration(delay)*time.Second, func() {
		if g.wills.CompareAndDelete(cl.ID, p) {
			g.sendWill(cl.ID, s, w)
		}
	})
	if old, ok := g.wills.Swap(cl.ID, p); ok {
		old.(*pendingWill).timer.Stop()
	}
}

// revokeWills drops the delayed wills of identities r revokes.
func (g *Guard) revokeWills(r auth.Revocation) {
	g.wills.Range(func(k, v any) bool {
		p := v.(*pendingWill)
		if gr := p.s.grant.Load(); gr != nil && r.Matches(gr.claims) && g.wills.CompareAndDelete(k, p) {
			p.timer.Stop()
			g.report(decision.Event{Kind: decision.EventPublish, Reason: "will", Detail: "will dropped: token revoked", Topic: p.w.pk.TopicName,
				ClientID: k.(string), Sub: gr.claims.Subject, JTI: gr.claims.ID})
		}
		return true
	})
}

// sendWill judges a will against the session's rights now and publishes it
// on the client's behalf if they allow it.
func (g *Guard) sendWill(clientID string, s *session, w *will) {
	gr := s.grant.Load()
	why := g.willVerdict(s, gr, w)
	e := decision.Event{Kind: decision.EventPublish, Allowed: why == "", Reason: "will", Topic: w.pk.TopicName, ClientID: clientID,
		Sub: gr.claims.Subject, JTI: gr.claims.ID}
	if why != "" {
		e.Detail = "will dropped: " + why
		g.report(e)
		return
	}
	// The Guard's OnPublish lets inline clients through: the will was
	// judged above, as the client itself.
	inline := g.server.NewClient(nil, "inline", clientID, true)
	inline.Properties.ProtocolVersion = 5 // keeps the will's MQTT 5 properties and message expiry
	if err := g.server.InjectPacket(inline, w.pk); err != nil {
		e.Allowed, e.Detail = false, "will not sent: "+err.Error()
	}
	g.report(e)
}

// willVerdict says why a will may not be sent now ("" if it may).
func (g *Guard) willVerdict(s *session, gr *grant, w *will) string {
	if s.revoked.Load() {
		return "token revoked"
	}
	if _, detail := willRefusal(gr.identity, mqtt.Will{TopicName: w.pk.TopicName, Retain: w.pk.FixedHeader.Retain}); detail != "" {
		return detail
	}
	if _, alive := s.alive(g.now().UnixNano()); !alive && !ownOfflineStatus(gr, w) {
		return "token expired; only an agent's own status \"" + offlineStatus + "\" is sent after expiry"
	}
	return ""
}

// ownOfflineStatus reports whether w says that gr's own agent is offline.
func ownOfflineStatus(gr *grant, w *will) bool {
	p, err := topics.Parse(w.pk.TopicName)
	return err == nil && p.Kind == topics.KindStatus && gr.claims.Subject == topics.AgentSubject(p.Agent) &&
		string(w.pk.Payload) == offlineStatus
}

// Stop drops the delayed wills still waiting when the server stops.
func (g *Guard) Stop() error {
	g.wills.Range(func(k, v any) bool {
		v.(*pendingWill).timer.Stop()
		g.wills.Delete(k)
		return true
	})
	return nil
}
