package auth

import (
	"crypto/sha256"
	"maps"
	"slices"
	"sync"

	"github.com/golang-jwt/jwt/v5"
)

// verifiedCacheSize bounds the verified-token cache. An entry is a few
// hundred bytes of claims, so a full cache holds some tens of megabytes;
// only tokens that passed every check are stored, so a client cannot fill
// it with garbage.
const verifiedCacheSize = 1 << 16

// verifiedEntry is what the cache keeps of a token that passed every check:
// its claims, never handed out (Verify returns a clone), and the kid and
// algorithm of the key that signed it, so that a hit can tell whether the
// key is still known.
type verifiedEntry struct {
	claims *Claims
	kid    string
	alg    string
}

// verifiedCache maps the SHA-256 of a token's exact bytes to what the
// Verifier learnt by checking it: signature, header and claims' shape,
// which cannot change. Everything that can change (the clock, the
// revocation list, the key set) is checked again on every hit by
// Verifier.Verify. When full, it evicts a random entry (Go's map iteration
// order is random), which needs no bookkeeping on a hit, so hits share a
// read lock. It is safe for concurrent use.
type verifiedCache struct {
	mu      sync.RWMutex
	max     int
	entries map[[sha256.Size]byte]*verifiedEntry
}

func newVerifiedCache(max int) *verifiedCache {
	return &verifiedCache{max: max, entries: make(map[[sha256.Size]byte]*verifiedEntry)}
}

// get returns the entry for a token's hash, or nil.
func (c *verifiedCache) get(h [sha256.Size]byte) *verifiedEntry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.entries[h]
}

// put stores e under h, evicting a random entry if the cache is full. A
// cache of size 0 stores nothing.
func (c *verifiedCache) put(h [sha256.Size]byte, e *verifiedEntry) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[h]; !ok && len(c.entries) >= c.max {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[h] = e
}

// drop forgets h if it still maps to e.
func (c *verifiedCache) drop(h [sha256.Size]byte, e *verifiedEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[h] == e {
		delete(c.entries, h)
	}
}

// len returns the number of entries.
func (c *verifiedCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// clone returns a deep copy of c: a caller may change the copy's maps,
// slices and dates without touching c.
func (c *Claims) clone() *Claims {
	d := *c
	d.Audience = slices.Clone(c.Audience)
	d.ExpiresAt = cloneDate(c.ExpiresAt)
	d.NotBefore = cloneDate(c.NotBefore)
	d.IssuedAt = cloneDate(c.IssuedAt)
	d.Homes = maps.Clone(c.Homes)
	d.Devices = slices.Clone(c.Devices)
	return &d
}

func cloneDate(d *jwt.NumericDate) *jwt.NumericDate {
	if d == nil {
		return nil
	}
	c := *d
	return &c
}
