package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go/jetstream"
)

// QueuesBucket is the JetStream KV bucket that holds the queue of every
// offline persistent session: what its node would deliver when the client
// returns, replicated so that another node can deliver it if that node
// dies (docs/cluster.md).
const QueuesBucket = "HOMEMQ_QUEUES"

// queuePrefix starts a key of QueuesBucket: queuePrefix + the session
// key's hash + "." + the holding node's token + "." + the packet id.
const queuePrefix = "q."

// maxMirrored bounds the messages of one session mirrored at its
// disconnect, as mochi's inflight limit bounds its queue.
const maxMirrored = 1024

// queueMirror copies the outbound queue of offline persistent sessions
// into QueuesBucket: each message queued while the client is away is
// written before the node acknowledges it to the stream it came from (or
// before mochi moves on, for a local publish), and deleted when the client
// acknowledges it or it is dropped. A node that takes a session whose
// holder is gone reads the copy (load) and owns it from then on.
type queueMirror struct {
	kv    jetstream.KeyValue
	js    jetstream.JetStream
	token string // the node's subject token

	mu   sync.Mutex
	held map[string]map[uint16]struct{} // session key -> packet ids this node wrote
}

func newQueueMirror(ctx context.Context, n *Node, replicas int, token string) (*queueMirror, error) {
	kv, err := n.sharedBucket(ctx, jetstream.KeyValueConfig{
		Bucket:      QueuesBucket,
		Description: "homemq: the queued messages of offline persistent sessions",
		TTL:         sessionsTTL,
	}, replicas)
	if err != nil {
		return nil, err
	}
	return &queueMirror{kv: kv, js: n.js, token: token, held: map[string]map[uint16]struct{}{}}, nil
}

// sessionQueuePrefix starts every key of clientID's queue, of any node.
func sessionQueuePrefix(clientID string) string {
	return queuePrefix + sessionKey(clientID) + "."
}

func (q *queueMirror) key(clientID string, id uint16) string {
	return sessionQueuePrefix(clientID) + q.token + "." + strconv.Itoa(int(id))
}

// put writes one queued message of cl.
func (q *queueMirror) put(ctx context.Context, cl *mqtt.Client, pk packets.Packet) error {
	val, err := json.Marshal(pk)
	if err != nil {
		return err
	}
	if _, err := q.kv.Put(ctx, q.key(cl.ID, pk.PacketID), val); err != nil {
		return fmt.Errorf("write a queued message of %s to %s: %w", cl.ID, QueuesBucket, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := q.held[cl.ID]
	if ids == nil {
		ids = map[uint16]struct{}{}
		q.held[cl.ID] = ids
	}
	ids[pk.PacketID] = struct{}{}
	return nil
}

// adopt notes the packet ids of a session this node restored from its
// store, whose copies it wrote before it stopped.
func (q *queueMirror) adopt(cl *mqtt.Client) {
	ids := map[uint16]struct{}{}
	for _, pk := range cl.State.Inflight.GetAll(false) {
		ids[pk.PacketID] = struct{}{}
	}
	q.mu.Lock()
	q.held[cl.ID] = ids
	q.mu.Unlock()
}

// remove deletes the copy of one message of clientID, if this node wrote
// one (mochi drops messages of every session: most have no copy).
func (q *queueMirror) remove(clientID string, id uint16) {
	q.mu.Lock()
	ids := q.held[clientID]
	_, ok := ids[id]
	delete(ids, id)
	if len(ids) == 0 {
		delete(q.held, clientID)
	}
	q.mu.Unlock()
	if ok {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		_ = q.kv.Delete(ctx, q.key(clientID, id))
	}
}

// removeAll deletes every copy this node wrote of clientID's queue.
func (q *queueMirror) removeAll(ctx context.Context, clientID string) {
	q.mu.Lock()
	ids := q.held[clientID]
	delete(q.held, clientID)
	q.mu.Unlock()
	for id := range ids {
		_ = q.kv.Delete(ctx, q.key(clientID, id))
	}
}

// load reads the copies of clientID's queue written by any node, oldest
// first, with the keys to delete once they are installed. It walks the
// bucket's stream with the message-get API by subject (a key's last
// value; a deleted key's marker is skipped), so a recovery creates no
// consumer.
func (q *queueMirror) load(ctx context.Context, clientID string) ([]packets.Packet, []string, error) {
	stream, err := q.js.Stream(ctx, "KV_"+QueuesBucket)
	if err != nil {
		return nil, nil, fmt.Errorf("read the queue of %s: %w", clientID, err)
	}
	prefix := "$KV." + QueuesBucket + "."
	subject := prefix + sessionQueuePrefix(clientID) + ">"
	var out []packets.Packet
	var keys []string
	for seq := uint64(1); len(out) < maxMirrored; {
		msg, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read the queue of %s: %w", clientID, err)
		}
		seq = msg.Sequence + 1
		if msg.Header.Get("KV-Operation") != "" {
			continue // deleted or purged
		}
		var pk packets.Packet
		if json.Unmarshal(msg.Data, &pk) != nil || pk.FixedHeader.Type != packets.Publish {
			continue
		}
		out, keys = append(out, pk), append(keys, strings.TrimPrefix(msg.Subject, prefix))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created < out[j].Created })
	return out, keys, nil
}

// purge deletes keys read by load.
func (q *queueMirror) purge(ctx context.Context, keys []string) {
	for _, k := range keys {
		_ = q.kv.Delete(ctx, k)
	}
}

// mirror copies the queue of a session that just went offline (what was
// in flight to it) to QueuesBucket.
func (s *Sessions) mirror(cl *mqtt.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for i, pk := range cl.State.Inflight.GetAll(false) {
		if i == maxMirrored {
			s.n.log.Warn("cluster: a session's queue is longer than the copy kept for another node", "client", cl.ID, "copied", maxMirrored)
			return
		}
		if pk.FixedHeader.Type != packets.Publish {
			continue
		}
		if err := s.queue.put(ctx, cl, pk); err != nil {
			s.n.log.Warn("cluster: could not copy a session's queue; if this node dies it is delivered only here", "client", cl.ID, "error", err)
			return
		}
	}
}

// OnQosPublish copies a message queued for an offline persistent session
// to QueuesBucket before mochi moves on: if this node dies, the node the
// client reconnects to delivers it.
func (s *Sessions) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if cl.Net.Inline || pk.FixedHeader.Type != packets.Publish || !cl.Closed() || !persistentSession(cl) ||
		s.handingOver(cl) || cl.StopCause() == packets.ErrSessionTakenOver {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := s.queue.put(ctx, cl, pk); err != nil {
		s.n.log.Warn("cluster: could not copy a queued message; if this node dies it is delivered only here", "client", cl.ID, "topic", pk.TopicName, "error", err)
	}
}

// OnQosDropped deletes the copy of a queued message mochi dropped.
func (s *Sessions) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	s.queue.remove(cl.ID, pk.PacketID)
}
