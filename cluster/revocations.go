package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"homemq/auth"
)

// revocationKey identifies an entry: the same entry published twice (a
// retry, or read back by its own node) is applied once.
func revocationKey(e auth.Revocation) string {
	return fmt.Sprintf("%s|%s|%d|%d", e.JTI, e.Sub, e.At, e.Until)
}

// followRevocations publishes this node's new revocations to the shared
// stream and applies every entry of the stream, from its start, that this
// node does not have. auth.Revocations.Add persists an applied entry and
// tells the Guard, which cuts matching connections. It returns once the
// entries the stream held when it was called are applied, so a node that
// comes back never serves a token revoked while it was away; the entries
// the node holds and the stream lacks (made while the stream could not
// take them, or written offline) are then published to the others.
func (n *Node) followRevocations(ctx context.Context) error {
	if n.d.Revocations == nil {
		return nil
	}
	for _, e := range n.d.Revocations.List() {
		n.revoked.Store(revocationKey(e), true)
	}
	last, err := n.lastRevocation(ctx)
	if err != nil {
		return err
	}
	var (
		mu       sync.Mutex
		inStream = map[string]bool{} // until caught up
		caughtUp = make(chan struct{})
		once     sync.Once
	)
	if last == 0 {
		once.Do(func() { close(caughtUp) })
	}
	feed, err := n.newRevocationFeed(ctx, func(msg jetstream.Msg) {
		key, ok := n.applyRevocation(msg)
		mu.Lock()
		if ok && inStream != nil {
			inStream[key] = true
		}
		mu.Unlock()
		if md, err := msg.Metadata(); err == nil && md.Sequence.Stream >= last {
			once.Do(func() { close(caughtUp) })
		}
	})
	if err != nil {
		return err
	}
	select {
	case <-caughtUp:
	case <-ctx.Done():
		feed.Stop()
		return fmt.Errorf("catch up with %s (entry %d): %w", RevocationsStream, last, ctx.Err())
	}
	n.d.Revocations.OnRevoke(n.publishRevocation)
	n.feed = feed
	mu.Lock()
	var lacking []auth.Revocation
	now := time.Now().Unix()
	for _, e := range n.d.Revocations.List() {
		if !inStream[revocationKey(e)] && e.Until >= now {
			lacking = append(lacking, e)
		}
	}
	inStream = nil
	mu.Unlock()
	if len(lacking) > 0 {
		n.log.Info("cluster: publishing the revocations this node holds and the shared stream lacks", "count", len(lacking))
		go func() {
			for _, e := range lacking {
				n.spreadRevocation(e)
			}
		}()
	}
	return nil
}

// lastRevocation is the stream's last sequence, as its leader knows it (0
// when it is empty).
func (n *Node) lastRevocation(ctx context.Context) (uint64, error) {
	s, err := n.js.Stream(ctx, RevocationsStream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", RevocationsStream, err)
	}
	m, err := s.GetLastMsgForSubject(ctx, revokeSubject)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("read %s: %w", RevocationsStream, err)
	}
	return m.Sequence, nil
}

// resendEvery bounds the wait between two attempts to publish a
// revocation the stream did not take: an entry lands within a second of
// the stream's new leader (an election takes seconds), at the price of an
// attempt a second per entry while there is none.
const resendEvery = time.Second

// publishRevocation is the revocation list's listener: an entry made on
// this node goes to the others. One applied from the stream does not. If
// the stream cannot take it (no leader yet after a node died, or no
// quorum), it is in force on this node at once and published again in the
// background until the stream takes it, the entry expires or the node
// stops.
func (n *Node) publishRevocation(e auth.Revocation) {
	if _, seen := n.revoked.LoadOrStore(revocationKey(e), true); seen {
		return
	}
	n.spreadRevocation(e)
}

// spreadRevocation publishes e; if the stream does not take it, it logs
// the error and publishes it again in the background.
func (n *Node) spreadRevocation(e auth.Revocation) {
	err := n.sendRevocation(e)
	if err == nil {
		return
	}
	n.log.Error("cluster: a revocation did not reach the other nodes yet; this node publishes it again until it does", "jti", e.JTI, "sub", e.Sub, "error", err)
	go func() {
		wait := 250 * time.Millisecond
		for {
			select {
			case <-n.done:
				n.log.Error("cluster: the node stopped before a revocation reached the other nodes; it publishes it at its next start", "jti", e.JTI, "sub", e.Sub)
				return
			case <-time.After(wait):
			}
			if time.Now().Unix() > e.Until {
				return
			}
			if err := n.sendRevocation(e); err == nil {
				n.log.Info("cluster: a revocation published again reached the other nodes", "jti", e.JTI, "sub", e.Sub)
				return
			}
			wait = min(2*wait, resendEvery)
		}
	}()
}

// sendRevocation publishes e to the stream, signed, and waits for the
// stream's acknowledgement.
func (n *Node) sendRevocation(e auth.Revocation) error {
	body, _ := json.Marshal(e)
	msg := &nats.Msg{Subject: revokeSubject, Data: body, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, revocationKey(e))
	n.sig.sign(msg)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := n.js.PublishMsg(ctx, msg)
	return err
}

// applyRevocation adds an entry another node made, signed with the
// cluster secret (msgsig.go), and returns its key; false for a message
// that is no entry.
func (n *Node) applyRevocation(msg jetstream.Msg) (string, bool) {
	if !n.sig.check(msg.Subject(), msg.Headers(), msg.Data()) {
		return "", false
	}
	var e auth.Revocation
	if err := json.Unmarshal(msg.Data(), &e); err != nil {
		n.log.Warn("cluster: dropped a malformed revocation", "error", err)
		return "", false
	}
	key := revocationKey(e)
	if _, seen := n.revoked.LoadOrStore(key, true); seen {
		return key, true
	}
	if err := n.d.Revocations.Add(e); err != nil {
		n.log.Error("cluster: could not save a revocation from another node (it is in force until restart)", "error", err)
	}
	return key, true
}
