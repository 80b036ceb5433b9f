package hooks

import (
	"unicode/utf8"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
)

// OnPacketEncode corrects what mochi writes to MQTT 5 clients:
//
//   - CONNACK: adds the authentication method for a client that connected
//     with one, so it knows it may re-authenticate; announces the Topic
//     Alias Maximum the server enforces (mochi's SendConnack leaves it out,
//     which tells the client it may use no alias at all, while
//     PublishValidate accepts aliases up to the capability); and keeps the
//     reason string even for a client that asked for no problem
//     information: MQTT 5 allows it there [MQTT-3.1.2-29]. At an accepting
//     CONNACK it drops from the session what the token may not read, before
//     mochi resends the session's in-flight messages (deliver.go).
//   - PUBLISH: withholds any message the receiver may not read (deliver.go).
//   - DISCONNECT: keeps the reason string likewise, so a client cut off at
//     exp is told why.
//   - SUBACK: drops the user properties mochi's processSubscribe copies from
//     the SUBSCRIBE (the server's SUBACK carries its own properties, never
//     the client's), and says why filters were refused (OnSubscribe
//     recorded it); mochi sets no reason string for a per-filter 0x87.
//
// The Topic Alias Maximum, the SUBACK's properties and its reason string
// work around mochi (SendConnack, processSubscribe). Not reported upstream (checked 2026-11).
func (g *Guard) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Connack:
		pk.Mods.DisallowProblemInfo = false
		if succeeded(pk.ReasonCode) && cl.Properties.Props.AuthenticationMethod == auth.MQTTMethod {
			pk.Properties.AuthenticationMethod = auth.MQTTMethod
		}
		if succeeded(pk.ReasonCode) {
			pk.Properties.TopicAliasMaximum = g.server.Options.Capabilities.TopicAliasMaximum
		}
		if s := g.session(cl); s != nil && succeeded(pk.ReasonCode) {
			g.dropUnreadable(cl, s, s.grant.Load()) // mochi resends the session's in-flight messages next
		}
	case packets.Publish:
		pk = g.mountOut(cl, g.checkDelivery(cl, pk))
	case packets.Disconnect:
		pk.Mods.DisallowProblemInfo = false
	case packets.Suback:
		pk.Properties.User = nil
		if s := g.session(cl); s != nil {
			if r := s.subackReason.Swap(nil); r != nil {
				pk.Properties.ReasonString = *r
			}
		}
	}
	return pk
}

// maxSubackReason bounds a SUBACK's reason string: the filters in it are
// the client's own, up to 64 KiB each.
const maxSubackReason = 512

// subackReasons collects why filters of one SUBSCRIBE were refused, for
// OnPacketEncode: "not authorized: {filter}: {why}; …".
type subackReasons struct{ b []byte }

func (r *subackReasons) add(filter, why string) {
	if len(r.b) >= maxSubackReason {
		return
	}
	if len(r.b) == 0 {
		r.b = append(r.b, "not authorized: "...)
	} else {
		r.b = append(r.b, "; "...)
	}
	r.b = append(r.b, filter+": "+why...)
	if len(r.b) > maxSubackReason {
		cut := maxSubackReason - len("…")
		for cut > 0 && !utf8.RuneStart(r.b[cut]) {
			cut--
		}
		r.b = append(r.b[:cut], "…"...)
	}
}

// store hands what was collected to the session's next SUBACK.
func (r *subackReasons) store(s *session) {
	if len(r.b) > 0 {
		str := string(r.b)
		s.subackReason.Store(&str)
	}
}

// succeeded reports whether an MQTT 5 reason code reports success: failure
// codes start at 0x80 (unspecified error).
func succeeded(code byte) bool { return code < packets.ErrUnspecifiedError.Code }
