package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"homemq/auth"
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
}

// ListenersConfig says where to listen; an empty address is off.
type ListenersConfig struct {
	MQTT      string `yaml:"mqtt"`       // MQTT over TLS
	HTTPS     string `yaml:"https"`      // HTTPS: /mqtt (WebSocket), /healthz, APIs
	MQTTPlain string `yaml:"mqtt_plain"` // plain MQTT/TCP, only when asked
}

// TLSConfig names certificate files. With none given, dev mode provisions a
// CA and a localhost server certificate in the data folder.
type TLSConfig struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	CA       string `yaml:"ca"`        // the CA clients should trust (printed for them)
	ClientCA string `yaml:"client_ca"` // optional: require client certificates signed by it
}

// EnvelopeConfig bounds command envelopes.
type EnvelopeConfig struct {
	Skew        time.Duration `yaml:"skew"`
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	MaxSize     int           `yaml:"max_size"`
	ReplayCache int           `yaml:"replay_cache"`
	ReplayQuota int           `yaml:"replay_quota"` // live commands per sub in the replay cache; 0 = off
}

// LimitsConfig bounds what clients may do.
type LimitsConfig struct {
	MaxPacketSize         uint32        `yaml:"max_packet_size"`
	ConnectTimeout        time.Duration `yaml:"connect_timeout"`
	MaxKeepalive          uint16        `yaml:"max_keepalive"`
	MaxSessionExpiry      time.Duration `yaml:"max_session_expiry"`
	MaxInflight           uint16        `yaml:"max_inflight"`
	MaxQueued             int           `yaml:"max_queued"`
	RefusalLimit          int           `yaml:"refusal_limit"`
	RefusalWindow         time.Duration `yaml:"refusal_window"`
	ConnsPerSub           int           `yaml:"conns_per_sub"`
	ConnsPerAddr          int           `yaml:"conns_per_addr"`
	ConnectRate           float64       `yaml:"connect_rate"`
	ConnectBurst          int           `yaml:"connect_burst"`
	MaxSubscriptions      int           `yaml:"max_subscriptions"`
	CommandRate           float64       `yaml:"command_rate"`
	CommandBurst          int           `yaml:"command_burst"`
	WebSocketOrigins      []string      `yaml:"websocket_origins"`
	WebSocketReadLimit    int64         `yaml:"websocket_read_limit"`
	HTTPReadHeaderTimeout time.Duration `yaml:"http_read_header_timeout"`
	HTTPReadTimeout       time.Duration `yaml:"http_read_timeout"`    // reading a whole HTTPS request, body included
	HTTPMaxBody           int64         `yaml:"http_max_body"`        // the largest request body any HTTPS endpoint reads
	HTTPSConnsPerAddr     int           `yaml:"https_conns_per_addr"` // HTTPS sockets per source address (addrlimit.Key), from accept
	SessionsPerSub        int           `yaml:"sessions_per_sub"`     // persistent sessions per sub, offline ones included; 0 = off
	RetainedPerAgent      int           `yaml:"retained_per_agent"`   // retained topics per agent of a home; 0 = off
	MaxRetainedSize       int           `yaml:"max_retained_size"`    // bytes of a retained payload; 0 = off
	RetainedRate          float64       `yaml:"retained_rate"`        // retained publishes per second per sub; 0 = off
	RetainedBurst         int           `yaml:"retained_burst"`
	// WriteBuffer is the most bytes queued for one connection and not yet
	// written to its socket; a client that lets more pile up is disconnected.
	WriteBuffer int `yaml:"write_buffer"`
	// WriteTimeout is how long one write to a client's socket may take; a
	// client that does not read for longer is disconnected.
	WriteTimeout time.Duration `yaml:"write_timeout"`
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
		Tokens: auth.Config{}.WithDefaults(),
		Envelope: EnvelopeConfig{
			Skew:        5 * time.Second,
			MaxLifetime: 60 * time.Second,
			MaxSize:     16 << 10,
			ReplayCache: 1 << 20,
			ReplayQuota: 4096,
		},
		Limits: LimitsConfig{
			MaxPacketSize:         256 << 10,
			ConnectTimeout:        10 * time.Second,
			MaxKeepalive:          300,
			MaxSessionExpiry:      24 * time.Hour,
			MaxInflight:           256,
			MaxQueued:             1024,
			RefusalLimit:          20,
			RefusalWindow:         time.Minute,
			ConnsPerSub:           32,
			ConnsPerAddr:          256,
			ConnectRate:           20,
			ConnectBurst:          50,
			MaxSubscriptions:      100,
			CommandRate:           10,
			CommandBurst:          20,
			WebSocketReadLimit:    256<<10 + 1024,
			HTTPReadHeaderTimeout: 10 * time.Second,
			HTTPReadTimeout:       10 * time.Second,
			HTTPMaxBody:           128 << 10,
			HTTPSConnsPerAddr:     256,
			SessionsPerSub:        16,
			RetainedPerAgent:      256,
			MaxRetainedSize:       16 << 10,
			RetainedRate:          20,
			RetainedBurst:         500,
			WriteBuffer:           1 << 20,
			WriteTimeout:          5 * time.Second,
		},
		Log: LogConfig{Level: "info"},
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
func (c Config) DevMode() bool { return c.TLS.Cert == "" && c.TLS.Key == "" }

// Validate reports the first setting that cannot run, by its YAML key.
func (c Config) Validate() error {
	if c.Data == "" {
		return errors.New("config: data: a data folder is required")
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return errors.New("config: tls.cert and tls.key go together")
	}
	if c.Listeners.MQTT == "" && c.Listeners.HTTPS == "" && c.Listeners.MQTTPlain == "" {
		return errors.New("config: listeners: at least one listener is needed")
	}
	if err := c.Tokens.WithDefaults().Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	e := c.Envelope
	switch {
	case e.Skew < 0 || e.Skew > time.Minute:
		return fmt.Errorf("config: envelope.skew: %v is out of range (0 to 1m)", e.Skew)
	case e.MaxLifetime <= 0 || e.MaxLifetime > time.Hour:
		return fmt.Errorf("config: envelope.max_lifetime: %v is out of range (1s to 1h)", e.MaxLifetime)
	case e.MaxSize < 256 || e.MaxSize > 1<<20:
		return fmt.Errorf("config: envelope.max_size: %d is out of range (256 to 1048576)", e.MaxSize)
	case e.ReplayCache < 1024:
		return fmt.Errorf("config: envelope.replay_cache: %d is too small (at least 1024)", e.ReplayCache)
	case e.ReplayQuota < 0 || e.ReplayQuota > e.ReplayCache:
		return fmt.Errorf("config: envelope.replay_quota: %d is out of range (0 to envelope.replay_cache, %d; 0 switches it off)", e.ReplayQuota, e.ReplayCache)
	}
	l := c.Limits
	switch {
	case l.MaxPacketSize < 1024 || l.MaxPacketSize > 16<<20:
		return fmt.Errorf("config: limits.max_packet_size: %d is out of range (1024 to 16777216)", l.MaxPacketSize)
	case l.ConnectTimeout <= 0:
		return fmt.Errorf("config: limits.connect_timeout: %v must be positive", l.ConnectTimeout)
	case l.MaxKeepalive == 0:
		return errors.New("config: limits.max_keepalive: must be at least 1 second")
	case l.RefusalLimit < 0:
		return errors.New("config: limits.refusal_limit: must not be negative")
	case l.CommandRate <= 0 || l.CommandBurst <= 0:
		return errors.New("config: limits.command_rate and limits.command_burst must be positive")
	case l.ConnsPerSub < 0 || l.ConnsPerAddr < 0 || l.ConnectRate < 0 || l.ConnectBurst < 0 || l.MaxSubscriptions < 0:
		return errors.New("config: limits.conns_per_sub, conns_per_addr, connect_rate, connect_burst and max_subscriptions must not be negative (0 switches one off)")
	case l.MaxInflight == 0 || l.MaxQueued <= 0:
		return errors.New("config: limits.max_inflight and limits.max_queued must be positive")
	case l.SessionsPerSub < 0:
		return fmt.Errorf("config: limits.sessions_per_sub: %d must not be negative (0 switches it off)", l.SessionsPerSub)
	case l.RetainedPerAgent < 0:
		return fmt.Errorf("config: limits.retained_per_agent: %d must not be negative (0 switches it off)", l.RetainedPerAgent)
	case l.MaxRetainedSize < 0 || l.MaxRetainedSize > int(l.MaxPacketSize):
		return fmt.Errorf("config: limits.max_retained_size: %d is out of range (0 to limits.max_packet_size, %d; 0 switches it off)", l.MaxRetainedSize, l.MaxPacketSize)
	case l.RetainedRate < 0 || l.RetainedBurst < 0 || (l.RetainedRate > 0 && l.RetainedBurst == 0):
		return errors.New("config: limits.retained_rate and limits.retained_burst must not be negative, and retained_burst must be positive when retained_rate is (retained_rate 0 switches it off)")
	case l.WriteBuffer < int(l.MaxPacketSize) || l.WriteBuffer > 1<<30:
		return fmt.Errorf("config: limits.write_buffer: %d is out of range (limits.max_packet_size, %d, to 1073741824)", l.WriteBuffer, l.MaxPacketSize)
	case l.WriteTimeout < 100*time.Millisecond || l.WriteTimeout > 10*time.Minute:
		return fmt.Errorf("config: limits.write_timeout: %v is out of range (100ms to 10m)", l.WriteTimeout)
	}
	if err := l.validateHTTP(); err != nil {
		return err
	}
	if c.Observe.AuditMaxSize < 0 || c.Observe.AuditKeep < 0 {
		return errors.New("config: observe.audit_max_size and observe.audit_keep must not be negative")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	return nil
}

// validateHTTP checks the HTTPS listener's limits.
func (l LimitsConfig) validateHTTP() error {
	switch {
	case l.HTTPReadHeaderTimeout <= 0:
		return fmt.Errorf("config: limits.http_read_header_timeout: %v must be positive", l.HTTPReadHeaderTimeout)
	case l.HTTPReadTimeout <= 0:
		return fmt.Errorf("config: limits.http_read_timeout: %v must be positive", l.HTTPReadTimeout)
	case l.HTTPMaxBody < 1<<10 || l.HTTPMaxBody > 16<<20:
		return fmt.Errorf("config: limits.http_max_body: %d is out of range (1024 to 16777216)", l.HTTPMaxBody)
	case l.HTTPSConnsPerAddr < 0:
		return fmt.Errorf("config: limits.https_conns_per_addr: %d must not be negative (0 switches it off)", l.HTTPSConnsPerAddr)
	}
	return nil
}
