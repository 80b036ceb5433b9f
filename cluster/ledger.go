package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"homemq/envelope"
)

// Ledger is the replay cache every node shares: a JetStream KV bucket
// with one key per accepted envelope, kept for the envelope's longest
// validity. It satisfies hooks.ReplayLedger.
type Ledger struct {
	kv     jetstream.KeyValue
	counts *counters // status.go
}

// Claim records that envelope kid/nonce, valid until exp, was accepted.
// The put is create-only and acknowledged by a JetStream quorum, so the
// claim survives the node that made it. It returns an *envelope.Error with
// reason replay when any node claimed it before, and another error when
// the cluster cannot answer: the caller must then refuse the command.
func (l *Ledger) Claim(kid, nonce string, exp time.Time) error {
	sum := sha256.Sum256([]byte(kid + "\x00" + nonce))
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := l.kv.Create(ctx, hex.EncodeToString(sum[:]), []byte(strconv.FormatInt(exp.Unix(), 10)))
	l.counts.ledgerChecks.Add(1)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyExists):
		l.counts.ledgerRefusals.Add(1)
		return &envelope.Error{Reason: envelope.ReasonReplay, Detail: "nonce already used (accepted by a node of the cluster); seal a new command"}
	}
	l.counts.ledgerErrs.Add(1)
	return fmt.Errorf("cluster: the shared replay cache cannot answer (%v); try again", err)
}
