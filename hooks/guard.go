package hooks

import (
	"bytes"
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

// Config bounds what one connection may do.
type Config struct {
	// Envelope bounds the command envelopes accepted.
	Envelope envelope.Policy
	// ReplayCacheSize is the hard cap on remembered command nonces.
	ReplayCacheSize int
	// RefusalLimit refused packets within RefusalWindow disconnect the client.
	RefusalLimit  int
	RefusalWindow time.Duration
	// CommandRate and CommandBurst limit command publishes per connection.
	CommandRate  float64
	CommandBurst int
	// MaxKeepalive caps the keep-alive a client may ask for (0 included),
	// so that a vanished client is noticed.
	MaxKeepalive uint16
	// Limits bound connections per identity and address.
	Limits Limits
	// Quotas bound sessions, replay entries and retained messages per identity.
	Quotas Quotas
	// Issued is what an earlier run on the same data, whose replay cache is
	// gone, may have accepted (restart.go). Zero: nothing but commands
	// issued before this Guard started is refused for that reason.
	Issued IssuedRecord
	// DisconnectWait bounds how long closing one connection (at expiry,
	// revocation or shutdown) may wait for its DISCONNECT to be written
	// before the connection is closed without it.
	DisconnectWait time.Duration
}

// DefaultConfig returns safe defaults.
func DefaultConfig() Config {
	return Config{
		Envelope:        envelope.DefaultPolicy(),
		ReplayCacheSize: 1 << 20,
		RefusalLimit:    20,
		RefusalWindow:   time.Minute,
		CommandRate:     10,
		CommandBurst:    20,
		MaxKeepalive:    300,
		Limits:          DefaultLimits(),
		Quotas:          DefaultQuotas(),
		DisconnectWait:  5 * time.Second,
	}
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

	quotaState // the bookkeeping of Quotas and of the restart rule (quotas.go)
}

// grant is what one verified token allows; it is replaced whole on re-auth.
type grant struct {
	claims   *auth.Claims
	identity *topics.Identity
	deadline int64 // unix nanoseconds: exp + leeway
	key      []byte
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
}

// New returns a Guard for server that verifies tokens with verifier and
// derives message keys from master.
func New(server *mqtt.Server, verifier *auth.Verifier, master []byte, cfg Config, observers ...decision.Observer) *Guard {
	if cfg.ReplayCacheSize == 0 {
		cfg = DefaultConfig()
	}
	cfg.Envelope = cfg.Envelope.Effective()
	if cfg.DisconnectWait <= 0 {
		cfg.DisconnectWait = DefaultConfig().DisconnectWait
	}
	return &Guard{
		server:    server,
		verifier:  verifier,
		master:    bytes.Clone(master),
		cfg:       cfg,
		replay:    envelope.NewReplayCache(cfg.ReplayCacheSize, cfg.Envelope.Horizon(), envelope.OwnerQuota(cfg.Quotas.ReplayPerSub)),
		observers: observers,
		counts:    newCounters(cfg.Limits),
		started:   time.Now().Unix(),
		now:       time.Now,
	}
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
