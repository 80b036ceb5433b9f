package broker

import (
	"errors"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"homemq/audit"
	"homemq/metrics"
	"homemq/writequeue"
)

// EventSlowConsumer is the audit event of a connection closed because its
// client did not read what the broker sent it.
const EventSlowConsumer = "slow_consumer"

// writeQueue is how every listener queues writes to its clients
// (limits.write_buffer, limits.write_timeout). mochi writes to a client
// under its lock, so a client that does not read would hold publishers,
// revocation and shutdown. Upstream: https://github.com/mochi-mqtt/server/issues/95, https://github.com/mochi-mqtt/server/pull/160.
func (b *Broker) writeQueue() writequeue.Options {
	if b.Metrics != nil {
		b.Metrics.Registry().MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Name: "slow_consumer_disconnects_total",
			Help: "Connections closed because their client did not read: its write queue filled up or a write timed out.",
		}, func() float64 { return float64(b.slowConsumerDisconnects()) }))
	}
	return writequeue.Options{Limit: b.cfg.Limits.WriteBuffer, Timeout: b.cfg.Limits.WriteTimeout, OnFail: b.slowConsumer}
}

// slowConsumerDisconnects returns how many connections were closed because
// their client did not read what the broker sent it.
func (b *Broker) slowConsumerDisconnects() uint64 { return b.slow.Load() }

// slowConsumer counts and audits a connection its write queue closed. The
// client is looked up at once, while mochi still lists it (a clean session
// is gone from the list moments later); the audit is made on its own
// goroutine, as this may run under mochi's client lock. Clients.GetAll
// takes only the client list's read lock, which no holder of a client's
// lock waits for.
func (b *Broker) slowConsumer(c *writequeue.Conn, err error) {
	b.slow.Add(1)
	e := audit.Entry{Event: EventSlowConsumer, Outcome: audit.OutcomeRefused, Reason: "write_timeout", Detail: err.Error()}
	if errors.Is(err, writequeue.ErrOverflow) {
		e.Reason = "write_buffer"
	}
	if a := c.RemoteAddr(); a != nil {
		e.Remote = a.String()
	}
	for _, cl := range b.Server.Clients.GetAll() {
		if cl.Net.Conn == net.Conn(c) {
			e.ClientID, e.Listener = cl.ID, cl.Net.Listener
			break
		}
	}
	go func() {
		b.log.Warn("client disconnected: it does not read", "client", e.ClientID, "remote", e.Remote, "reason", e.Reason)
		if b.Audit != nil {
			b.Audit.Record(e)
		}
	}()
}
