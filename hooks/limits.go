package hooks

import (
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits bound how many connections one identity or address may hold and
// how fast an address may connect. Zero values switch a limit off.
type Limits struct {
	ConnsPerSub      int     // live connections per token sub
	ConnsPerAddr     int     // live connections per source IP address
	ConnectRate      float64 // CONNECT attempts per second per source IP
	ConnectBurst     int
	SubscriptionsMax int // subscriptions (filters) per connection
}

// DefaultLimits are generous for a home and tight for a flood.
func DefaultLimits() Limits {
	return Limits{ConnsPerSub: 32, ConnsPerAddr: 256, ConnectRate: 20, ConnectBurst: 50, SubscriptionsMax: 100}
}

// maxTrackedAddrs bounds the memory the connect-rate table may use.
const maxTrackedAddrs = 16384

// counters tracks live connections per sub and per address and recent
// connect attempts per address.
type counters struct {
	mu    sync.Mutex
	subs  map[string]int
	addrs map[string]int
	rates map[string]*addrRate
}

type addrRate struct {
	lim  *rate.Limiter
	seen time.Time
}

func newCounters() *counters {
	return &counters{subs: map[string]int{}, addrs: map[string]int{}, rates: map[string]*addrRate{}}
}

// hostOf returns the IP part of a remote address.
func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// allowAttempt reports whether addr may try to connect now.
func (c *counters) allowAttempt(l Limits, addr string, now time.Time) bool {
	if l.ConnectRate <= 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.rates[addr]
	if !ok {
		if len(c.rates) >= maxTrackedAddrs {
			c.pruneRatesLocked(now)
		}
		if len(c.rates) >= maxTrackedAddrs {
			return false // a flood from too many addresses at once: refuse newcomers until it calms
		}
		r = &addrRate{lim: rate.NewLimiter(rate.Limit(l.ConnectRate), l.ConnectBurst)}
		c.rates[addr] = r
	}
	r.seen = now
	return r.lim.AllowN(now, 1)
}

func (c *counters) pruneRatesLocked(now time.Time) {
	for a, r := range c.rates {
		if now.Sub(r.seen) > time.Minute {
			delete(c.rates, a)
		}
	}
}

// admit counts a new connection, or reports which limit it would break.
func (c *counters) admit(l Limits, sub, addr string) (ok bool, which string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.ConnsPerAddr > 0 && c.addrs[addr] >= l.ConnsPerAddr {
		return false, "address"
	}
	if l.ConnsPerSub > 0 && c.subs[sub] >= l.ConnsPerSub {
		return false, "sub"
	}
	c.addrs[addr]++
	c.subs[sub]++
	return true, ""
}

// release uncounts a connection admitted before.
func (c *counters) release(sub, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.addrs[addr]--; c.addrs[addr] <= 0 {
		delete(c.addrs, addr)
	}
	if c.subs[sub]--; c.subs[sub] <= 0 {
		delete(c.subs, sub)
	}
}
