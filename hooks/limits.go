package hooks

import (
	"sync"
	"time"

	"homemq/addrlimit"
	"homemq/decision"
)

// Limits bound how many connections one identity or address may hold and
// how fast an address may connect. Zero values switch a limit off.
type Limits struct {
	ConnsPerSub int // live connections per token sub
	// ConnsPerAddr bounds the sockets per source address (addrlimit.Key)
	// from accept: the listeners count them in the Guard's Addresses table,
	// so a socket that never sends CONNECT counts too, and only once.
	ConnsPerAddr     int
	ConnectRate      float64 // CONNECT attempts per second per source address
	ConnectBurst     int
	SubscriptionsMax int // subscriptions (filters) per connection
}

// DefaultLimits are generous for a home and tight for a flood.
func DefaultLimits() Limits {
	return Limits{ConnsPerSub: 32, ConnsPerAddr: 256, ConnectRate: 20, ConnectBurst: 50, SubscriptionsMax: 100}
}

// counters tracks live connections per sub, and per address the sockets
// and recent connect attempts.
type counters struct {
	mu    sync.Mutex
	subs  map[string]int
	addrs *addrlimit.Table
}

func newCounters(l Limits) *counters {
	return &counters{
		subs:  map[string]int{},
		addrs: addrlimit.New(addrlimit.Config{MaxConns: l.ConnsPerAddr, Rate: l.ConnectRate, Burst: l.ConnectBurst}),
	}
}

// Addresses is the table that bounds sockets (limits.ConnsPerAddr) and
// CONNECT attempts (limits.ConnectRate) per source address. Every MQTT
// listener except the in-process one counts its sockets in it from accept
// (addrlimit.Table.Listener or Acquire); OnConnect spends attempts from it.
func (g *Guard) Addresses() *addrlimit.Table { return g.counts.addrs }

// SocketRefused reports to the observers a socket that listener closed at
// accept because its address already held Limits.ConnsPerAddr sockets in
// Addresses: a connect refused for quota, as one refused at CONNECT is.
func (g *Guard) SocketRefused(listener, remote string) {
	g.report(decision.Event{Kind: decision.EventConnect, Reason: "quota", Listener: listener, Remote: remote,
		Detail: "too many connections from " + addrlimit.Key(remote) + "; closed at accept"})
}

// allowAttempt reports whether addr (an addrlimit.Key) may try to connect now.
func (c *counters) allowAttempt(addr string, now time.Time) bool {
	return c.addrs.Allow(addr, now)
}

// admit counts a new connection of sub, or reports false when sub already
// holds l.ConnsPerSub.
func (c *counters) admit(l Limits, sub string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.ConnsPerSub > 0 && c.subs[sub] >= l.ConnsPerSub {
		return false
	}
	c.subs[sub]++
	return true
}

// release uncounts a connection admitted before.
func (c *counters) release(sub string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subs[sub]--; c.subs[sub] <= 0 {
		delete(c.subs, sub)
	}
}
