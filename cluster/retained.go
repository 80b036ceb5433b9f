package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RetainedBucket is the JetStream KV bucket of the cluster's retained
// messages, keyed by topic (retainedKey).
const RetainedBucket = "HOMEMQ_RETAINED"

// loadTimeout bounds how long a starting node waits for the bucket's
// content before it serves clients.
const loadTimeout = 30 * time.Second

// retainedKey maps a topic to its key in RetainedBucket: its levels joined
// by ".", as in its NATS subject after the shard. A topic that does not
// cross nodes, or whose levels hold a character KV keys do not allow
// (outside [-/_=a-zA-Z0-9]), is not in the bucket: it stays retained on
// its node.
func retainedKey(topic string) (string, bool) {
	key, ok := topicTokens(topic)
	if !ok {
		return "", false
	}
	for _, c := range []byte(key) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '/', c == '_', c == '=', c == '.':
		default:
			return "", false
		}
	}
	return key, true
}

// retainedTopic is the topic of a bucket key.
func retainedTopic(key string) string { return strings.ReplaceAll(key, ".", "/") }

// encodeRetained is a bucket value: the message's attributes as JSON (in
// which encoding/json never writes a raw newline), a newline, the payload.
func encodeRetained(m meta, payload []byte) []byte {
	hdr, _ := json.Marshal(m)
	return append(append(hdr, '\n'), payload...)
}

// decodeRetained reads a bucket value.
func decodeRetained(v []byte) (meta, []byte, error) {
	var m meta
	hdr, payload, ok := bytes.Cut(v, []byte{'\n'})
	if !ok {
		return m, nil, errors.New("no attributes before the payload")
	}
	if err := json.Unmarshal(hdr, &m); err != nil {
		return m, nil, err
	}
	return m, payload, nil
}

// revisions is what a node knows of one bucket key.
type revisions struct {
	applied uint64 // the newest revision in the local retained store
	own     uint64 // the newest revision this node wrote
}

// retained keeps the node's mochi retained store in line with the bucket:
// the origin node writes a retained publish to the bucket before it is
// acknowledged; a watch applies every node's writes to the local store, a
// revision never replaced by an older one; a starting node loads the
// bucket after mochi has read its own store and before it serves clients.
type retained struct {
	n  *Node
	kv jetstream.KeyValue
	w  jetstream.KeyWatcher

	mu      sync.Mutex
	revs    map[string]revisions
	initial map[string]jetstream.KeyValueEntry // the bucket's content, until loaded
	ready   bool                               // loaded: the watch writes to mochi
	seen    chan struct{}                      // closed when the watch has read the bucket's content
	fresh   bool                               // the bucket had never held a message when this node started
}

// followRetained makes the bucket and starts watching it.
func (n *Node) followRetained(ctx context.Context, replicas int) error {
	kv, err := n.sharedBucket(ctx, jetstream.KeyValueConfig{
		Bucket:      RetainedBucket,
		Description: "homemq retained messages, by topic",
		History:     1,
	}, replicas)
	if err != nil {
		return err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", RetainedBucket, err)
	}
	w, err := kv.WatchAll(context.Background())
	if err != nil {
		return fmt.Errorf("watch %s: %w", RetainedBucket, err)
	}
	r := &retained{n: n, kv: kv, w: w, revs: map[string]revisions{},
		initial: map[string]jetstream.KeyValueEntry{}, seen: make(chan struct{}), fresh: st.Values() == 0}
	n.retained = r
	go r.follow()
	return nil
}

// follow applies the bucket's entries as the watch delivers them.
func (r *retained) follow() {
	for e := range r.w.Updates() {
		if e == nil { // the bucket's content is read; updates follow
			close(r.seen)
			continue
		}
		r.mu.Lock()
		r.apply(e)
		r.mu.Unlock()
	}
}

// apply applies an entry newer than what the local store has; r.mu held.
func (r *retained) apply(e jetstream.KeyValueEntry) {
	rv := r.revs[e.Key()]
	if e.Revision() <= rv.applied {
		return // written here, or older than what is here
	}
	rv.applied = e.Revision()
	r.revs[e.Key()] = rv
	if !r.ready {
		if e.Operation() == jetstream.KeyValuePut {
			r.initial[e.Key()] = e
		} else {
			delete(r.initial, e.Key())
		}
		return
	}
	r.set(e)
}

// set writes an entry to mochi's retained store; r.mu held. A delete, or a
// message whose expiry has passed, removes the topic's retained message.
func (r *retained) set(e jetstream.KeyValueEntry) {
	topic := retainedTopic(e.Key())
	pk := packets.Packet{TopicName: topic}
	if e.Operation() == jetstream.KeyValuePut {
		value, signed := r.n.sig.open(e.Key(), e.Value())
		if !signed {
			return // not written by a holder of the secret (msgsig.go)
		}
		m, payload, err := decodeRetained(value)
		if err != nil || m.Topic != topic {
			r.n.log.Warn("cluster: ignored a malformed retained message", "key", e.Key(), "error", err)
			return
		}
		if m.Expiry == 0 || m.Expiry > time.Now().Unix() {
			pk = m.retainedPacket(payload, e.Created())
		}
	}
	s := r.n.d.Server
	s.Topics.RetainMessage(pk)
	atomic.StoreInt64(&s.Info.Retained, int64(s.Topics.Retained.Len()))
}

// retainedPacket is the retained message m describes, as mochi keeps it.
func (m meta) retainedPacket(payload []byte, created time.Time) packets.Packet {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: m.QoS, Retain: true},
		TopicName:   m.Topic,
		Payload:     payload,
		Created:     created.Unix(),
		Expiry:      m.Expiry,
		// mochi's expiry sweep looks only at MQTT 5 packets.
		ProtocolVersion: 5,
		Properties:      m.properties(),
	}
	if m.Expiry > 0 {
		pk.Properties.MessageExpiryInterval = uint32(max(m.Expiry-time.Now().Unix(), 1))
	}
	return pk
}

// load replaces what mochi read from the node's own store with the
// bucket's content, for every topic the bucket holds; from then on the
// watch writes to mochi. It runs once, before the listeners start.
func (r *retained) load() error {
	select {
	case <-r.seen:
	case <-time.After(loadTimeout):
		return fmt.Errorf("cluster: the retained messages of bucket %s did not arrive within %v; is JetStream up?", RetainedBucket, loadTimeout)
	}
	var seeded map[string]bool
	if r.fresh {
		seeded = r.seed()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ready {
		return nil
	}
	s := r.n.d.Server
	for topic := range s.Topics.Retained.GetAll() {
		if key, ok := retainedKey(topic); ok && !seeded[key] {
			if _, in := r.initial[key]; !in {
				s.Topics.RetainMessage(packets.Packet{TopicName: topic}) // cleared, or expired, while this node was away
			}
		}
	}
	for _, e := range r.initial {
		r.set(e)
	}
	atomic.StoreInt64(&s.Info.Retained, int64(s.Topics.Retained.Len()))
	r.initial, r.ready = nil, true
	return nil
}

// store writes a retained publish accepted on this node to the bucket: an
// empty payload deletes the topic's key.
func (r *retained) store(ctx context.Context, m meta, payload []byte) error {
	key, ok := retainedKey(m.Topic)
	if !ok {
		return nil
	}
	var rev uint64
	if len(payload) == 0 {
		// kv.Delete does not tell the revision: the delete marker is
		// published as the KV protocol describes it, to learn it.
		msg := &nats.Msg{Subject: "$KV." + RetainedBucket + "." + key, Header: nats.Header{"KV-Operation": []string{"DEL"}}}
		ack, err := r.n.js.PublishMsg(ctx, msg)
		if err != nil {
			return err
		}
		rev = ack.Sequence
	} else {
		var err error
		if rev, err = r.kv.Put(ctx, key, r.n.sig.seal(key, encodeRetained(m, payload))); err != nil {
			return err
		}
	}
	r.mu.Lock()
	rv := r.revs[key]
	rv.applied, rv.own = max(rv.applied, rev), max(rv.own, rev)
	r.revs[key] = rv
	r.mu.Unlock()
	return nil
}

// retainedLocally is called after mochi retained a publish of a local
// client. If the watch applied another node's newer write between this
// node's write to the bucket and mochi's retain, the local store now holds
// the older message: it is read again from the bucket.
func (r *retained) retainedLocally(topic string) {
	key, ok := retainedKey(topic)
	if !ok {
		return
	}
	r.mu.Lock()
	rv := r.revs[key]
	r.mu.Unlock()
	if rv.applied > rv.own {
		go r.resync(key)
	}
}

// resync applies the bucket's last entry for key.
func (r *retained) resync(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	h, err := r.kv.History(ctx, key)
	if err != nil || len(h) == 0 {
		r.n.log.Warn("cluster: could not read a retained message again", "key", key, "error", err)
		return
	}
	e := h[len(h)-1]
	r.mu.Lock()
	defer r.mu.Unlock()
	if rv := r.revs[key]; e.Revision() >= rv.applied {
		rv.applied = e.Revision()
		r.revs[key] = rv
		r.set(e)
	}
}

// expired deletes an expired retained message from the bucket, unless it
// was written again since. Every node's sweep tries; one succeeds.
func (r *retained) expired(topic string) {
	key, ok := retainedKey(topic)
	if !ok {
		return
	}
	r.mu.Lock()
	rev := r.revs[key].applied
	r.mu.Unlock()
	if rev == 0 {
		return // not from the bucket: a delete on no revision would delete any
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := r.kv.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
			r.n.log.Debug("cluster: expired retained message left in the bucket", "key", key, "error", err)
		}
	}()
}

// inject delivers a message from another node. A retained message whose
// topic the bucket holds is delivered with its retain flag, but the local
// retained store stays as the bucket's watch made it: a message arriving
// late never replaces a newer one.
func (h *Hook) inject(pk packets.Packet) error {
	r := h.n.retained
	if _, ok := retainedKey(pk.TopicName); !ok || !pk.FixedHeader.Retain || r == nil {
		return h.n.d.Server.InjectPacket(h.injector, pk)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	topics := h.n.d.Server.Topics
	prev, had := topics.Retained.Get(pk.TopicName)
	err := h.n.d.Server.InjectPacket(h.injector, pk) // mochi retains it
	if !had {
		prev = packets.Packet{TopicName: pk.TopicName}
	}
	topics.RetainMessage(prev)
	return err
}

// OnRetainMessage checks that a local client's retained publish did not
// replace a newer message of another node.
func (h *Hook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, _ int64) {
	if cl != h.injector && h.n.retained != nil {
		h.n.retained.retainedLocally(pk.TopicName)
	}
}

// OnRetainedExpired deletes an expired retained message from the bucket.
func (h *Hook) OnRetainedExpired(topic string) {
	if h.n.retained != nil {
		h.n.retained.expired(topic)
	}
}

// StoredSysInfo is the last thing mochi reads before its listeners start
// (the storage hook, before this one, returns no version, so mochi asks
// on): the node loads the bucket's retained messages over those of its
// own store here.
func (h *Hook) StoredSysInfo() (storage.SystemInfo, error) {
	if h.n.retained == nil {
		return storage.SystemInfo{}, nil
	}
	return storage.SystemInfo{}, h.n.retained.load()
}

// storeRetained writes a retained publish to the bucket before mochi
// acknowledges it. If it cannot, a QoS 1 or 2 publisher gets 0x80 and
// publishes again; a QoS 0 one is retained on this node only (logged).
func (h *Hook) storeRetained(cl *mqtt.Client, pk packets.Packet, m meta) error {
	if !pk.FixedHeader.Retain || h.n.retained == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := h.n.retained.store(ctx, m, pk.Payload); err != nil {
		h.n.log.Warn("cluster: a retained message could not be stored for the other nodes", "topic", pk.TopicName, "error", err)
		if pk.FixedHeader.Qos > 0 && !cl.Net.Inline {
			return packets.Code{Code: packets.ErrUnspecifiedError.Code, Reason: "the cluster could not retain the message; publish it again"}
		}
	}
	return nil
}

// seed copies the retained messages of this node's own store into a
// bucket that has never held any: those of a broker that was a single node
// before it joined the cluster. A key another node wrote first is left to
// it (an update on revision 0 fails if the key has any entry, a delete
// included). It returns the keys this node wrote.
func (r *retained) seed() map[string]bool {
	seeded := map[string]bool{}
	now := time.Now().Unix()
	for topic, pk := range r.n.d.Server.Topics.Retained.GetAll() {
		key, ok := retainedKey(topic)
		if !ok || len(pk.Payload) == 0 || pk.Expiry > 0 && pk.Expiry <= now {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		rev, err := r.kv.Update(ctx, key, r.n.sig.seal(key, encodeRetained(retainedMeta(r.n.name, pk), pk.Payload)), 0)
		cancel()
		if err != nil {
			r.n.log.Debug("cluster: a retained message of this node's store was not copied to the bucket", "topic", topic, "error", err)
			continue
		}
		r.mu.Lock()
		r.revs[key] = revisions{applied: rev, own: rev}
		r.mu.Unlock()
		seeded[key] = true
	}
	if len(seeded) > 0 {
		r.n.log.Info("cluster: copied this node's retained messages to the cluster", "bucket", RetainedBucket, "count", len(seeded))
	}
	return seeded
}

// retainedMeta describes a retained message of mochi's store.
func retainedMeta(node string, pk packets.Packet) meta {
	m := meta{
		Node: node, Topic: pk.TopicName, QoS: pk.FixedHeader.Qos, Retain: true, Expiry: pk.Expiry,
		ContentType: pk.Properties.ContentType, ResponseTopic: pk.Properties.ResponseTopic,
		Correlation: pk.Properties.CorrelationData, User: pk.Properties.User,
	}
	if pk.Properties.PayloadFormatFlag {
		f := pk.Properties.PayloadFormat
		m.PayloadFormat = &f
	}
	return m
}
