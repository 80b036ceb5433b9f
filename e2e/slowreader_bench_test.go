package e2e

import (
	"bytes"
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"homemq/broker"
)

// The benchmarks below measure what the slow-reader tests only bound: how
// long revocation, expiry and shutdown take with a stalled reader present,
// and what the stalled reader costs a publisher. Run them with
//
//	go test -run='^$' -bench=Stalled -benchtime=3x ./e2e/
//
// (make bench-cutoff). Each operation sets up a fresh broker and stalled
// reader, which takes seconds, with the timer stopped; a -benchtime given
// as a duration would set up many of them.

// benchTransports are the transports the benchmarks run over: TLS, which
// devices use, and WebSocket, whose framing adds a writer of its own.
var benchTransports = []transport{overTLS, overWSS}

// pubacksPerOp is how many QoS 1 publishes one PUBACK-latency operation
// makes; the percentiles are over every publish of the run.
const pubacksPerOp = 200

// BenchmarkStalledReaderRevocation measures the time from Revoke to every
// connection of the revoked sub closed: eight well-behaved ones and a
// stalled reader.
func BenchmarkStalledReaderRevocation(b *testing.B) {
	for _, tr := range benchTransports {
		b.Run(string(tr), func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				b.StopTimer()
				br, good, _ := revocationScene(b, tr)
				if n := openClients(br, "user:viewer/"); n != len(good)+1 {
					b.Fatalf("%d connections of user:viewer open before the revocation, want %d", n, len(good)+1)
				}
				b.StartTimer()
				start := time.Now()
				if _, err := br.Revoke(broker.RevokeRequest{Sub: "user:viewer"}); err != nil {
					b.Fatalf("revoke: %v", err)
				}
				closed := waitClosed(b, br, "user:viewer/", time.Minute)
				b.StopTimer()
				took = append(took, closed.Sub(start))
				br.Close()
				b.StartTimer()
			}
			reportCutOffs(b, took)
		})
	}
}

// BenchmarkStalledReaderExpiry measures the time from the deadline of a
// stalled reader's token (exp plus the leeway, 1 ms here) to its
// connection closed.
func BenchmarkStalledReaderExpiry(b *testing.B) {
	for _, tr := range benchTransports {
		b.Run(string(tr), func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				b.StopTimer()
				// the token must outlive the setup, which takes a few seconds
				// on a loaded machine; exp is in whole seconds
				br, s, deadline := expiryScene(b, tr, 8*time.Second)
				if time.Now().After(deadline) {
					b.Fatalf("the token expired %v before the reader stalled: the machine is too slow for this benchmark", time.Since(deadline))
				}
				for time.Now().Before(deadline) {
					if !br.connected(s.id) {
						b.Fatalf("the stalled reader was disconnected %v before its token's deadline", time.Until(deadline))
					}
					time.Sleep(time.Millisecond)
				}
				b.StartTimer()
				closed := waitClosed(b, br, s.id, time.Minute)
				b.StopTimer()
				took = append(took, closed.Sub(deadline))
				br.Close()
				b.StartTimer()
			}
			// The timer starts when the poll first sees the deadline passed,
			// by which time the cut-off may be done: ns/op would mislead.
			b.ReportMetric(0, "ns/op")
			reportCutOffs(b, took)
		})
	}
}

// BenchmarkStalledReaderShutdown measures broker Shutdown with a stalled
// reader connected.
func BenchmarkStalledReaderShutdown(b *testing.B) {
	for _, tr := range benchTransports {
		b.Run(string(tr), func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				b.StopTimer()
				br := shutdownScene(b, tr)
				b.StartTimer()
				start := time.Now()
				if err := br.Shutdown(context.Background()); err != nil {
					b.Fatalf("Shutdown: %v", err)
				}
				took = append(took, time.Since(start))
			}
			reportCutOffs(b, took)
		})
	}
}

// BenchmarkStalledReaderPuback measures the publisher's side: the latency
// from an agent's QoS 1 PUBLISH to its PUBACK, with a well-behaved
// subscriber of the published topic present, without and with a stalled
// reader subscribed to it too. The stalled reader's queue is large enough
// that it stays connected throughout.
func BenchmarkStalledReaderPuback(b *testing.B) {
	for _, tr := range benchTransports {
		for _, stalled := range []bool{false, true} {
			name := string(tr) + "/without"
			if stalled {
				name = string(tr) + "/with"
			}
			b.Run(name, func(b *testing.B) {
				br := startBroker(b, bigQueues)
				agent := fillRetained(b, br, tr)
				reader := br.mustV5(tr, "user:viewer/reader", br.mint("user:viewer", "h1=viewer"))
				if code := reader.subscribe(b, stateFilter, 1); code != 1 {
					b.Fatalf("subscribe %s: 0x%02X, want QoS 1 granted", stateFilter, code)
				}
				var s *stalledReader
				if stalled {
					s = br.stall(b, tr, "user:viewer/stalled", br.mint("user:viewer", "h1=viewer"))
				}
				payload := bytes.Repeat([]byte("p"), 4<<10)
				var took []time.Duration
				for b.Loop() {
					for i := range pubacksPerOp {
						start := time.Now()
						pr := agent.publish(b, "homes/h1/agents/pi/devices/d0/state", payload, 1, false)
						took = append(took, time.Since(start))
						if pr.ReasonCode != 0 {
							b.Fatalf("publish %d: 0x%02X", i, pr.ReasonCode)
						}
					}
				}
				if s != nil && !br.connected(s.id) {
					b.Fatal("the stalled reader was disconnected during the run: the figures are not with it present")
				}
				slices.Sort(took)
				b.ReportMetric(ms(percentile(took, 0.50)), "p50-ms")
				b.ReportMetric(ms(percentile(took, 0.99)), "p99-ms")
			})
		}
	}
}

// openClients counts the clients of br whose ID starts with prefix and
// that are still connected.
func openClients(br *testBroker, prefix string) int {
	n := 0
	for id, cl := range br.Server.Clients.GetAll() {
		if strings.HasPrefix(id, prefix) && !cl.Closed() {
			n++
		}
	}
	return n
}

// waitClosed polls every millisecond until no client of br whose ID starts
// with prefix is connected and returns the time it saw that; it fails b if
// one still is after within.
func waitClosed(b *testing.B, br *testBroker, prefix string, within time.Duration) time.Time {
	b.Helper()
	deadline := time.Now().Add(within)
	for {
		now := time.Now()
		if openClients(br, prefix) == 0 {
			return now
		}
		if now.After(deadline) {
			b.Fatalf("%d connections of %s still open after %v", openClients(br, prefix), prefix, within)
		}
		time.Sleep(time.Millisecond)
	}
}

// reportCutOffs reports the mean and the longest of the measured cut-offs.
func reportCutOffs(b *testing.B, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	var sum time.Duration
	for _, d := range took {
		sum += d
	}
	b.ReportMetric(ms(sum/time.Duration(len(took))), "ms/op")
	b.ReportMetric(ms(slices.Max(took)), "max-ms")
}

// percentile returns the p-th percentile (0 < p <= 1) of sorted, by the
// nearest-rank method.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(math.Ceil(p*float64(len(sorted))))-1]
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
