package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// metaHeader carries a message's MQTT attributes on NATS (JSON of meta);
// the NATS message's data is the payload.
const metaHeader = "Homemq-Meta"

// A pull that a consumer's leader lost (a leader moved, as in a young
// cluster) is noticed after two missed heartbeats and sent again, so a
// message waits seconds at most, not the default 30 s pull.
var (
	pullExpiry    = jetstream.PullExpiry(5 * time.Second)
	pullHeartbeat = jetstream.PullHeartbeat(time.Second)
)

// injectorID is the client id of the inline client a node delivers other
// nodes' messages through.
const injectorID = "homemq-cluster"

// meta is what a message carries besides its payload.
type meta struct {
	Node          string                 `json:"node"` // the origin node
	Topic         string                 `json:"topic"`
	QoS           byte                   `json:"qos,omitempty"`
	Retain        bool                   `json:"retain,omitempty"`
	Expiry        int64                  `json:"exp,omitempty"` // unix seconds; 0 never
	ContentType   string                 `json:"ct,omitempty"`
	PayloadFormat *byte                  `json:"pf,omitempty"`
	ResponseTopic string                 `json:"rt,omitempty"`
	Correlation   []byte                 `json:"cd,omitempty"`
	User          []packets.UserProperty `json:"up,omitempty"`
}

// properties are the MQTT 5 properties m carries, as mochi sets them on a
// packet (message expiry aside: it depends on when the packet is made).
func (m meta) properties() packets.Properties {
	p := packets.Properties{
		ContentType: m.ContentType, ResponseTopic: m.ResponseTopic,
		CorrelationData: m.Correlation, User: m.User,
	}
	if m.PayloadFormat != nil {
		p.PayloadFormat, p.PayloadFormatFlag = *m.PayloadFormat, true
	}
	return p
}

// Hook is the mochi hook of a clustered node. Outbound, it publishes what
// the hooks before it (the Guard) accepted to JetStream; it keeps the
// node's consumer filtered to the local subscriptions (interest);
// inbound, it injects other nodes' messages through its own inline client
// so that mochi's delivery and the Guard's OnACLCheck apply as for a local
// publish.
type Hook struct {
	mqtt.HookBase
	n        *Node
	injector *mqtt.Client

	mu       sync.Mutex // serialises consumer updates
	filters  []string   // the consumer's filter subjects now
	changed  chan struct{}
	consumer jetstream.Consumer

	// kept is the filter subjects a SUBSCRIBE may rely on without
	// waiting: the consumer's, nil while an update that narrows it runs
	// (refresh).
	kept atomic.Pointer[[]string]

	widening widening // SUBSCRIBEs waiting for the consumer (widen)
}

// widening batches the consumer updates SUBSCRIBEs wait for: one update
// serves every subscription made before it started.
type widening struct {
	mu      sync.Mutex
	done    *sync.Cond
	asked   uint64 // SUBSCRIBEs that asked for an update
	applied uint64 // asks covered by a finished update
	running bool
}

func newHook(n *Node) (*Hook, error) {
	h := &Hook{n: n, changed: make(chan struct{}, 1)}
	h.widening.done = sync.NewCond(&h.widening.mu)
	h.injector = n.d.Server.NewClient(nil, "local", injectorID, true)
	h.injector.Properties.ProtocolVersion = 5 // mochi honours message expiry on MQTT 5 packets only
	return h, nil
}

// start makes the node's consumer carry the local interest and starts
// receiving: once mochi restored the node's sessions (Sessions.OnStarted),
// so that what other nodes sent while this node was down reaches them. A
// consumer JetStream cannot make yet is tried again every few seconds.
func (h *Hook) start() {
	go func() {
		for {
			err := h.consume()
			if err == nil {
				h.watch()
				return
			}
			h.n.log.Warn("cluster: cannot receive the other nodes' messages yet; trying again", "error", err)
			select {
			case <-h.n.done:
				return
			case <-time.After(2 * time.Second):
			}
		}
	}()
}

// consume updates the consumer and starts receiving from it.
func (h *Hook) consume() error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := h.refresh(ctx); err != nil {
		return err
	}
	h.mu.Lock()
	c := h.consumer
	h.mu.Unlock()
	cc, err := c.Consume(h.receive, pullExpiry, pullHeartbeat, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		h.n.log.Debug("cluster: consuming messages", "error", err)
	}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", MessagesStream, err)
	}
	h.n.setMsgs(cc)
	return nil
}

// ID names the hook.
func (h *Hook) ID() string { return "homemq-cluster" }

// Provides lists the hook methods the cluster implements.
func (h *Hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPublish, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnDisconnect, mqtt.OnClientExpired,
		mqtt.OnRetainMessage, mqtt.OnRetainedExpired, mqtt.StoredSysInfo}, []byte{b})
}

// OnPublish sends an accepted publish to the other nodes. mochi calls it
// only when every hook before it, the Guard first, accepted the packet. A
// QoS 1 or 2 publish is stored by JetStream before mochi acknowledges it;
// if it cannot be, an MQTT 5 publisher gets PUBACK 0x80 and publishes again.
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl == h.injector {
		return pk, nil // from another node: it crossed already
	}
	subject, ok := subjectOf(pk.TopicName)
	if !ok {
		return pk, nil
	}
	m := meta{
		Node: h.n.name, Topic: pk.TopicName, QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain,
		ContentType: pk.Properties.ContentType, ResponseTopic: pk.Properties.ResponseTopic,
		Correlation: pk.Properties.CorrelationData, User: pk.Properties.User,
	}
	if pk.Properties.PayloadFormatFlag {
		f := pk.Properties.PayloadFormat
		m.PayloadFormat = &f
	}
	switch {
	case pk.Expiry > 0:
		m.Expiry = pk.Expiry
	case pk.Properties.MessageExpiryInterval > 0:
		m.Expiry = time.Now().Unix() + int64(pk.Properties.MessageExpiryInterval)
	}
	if err := h.storeRetained(cl, pk, m); err != nil {
		return pk, err
	}
	hdr, _ := json.Marshal(m)
	msg := &nats.Msg{Subject: subject, Data: pk.Payload, Header: nats.Header{metaHeader: []string{string(hdr)}}}
	h.n.sig.sign(msg)
	if pk.FixedHeader.Qos == 0 || cl.Net.Inline {
		if err := h.n.nc.PublishMsg(msg); err != nil {
			h.n.counters.publishErrors.Add(1)
			h.n.log.Warn("cluster: a QoS 0 message did not leave this node", "topic", pk.TopicName, "error", err)
		} else {
			h.n.counters.sent.Add(1)
		}
		return pk, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := h.n.js.PublishMsg(ctx, msg); err != nil {
		h.n.counters.publishErrors.Add(1)
		h.n.log.Warn("cluster: a message could not be stored for the other nodes", "topic", pk.TopicName, "error", err)
		return pk, packets.Code{Code: packets.ErrUnspecifiedError.Code, Reason: "the cluster could not take the message; publish it again"}
	}
	h.n.counters.sent.Add(1)
	return pk, nil
}

// OnSubscribed widens the node's interest before mochi writes the SUBACK,
// so a subscriber that has its SUBACK gets what any node accepts after. A
// SUBSCRIBE whose filters the consumer takes already (its home's shard is
// in the node's interest) waits for nothing.
func (h *Hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	if h.taken(pk.Filters) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := h.widen(ctx); err != nil {
		h.n.log.Warn("cluster: could not update this node's interest", "error", err)
		h.poke()
	}
}

// taken reports whether the consumer takes every subject of subs already
// and will go on taking them: mochi has added them to the client's
// subscriptions before OnSubscribed, so an update that narrows the
// consumer after this call sees them (refresh).
func (h *Hook) taken(subs packets.Subscriptions) bool {
	kept := h.kept.Load()
	if kept == nil {
		return false
	}
	for _, sub := range subs {
		if f, ok := filterSubject(sub.Filter); ok && !within(*kept, f) {
			return false
		}
	}
	return true
}

// widen returns once the consumer's filter holds every subscription made
// before the call. Calls that arrive while an update runs wait for the
// next one, which one of them makes for all: a burst of SUBSCRIBEs (agents
// reconnecting after a restart) costs a few consumer updates, not one
// each.
func (h *Hook) widen(ctx context.Context) error {
	w := &h.widening
	w.mu.Lock()
	defer w.mu.Unlock()
	w.asked++
	mine := w.asked
	for w.applied < mine {
		if w.running {
			w.done.Wait()
			continue
		}
		w.running = true
		target := w.asked
		w.mu.Unlock()
		err := h.refresh(ctx)
		w.mu.Lock()
		w.running = false
		if err == nil {
			w.applied = max(w.applied, target)
		}
		w.done.Broadcast()
		if err != nil {
			return err
		}
	}
	return nil
}

// OnUnsubscribed narrows the interest, later: a filter wider than needed
// only costs traffic.
func (h *Hook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) { h.poke() }

// OnDisconnect narrows the interest when a session's subscriptions go.
func (h *Hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) { h.poke() }

// OnClientExpired narrows the interest when an offline session expires.
func (h *Hook) OnClientExpired(cl *mqtt.Client) { h.poke() }

func (h *Hook) poke() {
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

// watch applies interest changes, and every 30 s checks the consumer.
func (h *Hook) watch() {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-h.changed:
		case <-t.C:
		case <-h.n.done:
			return
		}
		time.Sleep(50 * time.Millisecond) // a disconnect's subscriptions are gone by then
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		if err := h.refresh(ctx); err != nil {
			h.n.log.Debug("cluster: could not update this node's interest", "error", err)
		}
		cancel()
	}
}

// localFilters lists the filter subjects of every local subscription,
// offline persistent sessions included.
func (h *Hook) localFilters() []string {
	var out []string
	for _, cl := range h.n.d.Server.Clients.GetAll() {
		if cl.Net.Inline {
			continue
		}
		for f := range cl.State.Subscriptions.GetAll() {
			if s, ok := filterSubject(f); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// refresh makes the node's durable consumer filter exactly the local
// interest. Before an update that narrows it (a shard without local
// subscribers left), SUBSCRIBEs stop relying on the filters (taken) and
// the interest is read again, so a subscription that relied on a shard
// about to go keeps it. After a failed update, SUBSCRIBEs rely on what
// they relied on before a widening (the consumer took that already) and
// on nothing after a narrowing, until an update succeeds.
func (h *Hook) refresh(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	want := interest(h.localFilters())
	if h.consumer != nil && slices.Equal(want, h.filters) {
		return nil
	}
	if h.consumer != nil && !widens(want, h.filters) {
		h.kept.Store(nil)
		want = interest(h.localFilters())
		if slices.Equal(want, h.filters) {
			kept := h.filters
			h.kept.Store(&kept)
			return nil
		}
	}
	c, err := h.n.js.CreateOrUpdateConsumer(ctx, MessagesStream, jetstream.ConsumerConfig{
		Durable:        "node-" + h.n.name,
		Description:    "messages for the subscribers of homemq node " + h.n.name,
		FilterSubjects: want,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        30 * time.Second,
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		MaxAckPending:  10000,
	})
	if err != nil {
		h.filters = nil // unknown now: the next refresh writes them again
		return fmt.Errorf("consumer node-%s of %s: %w", h.n.name, MessagesStream, err)
	}
	h.consumer, h.filters = c, want
	h.kept.Store(&want)
	return nil
}

// receive delivers one message from another node to the local subscribers.
func (h *Hook) receive(msg jetstream.Msg) {
	if !h.n.sig.check(msg.Subject(), msg.Headers(), msg.Data()) {
		_ = msg.Term()
		return
	}
	var m meta
	if err := json.Unmarshal([]byte(msg.Headers().Get(metaHeader)), &m); err != nil || m.Topic == "" {
		h.n.log.Warn("cluster: dropped a message without its MQTT attributes", "subject", msg.Subject())
		_ = msg.Term()
		return
	}
	if m.Node == h.n.name {
		_ = msg.Ack() // published here and delivered here already
		return
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: m.QoS, Retain: m.Retain},
		TopicName:   m.Topic,
		Payload:     msg.Data(),
		PacketID:    uint16(m.QoS), // mochi's own inline Publish does this: a packet id for its validity checks
		Properties:  m.properties(),
	}
	if m.Expiry > 0 {
		left := m.Expiry - time.Now().Unix()
		if left <= 0 {
			_ = msg.Ack() // expired on its way
			return
		}
		pk.Expiry = m.Expiry
		pk.Properties.MessageExpiryInterval = uint32(left)
	}
	if err := h.inject(pk); err != nil {
		h.n.log.Warn("cluster: could not deliver a message from another node", "topic", m.Topic, "error", err)
		_ = msg.Nak()
		return
	}
	h.n.counters.received.Add(1)
	_ = msg.Ack()
}
