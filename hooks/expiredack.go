package hooks

import (
	"encoding/json"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/envelope"
	"homemq/topics"
)

// expiredAck is the answer the broker gives, on the device's ack topic, for
// a command that expired in the target agent's offline queue: the device
// never saw it, and the sender learns it will never run. Its fields are the
// agent's ack fields (docs/agent.md), with by = "broker".
type expiredAck struct {
	Nonce  string `json:"nonce"`
	OK     bool   `json:"ok"`
	Error  string `json:"error"`
	Detail string `json:"detail"`
	By     string `json:"by"`
}

// OnQosDropped answers for a command mochi dropped from the queue of the
// agent it is addressed to because its envelope expired: one ack with error
// "expired", published by the broker on the device's ack topic.
//
// Only the target agent's own queue counts: a command that expires in
// another session's queue (an admin's offline homes/h1/# session, say)
// says nothing about the agent, which may well have run it. A taken-over
// session's queue moved to its successor, which answers for it.
func (g *Guard) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Publish || pk.Expiry == 0 || pk.Expiry > g.now().Unix() || cl.IsTakenOver() {
		return
	}
	p, err := topics.Parse(pk.TopicName)
	if err != nil || p.Kind != topics.KindCmd || !agentClient(cl.ID, p.Agent) {
		return
	}
	env, err := envelope.Parse(pk.Payload, g.cfg.Envelope)
	if err != nil {
		return
	}
	b, _ := json.Marshal(expiredAck{Nonce: env.Nonce, Error: "expired", By: "broker",
		Detail: "the command expired in the broker's queue while the agent was offline; it was never delivered"})
	_ = g.server.Publish(topics.AckTopic(p.Home, p.Agent, p.Device), b, false, 1)
}

// agentClient reports whether a client ID belongs to agent: by the
// client-ID rule (checkClientID) only a token of agent:{agent} can hold it.
func agentClient(clientID, agent string) bool {
	return topics.ClientIDBelongsTo(clientID, topics.AgentSubject(agent))
}
