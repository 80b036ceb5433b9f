package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"homemq/envelope"
	"homemq/topics"
)

// Command is the msg of a command envelope, a JSON object with one member:
//
//	{"action":"on"}
//
// Actions: on, off, toggle (switch); pulse, off (pulse).
type Command struct {
	Action string `json:"action"`
}

// maxAction bounds an action name.
const maxAction = 32

// ParseCommand reads a command msg strictly: one JSON object whose only
// member is "action" (exactly so spelled, once), a string of 1–32 of
// a-z 0-9 _ -. Anything else is refused, so a sender never believes the
// agent honoured a member it ignored.
func ParseCommand(msg string) (Command, error) {
	dec := json.NewDecoder(strings.NewReader(msg))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return Command{}, errors.New(`command is not a JSON object; send {"action":"on"}`)
	}
	var c Command
	seen := false
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return Command{}, fmt.Errorf("command is not valid JSON: %v", err)
		}
		key, _ := t.(string)
		if key != "action" {
			return Command{}, fmt.Errorf("command member %q is not known; the only member is \"action\"", clip(key))
		}
		if seen {
			return Command{}, errors.New(`command member "action" appears twice`)
		}
		seen = true
		v, err := dec.Token()
		if err != nil {
			return Command{}, fmt.Errorf("command is not valid JSON: %v", err)
		}
		s, ok := v.(string)
		if !ok {
			return Command{}, errors.New(`command member "action" must be a string, e.g. "on"`)
		}
		c.Action = s
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return Command{}, errors.New("command is not valid JSON: unterminated object")
	}
	if _, err := dec.Token(); err == nil {
		return Command{}, errors.New("command has data after its JSON object")
	}
	if !seen {
		return Command{}, errors.New(`command has no "action"; send {"action":"on"}`)
	}
	if !validAction(c.Action) {
		return Command{}, fmt.Errorf("command action %q must be 1-%d of a-z 0-9 _ -", clip(c.Action), maxAction)
	}
	return c, nil
}

func validAction(s string) bool {
	return len(s) > 0 && len(s) <= maxAction && topics.ValidID(s)
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Ack is the agent's one answer to a command, on the device's ack topic:
//
//	{"nonce":"…","ok":true,"result":"on","state":"on"}
//	{"nonce":"…","ok":false,"error":"expired","detail":"…","state":"off"}
//
// Nonce is the command envelope's nonce; State the device's state after
// the command (absent for an unknown device).
type Ack struct {
	Nonce  string `json:"nonce"`
	OK     bool   `json:"ok"`
	Result string `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
	Detail string `json:"detail,omitempty"`
	State  string `json:"state,omitempty"`
}

// Ack error codes.
const (
	ErrMalformed   = "malformed"          // the payload is not an envelope
	ErrExpired     = "expired"            // the envelope's exp has passed by the agent's clock
	ErrLifetime    = "lifetime_too_long"  // exp is further ahead than any accepted envelope (clock skew?)
	ErrBusy        = "replay_cache_full"  // too many commands in flight; try again
	ErrUnknownDev  = "unknown_device"     // no such device on this agent
	ErrBadCommand  = "bad_command"        // msg is not a valid command
	ErrUnsupported = "unsupported_action" // the device does not take that action
	ErrGPIO        = "gpio_error"         // the pin could not be driven
	ErrClosed      = "closed"             // the agent is shutting down
	ErrState       = "state_error"        // the agent could not record the command's nonce in its state folder
	ErrRestarted   = "restarted"          // delivered again after the agent restarted; it was taken on before and is not executed again
	// ErrDoorNotAllowed: a plain command sealed by the broker for an
	// integration, to a device that guards a door without a door grant.
	ErrDoorNotAllowed = "door_not_allowed"
)

// commander checks and executes commands: the second line of defence
// after the broker, which checked the signature (the agent has no key).
type commander struct {
	home, agent string
	devices     map[string]*device
	policy      envelope.Policy
	replay      *envelope.ReplayCache
	now         func() time.Time
	log         *slog.Logger

	// nonces, when set, is the nonce file: a nonce is written there
	// before its command is acted on (nonces.go).
	nonces *nonceFile
	// earlier holds the nonces loaded from the file at start: commands
	// taken on by an earlier run, whose ack may have been lost with it.
	mu      sync.Mutex
	earlier map[string]bool
}

// replayPolicy is the agent's envelope policy: the broker enforces the
// configured lifetime, so the agent's replay cache remembers up to the cap;
// skew and size are the defaults.
var replayPolicy = envelope.Policy{Skew: envelope.DefaultSkew, MaxLifetime: envelope.CapMaxLifetime, MaxSize: envelope.DefaultMaxSize}

const replayEntries = 1 << 16

func newCommander(home, agent string, devices map[string]*device, now func() time.Time, log *slog.Logger) *commander {
	return &commander{home: home, agent: agent, devices: devices, policy: replayPolicy,
		replay: envelope.NewReplayCache(replayEntries, replayPolicy.Horizon()), now: now, log: log}
}

// handle checks one command and performs it. It returns the ack and its
// topic, or ok == false when nothing is to be answered: a redelivery of a
// command already handled (QoS 1 duplicate) or a topic that is not one of
// this agent's command topics.
//
// The order: envelope well-formed; nonce not seen before (recorded even for
// an expired command, so its redelivery is not answered twice, and written
// to the nonce file, so a restart does not forget it); not
// expired by the agent's clock; device known; msg a valid command; action
// known to the device. Only then is the pin touched.
func (c *commander) handle(topic string, payload []byte) (ackTopic string, ack Ack, ok bool) {
	p, err := topics.Parse(topic)
	if err != nil || p.Kind != topics.KindCmd || p.Home != c.home || p.Agent != c.agent {
		c.log.Warn("command on a topic that is not ours; ignored", "topic", topic)
		return "", Ack{}, false
	}
	ackTopic = topics.AckTopic(p.Home, p.Agent, p.Device)
	env, err := envelope.Parse(payload, c.policy)
	if err != nil {
		c.log.Warn("command refused", "device", p.Device, "error", ErrMalformed, "detail", err)
		return ackTopic, Ack{Nonce: lenientNonce(payload), Error: ErrMalformed, Detail: err.Error()}, true
	}
	ack.Nonce = env.Nonce
	now := c.now()
	exp := env.ExpiresAt()
	if err := c.replay.Record(env.Kid, env.Nonce, later(exp, now.Add(time.Second)), now); err != nil {
		switch envelope.ReasonOf(err) {
		case envelope.ReasonReplay:
			if c.takeEarlier(env.Kid, env.Nonce) {
				if d := c.devices[p.Device]; d != nil {
					ack.State = d.state().State
				}
				ack.Error, ack.Detail = ErrRestarted, "the agent restarted after it took this command on and before the broker knew; it is not executed again (the state shows whether it took effect)"
				return c.refuse(ackTopic, p.Device, ack)
			}
			c.log.Info("duplicate delivery of a command already handled; not acted on again", "device", p.Device, "nonce", env.Nonce)
			return "", Ack{}, false
		case envelope.ReasonCacheFull:
			ack.Error, ack.Detail = ErrBusy, "the agent's replay cache is full; try again shortly"
		default:
			ack.Error, ack.Detail = ErrLifetime, fmt.Sprintf("command expires at %s, further ahead than any command may (is the agent's clock right?)", exp.UTC().Format(time.RFC3339))
		}
		return c.refuse(ackTopic, p.Device, ack)
	}
	if c.nonces != nil {
		if err := c.nonces.add(env.Kid, env.Nonce, later(exp, now.Add(time.Second))); err != nil {
			ack.Error, ack.Detail = ErrState, "the agent could not record the command in its state folder, so it could not promise to act only once; not executed: "+err.Error()
			return c.refuse(ackTopic, p.Device, ack)
		}
	}
	d := c.devices[p.Device]
	if d != nil {
		ack.State = d.state().State
	}
	if !now.Before(exp) {
		ack.Error, ack.Detail = ErrExpired, fmt.Sprintf("command expired %s ago (exp %s by the agent's clock); not executed", now.Sub(exp).Truncate(time.Second), exp.UTC().Format(time.RFC3339))
		return c.refuse(ackTopic, p.Device, ack)
	}
	if d == nil {
		ack.Error, ack.Detail = ErrUnknownDev, fmt.Sprintf("agent %s has no device %q", c.agent, p.Device)
		return c.refuse(ackTopic, p.Device, ack)
	}
	cmd, err := ParseCommand(env.Msg)
	if err != nil {
		ack.Error, ack.Detail = ErrBadCommand, err.Error()
		return c.refuse(ackTopic, p.Device, ack)
	}
	if integration, door, plain := envelope.ParsePlainKid(env.Kid); plain && !door && GuardsDoor(d.cfg) {
		ack.Error, ack.Detail = ErrDoorNotAllowed, fmt.Sprintf("device %s guards a door, and plain commands from integration %s may drive it only after its home's admin ran: homemq integration allow-door --home %s --agent %s --device %s", p.Device, integration, c.home, c.agent, p.Device)
		return c.refuse(ackTopic, p.Device, ack)
	}
	result, err := d.do(cmd.Action, time.Now())
	ack.State = d.state().State
	if err != nil {
		var ae *actionError
		if errors.As(err, &ae) {
			ack.Error, ack.Detail = ae.Code, ae.Detail
		} else {
			ack.Error, ack.Detail = ErrGPIO, err.Error()
		}
		return c.refuse(ackTopic, p.Device, ack)
	}
	ack.OK, ack.Result = true, result
	c.log.Info("command executed", "device", p.Device, "action", cmd.Action, "result", result, "nonce", env.Nonce)
	return ackTopic, ack, true
}

// useNonces makes the commander persist nonces in n and remember the
// nonces an earlier run took on (live, from openNonces).
func (c *commander) useNonces(n *nonceFile, live []seenNonce) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nonces, c.earlier = n, make(map[string]bool, len(live))
	for _, s := range live {
		if err := c.replay.Record(s.kid, s.nonce, s.exp, now); err == nil {
			c.earlier[s.kid+" "+s.nonce] = true
		}
	}
}

// takeEarlier reports, once, whether (kid, nonce) was taken on by an
// earlier run of the agent.
func (c *commander) takeEarlier(kid, nonce string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := kid + " " + nonce
	if !c.earlier[k] {
		return false
	}
	delete(c.earlier, k)
	return true
}

func (c *commander) refuse(ackTopic, device string, ack Ack) (string, Ack, bool) {
	c.log.Warn("command refused", "device", device, "nonce", ack.Nonce, "error", ack.Error, "detail", ack.Detail)
	return ackTopic, ack, true
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// lenientNonce digs the nonce out of a payload that is not a valid
// envelope, so even that refusal can be matched to its command.
func lenientNonce(payload []byte) string {
	var e struct {
		Nonce string `json:"nonce"`
	}
	if json.Unmarshal(payload, &e) != nil || len(e.Nonce) > 64 {
		return ""
	}
	return e.Nonce
}
