package e2e

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"homemq/broker"
)

// TestClusterClientIDs: a client id is one connection across the cluster,
// as on one node, and limits.conns_per_sub counts every node's
// connections. A connection with the id of a live connection on another
// node takes it over: the old one gets DISCONNECT 0x8E (MQTT 5) or is
// closed (MQTT 3.1.1) within 5 s, and the new one keeps working; of two
// simultaneous connects exactly one survives. The same
// requested id under another identity is another session and takes
// nothing over. With conns_per_sub 2, two connections on A make a third on
// C refused 0x97 with the reason one node gives, until one of them ends.
func TestClusterClientIDs(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, func(c *broker.Config) { c.Limits.ConnsPerSub = 2 })
	a, b, c := nodes[0], nodes[1], nodes[2]
	const filter = "homes/h1/agents/a1/devices/+/state"

	t.Run("takeover across nodes, MQTT 5", func(t *testing.T) {
		aliceA := a.mustV5(overPlain, "phone", a.mint("user:alice", "h1=viewer"))
		bobC := c.mustV5(overPlain, "phone", c.mint("user:bob", "h1=viewer"))
		never(t, time.Second, "bob's connection with the id phone takes over alice's", func() bool { return len(aliceA.disconnect) > 0 })

		aliceC := c.mustV5(overTLS, "phone", c.mint("user:alice", "h1=viewer"))
		d := aliceA.disconnected(t, 5*time.Second, "the connect with the same id on C")
		if d.ReasonCode != 0x8E {
			t.Fatalf("alice on A: DISCONNECT %#x, want 0x8E (session taken over)", d.ReasonCode)
		}
		if code := aliceC.subscribe(t, filter, 1); code != 1 {
			t.Fatalf("alice on C after the takeover: SUBACK %#x, want 1", code)
		}
		if code := bobC.subscribe(t, filter, 1); code != 1 {
			t.Fatalf("bob on C: SUBACK %#x, want 1", code)
		}
		for who, cl := range map[string]*v5client{"alice on C": aliceC, "bob on C": bobC} {
			if len(cl.disconnect) > 0 {
				t.Fatalf("%s was disconnected: %+v", who, <-cl.disconnect)
			}
		}
	})

	t.Run("simultaneous connects have one winner", func(t *testing.T) {
		tok := a.mint("user:erin", "h1=viewer")
		var conns [2]*v5client
		var errs [2]error
		var wg sync.WaitGroup
		for i, n := range []*testBroker{a, c} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conns[i], _, errs[i] = n.v5(overPlain, "tablet", tok)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs[:]...); err != nil {
			t.Fatal(err)
		}
		taken := func() int { return len(conns[0].disconnect) + len(conns[1].disconnect) }
		eventually(t, 5*time.Second, "one of two simultaneous connections taken over", func() bool { return taken() > 0 })
		never(t, time.Second, "both simultaneous connections taken over", func() bool { return taken() > 1 })
		for _, cl := range conns {
			if len(cl.disconnect) > 0 {
				if d := <-cl.disconnect; d.ReasonCode != 0x8E {
					t.Fatalf("DISCONNECT %#x, want 0x8E", d.ReasonCode)
				}
			}
		}
	})

	t.Run("takeover across nodes, MQTT 3.1.1", func(t *testing.T) {
		lost := make(chan error, 1)
		hubA := a.mustV3(overTLS, "hub", a.mint("user:dave", "h1=viewer"), func(o *pahov3.ClientOptions) {
			o.SetConnectionLostHandler(func(_ pahov3.Client, err error) { lost <- err })
		})
		hubB := b.mustV3(overTLS, "hub", b.mint("user:dave", "h1=viewer"))
		select {
		case <-lost:
		case <-time.After(5 * time.Second):
			t.Fatal("dave's 3.1.1 connection on A was not closed within 5 s of connecting with the same id on B")
		}
		if hubA.IsConnectionOpen() || !hubB.IsConnectionOpen() {
			t.Fatalf("after the takeover: A open %v, B open %v; want only B", hubA.IsConnectionOpen(), hubB.IsConnectionOpen())
		}
	})

	t.Run("conns_per_sub counts every node", func(t *testing.T) {
		first := a.mustV5(overPlain, "c1", a.mint("user:carol", "h1=viewer"))
		a.mustV5(overPlain, "c2", a.mint("user:carol", "h1=viewer"))
		eventually(t, 5*time.Second, "a third connection of carol on C refused 0x97", func() bool {
			cl, ca, err := c.v5(overPlain, "c3", c.mint("user:carol", "h1=viewer"))
			if err == nil {
				_ = cl.Disconnect(&paho.Disconnect{})
				return false
			}
			if ca == nil || ca.ReasonCode != 0x97 || ca.Properties == nil || !strings.Contains(ca.Properties.ReasonString, "too many connections for user:carol") {
				t.Fatalf("third connection on C: %v %+v, want CONNACK 0x97 too many connections for user:carol", err, ca)
			}
			return true
		})
		if err := first.Disconnect(&paho.Disconnect{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "carol connects on C once one of her connections on A ended", func() bool {
			cl, _, err := c.v5(overPlain, "c3", c.mint("user:carol", "h1=viewer"))
			if err == nil {
				_ = cl.Disconnect(&paho.Disconnect{})
			}
			return err == nil
		})
	})
}
