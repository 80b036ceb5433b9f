package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"homemq/broker"
	"homemq/certs"
	"homemq/cluster"
)

// viewers numbers the client ids of retainedOn's short-lived viewers.
var viewers atomic.Int64

// retainedOn connects a new viewer of home h1 to node n, subscribes to
// topic and returns the retained message it gets right after its SUBACK,
// or nil when none comes within a second (mochi sends retained messages
// straight after the SUBACK).
func retainedOn(t *testing.T, n *testBroker, topic string) *paho.Publish {
	t.Helper()
	id := fmt.Sprintf("user:viewer/r%d", viewers.Add(1))
	v := n.mustV5(overTLS, id, n.mint("user:viewer", "h1=viewer"))
	defer v.Disconnect(&paho.Disconnect{})
	if code := v.subscribe(t, topic, 1); code != 1 {
		t.Fatalf("viewer on %s: SUBACK %#x for %s, want 1", n.Config().Cluster.Embedded.Name, code, topic)
	}
	for range 20 {
		if got := publishes(v, topic); len(got) > 0 {
			return got[0]
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// restartNode starts a broker again from the configuration, and so the
// data folder, of one that was closed.
func restartNode(t *testing.T, cfg broker.Config) *testBroker {
	t.Helper()
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatalf("restart node %s: %v", cfg.Cluster.Embedded.Name, err)
	}
	t.Cleanup(b.Close)
	if err := b.Start(); err != nil {
		t.Fatalf("restart node %s: %v", cfg.Cluster.Embedded.Name, err)
	}
	tb := &testBroker{Broker: b, t: t, Data: cfg.Data}
	if tb.pool, err = certs.CertPool(b.CAFile); err != nil {
		t.Fatal(err)
	}
	return tb
}

// TestClusterRetainedStore: a retained state is the cluster's, not a
// node's. Retained on A while no node has a subscriber, it is served on C
// (retain flag set); cleared on A, it is gone on B; retained and cleared
// while C is down, C serves the bucket's state after its restart, never a
// stale or expired message.
func TestClusterRetainedStore(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	const (
		d1 = "homes/h1/agents/a1/devices/d1/state"
		d3 = "homes/h1/agents/a1/devices/d3/state"
		d4 = "homes/h1/agents/a1/devices/d4/state"
	)
	agentA := a.mustV5(overPlain, "agent:a1/ret", a.mint("agent:a1", "h1=agent"))
	// retain publishes a retained state and waits for its PUBACK; while a
	// node is gone, JetStream may need a few seconds to elect new leaders
	// and a publish may be refused 0x80 meanwhile: the agent publishes again.
	retain := func(ag *v5client, topic, payload string, props *paho.PublishProperties) {
		t.Helper()
		eventually(t, 20*time.Second, fmt.Sprintf("retained %q on %s is accepted", payload, topic), func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			pr, err := ag.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte(payload), Properties: props})
			if err != nil {
				t.Fatalf("retain %q on %s: %v", payload, topic, err)
			}
			return pr.ReasonCode == 0
		})
	}

	t.Run("retained on A, served on C", func(t *testing.T) {
		retain(agentA, d1, "on", &paho.PublishProperties{ContentType: "application/json"})
		eventually(t, 5*time.Second, "a viewer connecting to C gets the state retained on A", func() bool {
			p := retainedOn(t, c, d1)
			return p != nil && string(p.Payload) == "on"
		})
		var p *paho.Publish
		eventually(t, 5*time.Second, "C serves it again", func() bool { p = retainedOn(t, c, d1); return p != nil })
		if !p.Retain || p.Properties == nil || p.Properties.ContentType != "application/json" {
			t.Fatalf("retained state on C: retain %v, properties %+v; want the retain flag and the content type", p.Retain, p.Properties)
		}
	})

	t.Run("cleared on A, gone on B", func(t *testing.T) {
		eventually(t, 5*time.Second, "B serves the state retained on A", func() bool {
			p := retainedOn(t, b, d1)
			return p != nil && string(p.Payload) == "on"
		})
		retain(agentA, d1, "", nil)
		eventually(t, 5*time.Second, "a viewer connecting to B gets nothing after the state is cleared on A", func() bool {
			return retainedOn(t, b, d1) == nil
		})
	})

	t.Run("changed while C is down, served after its restart", func(t *testing.T) {
		agentC := c.mustV5(overPlain, "agent:a1/retc", c.mint("agent:a1", "h1=agent"))
		retain(agentC, d3, "open", nil) // C's own store holds it too
		eventually(t, 5*time.Second, "A serves the state retained on C", func() bool {
			p := retainedOn(t, a, d3)
			return p != nil && string(p.Payload) == "open"
		})
		cfg := c.Config()
		c.Close()

		// A and B still hold two of the three replicas: they take writes.
		retain(agentA, d1, "off", nil)
		retain(agentA, d3, "", nil)
		expiry := uint32(1)
		retain(agentA, d4, "brief", &paho.PublishProperties{MessageExpiry: &expiry})
		gone := time.Now().Add(1500 * time.Millisecond)
		for time.Now().Before(gone) {
			time.Sleep(50 * time.Millisecond)
		}

		c = restartNode(t, cfg)
		// a busy machine may delay a retained message past retainedOn's
		// second: ask again before calling it missing
		var p *paho.Publish
		eventually(t, 5*time.Second, "C after its restart serves the state retained while it was down", func() bool {
			p = retainedOn(t, c, d1)
			return p != nil
		})
		if string(p.Payload) != "off" || !p.Retain {
			t.Fatalf("C after its restart serves %q (retain %v) for %s, want the state \"off\" retained while it was down", p.Payload, p.Retain, d1)
		}
		if p := retainedOn(t, c, d3); p != nil {
			t.Fatalf("C after its restart serves %q for %s, cleared while it was down", p.Payload, d3)
		}
		if p := retainedOn(t, c, d4); p != nil {
			t.Fatalf("C after its restart serves %q for %s, which expired while it was down", p.Payload, d4)
		}
	})
}

// TestClusterKeepsRetainedOfASingleNode: a broker that ran alone keeps
// its retained states when it restarts as the first node of a cluster:
// they are copied into the new, empty bucket instead of being dropped as
// "not in the bucket".
func TestClusterKeepsRetainedOfASingleNode(t *testing.T) {
	t.Parallel()
	const state = "homes/h1/agents/a1/devices/d1/state"
	data := t.TempDir()
	single := startBrokerIn(t, data)
	agent := single.mustV5(overPlain, "agent:a1", single.mint("agent:a1", "h1=agent"))
	if pr := agent.publish(t, state, []byte("on"), 1, true); pr.ReasonCode != 0 {
		t.Fatalf("retain on the single node: PUBACK %#x", pr.ReasonCode)
	}
	cfg := single.Config()
	single.Close()

	secret := filepath.Join(t.TempDir(), "cluster.secret")
	if err := os.WriteFile(secret, []byte(cluster.NewSecret().String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Cluster = &cluster.Config{Embedded: &cluster.Embedded{Name: "a"}, SecretFile: secret}
	node := restartNode(t, cfg)
	var p *paho.Publish
	eventually(t, 5*time.Second, "the node, now in a cluster, serves the state it retained alone", func() bool {
		p = retainedOn(t, node, state)
		return p != nil
	})
	if string(p.Payload) != "on" || !p.Retain {
		t.Fatalf("the node serves %q (retain %v), want \"on\" retained", p.Payload, p.Retain)
	}
}
