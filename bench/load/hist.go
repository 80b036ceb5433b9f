package load

import (
	"math/bits"
	"time"
)

// histBuckets covers 0 to 2^40 ns (about 18 minutes) at 1/32 precision.
const histBuckets = 64 + 40*32

// Hist is a log-linear latency histogram: exact below 64 ns, then 32
// buckets per power of two (3% resolution). The zero value is empty; it
// is not safe for concurrent use (give each reader its own and Merge).
type Hist struct {
	counts [histBuckets]uint64
	n      uint64
}

func bucketOf(ns int64) int {
	if ns < 64 {
		if ns < 0 {
			return 0
		}
		return int(ns)
	}
	e := bits.Len64(uint64(ns)) - 6 // >= 1; ns>>e is in [32, 63]
	i := 64 + (e-1)*32 + int(uint64(ns)>>e) - 32
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// bucketMid is the middle of bucket i in nanoseconds.
func bucketMid(i int) int64 {
	if i < 64 {
		return int64(i)
	}
	e := (i-64)/32 + 1
	sub := int64((i-64)%32 + 32)
	return sub<<e + int64(1)<<(e-1)
}

// Record adds one latency.
func (h *Hist) Record(d time.Duration) {
	h.counts[bucketOf(int64(d))]++
	h.n++
}

// Count is the number of latencies recorded.
func (h *Hist) Count() uint64 { return h.n }

// Merge adds o's latencies to h.
func (h *Hist) Merge(o *Hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// Quantile returns the latency below which a fraction q of the recorded
// ones lie (0 when none were recorded).
func (h *Hist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return time.Duration(bucketMid(i))
		}
	}
	return time.Duration(bucketMid(histBuckets - 1))
}
