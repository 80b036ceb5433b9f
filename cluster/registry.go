package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"homemq/registry"
)

// The registry's change log (docs/cluster.md, "Registry").
const (
	RegistryStream  = "HOMEMQ_REGISTRY"
	registrySubject = "homemq.registry"
	// macHeader carries the HMAC-SHA256 of an entry's data under the
	// cluster secret's "registry" key.
	macHeader = "Homemq-Mac"
)

// changeSet is one entry of the registry's log: the changes of one write
// transaction, on top of entry After.
type changeSet struct {
	Node    string            `json:"node"`
	After   uint64            `json:"after"`
	Changes []registry.Change `json:"changes"`
}

// registryLog is the registry's change log in JetStream: the
// registry.Replicator of a node, and the consumer that applies every
// node's entries to the local copy.
type registryLog struct {
	n      *Node
	reg    *registry.Registry
	stream jetstream.Stream
	key    []byte
	feed   jetstream.ConsumeContext
}

// followRegistry makes the log, brings the local registry onto it (resume,
// seed an empty log, or reset to it), applies its entries up to its end
// (until ctx ends; each JetStream request is bounded by opTimeout) and
// then sends the registry's writes through it.
func (n *Node) followRegistry(ctx context.Context) error {
	reg := n.d.Registry
	octx, cancel := context.WithTimeout(ctx, opTimeout) // JetStream requests
	defer cancel()
	s, err := n.js.CreateOrUpdateStream(octx, jetstream.StreamConfig{
		Name:     RegistryStream,
		Subjects: []string{registrySubject},
		Storage:  jetstream.FileStorage,
		Replicas: n.cfg.replicas(),
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", RegistryStream, err)
	}
	l := &registryLog{n: n, reg: reg, stream: s, key: n.secret.Key("registry", 32)}
	info := s.CachedInfo()
	id := info.Created.UTC().Format(time.RFC3339Nano)
	local, applied, err := reg.LogPosition()
	if err != nil {
		return err
	}
	resume := local == id && applied <= info.State.LastSeq
	if !resume && info.State.LastSeq == 0 {
		err = reg.Seed(octx, l, id)
		var conflict *registry.ConflictError
		switch {
		case err == nil:
			resume = true
			n.log.Info("cluster: the registry's shared log starts with this node's registry", "stream", RegistryStream)
		case !errors.As(err, &conflict):
			return fmt.Errorf("cluster: seed %s with this node's registry: %w", RegistryStream, err)
		}
	}
	if !resume {
		saved, err := reg.Reset(id)
		if err != nil {
			return fmt.Errorf("cluster: follow %s: %w", RegistryStream, err)
		}
		if saved != "" {
			n.log.Warn("cluster: this node's registry is replaced by the cluster's; its records before joining are kept in "+saved+" (add what is missing through the admin API)", "stream", RegistryStream)
		}
	}
	if err := l.consume(octx); err != nil {
		return err
	}
	last, err := l.Last(octx)
	if err == nil {
		err = reg.WaitApplied(ctx, last)
	}
	if err != nil {
		l.stop()
		return fmt.Errorf("cluster: catch up with %s: %w", RegistryStream, err)
	}
	n.registry = l
	reg.Replicate(l)
	return nil
}

// consume applies the log's entries after the local copy's position, as
// they come.
func (l *registryLog) consume(ctx context.Context) error {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if applied := l.reg.Applied(); applied > 0 {
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: applied + 1}
	}
	c, err := l.n.js.OrderedConsumer(ctx, RegistryStream, cfg)
	if err != nil {
		return fmt.Errorf("consumer of %s: %w", RegistryStream, err)
	}
	if l.feed, err = c.Consume(l.apply, pullExpiry, pullHeartbeat); err != nil {
		return fmt.Errorf("consume %s: %w", RegistryStream, err)
	}
	return nil
}

// apply applies one entry of any node (its own are skipped by the
// registry). An entry that is not a change-set sealed with the cluster's
// key on top of the entry before it is applied as nothing.
func (l *registryLog) apply(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		l.n.log.Error("cluster: a registry entry without metadata", "error", err)
		return
	}
	seq := md.Sequence.Stream
	cs, err := l.open(msg.Data(), msg.Headers().Get(macHeader))
	if err == nil && cs.After != seq-1 {
		err = fmt.Errorf("it was written on top of entry %d, not %d (replayed?)", cs.After, seq-1)
	}
	if err != nil {
		l.n.log.Error("cluster: a registry entry was ignored: it was not written by a node of this cluster", "seq", seq, "error", err)
		cs.Changes = nil
	}
	if err := l.reg.Apply(seq, cs.Changes); err != nil {
		l.n.log.Error("cluster: could not apply a registry entry; this node's registry writes fail until it is restarted and catches up", "seq", seq, "error", err)
	}
}

// seal is an entry's data and MAC.
func (l *registryLog) seal(cs changeSet) ([]byte, string, error) {
	data, err := json.Marshal(cs)
	if err != nil {
		return nil, "", err
	}
	m := hmac.New(sha256.New, l.key)
	m.Write(data)
	return data, base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

// open checks an entry's MAC and decodes it.
func (l *registryLog) open(data []byte, mac string) (changeSet, error) {
	var cs changeSet
	got, err := base64.RawURLEncoding.DecodeString(mac)
	m := hmac.New(sha256.New, l.key)
	m.Write(data)
	if err != nil || !hmac.Equal(got, m.Sum(nil)) {
		return cs, errors.New("its MAC does not match the cluster secret's")
	}
	if err := json.Unmarshal(data, &cs); err != nil {
		return cs, fmt.Errorf("not a change-set: %w", err)
	}
	return cs, nil
}

// Commit appends a change-set if the log's last entry is after; it is the
// registry's registry.Replicator.
func (l *registryLog) Commit(ctx context.Context, after uint64, changes []registry.Change) (uint64, error) {
	data, mac, err := l.seal(changeSet{Node: l.n.name, After: after, Changes: changes})
	if err != nil {
		return 0, err
	}
	msg := &nats.Msg{Subject: registrySubject, Data: data, Header: nats.Header{}}
	msg.Header.Set(macHeader, mac)
	ack, err := l.n.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequence(after))
	if err != nil {
		if last, ok := wrongLastSequence(err); ok {
			return 0, &registry.ConflictError{Last: last}
		}
		return 0, fmt.Errorf("append to %s: %w", RegistryStream, err)
	}
	return ack.Sequence, nil
}

// Last is the log's last sequence, as the stream's leader knows it: a
// message get is answered by the leader only, where stream info may be
// answered by a lagging replica while the stream is young or has no
// leader.
func (l *registryLog) Last(ctx context.Context) (uint64, error) {
	m, err := l.stream.GetLastMsgForSubject(ctx, registrySubject)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("read %s: %w", RegistryStream, err)
	}
	return m.Sequence, nil
}

// wrongLastSequence reports whether err is JetStream's refusal of an
// append on a condition of the last sequence, and that sequence if it
// says (0 if not).
func wrongLastSequence(err error) (uint64, bool) {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return 0, false
	}
	switch apiErr.ErrorCode {
	case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
	default:
		return 0, false
	}
	_, tail, _ := strings.Cut(apiErr.Description, ": ")
	last, _ := strconv.ParseUint(strings.TrimSpace(tail), 10, 64)
	return last, true
}

// stop stops applying entries.
func (l *registryLog) stop() {
	if l.feed != nil {
		l.feed.Stop()
	}
}
