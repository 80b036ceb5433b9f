package hooks

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"homemq/addrlimit"
	"homemq/decision"
)

// Connection bounds what one connection may do; its fields are YAML keys
// of the broker's limits section.
type Connection struct {
	// MaxKeepalive caps the keep-alive a client may ask for (0 included),
	// so that a vanished client is noticed.
	MaxKeepalive uint16 `yaml:"max_keepalive"`
	// RefusalLimit refused packets within RefusalWindow disconnect the
	// client; 0 switches it off.
	RefusalLimit  int           `yaml:"refusal_limit"`
	RefusalWindow time.Duration `yaml:"refusal_window"`
	// CommandRate and CommandBurst limit command publishes per connection.
	CommandRate  float64 `yaml:"command_rate"`
	CommandBurst int     `yaml:"command_burst"`
}

// DefaultConnection keeps a client to 10 commands a second (bursts of 20)
// and disconnects it at 20 refusals within a minute.
func DefaultConnection() Connection {
	return Connection{MaxKeepalive: 300, RefusalLimit: 20, RefusalWindow: time.Minute, CommandRate: 10, CommandBurst: 20}
}

// Validate reports the first field of c out of range, by its YAML key.
func (c Connection) Validate() error {
	switch {
	case c.MaxKeepalive == 0:
		return errors.New("max_keepalive: must be at least 1 second")
	case c.RefusalLimit < 0:
		return fmt.Errorf("refusal_limit: %d must not be negative (0 switches it off)", c.RefusalLimit)
	case c.CommandRate <= 0:
		return fmt.Errorf("command_rate: %v must be positive", c.CommandRate)
	case c.CommandBurst <= 0:
		return fmt.Errorf("command_burst: %d must be positive", c.CommandBurst)
	}
	return nil
}

// Limits bound how many connections one identity or address may hold and
// how fast an address may connect; its fields are YAML keys of the
// broker's limits section. Zero values switch a limit off.
type Limits struct {
	ConnsPerSub int `yaml:"conns_per_sub"` // live connections per token sub
	// ConnsPerAddr bounds the sockets per source address (addrlimit.Key)
	// from accept: the listeners count them in the Guard's Addresses table,
	// so a socket that never sends CONNECT counts too, and only once.
	ConnsPerAddr     int     `yaml:"conns_per_addr"`
	ConnectRate      float64 `yaml:"connect_rate"` // CONNECT attempts per second per source address
	ConnectBurst     int     `yaml:"connect_burst"`
	MaxSubscriptions int     `yaml:"max_subscriptions"` // subscriptions (filters) per connection
}

// DefaultLimits are generous for a home and tight for a flood.
func DefaultLimits() Limits {
	return Limits{ConnsPerSub: 32, ConnsPerAddr: 256, ConnectRate: 20, ConnectBurst: 50, MaxSubscriptions: 100}
}

// Validate reports the first negative field of l, by its YAML key.
func (l Limits) Validate() error {
	for _, f := range []struct {
		key string
		v   float64
	}{
		{"conns_per_sub", float64(l.ConnsPerSub)},
		{"conns_per_addr", float64(l.ConnsPerAddr)},
		{"connect_rate", l.ConnectRate},
		{"connect_burst", float64(l.ConnectBurst)},
		{"max_subscriptions", float64(l.MaxSubscriptions)},
	} {
		if f.v < 0 {
			return fmt.Errorf("%s: %v must not be negative (0 switches it off)", f.key, f.v)
		}
	}
	return nil
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
// holds l.ConnsPerSub, here and elsewhere (on the cluster's other brokers).
func (c *counters) admit(l Limits, sub string, elsewhere int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.ConnsPerSub > 0 && c.subs[sub]+elsewhere >= l.ConnsPerSub {
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
