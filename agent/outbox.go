package agent

import (
	"errors"
	"sync"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// outMsg is one message the agent owes the broker.
type outMsg struct {
	topic   string
	payload []byte
	retain  bool
	state   string // the device id when this is a retained state
}

type sentMsg struct {
	outMsg
	tok mqtt.Token
}

// outbox queues acks, events and states in order and hands them to the
// connected client from one goroutine, so pins never wait on the network.
// While the agent is offline, acks and events wait (up to maxQueued, the
// oldest dropped first) and a device's queued state is replaced by its
// newer one; every state is published afresh on each connect anyway. A
// message handed to a connection that died before the broker confirmed it
// is queued again for the next one.
type outbox struct {
	mu     sync.Mutex
	client mqtt.Client // the connected client; nil while offline
	queue  []outMsg
	sent   []sentMsg // handed to client, not yet confirmed
	wake   chan struct{}
	drops  int
}

const maxQueued = 1024

func newOutbox() *outbox { return &outbox{wake: make(chan struct{}, 1)} }

func (o *outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// push queues m at the end.
func (o *outbox) push(m outMsg) {
	o.mu.Lock()
	if m.state != "" {
		for i, q := range o.queue {
			if q.state == m.state {
				o.queue = append(o.queue[:i], o.queue[i+1:]...)
				break
			}
		}
	}
	o.queue = append(o.queue, m)
	if len(o.queue) > maxQueued {
		o.queue = o.queue[1:]
		o.drops++
	}
	o.mu.Unlock()
	o.signal()
}

// next takes the first queued message and the client to hand it to; ok is
// false while offline or when nothing is queued.
func (o *outbox) next() (mqtt.Client, outMsg, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.client == nil || len(o.queue) == 0 {
		return nil, outMsg{}, false
	}
	m := o.queue[0]
	o.queue = o.queue[1:]
	return o.client, m, true
}

// track remembers m, handed to c, until the broker confirms it. If c is no
// longer the connected client (it died while paho held the message) or
// refused m outright, m goes back to the front of the queue, and track
// reports false: stop until the next wake.
func (o *outbox) track(c mqtt.Client, m outMsg, tok mqtt.Token) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if refusedNow(tok) || (c != o.client && !confirmed(tok)) {
		o.queue = append([]outMsg{m}, o.queue...)
		return false
	}
	kept := o.sent[:0]
	for _, s := range o.sent {
		if !confirmed(s.tok) {
			kept = append(kept, s)
		}
	}
	o.sent = append(kept, sentMsg{m, tok})
	return true
}

// attach makes c the connected client. What the previous connection never
// confirmed goes back to the front of the queue, in order, except states
// (the caller has just published every device's current state).
func (o *outbox) attach(c mqtt.Client) {
	o.mu.Lock()
	var again []outMsg
	for _, s := range o.sent {
		if s.state == "" && !confirmed(s.tok) {
			again = append(again, s.outMsg)
		}
	}
	o.sent = nil
	o.queue = append(again, o.queue...)
	o.client = c
	o.mu.Unlock()
	o.signal()
}

// detach marks the agent offline: messages wait in the queue.
func (o *outbox) detach() {
	o.mu.Lock()
	o.client = nil
	o.mu.Unlock()
}

// drain detaches and returns everything owed: unconfirmed messages first,
// then the queue (for the last flush at shutdown).
func (o *outbox) drain() []outMsg {
	o.mu.Lock()
	defer o.mu.Unlock()
	var all []outMsg
	for _, s := range o.sent {
		if !confirmed(s.tok) {
			all = append(all, s.outMsg)
		}
	}
	all = append(all, o.queue...)
	o.sent, o.queue, o.client = nil, nil, nil
	return all
}

// dropStates forgets queued states: the caller is about to publish every
// device's current state.
func (o *outbox) dropStates() {
	o.mu.Lock()
	defer o.mu.Unlock()
	kept := o.queue[:0]
	for _, m := range o.queue {
		if m.state == "" {
			kept = append(kept, m)
		}
	}
	o.queue = kept
}

func confirmed(t mqtt.Token) bool {
	select {
	case <-t.Done():
		return t.Error() == nil
	default:
		return false
	}
}

// refusedNow reports whether paho refused a publish at once because the
// client is not connected (nothing was stored or sent).
func refusedNow(t mqtt.Token) bool {
	select {
	case <-t.Done():
		return errors.Is(t.Error(), mqtt.ErrNotConnected)
	default:
		return false
	}
}
