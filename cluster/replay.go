package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go/jetstream"
)

// replayBatch is how many messages one fetch of a replay asks for.
const replayBatch = 256

// replay reads from MessagesStream what the dead node of rec never
// handled for the session: the messages its durable consumer had not
// acknowledged (a consumer acknowledges a message once it is delivered to
// its node's subscribers, or queued and copied to QueuesBucket for an
// offline session), that match one of the session's subscriptions at QoS
// 1 or 2. They are returned as mochi would queue them for the session,
// oldest first; an expired one is kept, for mochi to drop (and answer
// "expired" for). up is the stream's last sequence once this node's
// consumer carries the session's filters: later messages reach the
// session live.
func (s *Sessions) replay(ctx context.Context, rec sessionRecord, up uint64) ([]packets.Packet, error) {
	subs := map[string]packets.Subscription{} // filter subject -> subscription
	var filters []string
	for _, sub := range rec.Subs {
		if f, ok := filterSubject(sub.Filter); ok && sub.Qos > 0 {
			subs[f] = sub
			filters = append(filters, f)
		}
	}
	if len(filters) == 0 {
		return nil, nil
	}
	dead, err := s.n.js.Consumer(ctx, MessagesStream, "node-"+rec.Node)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read consumer node-%s: %w", rec.Node, err)
	}
	from := dead.CachedInfo().AckFloor.Stream + 1
	if from > up {
		return nil, nil
	}
	oc, err := s.n.js.OrderedConsumer(ctx, MessagesStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: interest(filters),
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	})
	if err != nil {
		return nil, fmt.Errorf("replay %s from %d: %w", MessagesStream, from, err)
	}
	var out []packets.Packet
	for {
		batch, err := oc.Fetch(replayBatch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return out, fmt.Errorf("replay %s: %w", MessagesStream, err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err != nil || md.Sequence.Stream > up {
				return out, nil
			}
			if pk, ok := s.replayed(msg, subs); ok {
				out = append(out, pk)
			}
			if md.NumPending == 0 || md.Sequence.Stream == up {
				return out, nil
			}
		}
		if n == 0 {
			return out, batch.Error()
		}
	}
}

// replayed is msg as queued for a session whose subscriptions by filter
// subject are subs, if one of them wants it at QoS 1 or 2.
func (s *Sessions) replayed(msg jetstream.Msg, subs map[string]packets.Subscription) (packets.Packet, bool) {
	if !s.n.sig.check(msg.Subject(), msg.Headers(), msg.Data()) {
		return packets.Packet{}, false
	}
	var m meta
	if json.Unmarshal([]byte(msg.Headers().Get(metaHeader)), &m) != nil || m.Topic == "" || m.QoS == 0 {
		return packets.Packet{}, false
	}
	var qos byte
	var sub packets.Subscription
	for f, sb := range subs {
		if covers(f, msg.Subject()) && sb.Qos > qos {
			qos, sub = min(sb.Qos, m.QoS), sb
		}
	}
	if qos == 0 {
		return packets.Packet{}, false
	}
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: m.Retain && sub.RetainAsPublished},
		TopicName:       m.Topic,
		Payload:         msg.Data(),
		Properties:      m.properties(),
		Created:         time.Now().Unix(),
		Expiry:          m.Expiry,
		ProtocolVersion: 5,
		Origin:          injectorID,
	}
	if md, err := msg.Metadata(); err == nil {
		pk.Created = md.Timestamp.Unix()
	}
	return pk, true
}
