package envelope

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// ReplayCache remembers which (kid, nonce) pairs were accepted, each until
// its envelope's exp plus a grace (DefaultSkew), so the same envelope is
// accepted at most once while it could still be accepted at all.
//
// Entries live in a set keyed by a 128-bit keyed hash of (kid, nonce) and in
// a ring of time buckets (one per second, coarser for horizons over two
// minutes) that expire them without scanning. It is bounded: past maxEntries
// live entries Record refuses with ReasonCacheFull. It is sharded by the hash
// so concurrent Records rarely contend. A hash collision can only make a
// fresh envelope look like a replay (about 2^-128 per pair, and the seed is
// secret), never let a replay through. A wall clock stepping backwards never
// makes it forget an entry early.
//
// With OwnerQuota, RecordFor also bounds the live entries of each owner (the
// broker's owner is the sender's sub), so that one sender filling its share
// refuses only its own commands; the global cap stays as a memory bound.
type ReplayCache struct {
	shards  [replayShards]shard
	owners  [replayShards]ownerShard
	quota   int // live entries per owner; 0: no quota
	max     int64
	count   atomic.Int64
	horizon time.Duration
	grace   time.Duration
	width   int64 // seconds per bucket
	seedA   maphash.Seed
	seedB   maphash.Seed
}

// DefaultReplayMax is the entry cap NewReplayCache uses when given none.
const DefaultReplayMax = 1 << 20

const (
	replayShards    = 32 // a power of two
	replayShardMask = replayShards - 1
	replayGrace     = DefaultSkew // entries outlive exp by this much
	replayKeySize   = 16
	maxBuckets      = 120 // buckets per shard's ring, at most (plus two)
	keepBucketCap   = 128 // a cleared bucket keeps its array up to this many keys
)

type replayKey [replayKeySize]byte

type bucket struct {
	until int64 // the slot number its keys expire at: gone once now/width >= until
	keys  []replayKey
}

type shard struct {
	mu   sync.Mutex
	set  map[replayKey]struct{}
	ring []bucket
	last int64    // the slot number the ring was last rotated to
	_    [64]byte // keeps shards' locks on separate cache lines
}

// ReplayOption changes how NewReplayCache sets up a cache.
type ReplayOption func(*ReplayCache)

// OwnerQuota limits the live entries each owner of RecordFor may hold to n
// (no limit if n <= 0).
func OwnerQuota(n int) ReplayOption {
	return func(c *ReplayCache) { c.quota = max(n, 0) }
}

// NewReplayCache returns a cache holding at most maxEntries live entries
// (DefaultReplayMax if <= 0) for envelopes whose exp is at most horizon after
// now (Policy.Horizon(), i.e. MaxLifetime + Skew; the default policy's if
// <= 0).
func NewReplayCache(maxEntries int, horizon time.Duration, opts ...ReplayOption) *ReplayCache {
	if maxEntries <= 0 {
		maxEntries = DefaultReplayMax
	}
	if horizon <= 0 {
		horizon = DefaultPolicy().Horizon()
	}
	span := int64((horizon + replayGrace + time.Second - 1) / time.Second) // seconds an entry can live, rounded up
	width := (span + maxBuckets - 1) / maxBuckets
	n := (span+width-1)/width + 2
	c := &ReplayCache{max: int64(maxEntries), horizon: horizon, grace: replayGrace, width: width,
		seedA: maphash.MakeSeed(), seedB: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].set = make(map[replayKey]struct{})
		c.shards[i].ring = make([]bucket, n)
		c.shards[i].last = -1 << 62
		c.owners[i].m = make(map[string]*ownerUse)
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Record stores (kid, nonce) until exp plus the grace. It refuses with an
// *Error: ReasonReplay if the pair is already stored, ReasonCacheFull if the
// cache is at its cap (nothing is stored then), ReasonExpired if now >= exp,
// and ReasonLifetime if exp is more than the horizon after now (the cache
// could not promise to remember it). Call it only after Verify succeeded.
func (c *ReplayCache) Record(kid, nonce string, exp time.Time, now time.Time) error {
	return c.RecordFor("", kid, nonce, exp, now)
}

// RecordFor is Record on behalf of owner: with OwnerQuota, it also refuses
// with ReasonQuota (nothing is stored then) when owner already holds its
// quota of live entries. The empty owner has no quota.
func (c *ReplayCache) RecordFor(owner, kid, nonce string, exp time.Time, now time.Time) error {
	if !now.Before(exp) {
		return refuse(ReasonExpired, fmt.Sprintf("envelope expired %s ago; not recorded", now.Sub(exp).Truncate(time.Second)))
	}
	if d := exp.Sub(now); d > c.horizon {
		return refuse(ReasonLifetime, fmt.Sprintf("envelope expires in %s, beyond the replay cache's horizon of %s", d.Truncate(time.Second), c.horizon))
	}
	k := c.key(kid, nonce)
	sh := &c.shards[k[0]&replayShardMask]
	keep := exp.Add(c.grace)
	slot := ceilDiv(keep.Unix()+b2i(keep.Nanosecond() > 0), c.width)
	cur := floorDiv(now.Unix(), c.width)
	for attempt := 0; ; attempt++ {
		sh.mu.Lock()
		sh.rotate(c, cur)
		if _, dup := sh.set[k]; dup {
			sh.mu.Unlock()
			return refuse(ReasonReplay, fmt.Sprintf("envelope replayed: nonce %q was already used with key id %q; seal every command afresh", clip(nonce), clip(kid)))
		}
		quota := c.quota > 0 && owner != ""
		if quota {
			if n, ok := c.takeOwner(owner, slot, cur); !ok {
				sh.mu.Unlock()
				return refuse(ReasonQuota, fmt.Sprintf("too many live commands from %q (%d, the quota per sender); wait until earlier ones expire, or send fewer or shorter-lived commands", clip(owner), n))
			}
		}
		if c.count.Add(1) <= c.max {
			sh.insert(c, k, slot, cur)
			sh.mu.Unlock()
			return nil
		}
		c.count.Add(-1)
		if quota {
			c.giveBackOwner(owner, slot)
		}
		sh.mu.Unlock()
		if attempt > 0 {
			return refuse(ReasonCacheFull, fmt.Sprintf("replay cache is full (%d entries); commands are refused until entries expire — raise the cache size or lower command rates and lifetimes", c.max))
		}
		c.sweep(cur) // other shards may hold expired entries not yet rotated out
	}
}

// Expire drops every entry whose time has passed at now. Record does this
// lazily, shard by shard; call Expire now and then (e.g. before reading Len
// for a metric) to release memory and make Len exact.
func (c *ReplayCache) Expire(now time.Time) { c.sweep(floorDiv(now.Unix(), c.width)) }

// Len returns the number of entries held, including expired ones in shards
// that no Record or Expire has visited since they expired.
func (c *ReplayCache) Len() int { return int(c.count.Load()) }

// Horizon returns the longest exp - now that Record accepts.
func (c *ReplayCache) Horizon() time.Duration { return c.horizon }

func (c *ReplayCache) key(kid, nonce string) (k replayKey) {
	var l [4]byte
	binary.LittleEndian.PutUint32(l[:], uint32(len(kid)))
	var h maphash.Hash
	h.SetSeed(c.seedA)
	h.Write(l[:])
	h.WriteString(kid)
	h.WriteString(nonce)
	binary.LittleEndian.PutUint64(k[:8], h.Sum64())
	h.SetSeed(c.seedB)
	h.Write(l[:])
	h.WriteString(kid)
	h.WriteString(nonce)
	binary.LittleEndian.PutUint64(k[8:], h.Sum64())
	return k
}

func (c *ReplayCache) sweep(cur int64) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.rotate(c, cur)
		sh.mu.Unlock()
		osh := &c.owners[i]
		osh.mu.Lock()
		osh.prune(cur)
		osh.mu.Unlock()
	}
}

// rotate expires the buckets whose time has come, visiting each slot number
// between the last rotation and cur once (every bucket when that is a whole
// ring or more). A clock that went back only moves last back: buckets whose
// until lies ahead stay until the clock reaches it.
func (sh *shard) rotate(c *ReplayCache, cur int64) {
	if cur <= sh.last {
		sh.last = cur
		return
	}
	n := int64(len(sh.ring))
	steps := min(cur-sh.last, n)
	for i := int64(1); i <= steps; i++ {
		b := &sh.ring[floorMod(sh.last+i, n)]
		if len(b.keys) > 0 && b.until <= cur {
			sh.expire(c, b)
		}
	}
	sh.last = cur
}

func (sh *shard) expire(c *ReplayCache, b *bucket) {
	for _, k := range b.keys {
		delete(sh.set, k)
	}
	c.count.Add(-int64(len(b.keys)))
	if cap(b.keys) > keepBucketCap {
		b.keys = nil
	} else {
		b.keys = b.keys[:0]
	}
}

// insert adds k to the set and to the bucket of slot. Live slots span fewer
// than len(ring) numbers, so a bucket holding another slot's keys is expired
// (cleared first) or, after the clock went back, ahead: then the keys share it
// and all stay until the later of the two.
func (sh *shard) insert(c *ReplayCache, k replayKey, slot, cur int64) {
	sh.set[k] = struct{}{}
	b := &sh.ring[floorMod(slot, int64(len(sh.ring)))]
	if len(b.keys) > 0 && b.until != slot && b.until <= cur {
		sh.expire(c, b)
	}
	if len(b.keys) == 0 || slot > b.until {
		b.until = slot
	}
	b.keys = append(b.keys, k)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) {
		q--
	}
	return q
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }

func floorMod(a, n int64) int64 {
	m := a % n
	if m < 0 {
		m += n
	}
	return m
}
