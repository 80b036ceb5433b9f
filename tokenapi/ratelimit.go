package tokenapi

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"homemq/addrlimit"
)

// RateLimitConfig bounds failed token-exchange attempts per source address
// (see AddressKey). Only failures spend the budget; once it is spent,
// attempts from that address are answered 429 until the bucket refills,
// except a correct agent credential (see Exchange). There is no budget per
// subject: the subject an attempt names is not proven, so such a budget
// would let anyone lock its owner out.
type RateLimitConfig struct {
	AddressBurst     int     `yaml:"address_burst"`      // failures in a row per address; default 10
	AddressPerMinute float64 `yaml:"address_per_minute"` // refill; default 10
	MaxTracked       int     `yaml:"max_tracked"`        // addresses remembered; default 10000
}

// WithDefaults fills zero fields.
func (c RateLimitConfig) WithDefaults() RateLimitConfig {
	if c.AddressBurst == 0 {
		c.AddressBurst = 10
	}
	if c.AddressPerMinute == 0 {
		c.AddressPerMinute = 10
	}
	if c.MaxTracked == 0 {
		c.MaxTracked = 10000
	}
	return c
}

// Validate names the first setting out of range (after defaults).
func (c RateLimitConfig) Validate() error {
	switch {
	case c.AddressBurst < 1:
		return fmt.Errorf("token_api.rate_limit.address_burst: %d must be at least 1", c.AddressBurst)
	case c.AddressPerMinute <= 0:
		return fmt.Errorf("token_api.rate_limit.address_per_minute: %v must be positive", c.AddressPerMinute)
	case c.MaxTracked < 16 || c.MaxTracked > 10_000_000:
		return fmt.Errorf("token_api.rate_limit.max_tracked: %d is out of range (16 to 10000000)", c.MaxTracked)
	}
	return nil
}

// FailureLimiter is a token bucket per key that only failures spend, in
// bounded memory: at most max keys are kept; when full, idle keys (bucket
// full again) are dropped first, else the least limited of a sample. It is safe for
// concurrent use.
type FailureLimiter struct {
	mu    sync.Mutex
	limit rate.Limit
	burst int
	max   int
	m     map[string]*rate.Limiter
}

// NewFailureLimiter allows burst failures per key, refilled at perMinute.
func NewFailureLimiter(perMinute float64, burst, max int) *FailureLimiter {
	return &FailureLimiter{limit: rate.Limit(perMinute / 60), burst: burst, max: max, m: map[string]*rate.Limiter{}}
}

// Blocked reports whether key has spent its failures at now, and how long
// until it may try again.
func (l *FailureLimiter) Blocked(key string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[key]
	if !ok {
		return 0, false
	}
	tokens := lim.TokensAt(now)
	if tokens >= 1 {
		return 0, false
	}
	return time.Duration((1 - tokens) / float64(l.limit) * float64(time.Second)), true
}

// Fail spends one failure of key at now.
func (l *FailureLimiter) Fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[key]
	if !ok {
		if len(l.m) >= l.max {
			l.evictLocked(now)
		}
		lim = rate.NewLimiter(l.limit, l.burst)
		l.m[key] = lim
	}
	lim.AllowN(now, 1)
}

// evictLocked drops the idle keys among a few sampled (map order is
// random) or, if none is idle, the sampled key with the most failures left,
// so a key being limited right now is the last to go: constant work per
// insertion.
func (l *FailureLimiter) evictLocked(now time.Time) {
	var best string
	bestTokens := -1.0
	probed, dropped := 0, 0
	for k, lim := range l.m {
		tokens := lim.TokensAt(now)
		if tokens >= float64(l.burst) {
			delete(l.m, k)
			dropped++
		} else if tokens > bestTokens {
			best, bestTokens = k, tokens
		}
		if probed++; probed == 16 {
			break
		}
	}
	if dropped == 0 {
		delete(l.m, best)
	}
}

// Len is the number of keys remembered.
func (l *FailureLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// AddressKey is the rate-limit key of a source address: the IP for IPv4,
// the /64 prefix for IPv6 (one host usually owns a whole /64). It is
// addrlimit.Key, the one key every per-address limit of homemq uses.
func AddressKey(hostport string) string { return addrlimit.Key(hostport) }
