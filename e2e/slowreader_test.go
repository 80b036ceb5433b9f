package e2e

import (
	"bytes"
	"context"
	"testing"
	"time"

	"homemq/broker"
)

// The attack: a subscriber with a tiny receive buffer subscribes, many
// times over, to a home's retained states at QoS 1, then never reads its
// socket again, only sending a PUBACK now and then to keep its keep-alive
// fresh. Before homemq queued writes itself (package writequeue), mochi's
// writer to it held the client's lock for good, and with it every
// publisher that delivered to it, its revocation, its expiry and shutdown.
// The stalled reader and the scenes are in stalledreader_test.go.

// TestStalledReaderDoesNotHoldPublishers: with a stalled subscriber present,
// every QoS 1 state the agent publishes is acknowledged promptly, and the
// stalled reader is disconnected, counted and audited as a slow consumer:
// with the default queue and a long write timeout because its queue
// overflows, with a large queue because its write times out. (Each case
// makes the other cause too slow to win on a loaded machine.)
func TestStalledReaderDoesNotHoldPublishers(t *testing.T) {
	cases := []struct {
		reason string // of the audit entry
		edit   func(*broker.Config)
	}{
		{"write_buffer", func(c *broker.Config) { c.Limits.WriteTimeout = time.Minute }},
		{"write_timeout", func(c *broker.Config) { bigQueues(c); c.Limits.WriteTimeout = 3 * time.Second }},
	}
	for _, tc := range cases {
		for _, tr := range allTransports {
			t.Run(tc.reason+"/"+string(tr), func(t *testing.T) {
				b := startBroker(t, tc.edit)
				agent := fillRetained(t, b, tr)
				s := b.stall(t, tr, "user:viewer/stalled", b.mint("user:viewer", "h1=viewer"))
				payload := bytes.Repeat([]byte("p"), 4<<10)
				for i := range 30 {
					start := time.Now()
					pr := agent.publish(t, "homes/h1/agents/pi/devices/d0/state", payload, 1, false)
					if pr.ReasonCode != 0 || time.Since(start) > 5*time.Second {
						t.Fatalf("publish %d: 0x%02X after %v, want acknowledged within 5s", i, pr.ReasonCode, time.Since(start))
					}
				}
				eventually(t, 15*time.Second, "the stalled reader disconnected", func() bool { return !b.connected(s.id) })
				if n := b.metric(t, "homemq_slow_consumer_disconnects_total"); n != 1 {
					t.Fatalf("homemq_slow_consumer_disconnects_total = %v, want 1", n)
				}
				eventually(t, 5*time.Second, "a slow_consumer audit entry for the stalled reader", func() bool {
					return findAudit(auditLines(t, b), map[string]string{"event": broker.EventSlowConsumer, "client": s.id, "reason": tc.reason}) != nil
				})
			})
		}
	}
}

// TestStalledReaderDoesNotHoldRevocation: revoking a sub closes its stalled
// connection and all eight of its well-behaved ones within a bound, and its
// connection slots are free again at once (conns_per_sub is 9).
func TestStalledReaderDoesNotHoldRevocation(t *testing.T) {
	for _, tr := range allTransports {
		t.Run(string(tr), func(t *testing.T) {
			b, good, s := revocationScene(t, tr)
			revoked := time.Now()
			go func() { _, _ = b.Revoke(broker.RevokeRequest{Sub: "user:viewer"}) }()
			for i, c := range good {
				select {
				case <-c.disconnect:
				case <-c.clientError:
				case <-time.After(time.Until(revoked.Add(10 * time.Second))):
					t.Fatalf("well-behaved connection %d of the revoked sub still open 10s after the revocation", i)
				}
			}
			eventually(t, time.Until(revoked.Add(10*time.Second)), "the stalled connection closed", func() bool { return !b.connected(s.id) })
			eventually(t, 10*time.Second, "a fresh token of the sub connects (its slots are free)", func() bool {
				c, ca, err := b.v5(tr, "user:viewer/again", b.mint("user:viewer", "h1=viewer"))
				if err == nil {
					return true
				}
				_ = c.conn.Close()
				if ca != nil && ca.ReasonCode == 0x97 {
					t.Fatalf("a fresh token was refused for quota (0x97): the cut-off connections were not uncounted")
				}
				return false // 0x87 while the new token is issued in the second of the revocation
			})
		})
	}
}

// TestStalledReaderIsCutOffAtExpiry: a stalled reader whose token expires
// is cut off within a bound.
func TestStalledReaderIsCutOffAtExpiry(t *testing.T) {
	for _, tr := range allTransports {
		t.Run(string(tr), func(t *testing.T) {
			b, s, deadline := expiryScene(t, tr, 4*time.Second)
			if time.Now().After(deadline) {
				t.Skip("the machine is too slow: the token expired before the reader stalled")
			}
			eventually(t, time.Until(deadline.Add(10*time.Second)), "the stalled reader cut off at expiry", func() bool { return !b.connected(s.id) })
			eventually(t, 5*time.Second, "only the agent's session left", func() bool { return b.Guard.Sessions() == 1 })
		})
	}
}

// TestStalledReaderDoesNotHoldShutdown: Shutdown returns within a bound
// with a stalled reader connected.
func TestStalledReaderDoesNotHoldShutdown(t *testing.T) {
	for _, tr := range allTransports {
		t.Run(string(tr), func(t *testing.T) {
			b := shutdownScene(t, tr)
			done := make(chan error, 1)
			go func() { done <- b.Shutdown(context.Background()) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("Shutdown still waits 15s later, held by a stalled reader")
			}
		})
	}
}
