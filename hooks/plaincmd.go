package hooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/decision"
	"homemq/envelope"
	"homemq/topics"
)

// plainLifetime is the lifetime of the envelope the broker seals a plain
// command into (at most the configured envelope lifetime).
const plainLifetime = 30 * time.Second

// plainCommand turns an integration's plain command (ON, OFF, PULSE, or
// {"action":"…"}) into a command envelope sealed by the broker: a fresh
// iat, a short exp, a random nonce and a kid that names the integration
// (envelope.PlainKid), so the agent's expiry and replay checks hold
// downstream and the audit log names the integration. The topic and the
// integration's role were checked before.
func (g *Guard) plainCommand(cl *mqtt.Client, s *session, gr *grant, pk packets.Packet, now time.Time) (packets.Packet, error) {
	action, err := PlainAction(pk.Payload)
	if err != nil {
		return g.refusePublish(cl, s, gr, pk, packets.ErrPayloadFormatInvalid.Code, decision.Event{Kind: decision.EventCommand, Reason: "plain_command", Detail: "command refused: " + err.Error()})
	}
	p, _ := topics.Parse(pk.TopicName) // a cmd topic the ACL allowed
	door := false
	if box := g.integrations.Load(); box != nil {
		door = box.DoorGranted(p.Home, p.Agent, p.Device)
	}
	if !door && g.discoveredDoor(p.Home, p.Agent, p.Device) {
		return g.refusePublish(cl, s, gr, pk, packets.ErrNotAuthorized.Code, decision.Event{Kind: decision.EventCommand, Reason: "door_not_allowed",
			Detail: "command refused: device " + p.Device + " guards a door; plain commands may drive it only after the home's admin ran: homemq integration allow-door --home " + p.Home + " --agent " + p.Agent + " --device " + p.Device})
	}
	kid := envelope.PlainKid(integrationID(gr.claims), door)
	ttl := min(plainLifetime, g.cfg.Envelope.MaxLifetime)
	sealed, err := envelope.Seal(envelope.DeriveKey(g.master, kid), pk.TopicName, kid, `{"action":"`+action+`"}`, now, ttl)
	if err != nil {
		return g.refusePublish(cl, s, gr, pk, packets.ErrUnspecifiedError.Code, decision.Event{Kind: decision.EventCommand, Reason: "plain_command", Detail: "command refused: the broker could not seal it: " + err.Error()})
	}
	env, _ := envelope.Parse(sealed, g.cfg.Envelope)
	pk.Payload = sealed
	pk.Expiry = env.Exp
	pk.Properties.MessageExpiryInterval = uint32(max(1, env.Exp-now.Unix()))
	pk.Properties.PayloadFormat, pk.Properties.PayloadFormatFlag = 1, true
	pk.Properties.ContentType = "application/json"
	pk.ProtocolVersion = 5 // mochi only honours Expiry on MQTT 5 packets (https://github.com/mochi-mqtt/server/issues/444)
	g.emit(cl, gr, decision.Event{Kind: decision.EventCommand, Allowed: true, Detail: "plain command " + action + " sealed by the broker as " + kid,
		Topic: pk.TopicName, Nonce: env.Nonce})
	return pk, nil
}

// doorClasses are the Home Assistant device classes of devices that guard
// a door; agent.GuardsDoor uses the same list.
var doorClasses = []string{"lock", "door", "garage_door", "gate"}

// discoveredDoor reports whether the agent's retained discovery config for
// device says that it guards a door: a lock entity, or a device class of a
// door. The agent refuses a plain command to a door without the grant in
// any case; refusing it here too answers the integration at once and
// covers agents older than that check (their pulses are binary_sensors of
// class lock).
func (g *Guard) discoveredDoor(home, agent, device string) bool {
	for _, m := range g.server.Topics.Messages(discoveryPrefix(home) + "/+/" + agent + "/" + device + "/config") {
		if p, err := topics.Parse(m.TopicName); err == nil && p.Component == "lock" {
			return true
		}
		var c struct {
			DeviceClass string `json:"device_class"`
		}
		if json.Unmarshal(m.Payload, &c) == nil && slices.Contains(doorClasses, c.DeviceClass) {
			return true
		}
	}
	return false
}

// PlainAction reads a plain command payload: a bare action word in any
// case (ON, off, PULSE, toggle) or the agent's JSON command
// {"action":"on"}. The action is 1-32 of a-z 0-9 _ -, lower case.
func PlainAction(payload []byte) (string, error) {
	p := bytes.TrimSpace(payload)
	if len(p) > 0 && p[0] == '{' {
		var c struct {
			Action string `json:"action"`
		}
		dec := json.NewDecoder(bytes.NewReader(p))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil || dec.More() {
			return "", errors.New(`a plain command is a word such as ON, OFF or PULSE, or {"action":"on"}`)
		}
		p = []byte(c.Action)
	}
	a := strings.ToLower(string(p))
	if len(a) == 0 || len(a) > 32 || !topics.ValidID(a) {
		return "", errors.New("a plain command's action is 1-32 of letters, digits, _ and -, such as ON, OFF or PULSE")
	}
	return a, nil
}
