package addrlimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys is how many addresses a Table tracks at once unless told
// otherwise: more than a broker has file descriptors for connections.
const DefaultMaxKeys = 1 << 15

// pruneEvery bounds how often a full Table scans itself for idle entries.
const pruneEvery = 100 * time.Millisecond

// Config says what a Table allows per key. A zero limit switches it off.
type Config struct {
	// MaxConns is how many connections one key may hold at once.
	MaxConns int
	// Rate and Burst bound connect attempts per key (a token bucket that
	// Allow spends): Rate per second, at most Burst in a row.
	Rate  float64
	Burst int
	// MaxKeys bounds the memory the Table uses; 0 means DefaultMaxKeys.
	MaxKeys int
}

// Table counts live connections and connect attempts per key in bounded
// memory. A key is kept while it holds a connection or its bucket is not
// yet full again; when MaxKeys keys are kept, idle ones are dropped, and if
// none is idle a new key is refused (a flood from that many addresses at
// once fails closed rather than resetting anyone's limit). It is safe for
// concurrent use.
type Table struct {
	cfg       Config
	mu        sync.Mutex
	m         map[string]*entry
	lastPrune time.Time
	now       func() time.Time
}

type entry struct {
	conns int
	lim   *rate.Limiter // nil when the Table has no rate
}

// New returns an empty Table with limits c.
func New(c Config) *Table {
	if c.MaxKeys <= 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	if c.Burst < 1 {
		c.Burst = 1
	}
	return &Table{cfg: c, m: map[string]*entry{}, now: time.Now}
}

// Acquire counts one more connection from key and reports true, or reports
// false, counting nothing, when key already holds MaxConns (or a new key
// finds the Table full). Every true must be matched by one Release.
func (t *Table) Acquire(key string) bool {
	if t.cfg.MaxConns <= 0 {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entryLocked(key, t.now())
	if e == nil || e.conns >= t.cfg.MaxConns {
		return false
	}
	e.conns++
	return true
}

// Release uncounts a connection Acquire counted.
func (t *Table) Release(key string) {
	if t.cfg.MaxConns <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[key]
	if !ok || e.conns == 0 {
		return
	}
	e.conns--
	if t.idleLocked(e, t.now()) {
		delete(t.m, key)
	}
}

// Allow spends one connect attempt of key at now and reports whether the
// bucket had one.
func (t *Table) Allow(key string, now time.Time) bool {
	if t.cfg.Rate <= 0 {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entryLocked(key, now)
	if e == nil {
		return false
	}
	if e.lim == nil {
		e.lim = rate.NewLimiter(rate.Limit(t.cfg.Rate), t.cfg.Burst)
	}
	return e.lim.AllowN(now, 1)
}

// Conns returns how many connections key holds.
func (t *Table) Conns(key string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[key]; ok {
		return e.conns
	}
	return 0
}

// Len returns how many keys the Table keeps.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// entryLocked returns key's entry, making one if there is room; nil when
// the Table is full of keys that are not idle.
func (t *Table) entryLocked(key string, now time.Time) *entry {
	if e, ok := t.m[key]; ok {
		return e
	}
	if len(t.m) >= t.cfg.MaxKeys {
		t.pruneLocked(now)
		if len(t.m) >= t.cfg.MaxKeys {
			return nil
		}
	}
	e := &entry{}
	t.m[key] = e
	return e
}

// pruneLocked drops idle entries, at most once per pruneEvery so that a
// flood of new keys into a full Table costs a scan only now and then.
func (t *Table) pruneLocked(now time.Time) {
	if now.Sub(t.lastPrune) < pruneEvery && !now.Before(t.lastPrune) {
		return
	}
	t.lastPrune = now
	for k, e := range t.m {
		if t.idleLocked(e, now) {
			delete(t.m, k)
		}
	}
}

// idleLocked reports whether e holds nothing worth remembering: no
// connection and a full bucket (a fresh one would be the same).
func (t *Table) idleLocked(e *entry, now time.Time) bool {
	return e.conns == 0 && (e.lim == nil || e.lim.TokensAt(now) >= float64(t.cfg.Burst))
}
