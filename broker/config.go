package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"go.yaml.in/yaml/v3"

	"homemq/audit"
	"homemq/auth"
	"homemq/certs"
	"homemq/certs/acme"
	"homemq/cluster"
	"homemq/envelope"
	"homemq/hooks"
	"homemq/tokenapi"
)

// Config is everything homemq serve can be told, in YAML form.
type Config struct {
	// Data is the folder for keys, certificates and state.
	Data      string          `yaml:"data"`
	Listeners ListenersConfig `yaml:"listeners"`
	TLS       TLSConfig       `yaml:"tls"`
	Tokens    auth.Config     `yaml:"tokens"`
	Envelope  EnvelopeConfig  `yaml:"envelope"`
	Limits    LimitsConfig    `yaml:"limits"`
	Log       LogConfig       `yaml:"log"`
	Observe   ObserveConfig   `yaml:"observe"`

	// TokenAPI configures POST /api/token: identity providers, rate limits.
	TokenAPI tokenapi.Config `yaml:"token_api"`

	// Cluster makes this node one of several on NATS (docs/cluster.md);
	// nil, the default, is a single node.
	Cluster *cluster.Config `yaml:"cluster"`
	// Drain is how a cluster node hands its clients to the others (drain.go).
	Drain DrainConfig `yaml:"drain"`
}

// ListenersConfig says where to listen; an empty address is off.
type ListenersConfig struct {
	MQTT      string `yaml:"mqtt"`       // MQTT over TLS
	HTTPS     string `yaml:"https"`      // HTTPS: /mqtt (WebSocket), /healthz, APIs
	MQTTPlain string `yaml:"mqtt_plain"` // plain MQTT/TCP, only when asked
	// HTTPCA is a plain-HTTP listener serving only the CA install page and
	// the CA's certificate (/ca, /ca.pem, /ca.crt, /ca.mobileconfig), for a
	// phone that does not trust the CA yet. Off unless given.
	HTTPCA string `yaml:"http_ca"`
}

// TLSConfig names certificate files. With none given, dev mode provisions a
// CA and a localhost server certificate in the data folder.
type TLSConfig struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	CA       string `yaml:"ca"`        // the CA clients should trust (printed for them)
	ClientCA string `yaml:"client_ca"` // optional: require client certificates signed by it
	// DevNames are the names (DNS names or IP addresses) the dev server
	// certificate carries besides localhost, 127.0.0.1 and ::1. Unset, they
	// are the host's names as found at start (certs.LocalNames); [] is
	// none. Dev mode only.
	DevNames []string `yaml:"dev_names"`
	// ACME gets the server certificate from an ACME CA with the DNS-01
	// challenge and renews it without a restart (package acme); off
	// without domains, and exclusive with cert and key.
	ACME acme.Config `yaml:"acme"`
}

// EnvelopeConfig is the envelope section: the policy commands are checked
// against and the Guard's replay cache. Each part is declared, defaulted
// and validated by the package that uses it; its keys appear flat in the
// section.
type EnvelopeConfig struct {
	envelope.Policy `yaml:",inline"` // skew, max_lifetime, max_size
	hooks.Replay    `yaml:",inline"` // replay_cache, replay_quota
}

// Validate reports the first key of the section out of range, without the
// section's name.
func (e EnvelopeConfig) Validate() error {
	if err := e.Policy.Validate(); err != nil {
		return err
	}
	return e.Replay.Validate()
}

// LimitsConfig is the limits section: the Guard's limits (hooks.Connection,
// hooks.Limits, hooks.Quotas, owned by package hooks) and the broker's own
// (mochi's server options, the listeners, HTTPS, the write queue). All
// their keys appear flat in the section.
type LimitsConfig struct {
	hooks.Connection `yaml:",inline"` // max_keepalive, refusal_limit, refusal_window, command_rate, command_burst
	hooks.Limits     `yaml:",inline"` // conns_per_sub, conns_per_addr, connect_rate, connect_burst, max_subscriptions
	hooks.Quotas     `yaml:",inline"` // sessions_per_sub, retained_per_agent, max_retained_size, retained_rate, retained_burst

	MaxPacketSize         uint32        `yaml:"max_packet_size"`
	ConnectTimeout        time.Duration `yaml:"connect_timeout"`
	MaxSessionExpiry      time.Duration `yaml:"max_session_expiry"`
	MaxInflight           uint16        `yaml:"max_inflight"`
	MaxQueued             int           `yaml:"max_queued"`
	WebSocketOrigins      []string      `yaml:"websocket_origins"`
	WebSocketReadLimit    int64         `yaml:"websocket_read_limit"`
	HTTPReadHeaderTimeout time.Duration `yaml:"http_read_header_timeout"`
	HTTPReadTimeout       time.Duration `yaml:"http_read_timeout"`    // reading a whole HTTPS request, body included
	HTTPMaxBody           int64         `yaml:"http_max_body"`        // the largest request body any HTTPS endpoint reads
	HTTPSConnsPerAddr     int           `yaml:"https_conns_per_addr"` // HTTPS sockets per source address (addrlimit.Key), from accept
	// WriteBuffer is the most bytes queued for one connection and not yet
	// written to its socket; a client that lets more pile up is disconnected.
	WriteBuffer int `yaml:"write_buffer"`
	// WriteTimeout is how long one write to a client's socket may take; a
	// client that does not read for longer is disconnected. It also bounds
	// closing one connection (hooks.Config.DisconnectWait).
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MemoryLimit is the Go runtime's soft memory limit in bytes
	// (debug.SetMemoryLimit): near it the garbage collector runs more
	// often instead of letting the heap double. 0 leaves it off.
	MemoryLimit int64 `yaml:"memory_limit"`
}

// minMemoryLimit is the least memory_limit accepted: below it the
// collector would run without pause on an ordinary broker's heap.
const minMemoryLimit = 64 << 20

// ApplyMemoryLimit sets the Go runtime's soft memory limit to
// l.MemoryLimit, if one is set.
func (l LimitsConfig) ApplyMemoryLimit() {
	if l.MemoryLimit > 0 {
		debug.SetMemoryLimit(l.MemoryLimit)
	}
}

// LogConfig sets the structured log.
type LogConfig struct {
	Level string `yaml:"level"` // debug, info, warn, error
}

// DefaultConfig is dev mode on loopback.
func DefaultConfig() Config {
	return Config{
		Data: "./homemq-data",
		Listeners: ListenersConfig{
			MQTT:  "127.0.0.1:8883",
			HTTPS: "127.0.0.1:8443",
		},
		TLS:    TLSConfig{ACME: acme.DefaultConfig()},
		Tokens: auth.Config{}.WithDefaults(),
		Envelope: EnvelopeConfig{
			Policy: envelope.DefaultPolicy(),
			Replay: hooks.DefaultReplay(),
		},
		Limits: LimitsConfig{
			Connection:            hooks.DefaultConnection(),
			Limits:                hooks.DefaultLimits(),
			Quotas:                hooks.DefaultQuotas(),
			WebSocketOrigins:      []string{}, // none but the page's own host
			MaxPacketSize:         256 << 10,
			ConnectTimeout:        10 * time.Second,
			MaxSessionExpiry:      24 * time.Hour,
			MaxInflight:           256,
			MaxQueued:             1024,
			WebSocketReadLimit:    256<<10 + 1024,
			HTTPReadHeaderTimeout: 10 * time.Second,
			HTTPReadTimeout:       10 * time.Second,
			HTTPMaxBody:           128 << 10,
			HTTPSConnsPerAddr:     256,
			WriteBuffer:           1 << 20,
			WriteTimeout:          5 * time.Second,
		},
		Log:      LogConfig{Level: "info"},
		Observe:  ObserveConfig{AuditMaxSize: audit.DefaultMaxSize, AuditKeep: audit.DefaultKeep},
		TokenAPI: tokenapi.Config{IdentityProviders: []tokenapi.IdentityProvider{}},
		Drain:    DrainConfig{Period: DefaultDrainPeriod},
	}
}

// LoadConfig reads a YAML file over the defaults. An unknown key or a bad
// value is an error that names it.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, cfg.Validate()
}

// DevMode reports whether the broker provisions its own certificates.
func (c Config) DevMode() bool {
	return c.TLS.Cert == "" && c.TLS.Key == "" && !c.TLS.ACME.Enabled()
}

// Validate reports the first setting that cannot run, by its YAML key.
func (c Config) Validate() error {
	if c.Data == "" {
		return errors.New("config: data: a data folder is required")
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return errors.New("config: tls.cert and tls.key go together")
	}
	if err := c.TLS.validateDevNames(c.DevMode()); err != nil {
		return err
	}
	if c.TLS.ACME.Enabled() && (c.TLS.Cert != "" || c.TLS.CA != "") {
		return errors.New("config: tls.acme: certificates come either from ACME (tls.acme.domains) or from files (tls.cert, tls.key, tls.ca), not both")
	}
	if err := c.TLS.ACME.Validate(certs.CheckName); err != nil {
		return fmt.Errorf("config: tls.acme.%w", err)
	}
	if c.Listeners.HTTPCA != "" && c.TLS.ACME.Enabled() {
		return errors.New("config: listeners.http_ca: with tls.acme phones trust the certificate as it is; there is no home CA to offer, leave listeners.http_ca empty")
	}
	if c.Listeners.HTTPCA != "" && !c.DevMode() && c.TLS.CA == "" {
		return errors.New("config: listeners.http_ca: the CA page needs a CA to offer; set tls.ca (the CA that signed tls.cert) or leave listeners.http_ca empty")
	}
	if c.Listeners.MQTT == "" && c.Listeners.HTTPS == "" && c.Listeners.MQTTPlain == "" {
		return errors.New("config: listeners: at least one listener is needed")
	}
	if err := c.Tokens.WithDefaults().Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := c.Envelope.Validate(); err != nil {
		return fmt.Errorf("config: envelope.%w", err)
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("config: limits.%w", err)
	}
	if c.Observe.AuditMaxSize < 0 || c.Observe.AuditKeep < 0 {
		return errors.New("config: observe.audit_max_size and observe.audit_keep must not be negative")
	}
	if c.Cluster != nil {
		if err := c.Cluster.WithDefaults().Validate(); err != nil {
			return fmt.Errorf("config: cluster.%w", err)
		}
	}
	if err := c.Drain.Validate(); err != nil {
		return fmt.Errorf("config: drain.%w", err)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	return nil
}

// validateDevNames checks tls.dev_names: names a certificate can carry,
// and only where dev mode issues the certificate.
func (t TLSConfig) validateDevNames(dev bool) error {
	if t.DevNames != nil && !dev {
		return errors.New("config: tls.dev_names: only dev mode (no tls.cert) issues its own certificate; put the names in the certificate you give as tls.cert")
	}
	for _, n := range t.DevNames {
		if err := certs.CheckName(n); err != nil {
			return fmt.Errorf("config: tls.dev_names: %w", err)
		}
	}
	return nil
}

// DevNames returns the extra names of the dev server certificate:
// tls.dev_names, or when unset the host's names as found now.
func (c Config) DevNames() []string {
	if c.TLS.DevNames != nil {
		return c.TLS.DevNames
	}
	return certs.LocalNames()
}

// Validate reports the first key of the limits section out of range,
// without the section's name: the Guard's parts first, then the broker's.
func (l LimitsConfig) Validate() error {
	for _, v := range []interface{ Validate() error }{l.Connection, l.Limits, l.Quotas} {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	switch {
	case l.MaxPacketSize < 1024 || l.MaxPacketSize > 16<<20:
		return fmt.Errorf("max_packet_size: %d is out of range (1024 to 16777216)", l.MaxPacketSize)
	case l.ConnectTimeout <= 0:
		return fmt.Errorf("connect_timeout: %v must be positive", l.ConnectTimeout)
	case l.MaxInflight == 0:
		return errors.New("max_inflight: must be positive")
	case l.MaxQueued <= 0:
		return fmt.Errorf("max_queued: %d must be positive", l.MaxQueued)
	case l.MaxRetainedSize > int(l.MaxPacketSize):
		return fmt.Errorf("max_retained_size: %d is out of range (0 to max_packet_size, %d; 0 switches it off)", l.MaxRetainedSize, l.MaxPacketSize)
	case l.WriteBuffer < int(l.MaxPacketSize) || l.WriteBuffer > 1<<30:
		return fmt.Errorf("write_buffer: %d is out of range (max_packet_size, %d, to 1073741824)", l.WriteBuffer, l.MaxPacketSize)
	case l.WriteTimeout < 100*time.Millisecond || l.WriteTimeout > 10*time.Minute:
		return fmt.Errorf("write_timeout: %v is out of range (100ms to 10m)", l.WriteTimeout)
	case l.MemoryLimit < 0 || (l.MemoryLimit > 0 && l.MemoryLimit < minMemoryLimit):
		return fmt.Errorf("memory_limit: %d bytes is out of range (0 for off, or at least %d)", l.MemoryLimit, minMemoryLimit)
	}
	return l.validateHTTP()
}

// validateHTTP checks the HTTPS listener's limits.
func (l LimitsConfig) validateHTTP() error {
	switch {
	case l.HTTPReadHeaderTimeout <= 0:
		return fmt.Errorf("http_read_header_timeout: %v must be positive", l.HTTPReadHeaderTimeout)
	case l.HTTPReadTimeout <= 0:
		return fmt.Errorf("http_read_timeout: %v must be positive", l.HTTPReadTimeout)
	case l.HTTPMaxBody < 1<<10 || l.HTTPMaxBody > 16<<20:
		return fmt.Errorf("http_max_body: %d is out of range (1024 to 16777216)", l.HTTPMaxBody)
	case l.HTTPSConnsPerAddr < 0:
		return fmt.Errorf("https_conns_per_addr: %d must not be negative (0 switches it off)", l.HTTPSConnsPerAddr)
	}
	return nil
}

// Guard returns the Guard's configuration: its parts of the envelope and
// limits sections, passed through as they are, and limits.write_timeout as
// the bound on closing one connection. Issued is the caller's to fill.
func (c Config) Guard() hooks.Config {
	return hooks.Config{
		Envelope:       c.Envelope.Policy,
		Replay:         c.Envelope.Replay,
		Connection:     c.Limits.Connection,
		Limits:         c.Limits.Limits,
		Quotas:         c.Limits.Quotas,
		DisconnectWait: c.Limits.WriteTimeout,
	}
}
