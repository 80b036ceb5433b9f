package bench

import (
	"bytes"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/broker"
)

// ServerOptions returns the mochi options homemq's broker runs with for
// limits l, so that a bare server differs from homemq only by its hooks.
func ServerOptions(l broker.LimitsConfig, log *slog.Logger) *mqtt.Options {
	return broker.ServerOptions(l, log)
}

// NewBare returns a mochi server with homemq's options for l and mochi's
// allow-all hook: every client connects, every topic is open, nothing is
// checked. Add listeners and Serve it.
func NewBare(l broker.LimitsConfig, log *slog.Logger) *mqtt.Server {
	if log == nil {
		log = slog.Default()
	}
	s := mqtt.New(ServerOptions(l, log))
	_ = s.AddHook(new(AllowAll), nil)
	return s
}

// AllowAll is mochi's auth.AllowHook, line for line: every client may
// connect, every topic may be read and written. (It is copied rather than
// imported because mochi's hooks/auth package pulls in a YAML library the
// module does not otherwise need.)
type AllowAll struct {
	mqtt.HookBase
}

// ID names the hook.
func (h *AllowAll) ID() string { return "allow-all-auth" }

// Provides lists the hook methods AllowAll implements.
func (h *AllowAll) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

// OnConnectAuthenticate allows every client.
func (h *AllowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnACLCheck allows every topic.
func (h *AllowAll) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// ForLoad returns cfg with the limits that stop one address or identity
// from flooding a home raised out of the way of a load test: connections
// per sub and per address (MQTT and HTTPS), the connect rate, the command
// rate and the per-identity quotas (sessions, replay entries, retained
// topics). Every check still runs on every packet; only its threshold moves.
func ForLoad(cfg broker.Config) broker.Config {
	l := &cfg.Limits
	l.ConnsPerSub, l.ConnsPerAddr = 1_000_000, 1_000_000
	l.ConnectRate, l.ConnectBurst = 1e9, 1_000_000_000
	l.CommandRate, l.CommandBurst = 1e9, 1_000_000_000
	l.HTTPSConnsPerAddr = 1_000_000 // SignalR load clients all come from 127.0.0.1 too
	l.SessionsPerSub, l.RetainedPerAgent, l.MaxRetainedSize = 1_000_000, 1_000_000, int(l.MaxPacketSize)
	l.RetainedRate, l.RetainedBurst = 1e9, 1_000_000_000
	cfg.Envelope.ReplayQuota = cfg.Envelope.ReplayCache
	return cfg
}
