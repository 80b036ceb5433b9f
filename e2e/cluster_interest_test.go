package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"homemq/cluster"
)

// TestClusterInterestPerShard: a node's consumer asks for the shards of
// its subscribers' homes, not for each home. Agents of 24 homes on node b
// leave its consumer with one filter per shard of theirs
// ("homemq.msg.{shard}.homes.>"); a viewer of another home in one of
// those shards subscribes without a consumer update and gets the state
// an agent publishes on a; a viewer in a new shard adds it in one update;
// when the last subscriber of a shard leaves, the shard leaves the
// filter, and not while one is left.
func TestClusterInterestPerShard(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]

	// An operator's NATS connection: it reads node b's consumer and sees
	// every request that creates or updates it.
	secret, err := cluster.LoadSecret(a.Config().Cluster.SecretFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := secret.CAPEM()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	nc, err := nats.Connect("tls://"+a.Config().Cluster.Embedded.Listen, nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}),
		nats.UserInfo(cluster.ClientUser, secret.ClientPassword()), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var updates atomic.Int64
	api := "$JS.API.CONSUMER.CREATE." + cluster.MessagesStream + ".node-b"
	for _, s := range []string{api, api + ".>"} {
		if _, err := nc.Subscribe(s, func(*nats.Msg) { updates.Add(1) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	filters := func() []string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, cluster.MessagesStream, "node-b")
		if err != nil {
			t.Logf("consumer node-b: %v", err)
			return nil
		}
		fs := c.CachedInfo().Config.FilterSubjects
		if f := c.CachedInfo().Config.FilterSubject; f != "" {
			fs = append(fs, f)
		}
		slices.Sort(fs)
		return fs
	}
	shardOf := func(home string) string {
		s, ok := cluster.MessageSubject("homes/" + home + "/x")
		if !ok {
			t.Fatalf("no subject for home %s", home)
		}
		return strings.Split(s, ".")[2]
	}
	shardFilter := func(home string) string { return "homemq.msg." + shardOf(home) + ".homes.>" }
	cmd := func(i int) string { return fmt.Sprintf("homes/h%d/agents/a%d/devices/+/cmd", i, i) }

	const homes = 24
	var want []string
	for i := range homes {
		agent := b.mustV5(overPlain, fmt.Sprintf("agent:a%d", i), b.mint(fmt.Sprintf("agent:a%d", i), fmt.Sprintf("h%d=agent", i)))
		if code := agent.subscribe(t, cmd(i), 1); code != 1 {
			t.Fatalf("agent %d SUBACK %#x, want 1", i, code)
		}
		want = append(want, shardFilter(fmt.Sprintf("h%d", i)))
	}
	slices.Sort(want)
	want = slices.Compact(want)
	if got := filters(); !slices.Equal(got, want) {
		t.Fatalf("node b's consumer filters %q for agents of %d homes, want their %d shards %q", got, homes, len(want), want)
	}

	// Two homes beyond those: one in a shard b has, one in a new shard.
	var known, fresh int
	for i := homes; known == 0 || fresh == 0; i++ {
		in := slices.Contains(want, shardFilter(fmt.Sprintf("h%d", i)))
		switch {
		case in && known == 0:
			known = i
		case !in && fresh == 0:
			fresh = i
		}
	}
	state := func(i int) string { return fmt.Sprintf("homes/h%d/agents/a%d/devices/d1/state", i, i) }
	viewer := func(i int) *v5client {
		v := b.mustV5(overPlain, fmt.Sprintf("user:v%d", i), b.mint(fmt.Sprintf("user:v%d", i), fmt.Sprintf("h%d=viewer", i)))
		if code := v.subscribe(t, state(i), 1); code != 1 {
			t.Fatalf("viewer of h%d SUBACK %#x, want 1", i, code)
		}
		return v
	}

	var knownViewer *v5client
	t.Run("a subscriber in a shard the node has", func(t *testing.T) {
		before := updates.Load()
		v := viewer(known)
		knownViewer = v
		never(t, time.Second, "node b's consumer is updated for a subscriber in a shard it has", func() bool { return updates.Load() != before })
		agent := a.mustV5(overPlain, fmt.Sprintf("agent:a%d", known), a.mint(fmt.Sprintf("agent:a%d", known), fmt.Sprintf("h%d=agent", known)))
		if pr := agent.publish(t, state(known), []byte("on"), 1, false); pr.ReasonCode != 0 {
			t.Fatalf("state on a: PUBACK %#x", pr.ReasonCode)
		}
		eventually(t, 10*time.Second, "the viewer on b gets the state published on a", func() bool { return len(publishes(v, state(known))) > 0 })
	})

	t.Run("a subscriber in a new shard", func(t *testing.T) {
		before := updates.Load()
		v := viewer(fresh)
		if got := filters(); !slices.Contains(got, shardFilter(fmt.Sprintf("h%d", fresh))) {
			t.Fatalf("after the SUBACK of a subscriber in a new shard, node b's consumer filters %q, want %s among them", got, shardFilter(fmt.Sprintf("h%d", fresh)))
		}
		eventually(t, 5*time.Second, "one update of node b's consumer", func() bool { return updates.Load() > before })
		if n := updates.Load() - before; n != 1 {
			t.Fatalf("%d updates of node b's consumer for a subscriber in a new shard, want one", n)
		}
		// Its last subscriber gone, the shard leaves; the others stay.
		_ = v.Disconnect(&paho.Disconnect{})
		eventually(t, 10*time.Second, "the new shard leaves node b's consumer with its last subscriber", func() bool { return slices.Equal(filters(), want) })
	})

	t.Run("a shard stays while a subscriber is left in it", func(t *testing.T) {
		before := updates.Load()
		// known's viewer shares its shard with an agent: gone, nothing changes.
		if knownViewer == nil {
			t.Skip("no viewer in a known shard")
		}
		_ = knownViewer.Disconnect(&paho.Disconnect{})
		never(t, time.Second, "node b's consumer is updated while every shard keeps a subscriber", func() bool { return updates.Load() != before })
		if got := filters(); !slices.Equal(got, want) {
			t.Fatalf("node b's consumer filters %q, want %q", got, want)
		}
	})
}
