package bridge

import (
	"fmt"
	"log/slog"
	"time"
)

// Config tunes the bridge. Zero fields take the value of DefaultConfig.
type Config struct {
	// Prefix is the path the Server is mounted at; the hub is Prefix+"home".
	Prefix string
	// KeepAliveInterval: a Ping is sent when nothing else was sent for this
	// long (the official clients' default server timeout is twice this).
	KeepAliveInterval time.Duration
	// ClientTimeout closes a connection that sent nothing, not even a Ping,
	// for this long: a client that vanished.
	ClientTimeout time.Duration
	// HandshakeTimeout closes a connection whose handshake did not arrive.
	HandshakeTimeout time.Duration
	// PollTimeout ends a long poll with no data (200, empty body).
	PollTimeout time.Duration
	// DisconnectTimeout closes a connection that has no transport request
	// open for this long: a Long Polling client that stopped polling, or a
	// negotiated connection that never started a transport. It is also how
	// long a closed connection's id still answers (204 to a poll).
	DisconnectTimeout time.Duration
	// AckTimeout is how long SendCommand waits for the device's ack.
	AckTimeout time.Duration
	// MaxMessageSize bounds one hub protocol message from a client.
	MaxMessageSize int
	// MaxBuffered bounds what waits to be sent to one client; a client that
	// falls further behind is closed.
	MaxBuffered int
	// MaxInvocations bounds the invocations one connection may have running.
	MaxInvocations int
	// MaxConnections bounds the connections of the whole bridge, and
	// MaxPendingPerSub those of one sub that have not finished the handshake.
	MaxConnections   int
	MaxPendingPerSub int
	// OriginPatterns are extra allowed WebSocket Origin hosts (path.Match
	// syntax); the request's own host and clients sending no Origin are
	// always allowed.
	OriginPatterns []string
	// Logger receives the bridge's logs (default slog.Default()).
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: those of ASP.NET Core where it has one
// (15 s keep-alive, 30 s client timeout, 15 s handshake timeout, 90 s poll,
// 15 s disconnect timeout, 32 KiB messages), and a 10 s ack timeout.
func DefaultConfig() Config {
	return Config{
		Prefix:            "/signalr/",
		KeepAliveInterval: 15 * time.Second,
		ClientTimeout:     30 * time.Second,
		HandshakeTimeout:  15 * time.Second,
		PollTimeout:       90 * time.Second,
		DisconnectTimeout: 15 * time.Second,
		AckTimeout:        10 * time.Second,
		MaxMessageSize:    32 << 10,
		MaxBuffered:       1 << 20,
		MaxInvocations:    8,
		MaxConnections:    10000,
		MaxPendingPerSub:  16,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	seti := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	if c.Prefix == "" {
		c.Prefix = d.Prefix
	}
	set(&c.KeepAliveInterval, d.KeepAliveInterval)
	set(&c.ClientTimeout, d.ClientTimeout)
	set(&c.HandshakeTimeout, d.HandshakeTimeout)
	set(&c.PollTimeout, d.PollTimeout)
	set(&c.DisconnectTimeout, d.DisconnectTimeout)
	set(&c.AckTimeout, d.AckTimeout)
	seti(&c.MaxMessageSize, d.MaxMessageSize)
	seti(&c.MaxBuffered, d.MaxBuffered)
	seti(&c.MaxInvocations, d.MaxInvocations)
	seti(&c.MaxConnections, d.MaxConnections)
	seti(&c.MaxPendingPerSub, d.MaxPendingPerSub)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Prefix[0] != '/' || c.Prefix[len(c.Prefix)-1] != '/':
		return fmt.Errorf("bridge: prefix %q must start and end with /", c.Prefix)
	case c.KeepAliveInterval < 0, c.ClientTimeout < 0, c.HandshakeTimeout < 0, c.PollTimeout < 0, c.DisconnectTimeout < 0, c.AckTimeout < 0:
		return fmt.Errorf("bridge: time-outs must be positive")
	case c.ClientTimeout <= c.KeepAliveInterval:
		return fmt.Errorf("bridge: client timeout (%v) must be longer than the keep-alive interval (%v)", c.ClientTimeout, c.KeepAliveInterval)
	case c.MaxMessageSize < 1024 || c.MaxBuffered < c.MaxMessageSize:
		return fmt.Errorf("bridge: max message size must be at least 1 KiB and max buffered at least the message size")
	case c.MaxInvocations < 0 || c.MaxConnections < 0 || c.MaxPendingPerSub < 0:
		return fmt.Errorf("bridge: limits must be positive")
	}
	return nil
}

// tick is how often a connection checks its timers: often enough for the
// shortest of them.
func (c Config) tick() time.Duration {
	t := min(time.Second, c.KeepAliveInterval/4, c.ClientTimeout/4, c.HandshakeTimeout/4, c.DisconnectTimeout/4)
	return max(t, 5*time.Millisecond)
}
