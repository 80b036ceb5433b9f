package hooks

import (
	"fmt"
	"slices"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"

	"homemq/topics"
)

// Retained caps. Every retained message is kept in memory, written to disk
// with an fsync and sent to every new subscriber, so an agent may keep only
// a bounded number of them, each of bounded size, and only for the devices
// its token names when it names any.

// retainedIndex remembers, per agent of a home ("h1/pi1"), the retained
// topics it holds: its devices' state, event and ack topics and the
// discovery configs with its node id. Whether a topic is still retained is
// asked of mochi's retained store when an agent reaches its quota.
type retainedIndex struct {
	once    sync.Once
	mu      sync.Mutex
	byAgent map[string]map[string]struct{}
	store   *packets.Packets
	rates   map[string]*rate.Limiter // sub -> its retained publishes
}

// maxRetainedRates bounds the limiters kept; past it, full ones are dropped.
const maxRetainedRates = 16384

// allow reports whether sub may publish one more retained message now.
func (x *retainedIndex) allow(sub string, r float64, burst int, now time.Time) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	lim := x.rates[sub]
	if lim == nil {
		if x.rates == nil {
			x.rates = map[string]*rate.Limiter{}
		}
		if len(x.rates) >= maxRetainedRates {
			for k, l := range x.rates { // a full bucket is the same as a new one
				if l.TokensAt(now) >= float64(l.Burst()) {
					delete(x.rates, k)
				}
			}
		}
		lim = rate.NewLimiter(rate.Limit(r), max(burst, 1))
		x.rates[sub] = lim
	}
	return lim.AllowN(now, 1)
}

// retainedOwner returns the agent of a home that a retained topic counts
// against, or "" for topics that count against no agent (status topics,
// which are one per agent, and topics outside the namespace).
func retainedOwner(p topics.Path) string {
	switch p.Kind {
	case topics.KindState, topics.KindEvent, topics.KindAck, topics.KindDiscovery:
		return p.Home + "/" + p.Agent
	}
	return ""
}

// checkDevicePublish applies the agent caps to a publish the topic rules
// allowed: the token's device list (state, event and discovery), the
// retained payload size, the rate of retained publishes per sub and the
// number of retained topics per agent. It returns 0 or the reason code to
// refuse with, a reason id and a sentence.
func (g *Guard) checkDevicePublish(gr *grant, pk packets.Packet) (code byte, why, detail string) {
	if gr.claims.Operator {
		return 0, "", ""
	}
	p, err := topics.Parse(pk.TopicName)
	if err != nil {
		return 0, "", ""
	}
	// An ack for a device the agent does not have stays allowed: it is how
	// the agent answers a command to an unknown device.
	if devs := gr.claims.Devices; len(devs) > 0 && p.Kind != topics.KindAck && p.Device != "" && !slices.Contains(devs, p.Device) {
		return packets.ErrNotAuthorized.Code, "devices", fmt.Sprintf("device %q is not in this token's device list; publish only for its devices", p.Device)
	}
	if !pk.FixedHeader.Retain {
		return 0, "", ""
	}
	if max := g.cfg.Quotas.MaxRetainedSize; max > 0 && len(pk.Payload) > max {
		return packets.ErrPacketTooLarge.Code, "retained_size", fmt.Sprintf("retained payload of %d bytes is over the limit of %d bytes", len(pk.Payload), max)
	}
	if q := g.cfg.Quotas; q.RetainedRate > 0 && !g.retainedIdx.allow(gr.claims.Subject, q.RetainedRate, q.RetainedBurst, g.now()) {
		return packets.ErrMessageRateTooHigh.Code, "retained_rate", fmt.Sprintf("too many retained messages (more than %g a second); publish a state when it changes", q.RetainedRate)
	}
	owner := retainedOwner(p)
	if owner == "" {
		return 0, "", ""
	}
	max := g.cfg.Quotas.RetainedPerAgent
	if max <= 0 {
		return 0, "", ""
	}
	if n, ok := g.retainedIdx.admit(g.server, owner, pk.TopicName, len(pk.Payload) == 0, max); !ok {
		return packets.ErrQuotaExceeded.Code, "retained_quota", fmt.Sprintf("too many retained topics for agent %s (%d of %d); clear some with an empty retained message", p.Agent, n, max)
	}
	return 0, "", ""
}

// admit records a retained publish on topic by owner, or an empty one that
// clears it, and reports whether owner stays within max retained topics.
func (x *retainedIndex) admit(server *mqtt.Server, owner, topic string, clear bool, max int) (int, bool) {
	x.once.Do(func() { x.seed(server) })
	x.mu.Lock()
	defer x.mu.Unlock()
	set := x.byAgent[owner]
	if clear {
		if delete(set, topic); len(set) == 0 {
			delete(x.byAgent, owner)
		}
		return len(set), true
	}
	if set == nil {
		set = map[string]struct{}{}
		x.byAgent[owner] = set
	}
	if _, ok := set[topic]; ok {
		return len(set), true // replaces its own retained message
	}
	if len(set) >= max {
		for t := range set { // drop those mochi no longer holds (expired, or cleared by an operator)
			if _, ok := x.store.Get(t); !ok {
				delete(set, t)
			}
		}
		if len(set) >= max {
			return len(set), false
		}
	}
	set[topic] = struct{}{}
	return len(set), true
}

// seed indexes the retained messages mochi already holds: those restored
// from the store at start.
func (x *retainedIndex) seed(server *mqtt.Server) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.store = server.Topics.Retained
	x.byAgent = map[string]map[string]struct{}{}
	for topic := range server.Topics.Retained.GetAll() {
		p, err := topics.Parse(topic)
		if err != nil {
			continue
		}
		if owner := retainedOwner(p); owner != "" {
			if x.byAgent[owner] == nil {
				x.byAgent[owner] = map[string]struct{}{}
			}
			x.byAgent[owner][topic] = struct{}{}
		}
	}
}
