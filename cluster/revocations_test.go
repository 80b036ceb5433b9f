package cluster

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"homemq/auth"
	"homemq/internal/eventually"
)

// revocationNode is a node with only what the revocation feed needs, over
// js: its own in-memory revocation list.
func revocationNode(t *testing.T, js jetstream.JetStream, secret Secret, name string) *Node {
	t.Helper()
	revs, err := auth.LoadRevocations("")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n := &Node{cfg: Config{Replicas: 1}, name: name, secret: secret, js: js, d: Deps{Revocations: revs},
		log: log, sig: newMsgSigner(secret, log), done: make(chan struct{})}
	t.Cleanup(func() {
		close(n.done)
		if n.feed != nil {
			n.feed.Stop()
		}
	})
	return n
}

func revocationsStream(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: RevocationsStream, Subjects: []string{revokeSubject}, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
}

func follow(t *testing.T, n *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.followRevocations(ctx); err != nil {
		t.Fatalf("node %s follows the revocations: %v", n.name, err)
	}
}

// TestRevocationsCaughtUpAtStart: a node that (re)joins holds every
// revocation of the stream when followRevocations returns, so it never
// serves a CONNECT with a token revoked while it was away.
func TestRevocationsCaughtUpAtStart(t *testing.T) {
	js := startJetStream(t)
	revocationsStream(t, js)
	secret := NewSecret()
	a := revocationNode(t, js, secret, "a")
	follow(t, a)
	const n = 200
	until := time.Now().Add(time.Hour).Unix()
	for i := range n {
		if err := a.d.Revocations.Add(auth.Revocation{Sub: "user:u" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Until: until}); err != nil {
			t.Fatal(err)
		}
	}
	b := revocationNode(t, js, secret, "b")
	follow(t, b)
	if got := len(b.d.Revocations.List()); got != n {
		t.Fatalf("the node that joined holds %d of the %d revocations when it starts serving", got, n)
	}
}

// TestRevocationRetriedUntilItLands: a revocation made while the stream
// cannot take it (no leader, as just after a node died) is not lost: the
// node keeps publishing it until it lands, and the others apply it.
func TestRevocationRetriedUntilItLands(t *testing.T) {
	js := startJetStream(t)
	secret := NewSecret()
	a := revocationNode(t, js, secret, "a")
	a.d.Revocations.OnRevoke(a.publishRevocation) // the stream is not there yet: no responder
	if err := a.d.Revocations.Add(auth.Revocation{Sub: "user:lost", Until: time.Now().Add(time.Hour).Unix()}); err != nil {
		t.Fatal(err)
	}
	revocationsStream(t, js) // a leader again
	b := revocationNode(t, js, secret, "b")
	follow(t, b)
	eventually.That(t, 10*time.Second, "the revocation made without a leader reaches node b", func() bool {
		return len(b.d.Revocations.List()) == 1
	})
}

// TestRevocationsTheStreamLacksArePublished: entries a node holds that
// never reached the stream (written while it could not take them, or by
// an offline `homemq revoke`) are published when the node starts, and a
// node whose entries all came from the stream publishes nothing again.
func TestRevocationsTheStreamLacksArePublished(t *testing.T) {
	js := startJetStream(t)
	revocationsStream(t, js)
	secret := NewSecret()
	a := revocationNode(t, js, secret, "a")
	follow(t, a)
	until := time.Now().Add(time.Hour).Unix()
	if err := a.d.Revocations.Add(auth.Revocation{Sub: "user:shared", Until: until}); err != nil {
		t.Fatal(err)
	}
	b := revocationNode(t, js, secret, "b")
	for _, e := range []auth.Revocation{
		{Sub: "user:offline", Until: until},
		{Sub: "user:expired", Until: time.Now().Add(-time.Minute).Unix()},
	} {
		if err := b.d.Revocations.Add(e); err != nil { // no listener yet: the stream lacks them
			t.Fatal(err)
		}
	}
	follow(t, b)
	eventually.That(t, 10*time.Second, "node a gets the entry only b held", func() bool {
		return len(a.d.Revocations.List()) == 2
	})
	for _, e := range a.d.Revocations.List() {
		if e.Sub == "user:expired" {
			t.Fatal("an expired entry was published")
		}
	}
	stream, err := js.Stream(context.Background(), RevocationsStream)
	if err != nil {
		t.Fatal(err)
	}
	msgs := func() uint64 {
		info, err := stream.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	before := msgs()
	c := revocationNode(t, js, secret, "c")
	for _, e := range a.d.Revocations.List() { // as a's file holds them
		if err := c.d.Revocations.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	follow(t, c) // holds only what the stream has: a restart
	eventually.Never(t, 300*time.Millisecond, "a restarted node publishes entries the stream has", func() bool { return msgs() != before })
}

// TestRevocationFeedReplacesItsReader: a feed given a new reader (as when
// the old one stopped answering) goes on from the entry after the last
// one it read, and hands every entry on once.
func TestRevocationFeedReplacesItsReader(t *testing.T) {
	js := startJetStream(t)
	revocationsStream(t, js)
	secret := NewSecret()
	a := revocationNode(t, js, secret, "a")
	follow(t, a)
	b := revocationNode(t, js, secret, "b")
	var mu sync.Mutex
	seen := map[uint64]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := b.newRevocationFeed(ctx, func(msg jetstream.Msg) {
		md, _ := msg.Metadata()
		mu.Lock()
		seen[md.Sequence.Stream]++
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
	revoke := func(sub string) {
		if err := a.d.Revocations.Add(auth.Revocation{Sub: sub, Until: time.Now().Add(time.Hour).Unix()}); err != nil {
			t.Fatal(err)
		}
	}
	revoke("user:one")
	revoke("user:two")
	eventually.That(t, 5*time.Second, "the feed reads two entries", func() bool { return count() == 2 })
	if !f.replace() {
		t.Fatal("the feed got no new reader")
	}
	revoke("user:three")
	eventually.That(t, 5*time.Second, "the new reader reads the third entry", func() bool { return count() == 3 })
	eventually.Never(t, 300*time.Millisecond, "an entry is handed on twice", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range seen {
			if n > 1 {
				return true
			}
		}
		return false
	})
}
