package hooks

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"golang.org/x/time/rate"

	"homemq/auth"
	"homemq/decision"
	"homemq/envelope"
	"homemq/topics"
)

// Config is everything the Guard is told. Its parts are the YAML types of
// the broker's configuration (the envelope and limits sections), declared,
// defaulted and validated here, where they are used; New refuses a Config
// that does not pass Validate.
type Config struct {
	// Envelope bounds the command envelopes accepted (section envelope).
	Envelope envelope.Policy
	// Replay bounds the command replay cache (section envelope).
	Replay Replay
	// Connection bounds what one connection may do (section limits). It is
	// embedded: g.cfg.RefusalLimit is Connection's.
	Connection
	// Limits bound connections per identity and address (section limits).
	Limits Limits
	// Quotas bound sessions and retained messages per identity (section
	// limits).
	Quotas Quotas
	// Issued is what an earlier run on the same data, whose replay cache is
	// gone, may have accepted (restart.go). Zero: nothing but commands
	// issued before this Guard started is refused for that reason.
	Issued IssuedRecord
	// DisconnectWait bounds how long closing one connection (at expiry,
	// revocation or shutdown) may wait for its DISCONNECT to be written
	// before the connection is closed without it. The broker sets it to
	// limits.write_timeout.
	DisconnectWait time.Duration
}

// DefaultDisconnectWait is the default of Config.DisconnectWait.
const DefaultDisconnectWait = 5 * time.Second

// DefaultConfig returns safe defaults.
func DefaultConfig() Config {
	return Config{
		Envelope:       envelope.DefaultPolicy(),
		Replay:         DefaultReplay(),
		Connection:     DefaultConnection(),
		Limits:         DefaultLimits(),
		Quotas:         DefaultQuotas(),
		DisconnectWait: DefaultDisconnectWait,
	}
}

// Validate reports the first setting the Guard cannot run with, named by
// its YAML key with its section (e.g. "limits.refusal_limit: …").
func (c Config) Validate() error {
	if err := c.Envelope.Validate(); err != nil {
		return fmt.Errorf("envelope.%w", err)
	}
	if err := c.Replay.Validate(); err != nil {
		return fmt.Errorf("envelope.%w", err)
	}
	for _, v := range []interface{ Validate() error }{c.Connection, c.Limits, c.Quotas} {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("limits.%w", err)
		}
	}
	if c.DisconnectWait <= 0 {
		return fmt.Errorf("DisconnectWait: %v must be positive (the broker sets limits.write_timeout)", c.DisconnectWait)
	}
	return nil
}

// Guard is the security hook. Create it with New and add it to the server
// with server.AddHook(g, nil) before any other hook that makes decisions.
type Guard struct {
	mqtt.HookBase
	server    *mqtt.Server
	verifier  *auth.Verifier
	master    []byte
	cfg       Config
	replay    *envelope.ReplayCache
	observers []decision.Observer
	sessions  sync.Map // *mqtt.Client -> *session
	offline   sync.Map // client ID -> *grant of a persistent session whose connection ended
	counts    *counters
	started   int64 // unix seconds: commands issued before are refused (the replay cache is in memory)
	now       func() time.Time
	store     SessionStore // told what the Guard drops from sessions (nil: no store)
	wills     sync.Map     // client ID -> *pendingWill: delayed wills of ended connections

	ledger ReplayLedger // the cluster's replay cache (nil: one node; ledger.go)

	elsewhere ConnectionCounter // the cluster's other connections (nil: one node; connections.go)

	quotaState // the bookkeeping of Quotas and of the restart rule (quotas.go)

	integrations integrationsRef // checks integration credentials (integration.go)
}

// grant is what one verified token allows; it is replaced whole on re-auth.
type grant struct {
	claims   *auth.Claims
	identity *topics.Identity
	deadline int64 // unix nanoseconds: exp + leeway
	key      []byte
	home     string // an integration's home ("" for a token's grant): its plain commands and topic mount
}

// session is the Guard's state for one live connection.
type session struct {
	grant    atomic.Pointer[grant]
	closed   atomic.Bool // revoked or expired: refuse everything
	revoked  atomic.Bool
	cut      atomic.Bool // cutOff has run
	released atomic.Bool // the connection slot of sub is given back
	timer    *time.Timer
	mu       sync.Mutex
	refusals []int64 // times of recent refusals (unix nanos), at most RefusalLimit
	commands *rate.Limiter
	sub      string                          // the sub the connection was counted under
	overSubs atomic.Pointer[map[string]bool] // filters of the SUBSCRIBE being processed that break the quota
	aliases  map[uint16]*outAlias            // outbound topic aliases mochi assigned (under mu)
	will     *will                           // the will, kept by the Guard (see will.go); set at CONNECT

	// subackReason says why filters of the SUBSCRIBE being processed were
	// refused; OnPacketEncode puts it on the SUBACK.
	subackReason atomic.Pointer[string]

	// mounted is set once an integration subscribed through Home
	// Assistant's prefix: discovery topics are then written to it under
	// that prefix (integration.go).
	mounted atomic.Bool
}

// New returns a Guard for server that verifies tokens with verifier and
// derives message keys from master, or an error naming the first setting
// of cfg that fails Config.Validate.
func New(server *mqtt.Server, verifier *auth.Verifier, master []byte, cfg Config, observers ...decision.Observer) (*Guard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("hooks: cannot start the Guard: %w", err)
	}
	return &Guard{
		server:    server,
		verifier:  verifier,
		master:    bytes.Clone(master),
		cfg:       cfg,
		replay:    envelope.NewReplayCache(cfg.Replay.ReplayCache, cfg.Envelope.Horizon(), envelope.OwnerQuota(cfg.Replay.ReplayQuota)),
		observers: observers,
		counts:    newCounters(cfg.Limits),
		started:   time.Now().Unix(),
		now:       time.Now,
	}, nil
}

// ID names the hook.
func (g *Guard) ID() string { return "homemq-guard" }

// Provides lists the hook methods the Guard implements.
func (g *Guard) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnDisconnect, mqtt.OnClientExpired, mqtt.OnQosDropped,
		mqtt.OnPacketRead, mqtt.OnPacketEncode, mqtt.OnACLCheck, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnPublish, mqtt.OnAuthPacket,
	}, []byte{b})
}

// ReplayCache returns the Guard's command replay cache (for metrics).
func (g *Guard) ReplayCache() *envelope.ReplayCache { return g.replay }

// Sessions returns the number of authenticated live connections.
func (g *Guard) Sessions() int {
	n := 0
	g.sessions.Range(func(_, _ any) bool { n++; return true })
	return n
}

func (g *Guard) session(cl *mqtt.Client) *session {
	if v, ok := g.sessions.Load(cl); ok {
		return v.(*session)
	}
	return nil
}

func (g *Guard) newGrant(c *auth.Claims) *grant {
	return &grant{
		claims:   c,
		identity: c.Identity(),
		deadline: c.ExpiresAtTime().Add(g.verifier.Config().Leeway).UnixNano(),
		key:      envelope.DeriveKey(g.master, c.ID),
		home:     integrationHome(c),
	}
}

// alive reports whether the session's token still holds: a few atomic loads,
// no parsing.
func (s *session) alive(now int64) (*grant, bool) {
	gr := s.grant.Load()
	return gr, gr != nil && !s.closed.Load() && now < gr.deadline
}

// refuse records a refusal and reports whether the client passed the limit.
func (g *Guard) refuse(s *session) bool {
	if s == nil || g.cfg.RefusalLimit <= 0 {
		return false
	}
	now := g.now().UnixNano()
	cut := now - int64(g.cfg.RefusalWindow)
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.refusals[:0]
	for _, t := range s.refusals {
		if t > cut {
			kept = append(kept, t)
		}
	}
	s.refusals = append(kept, now)
	return len(s.refusals) >= g.cfg.RefusalLimit
}

// report sends e, stamped with the time, to every observer.
func (g *Guard) report(e decision.Event) {
	if len(g.observers) == 0 {
		return
	}
	if e.Time.IsZero() {
		e.Time = g.now()
	}
	for _, o := range g.observers {
		o.Observe(e)
	}
}

// emit reports e as a decision about connection cl: it fills in the
// client ID, address and listener, and with gr (nil before a token is
// verified) the token's sub and jti.
func (g *Guard) emit(cl *mqtt.Client, gr *grant, e decision.Event) {
	e.ClientID, e.Remote, e.Listener = cl.ID, cl.Net.Remote, cl.Net.Listener
	if gr != nil {
		e.Sub, e.JTI = gr.claims.Subject, gr.claims.ID
	}
	g.report(e)
}
