package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go/jetstream"
)

// recoverTimeout bounds the recovery of a dead node's session before its
// CONNACK; what is not read by then is delivered after it (recoverLater).
const recoverTimeout = time.Second

// recoverFor bounds how long a node keeps trying to recover the rest of a
// session's queue after its CONNACK: longer than JetStream takes to elect
// new leaders for what a dead node led.
const recoverFor = 2 * time.Minute

// recovery is what is left to recover of a session whose holder died.
type recovery struct {
	rec    sessionRecord
	copied bool // the copy of its offline queue was read (QueuesBucket)
	missed bool // what the dead node's consumer left was replayed
}

func (r *recovery) done() bool { return r.copied && r.missed }

// recover gathers what is left of the queue of a session whose holder is
// gone: the copy of its offline queue, and, once this node's consumer
// carries the session's subscriptions, what the holder's consumer had not
// handled (replay). Parts that JetStream cannot answer for stay to do.
func (s *Sessions) recover(ctx context.Context, r *recovery) []packets.Packet {
	var out []packets.Packet
	if !r.copied {
		queue, keys, err := s.queue.load(ctx, r.rec.Client)
		if err != nil {
			s.n.log.Warn("cluster: could not read the queue of a session whose node is gone yet", "client", r.rec.Client, "error", err)
		} else {
			s.queue.purge(ctx, keys)
			out, r.copied = queue, true
		}
	}
	if r.missed || !s.widen(ctx, r.rec.Subs) {
		return out
	}
	stream, err := s.n.js.Stream(ctx, MessagesStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		r.missed = true
		return out
	}
	var missed []packets.Packet
	if err == nil {
		missed, err = s.replay(ctx, r.rec, stream.CachedInfo().State.LastSeq)
	}
	if err != nil {
		s.n.log.Warn("cluster: could not read the messages a dead node left for a session yet", "client", r.rec.Client, "holder", r.rec.Node, "error", err)
		return out
	}
	r.missed = true
	return append(out, missed...)
}

// recoverLater goes on recovering r after the CONNACK, every second for
// up to recoverFor, and delivers what it recovers to the session.
func (s *Sessions) recoverLater(clientID string, r *recovery) {
	go func() {
		for deadline := time.Now().Add(recoverFor); time.Now().Before(deadline); {
			select {
			case <-s.n.done:
				return
			case <-time.After(time.Second):
			}
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			queue := s.recover(ctx, r)
			cancel()
			s.deliver(clientID, r.rec.Node, queue)
			if r.done() {
				return
			}
		}
		s.n.log.Error("cluster: gave up recovering the queue of a session whose node died; the node's messages for it wait in the cluster until it returns",
			"client", clientID, "holder", r.rec.Node)
	}()
}

// deliver gives a session that already has its CONNACK messages recovered
// for it: sent at once to a connected client (the Guard judges them as
// they are written), queued (and copied) for one that left again.
func (s *Sessions) deliver(clientID, from string, queue []packets.Packet) {
	if len(queue) == 0 {
		return
	}
	srv := s.n.d.Server
	cl, ok := srv.Clients.Get(clientID)
	if !ok {
		s.n.log.Warn("cluster: the session of recovered messages ended; dropped them", "client", clientID, "messages", len(queue))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	now := time.Now().Unix()
	sent := 0
	for _, m := range queue {
		m, ok := s.enqueue(cl, cl, m)
		if !ok {
			continue
		}
		switch {
		case m.Expiry > 0 && m.Expiry <= now: // dropped below, answered "expired"
		case cl.Closed():
			if err := s.queue.put(ctx, cl, m); err != nil {
				s.n.log.Warn("cluster: could not copy a recovered message", "client", clientID, "error", err)
			}
		default:
			if err := cl.WritePacket(m); err == nil {
				sent++
			}
		}
	}
	dropped := cl.ClearExpiredInflights(now, srv.Options.Capabilities.MaximumMessageExpiryInterval)
	s.n.log.Info("cluster: delivered messages recovered from a dead node", "client", clientID, "from", from,
		"sent", sent, "expired", len(dropped))
}
