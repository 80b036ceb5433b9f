package cluster

import (
	"context"
	"encoding/json"
	"fmt"

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
// tells the Guard, which cuts matching connections.
func (n *Node) followRevocations(ctx context.Context) error {
	if n.d.Revocations == nil {
		return nil
	}
	for _, e := range n.d.Revocations.List() {
		n.revoked.Store(revocationKey(e), true)
	}
	n.d.Revocations.OnRevoke(n.publishRevocation)
	c, err := n.js.OrderedConsumer(ctx, RevocationsStream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return fmt.Errorf("consumer of %s: %w", RevocationsStream, err)
	}
	cc, err := c.Consume(n.applyRevocation, pullExpiry, pullHeartbeat)
	if err != nil {
		return fmt.Errorf("consume %s: %w", RevocationsStream, err)
	}
	n.feed = cc
	return nil
}

// publishRevocation is the revocation list's listener: an entry made on
// this node goes to the others. One applied from the stream does not.
func (n *Node) publishRevocation(e auth.Revocation) {
	if _, seen := n.revoked.LoadOrStore(revocationKey(e), true); seen {
		return
	}
	body, _ := json.Marshal(e)
	msg := &nats.Msg{Subject: revokeSubject, Data: body, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, revocationKey(e))
	n.sig.sign(msg)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := n.js.PublishMsg(ctx, msg); err != nil {
		n.log.Error("cluster: a revocation did not reach the other nodes; revoke again", "jti", e.JTI, "sub", e.Sub, "error", err)
		n.revoked.Delete(revocationKey(e))
	}
}

// applyRevocation adds an entry another node made, signed with the
// cluster secret (msgsig.go).
func (n *Node) applyRevocation(msg jetstream.Msg) {
	if !n.sig.check(msg.Subject(), msg.Headers(), msg.Data()) {
		return
	}
	var e auth.Revocation
	if err := json.Unmarshal(msg.Data(), &e); err != nil {
		n.log.Warn("cluster: dropped a malformed revocation", "error", err)
		return
	}
	if _, seen := n.revoked.LoadOrStore(revocationKey(e), true); seen {
		return
	}
	if err := n.d.Revocations.Add(e); err != nil {
		n.log.Error("cluster: could not save a revocation from another node (it is in force until restart)", "error", err)
	}
}
