package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"
)

// take asks node for the session of clientID.
func (s *Sessions) take(clientID, node string) (takeReply, error) {
	var r takeReply
	msg, err := s.n.nc.Request(takePrefix+nodeToken(node)+"."+sessionKey(clientID), []byte(clientID), takeTimeout)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return r, fmt.Errorf("malformed session from %s: %w", node, err)
	}
	return r, nil
}

// serveTake hands a session this node holds to the node asking for it:
// it disconnects the session's connection (0x8E), stops queueing for it,
// and answers with its subscriptions and queue, then forgets it.
func (s *Sessions) serveTake(msg *nats.Msg) {
	id := string(msg.Data)
	reply := func(r takeReply) {
		b, _ := json.Marshal(r)
		_ = msg.Respond(b)
	}
	srv := s.n.d.Server
	cl, ok := srv.Clients.Get(id)
	if !ok || cl.Net.Inline || takePrefix+s.token+"."+sessionKey(id) != msg.Subject {
		reply(takeReply{})
		return
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.handing[cl] = done
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.handing, cl)
		s.mu.Unlock()
	}()
	if !cl.Closed() {
		s.n.clients.disconnect(cl)
		select { // its hooks run: nothing of it is written after the hand-over
		case <-done:
		case <-time.After(opTimeout):
		}
	}
	rec := sessionRecord{Node: s.n.name, Client: id, Expiry: s.expiryOf(cl)}
	for _, sub := range cl.State.Subscriptions.GetAll() {
		rec.Subs = append(rec.Subs, sub)
	}
	srv.UnsubscribeClient(cl) // nothing more is queued for it here
	now := time.Now().Unix()
	cl.ClearExpiredInflights(now, srv.Options.Capabilities.MaximumMessageExpiryInterval) // "expired" answered here, once
	var queue []packets.Packet
	for _, m := range cl.State.Inflight.GetAll(false) {
		if m.FixedHeader.Type == packets.Publish && (m.Expiry == 0 || m.Expiry > now) {
			queue = append(queue, m)
		}
	}
	srv.Clients.Delete(id)
	cl.ClearInflights()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	s.queue.removeAll(ctx, id)
	if s.n.d.Forget != nil {
		s.n.d.Forget(cl)
	}
	s.forget(id) // the taker records it again, unless it ends it
	reply(takeReply{Found: true, Session: rec, Queue: queue})
	s.n.log.Info("cluster: session handed to another node", "client", id, "subscriptions", len(rec.Subs), "queued", len(queue))
}

// expiryOf is the session expiry interval of cl, as mochi applies it.
func (s *Sessions) expiryOf(cl *mqtt.Client) uint32 {
	limit := s.n.d.Server.Options.Capabilities.MaximumSessionExpiryInterval
	if cl.Properties.ProtocolVersion == 5 {
		return min(cl.Properties.Props.SessionExpiryInterval, limit)
	}
	return limit
}

// handingOver reports whether cl's session is being handed to another node.
func (s *Sessions) handingOver(cl *mqtt.Client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.handing[cl]
	return ok
}
