package hooks

import (
	"encoding/json"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/envelope"
	"homemq/topics"
)

// expiredAck is the answer the broker gives, on the device's ack topic, for
// a command that expired in an offline session's queue: the device never
// saw it, and the sender learns it will never run. Its fields are the
// agent's ack fields (docs/agent.md), with by = "broker".
type expiredAck struct {
	Nonce  string `json:"nonce"`
	OK     bool   `json:"ok"`
	Error  string `json:"error"`
	Detail string `json:"detail"`
	By     string `json:"by"`
}

// OnQosDropped answers for a command mochi dropped from a queue because its
// envelope expired: one ack with error "expired", published by the broker
// on the device's ack topic.
func (g *Guard) OnQosDropped(_ *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Publish || !topics.IsCommand(pk.TopicName) ||
		pk.Expiry == 0 || pk.Expiry > g.now().Unix() {
		return
	}
	env, err := envelope.Parse(pk.Payload, g.cfg.Envelope)
	if err != nil {
		return
	}
	b, _ := json.Marshal(expiredAck{Nonce: env.Nonce, Error: "expired", By: "broker",
		Detail: "the command expired in the broker's queue while the agent was offline; it was never delivered"})
	_ = g.server.Publish(strings.TrimSuffix(pk.TopicName, "cmd")+"ack", b, false, 1)
}
