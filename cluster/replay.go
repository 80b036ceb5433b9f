package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go/jetstream"
)

// maxReplayed bounds the messages replayed for one session, as mochi's
// inflight limit bounds its queue.
const maxReplayed = 4096

// replay reads from MessagesStream what the dead node of rec never
// handled for the session: the messages its durable consumer had not
// acknowledged (a consumer acknowledges a message once it is delivered to
// its node's subscribers, or queued and copied to QueuesBucket for an
// offline session), that match one of the session's subscriptions at QoS
// 1 or 2. They are returned as mochi would queue them for the session,
// oldest first; an expired one is kept, for mochi to drop (and answer
// "expired" for). up is the stream's last sequence once this node's
// consumer carries the session's filters: later messages reach the
// session live. It reads with the stream's message-get API, one
// subscription filter at a time (an ordered consumer cannot be made on a
// replicated stream with interest retention).
func (s *Sessions) replay(ctx context.Context, rec sessionRecord, up uint64) ([]packets.Packet, error) {
	subs := map[string]packets.Subscription{} // filter subject -> subscription
	for _, sub := range rec.Subs {
		if f, ok := filterSubject(sub.Filter); ok && sub.Qos > 0 {
			subs[f] = sub
		}
	}
	if len(subs) == 0 {
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
	stream, err := s.n.js.Stream(ctx, MessagesStream)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", MessagesStream, err)
	}
	found := map[uint64]*jetstream.RawStreamMsg{}
	for f := range subs {
		for seq := from; seq <= up && len(found) < maxReplayed; {
			msg, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(f))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("replay %s from %d: %w", MessagesStream, seq, err)
			}
			if msg.Sequence > up {
				break
			}
			found[msg.Sequence] = msg
			seq = msg.Sequence + 1
		}
	}
	seqs := slices.Sorted(maps.Keys(found))
	var out []packets.Packet
	for _, seq := range seqs {
		if pk, ok := s.replayed(found[seq], subs); ok {
			out = append(out, pk)
		}
	}
	return out, nil
}

// replayed is msg as queued for a session whose subscriptions by filter
// subject are subs, if one of them wants it at QoS 1 or 2.
func (s *Sessions) replayed(msg *jetstream.RawStreamMsg, subs map[string]packets.Subscription) (packets.Packet, bool) {
	if !s.n.sig.check(msg.Subject, msg.Header, msg.Data) {
		return packets.Packet{}, false
	}
	var m meta
	if json.Unmarshal([]byte(msg.Header.Get(metaHeader)), &m) != nil || m.Topic == "" || m.QoS == 0 {
		return packets.Packet{}, false
	}
	var qos byte
	var sub packets.Subscription
	for f, sb := range subs {
		if covers(f, msg.Subject) && sb.Qos > qos {
			qos, sub = min(sb.Qos, m.QoS), sb
		}
	}
	if qos == 0 {
		return packets.Packet{}, false
	}
	return packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: m.Retain && sub.RetainAsPublished},
		TopicName:       m.Topic,
		Payload:         msg.Data,
		Properties:      m.properties(),
		Created:         msg.Time.Unix(),
		Expiry:          m.Expiry,
		ProtocolVersion: 5,
		Origin:          injectorID,
	}, true
}
