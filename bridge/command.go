package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"homemq/topics"
)

// ErrAckTimeout completes a SendCommand whose device did not answer in time.
var ErrAckTimeout = errors.New("timed out waiting for the device's ack")

// ackSub is one ack topic subscribed for the commands waiting on it.
type ackSub struct {
	refs    int
	ready   chan struct{} // closed when the SUBACK is in
	gone    chan struct{} // closed when the topic is unsubscribed
	closing bool
	err     error                    // the subscription's refusal, if any
	waiters map[string][]chan []byte // by nonce
}

// sendCommand publishes an envelope to the device's cmd topic and waits for
// the ack carrying the envelope's nonce. The broker decides, exactly as for
// an MQTT client, whether the command may go (ACL, envelope, replay,
// expiry); its refusal becomes the error.
func (c *conn) sendCommand(ctx context.Context, home, agent, device string, env []byte) (any, error) {
	ackTopic := topics.AckTopic(home, agent, device)
	nonce := envelopeNonce(env)
	var ch chan []byte
	var readable bool
	if nonce != "" {
		// Subscribe before publishing, so a fast ack cannot be missed.
		var release func()
		ch, readable, release = c.holdAck(ctx, ackTopic, nonce)
		defer release()
	}
	if err := c.session.publish(ctx, topics.CommandTopic(home, agent, device), env); err != nil {
		return nil, err
	}
	if !readable {
		// Delivered, but this identity may not read the ack (or the envelope
		// has no nonce to match one with).
		return nil, nil
	}
	t := time.NewTimer(c.srv.cfg.AckTimeout)
	defer t.Stop()
	select {
	case ack := <-ch:
		return ackResult(ack), nil
	case <-t.C:
		return nil, ErrAckTimeout
	case <-ctx.Done():
		if c.ctx.Err() != nil {
			return nil, errors.New("the connection closed before the device's ack arrived")
		}
		return nil, errors.New("canceled before the device's ack arrived")
	}
}

// holdAck registers a waiter for nonce on ackTopic, subscribing the topic
// if this is its first waiter. It reports whether the subscription stands
// and returns the function that drops the waiter (and the subscription with
// the last one).
func (c *conn) holdAck(ctx context.Context, ackTopic, nonce string) (chan []byte, bool, func()) {
	ch := make(chan []byte, 1)
	h := &c.hub
	for {
		h.mu.Lock()
		st := h.acks[ackTopic]
		if st != nil && st.closing {
			gone := st.gone
			h.mu.Unlock()
			select {
			case <-gone:
				continue
			case <-ctx.Done():
				return ch, false, func() {}
			}
		}
		first := st == nil
		if first {
			st = &ackSub{ready: make(chan struct{}), gone: make(chan struct{}), waiters: map[string][]chan []byte{}}
			h.acks[ackTopic] = st
		}
		st.refs++
		st.waiters[nonce] = append(st.waiters[nonce], ch)
		h.mu.Unlock()
		if first {
			st.err = c.session.subscribe(ctx, ackTopic)
			close(st.ready)
		} else {
			<-st.ready
		}
		return ch, st.err == nil, func() { c.releaseAck(ackTopic, st, nonce, ch) }
	}
}

func (c *conn) releaseAck(ackTopic string, st *ackSub, nonce string, ch chan []byte) {
	h := &c.hub
	h.mu.Lock()
	ws := st.waiters[nonce]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(st.waiters, nonce)
	} else {
		st.waiters[nonce] = ws
	}
	st.refs--
	if st.refs > 0 {
		h.mu.Unlock()
		return
	}
	st.closing = true
	h.mu.Unlock()
	if st.err == nil && c.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		c.session.unsubscribe(ctx, ackTopic)
		cancel()
	}
	h.mu.Lock()
	delete(h.acks, ackTopic)
	h.mu.Unlock()
	close(st.gone)
}

// deliverAck hands an ack to the commands waiting for its nonce.
func (c *conn) deliverAck(ackTopic string, payload []byte) {
	nonce := envelopeNonce(payload)
	if nonce == "" {
		return
	}
	h := &c.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.acks[ackTopic]
	if st == nil {
		return
	}
	for _, ch := range st.waiters[nonce] {
		select {
		case ch <- payload:
		default:
		}
	}
}

// envelopeNonce reads the "nonce" field of a JSON object (an envelope or an
// ack); "" if there is none.
func envelopeNonce(b []byte) string {
	var v struct {
		Nonce json.RawMessage `json:"nonce"`
	}
	if json.Unmarshal(b, &v) != nil {
		return ""
	}
	var s string
	if json.Unmarshal(v.Nonce, &s) != nil {
		return ""
	}
	return s
}

// ackResult is the completion's result for an ack: its JSON, compacted, or
// its text when it is not JSON.
func ackResult(ack []byte) any {
	var buf bytes.Buffer
	if json.Valid(ack) && json.Compact(&buf, ack) == nil {
		return json.RawMessage(buf.Bytes())
	}
	return string(ack)
}
