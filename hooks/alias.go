package hooks

import (
	"strconv"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// unknownAlias closes, with DISCONNECT 0x82, an MQTT 5 connection whose
// PUBLISH has no topic name and a Topic Alias it never set: a protocol
// error [MQTT-3.3.2-8]. It reports whether it did. mochi's processPublish
// resolves such an alias to the empty topic (InboundTopicAliases.Set) and
// carries on. An alias of 0 or above the maximum is left to mochi's
// PublishValidate (0x94).
func (g *Guard) unknownAlias(cl *mqtt.Client, pk packets.Packet) bool {
	a := pk.Properties.TopicAlias
	if pk.FixedHeader.Type != packets.Publish || pk.TopicName != "" || a == 0 ||
		a > g.server.Options.Capabilities.TopicAliasMaximum || cl.State.TopicAliases.Inbound.Set(a, "") != "" {
		return false
	}
	g.disconnect(cl, packets.Code{Code: 0x82, Reason: "protocol error: topic alias " + strconv.Itoa(int(a)) + " was never set on this connection; send the topic name with it first"})
	return true
}
