package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// How a revocation feed replaces a reader that stopped answering: a new
// one is asked for with requests of reviveTimeout, every reviveEvery,
// until one answers.
const (
	reviveTimeout = 2 * time.Second
	reviveEvery   = 500 * time.Millisecond
)

// revocationFeed reads RevocationsStream with an ordered consumer and,
// when that consumer stops sending heartbeats (its one replica lived on a
// node that died), makes a new one from the entry after the last one it
// read. nats.go's ordered consumer makes it again itself, but waits up to
// 10 s between requests of 10 s and may be placed on the dead node again
// until JetStream knows it is gone; a revocation must reach the surviving
// nodes within seconds. It is the node's jetstream.ConsumeContext for the
// revocations: Stop ends it.
type revocationFeed struct {
	n       *Node
	handle  jetstream.MessageHandler
	stalled chan struct{}
	closed  chan struct{}

	recv sync.Mutex // one message at a time, in stream order
	read uint64     // the last stream sequence handed to handle

	mu      sync.Mutex
	cc      jetstream.ConsumeContext
	stopped bool
}

// newRevocationFeed starts reading the stream from its start, handing
// each entry to handle once.
func (n *Node) newRevocationFeed(ctx context.Context, handle jetstream.MessageHandler) (*revocationFeed, error) {
	f := &revocationFeed{n: n, handle: handle, stalled: make(chan struct{}, 1), closed: make(chan struct{})}
	cc, err := f.open(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, err
	}
	f.cc = cc
	go f.revive()
	return f, nil
}

// open makes a reader and starts it.
func (f *revocationFeed) open(ctx context.Context, cfg jetstream.OrderedConsumerConfig) (jetstream.ConsumeContext, error) {
	c, err := f.n.js.OrderedConsumer(ctx, RevocationsStream, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer of %s: %w", RevocationsStream, err)
	}
	cc, err := c.Consume(f.receive, pullExpiry, pullHeartbeat, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if errors.Is(err, jetstream.ErrNoHeartbeat) {
			select {
			case f.stalled <- struct{}{}:
			default:
			}
		}
	}))
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", RevocationsStream, err)
	}
	return cc, nil
}

// receive hands msg on unless a reader it replaced handed it already.
func (f *revocationFeed) receive(msg jetstream.Msg) {
	f.recv.Lock()
	defer f.recv.Unlock()
	if md, err := msg.Metadata(); err == nil {
		if md.Sequence.Stream <= f.read {
			return
		}
		f.read = md.Sequence.Stream
	}
	f.handle(msg)
}

// revive replaces the reader each time it stalls, until Stop.
func (f *revocationFeed) revive() {
	for {
		select {
		case <-f.closed:
			return
		case <-f.stalled:
		}
		for !f.replace() {
			select {
			case <-f.closed:
				return
			case <-time.After(reviveEvery):
			}
		}
	}
}

// replace makes a reader from the entry after the last one read and
// stops the old one; false when JetStream did not answer in time.
func (f *revocationFeed) replace() bool {
	f.recv.Lock()
	next := f.read + 1
	f.recv.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), reviveTimeout)
	defer cancel()
	cc, err := f.open(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: next})
	if err != nil {
		return false
	}
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		cc.Stop()
		return true
	}
	old := f.cc
	f.cc = cc
	f.mu.Unlock()
	go old.Stop() // nats.go's own slow reset may hold it for seconds
	select {
	case <-f.stalled: // the old reader's, now answered
	default:
	}
	f.n.log.Info("cluster: the revocations feed has a new reader", "from", next)
	return true
}

// Stop ends the feed and its reader.
func (f *revocationFeed) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	f.stopped = true
	close(f.closed)
	f.cc.Stop()
}

// Drain ends the feed as Stop does.
func (f *revocationFeed) Drain() { f.Stop() }

// Closed is closed once the feed is stopped.
func (f *revocationFeed) Closed() <-chan struct{} { return f.closed }
