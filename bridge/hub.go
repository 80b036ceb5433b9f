package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"homemq/topics"
)

// hubState is what the hub remembers per connection: the homes subscribed
// to, the ack topics being waited on and the invocations running.
type hubState struct {
	mu      sync.Mutex
	homes   map[string]bool
	acks    map[string]*ackSub
	running map[string]context.CancelFunc
}

func newHubState() hubState {
	return hubState{homes: map[string]bool{}, acks: map[string]*ackSub{}, running: map[string]context.CancelFunc{}}
}

// method is a hub method: its parameter names (for arity and messages) and
// its body, which returns the completion's result or error.
type method struct {
	params []string
	call   func(ctx context.Context, c *conn, args []json.RawMessage) (any, error)
}

// methods are the hub methods of /signalr/home. Names are case-sensitive,
// as in the hub protocol.
var methods = map[string]method{
	"SendCommand": {[]string{"home", "agent", "device", "envelope"}, func(ctx context.Context, c *conn, a []json.RawMessage) (any, error) {
		ids, err := argIDs(a[:3], "home", "agent", "device")
		if err != nil {
			return nil, err
		}
		env, err := argPayload(a[3], "envelope")
		if err != nil {
			return nil, err
		}
		return c.sendCommand(ctx, ids[0], ids[1], ids[2], env)
	}},
	"SendCommandAsync": {[]string{"target", "message"}, func(ctx context.Context, c *conn, a []json.RawMessage) (any, error) {
		var target string
		if json.Unmarshal(a[0], &target) != nil {
			return nil, errors.New(`argument 1 (target) must be a string "home/agent/device"`)
		}
		parts := strings.Split(target, "/")
		if len(parts) != 3 {
			return nil, fmt.Errorf(`target %q must look like "home/agent/device"`, target)
		}
		for i, name := range []string{"home", "agent", "device"} {
			if !topics.ValidID(parts[i]) {
				return nil, fmt.Errorf("target %q: %s %q is not a valid id (1-64 of a-z, 0-9, _ and -)", target, name, parts[i])
			}
		}
		env, err := argPayload(a[1], "message")
		if err != nil {
			return nil, err
		}
		return c.sendCommand(ctx, parts[0], parts[1], parts[2], env)
	}},
	"Ack": {[]string{"home", "agent", "device", "ack"}, func(ctx context.Context, c *conn, a []json.RawMessage) (any, error) {
		ids, err := argIDs(a[:3], "home", "agent", "device")
		if err != nil {
			return nil, err
		}
		ack, err := argPayload(a[3], "ack")
		if err != nil {
			return nil, err
		}
		if err := c.session.publish(ctx, topics.AckTopic(ids[0], ids[1], ids[2]), ack); err != nil {
			return nil, err
		}
		return nil, nil
	}},
	"Subscribe": {[]string{"home"}, func(ctx context.Context, c *conn, a []json.RawMessage) (any, error) {
		ids, err := argIDs(a, "home")
		if err != nil {
			return nil, err
		}
		return c.subscribeHome(ctx, ids[0])
	}},
	"Unsubscribe": {[]string{"home"}, func(ctx context.Context, c *conn, a []json.RawMessage) (any, error) {
		ids, err := argIDs(a, "home")
		if err != nil {
			return nil, err
		}
		c.hub.mu.Lock()
		delete(c.hub.homes, ids[0])
		c.hub.mu.Unlock()
		c.session.unsubscribe(ctx, homeFilters(ids[0])...)
		return nil, nil
	}},
}

// argIDs reads string arguments that must be valid topic ids.
func argIDs(args []json.RawMessage, names ...string) ([]string, error) {
	out := make([]string, len(names))
	for i, name := range names {
		if json.Unmarshal(args[i], &out[i]) != nil {
			return nil, fmt.Errorf("argument %d (%s) must be a string", i+1, name)
		}
		if !topics.ValidID(out[i]) {
			return nil, fmt.Errorf("%s %q is not a valid id (1-64 of a-z, 0-9, _ and -)", name, out[i])
		}
	}
	return out, nil
}

// argPayload reads a message argument: a JSON string is sent as its text,
// an object or array as its JSON.
func argPayload(raw json.RawMessage, name string) ([]byte, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []byte(s), nil
	}
	raw = json.RawMessage(strings.TrimSpace(string(raw)))
	if len(raw) > 0 && (raw[0] == '{' || raw[0] == '[') {
		return raw, nil
	}
	return nil, fmt.Errorf("argument %s must be a string or a JSON object", name)
}

// invoke runs a client's invocation in its own goroutine, within the
// connection's limit, and completes it when it has an invocation id.
func (c *conn) invoke(m Message) {
	fail := func(msg string) {
		if m.HasInvocationID {
			c.write(CompletionErrorRecord(m.InvocationID, msg))
		}
	}
	meth, ok := methods[m.Target]
	switch {
	case !ok:
		fail(fmt.Sprintf("Unknown hub method '%s'", m.Target))
		return
	case len(m.StreamIDs) > 0:
		fail("streamed arguments are not supported")
		return
	case len(m.Arguments) != len(meth.params):
		fail(fmt.Sprintf("%s takes %d arguments (%s), got %d", m.Target, len(meth.params), strings.Join(meth.params, ", "), len(m.Arguments)))
		return
	}
	if exp := c.currentClaims().ExpiresAtTime(); !exp.IsZero() && time.Now().After(exp) {
		fail("token expired at " + exp.UTC().Format(time.RFC3339) + "; connect again with a fresh token")
		return
	}
	select {
	case c.invocations <- struct{}{}:
	default:
		fail(fmt.Sprintf("too many invocations in progress (the limit is %d); wait for one to complete", cap(c.invocations)))
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	if m.HasInvocationID {
		c.hub.mu.Lock()
		if _, dup := c.hub.running[m.InvocationID]; dup {
			c.hub.mu.Unlock()
			cancel()
			<-c.invocations
			fail("invocation id " + m.InvocationID + " is already in use")
			return
		}
		c.hub.running[m.InvocationID] = cancel
		c.hub.mu.Unlock()
	}
	go func() {
		defer func() { <-c.invocations }()
		result, err := meth.call(ctx, c, m.Arguments)
		if m.HasInvocationID {
			c.hub.mu.Lock()
			delete(c.hub.running, m.InvocationID)
			c.hub.mu.Unlock()
		}
		cancel()
		switch {
		case !m.HasInvocationID:
		case err != nil:
			c.write(CompletionErrorRecord(m.InvocationID, err.Error()))
		default:
			c.write(CompletionRecord(m.InvocationID, result))
		}
	}()
}

// cancel stops a running invocation (CancelInvocation); it still completes.
func (h *hubState) cancel(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if f := h.running[id]; f != nil {
		f()
	}
}

// homeFilters are the MQTT filters behind Subscribe(home).
func homeFilters(home string) []string {
	return []string{
		topics.StateTopic(home, topics.AnyLevel, topics.AnyLevel),
		topics.EventTopic(home, topics.AnyLevel, topics.AnyLevel),
		topics.StatusTopic(home, topics.AnyLevel),
	}
}

// refusal is a filter the broker refused, in Subscribe's result.
type refusal struct {
	Filter string `json:"filter"`
	Reason string `json:"reason"`
}

// subscribeResult is Subscribe's result.
type subscribeResult struct {
	Home       string    `json:"home"`
	Subscribed []string  `json:"subscribed"`
	Refused    []refusal `json:"refused"`
}

// subscribeHome subscribes the home's state, event and status topics; it
// fails only when the broker refuses every one of them.
func (c *conn) subscribeHome(ctx context.Context, home string) (any, error) {
	c.hub.mu.Lock()
	c.hub.homes[home] = true
	c.hub.mu.Unlock()
	res := subscribeResult{Home: home, Subscribed: []string{}, Refused: []refusal{}}
	var msgs []string
	for _, f := range homeFilters(home) {
		if err := c.session.subscribe(ctx, f); err != nil {
			res.Refused = append(res.Refused, refusal{f, err.Error()})
			msgs = append(msgs, err.Error())
			continue
		}
		res.Subscribed = append(res.Subscribed, f)
	}
	if len(res.Subscribed) == 0 {
		c.hub.mu.Lock()
		delete(c.hub.homes, home)
		c.hub.mu.Unlock()
		return nil, fmt.Errorf("Subscribe(%s) refused: %s", home, strings.Join(msgs, "; "))
	}
	return res, nil
}

// subscribeCommands subscribes an agent's own cmd topics in every home where
// its token gives it the agent role, so its commands arrive as invocations.
func (c *conn) subscribeCommands() {
	cl := c.currentClaims()
	agent, ok := topics.AgentOfSubject(cl.Subject)
	if !ok {
		return
	}
	for home, role := range cl.Homes {
		if topics.Role(role) != topics.Agent {
			continue
		}
		f := topics.CommandTopic(home, agent, topics.AnyLevel)
		if err := c.session.subscribe(c.ctx, f); err != nil {
			c.log("agent command subscription refused", "filter", f, "error", err)
		}
	}
}

// route turns a message from the broker into client invocations.
func (c *conn) route(topic string, payload []byte) {
	p, err := topics.Parse(topic)
	if err != nil {
		return
	}
	switch p.Kind {
	case topics.KindAck:
		c.deliverAck(topic, payload)
	case topics.KindCmd:
		c.write(InvocationRecord("Command", p.Home, p.Agent, p.Device, string(payload)))
		c.write(InvocationRecord("ReceiveCommandAsync", string(payload)))
	case topics.KindState, topics.KindEvent, topics.KindStatus:
		c.hub.mu.Lock()
		on := c.hub.homes[p.Home]
		c.hub.mu.Unlock()
		switch {
		case !on:
		case p.Kind == topics.KindState:
			c.write(InvocationRecord("State", p.Home, p.Agent, p.Device, string(payload)))
		case p.Kind == topics.KindEvent:
			c.write(InvocationRecord("Event", p.Home, p.Agent, p.Device, string(payload)))
		default:
			c.write(InvocationRecord("Status", p.Home, p.Agent, string(payload)))
		}
	}
}
