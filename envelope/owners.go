package envelope

import (
	"hash/maphash"
	"sync"
)

// Owner quotas of the replay cache. Each owner's live entries are counted
// by the slot they expire at (the slot numbers of the cache's buckets), so
// they expire with the entries without remembering which entry is whose.

// ownerPruneAt is the size of an owner shard's map past which owners with
// no live entries are dropped before a new owner is added.
const ownerPruneAt = 1024

type ownerShard struct {
	mu sync.Mutex
	m  map[string]*ownerUse
	_  [64]byte // keeps shards' locks on separate cache lines
}

// ownerUse is one owner's live entries: n in all, by the slot they expire
// at, slots ascending.
type ownerUse struct {
	n     int
	slots []slotCount
}

type slotCount struct {
	slot int64
	n    int
}

func (c *ReplayCache) ownerShard(owner string) *ownerShard {
	return &c.owners[maphash.String(c.seedA, owner)&replayShardMask]
}

// takeOwner counts one more entry of owner expiring at slot, unless owner
// already holds the quota; it returns the owner's live entries.
func (c *ReplayCache) takeOwner(owner string, slot, cur int64) (int, bool) {
	osh := c.ownerShard(owner)
	osh.mu.Lock()
	defer osh.mu.Unlock()
	u := osh.m[owner]
	if u == nil {
		if len(osh.m) >= ownerPruneAt {
			osh.prune(cur)
		}
		u = &ownerUse{}
		osh.m[owner] = u
	}
	u.expire(cur)
	if u.n >= c.quota {
		return u.n, false
	}
	u.add(slot, 1)
	return u.n, true
}

// giveBackOwner undoes a takeOwner whose entry was not stored after all.
func (c *ReplayCache) giveBackOwner(owner string, slot int64) {
	osh := c.ownerShard(owner)
	osh.mu.Lock()
	defer osh.mu.Unlock()
	if u := osh.m[owner]; u != nil {
		u.add(slot, -1)
	}
}

// prune expires every owner's entries at cur and drops owners with none.
func (osh *ownerShard) prune(cur int64) {
	for k, u := range osh.m {
		if u.expire(cur); u.n <= 0 {
			delete(osh.m, k)
		}
	}
}

// expire drops the counts of slots that have expired at cur, as the
// buckets of those slots do (until <= cur).
func (u *ownerUse) expire(cur int64) {
	i := 0
	for i < len(u.slots) && u.slots[i].slot <= cur {
		u.n -= u.slots[i].n
		i++
	}
	if i > 0 {
		u.slots = u.slots[:copy(u.slots, u.slots[i:])]
	}
}

// add changes the count of slot by d, keeping slots ascending; a slot whose
// count drops to 0 is removed.
func (u *ownerUse) add(slot int64, d int) {
	i := len(u.slots)
	for i > 0 && u.slots[i-1].slot > slot {
		i--
	}
	if i > 0 && u.slots[i-1].slot == slot {
		u.n += d
		if u.slots[i-1].n += d; u.slots[i-1].n <= 0 {
			u.slots = append(u.slots[:i-1], u.slots[i:]...)
		}
		return
	}
	if d <= 0 {
		return // the slot has expired already, and its count with it
	}
	u.n += d
	u.slots = append(u.slots, slotCount{})
	copy(u.slots[i+1:], u.slots[i:])
	u.slots[i] = slotCount{slot: slot, n: d}
}
