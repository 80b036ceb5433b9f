package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go/jetstream"
)

// TestHookInterestPerShard: on a one-server JetStream, a node's consumer
// takes the shards of its subscribers' homes; a SUBSCRIBE in one of them
// is taken without an update, one in another shard is not; a shard leaves
// the filter with its last subscriber and not before, and after that a
// SUBSCRIBE in it waits again.
func TestHookInterestPerShard(t *testing.T) {
	n := jetStream(t)("a")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: MessagesStream, Subjects: []string{msgPrefix + ">"}, Retention: jetstream.InterestPolicy, Storage: jetstream.MemoryStorage,
	}); err != nil {
		t.Fatal(err)
	}
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	n.d = Deps{Server: srv}
	h := &Hook{n: n, changed: make(chan struct{}, 1)}
	h.widening.done = sync.NewCond(&h.widening.mu)

	// Three homes: a and b in one shard, c in another.
	a, b, c := "h0", "", ""
	for i := 1; b == "" || c == ""; i++ {
		home := fmt.Sprintf("h%d", i)
		switch {
		case shardOf(home) == shardOf(a) && b == "":
			b = home
		case shardOf(home) != shardOf(a) && c == "":
			c = home
		}
	}
	cmd := func(home string) packets.Subscriptions {
		return packets.Subscriptions{{Filter: "homes/" + home + "/agents/a1/devices/+/cmd", Qos: 1}}
	}
	connect := func(id, home string) *mqtt.Client {
		cl := srv.NewClient(nil, "t", id, false)
		for _, s := range cmd(home) {
			cl.State.Subscriptions.Add(s.Filter, s)
		}
		srv.Clients.Add(cl)
		return cl
	}
	filters := func() []string {
		cons, err := n.js.Consumer(ctx, MessagesStream, "node-a")
		if err != nil {
			t.Fatal(err)
		}
		fs := cons.CachedInfo().Config.FilterSubjects
		if f := cons.CachedInfo().Config.FilterSubject; f != "" {
			fs = append(fs, f)
		}
		return fs
	}
	refresh := func(want ...string) {
		t.Helper()
		if err := h.refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if got := filters(); !slices.Equal(got, want) {
			t.Fatalf("consumer filters %q, want %q", got, want)
		}
	}
	shard := func(home string) string { return msgPrefix + shardOf(home) + ".homes.>" }

	agentA := connect("agent:a", a)
	refresh(shard(a))
	for _, tc := range []struct {
		subs  packets.Subscriptions
		taken bool
	}{
		{cmd(a), true},
		{cmd(b), true},
		{cmd(c), false},
		{append(cmd(b), cmd(c)...), false},
		{packets.Subscriptions{{Filter: "homes/+/agents/+/status"}}, false},
		{packets.Subscriptions{{Filter: "$SYS/#"}}, true},
	} {
		if got := h.taken(tc.subs); got != tc.taken {
			t.Errorf("taken(%v) = %v with the shard of %s", tc.subs, got, a)
		}
	}

	connect("agent:b", b)
	refresh(shard(a))
	srv.Clients.Delete(agentA.ID)
	refresh(shard(a)) // b is left in it
	if !h.taken(cmd(a)) {
		t.Error("a's shard, kept for b, is not taken any more")
	}
	srv.Clients.Delete("agent:b")
	refresh(noInterest)
	if h.taken(cmd(a)) {
		t.Error("a's shard is taken after its last subscriber left")
	}
	connect("agent:c", c)
	refresh(shard(c))
}
