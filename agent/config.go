package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"homemq/auth"
	"homemq/topics"
)

// Kind is what a device does: switch, pulse or input.
type Kind string

// The device kinds.
const (
	// Switch is an output that stays where a command puts it: on, off, toggle.
	Switch Kind = "switch"
	// Pulse is an output that a command turns on for a fixed time (a door
	// strike): pulse, off.
	Pulse Kind = "pulse"
	// Input is a button, door contact or motion sensor: its debounced level
	// is published as state and each change as an event. It takes no commands.
	Input Kind = "input"
)

// Use is what a device is to the people in the home, so an app can show
// it as such: a light, a switch, a door or a lock, or an input. It does not
// change how the pin is driven (that is Kind); it adds the absolute actions
// lock and unlock to doors and locks.
type Use string

// The device uses.
const (
	UseSwitch Use = "switch" // a powered thing: on, off (default of a switch)
	UseLight  Use = "light"  // a light: on, off
	UseDoor   Use = "door"   // a door strike or opener: unlock, lock (default of a pulse)
	UseLock   Use = "lock"   // a lock: unlock, lock
	UseInput  Use = "input"  // a button, contact or sensor (the only use of an input)
)

// DefaultUse is the use of a device of kind k whose config names none.
func DefaultUse(k Kind) Use {
	switch k {
	case Pulse:
		return UseDoor
	case Input:
		return UseInput
	}
	return UseSwitch
}

// Backends for Config.GPIO.
const (
	GPIOSim    = "sim"    // simulated pins (agent/gpiosim), for tests and laptops
	GPIOPeriph = "periph" // real pins through periph.io/x/host/v3
)

// Limits and defaults of the configuration.
const (
	MaxDevices          = 64
	MaxPulse            = 10 * time.Minute
	MaxDebounce         = 10 * time.Second
	DefaultDebounce     = 50 * time.Millisecond
	DefaultReconnectMin = time.Second
	DefaultReconnectMax = time.Minute
	DefaultKeepAlive    = 30 * time.Second
)

// Config is an agent.yaml: where the broker is, who the agent is, how it
// gets its tokens and which devices hang off which pins.
type Config struct {
	// Broker is mqtts://host:port (MQTT over TLS) or wss://host:port/mqtt
	// (MQTT over WebSocket on the broker's HTTPS port): the first of
	// Brokers, or the only broker of a Config made in code.
	Broker string `yaml:"-"`
	// Brokers is agent.yaml's broker: one URL, or a list of the nodes of a
	// cluster. Each connection tries them in turn, starting with the node
	// it was last connected to, or the next one after a connection loss.
	Brokers URLList `yaml:"broker"`
	// CAFile is the PEM CA the broker's certificate must chain to (the
	// home's CA, e.g. ca.pem from the broker's data folder), or "system"
	// for the system's roots. Required: there is no insecure mode.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are an optional client certificate (mTLS).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the broker's certificate.
	ServerName string `yaml:"server_name"`

	Home  string `yaml:"home"`
	Agent string `yaml:"agent"`

	// Credential (or CredentialFile holding it) is the agent credential from
	// 'homemq agent add', exchanged at TokenURL for short-lived tokens.
	Credential     string `yaml:"credential"`
	CredentialFile string `yaml:"credential_file"`
	// TokenURL is the broker's https://host:port/api/token: the first of
	// TokenURLs, or the only one of a Config made in code.
	TokenURL string `yaml:"-"`
	// TokenURLs is agent.yaml's token_url: one URL or a list (default:
	// derived from each wss:// broker). An exchange that gets no answer, or
	// a 5xx, tries the next one.
	TokenURLs URLList `yaml:"token_url"`
	// TokenFile instead names a file holding a token (a JWT), re-read when
	// the token nears its expiry: for simple set-ups where something else
	// keeps the file fresh, and for tests.
	TokenFile string `yaml:"token_file"`

	// GPIO is the pin backend: "periph" (default) or "sim".
	GPIO    string         `yaml:"gpio"`
	Devices []DeviceConfig `yaml:"devices"`

	// HomeAssistant, when present, makes the agent publish MQTT discovery
	// messages so Home Assistant shows its devices.
	HomeAssistant *HomeAssistantConfig `yaml:"home_assistant"`

	Reconnect ReconnectConfig `yaml:"reconnect"`
	// KeepAlive is the MQTT keep-alive (default 30s).
	KeepAlive time.Duration `yaml:"keepalive"`
	// StateDir is the folder where the agent keeps the nonces of the
	// commands it took on, so that a command delivered again after a crash
	// is not executed twice (default: the folder of agent.yaml). It must be
	// writable. A Config made in code without one keeps nonces in memory
	// only.
	StateDir string `yaml:"state_dir"`

	dir string // the config file's folder: relative paths are read from it
}

// DeviceConfig is one device on one pin.
type DeviceConfig struct {
	ID   string `yaml:"id"`
	Kind Kind   `yaml:"kind"`
	// Pin is the pin's name for the backend, e.g. GPIO17 (periph) or any
	// name (sim).
	Pin string `yaml:"pin"`
	// ActiveLow means "on" is the low level (most relay boards, buttons to
	// ground).
	ActiveLow bool `yaml:"active_low"`
	// Initial is the level of a switch at start and at shutdown: "off"
	// (default) or "on". Pulses always rest off.
	Initial string `yaml:"initial"`
	// Pulse is how long a pulse device stays on (required for pulse).
	Pulse time.Duration `yaml:"pulse"`
	// Debounce is how long an input must be still before its level counts
	// (default 50ms).
	Debounce time.Duration `yaml:"debounce"`
	// Pull is an input's resistor: "up", "down" or "none" (default: up when
	// active_low, else down).
	Pull string `yaml:"pull"`
	// Use is what the device is to people: switch or light (switch
	// devices), door or lock (pulse or switch devices; on = unlocked),
	// input (input devices). Default: switch for a switch, door for a
	// pulse, input for an input.
	Use Use `yaml:"use"`
	// Name and DeviceClass are shown by Home Assistant.
	Name        string `yaml:"name"`
	DeviceClass string `yaml:"device_class"`
}

// HomeAssistantConfig configures MQTT discovery (docs/agent.md).
type HomeAssistantConfig struct {
	// DiscoveryPrefix is the discovery prefix Home Assistant is set to
	// (default homes/{home}/discovery: inside the home's namespace, where
	// the broker's rules decide who may publish and read; docs/agent.md).
	DiscoveryPrefix string `yaml:"discovery_prefix"`
}

// ReconnectConfig bounds the wait between connection attempts: it starts
// at Min, doubles per failure up to Max, and each wait is drawn at random
// from [Min, that bound] so many agents do not return in step.
type ReconnectConfig struct {
	Min time.Duration `yaml:"min"`
	Max time.Duration `yaml:"max"`
}

// DefaultHAPrefix is the default Home Assistant discovery prefix of a home.
func DefaultHAPrefix(home string) string { return "homes/" + home + "/discovery" }

// LoadConfig reads and checks an agent.yaml. Relative file names in it are
// read from the file's folder.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("agent config: %w", err)
	}
	c, err := ParseConfig(b, filepath.Dir(path))
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes YAML into a Config and checks it (Validate); dir is
// where relative file names are read from. An unknown key is an error that
// names it.
func ParseConfig(data []byte, dir string) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, errors.New("agent config is empty; see docs/agent.md for an example")
		}
		return Config{}, fmt.Errorf("agent config: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, errors.New("agent config: one YAML document expected, found more")
	}
	c.dir = dir
	c.applyDefaults()
	return c, c.Validate()
}

func (c *Config) applyDefaults() {
	if c.GPIO == "" {
		c.GPIO = GPIOPeriph
	}
	if c.Reconnect.Min == 0 {
		c.Reconnect.Min = DefaultReconnectMin
	}
	if c.Reconnect.Max == 0 {
		c.Reconnect.Max = max(DefaultReconnectMax, c.Reconnect.Min)
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if len(c.Brokers) == 0 && c.Broker != "" {
		c.Brokers = URLList{c.Broker}
	}
	if len(c.Brokers) > 0 {
		c.Broker = c.Brokers[0]
	}
	if len(c.TokenURLs) == 0 && c.TokenURL != "" {
		c.TokenURLs = URLList{c.TokenURL}
	}
	if len(c.TokenURLs) == 0 && c.TokenFile == "" {
		for _, b := range c.Brokers {
			if u, err := url.Parse(b); err == nil && u.Scheme == "wss" && u.Host != "" {
				c.TokenURLs = append(c.TokenURLs, "https://"+u.Host+"/api/token")
			}
		}
	}
	if len(c.TokenURLs) > 0 {
		c.TokenURL = c.TokenURLs[0]
	}
	if c.StateDir == "" && c.dir != "" {
		c.StateDir = "."
	}
	if c.HomeAssistant != nil && c.HomeAssistant.DiscoveryPrefix == "" {
		c.HomeAssistant.DiscoveryPrefix = DefaultHAPrefix(c.Home)
	}
	for i := range c.Devices {
		d := &c.Devices[i]
		if d.Initial == "" {
			d.Initial = "off"
		}
		if d.Use == "" {
			d.Use = DefaultUse(d.Kind)
		}
		if d.Kind == Input {
			if d.Debounce == 0 {
				d.Debounce = DefaultDebounce
			}
			if d.Pull == "" {
				d.Pull = "down"
				if d.ActiveLow {
					d.Pull = "up"
				}
			}
		}
	}
}

// Validate checks every setting and names the first bad one by its key.
func (c *Config) Validate() error {
	brokers := c.brokers()
	if len(brokers) == 0 {
		return errors.New("broker: missing; e.g. mqtts://hub.local:8883 or wss://hub.local:8443/mqtt, or a list of a cluster's nodes")
	}
	for i, b := range brokers {
		if err := checkBroker(listKey("broker", i, len(brokers)), b); err != nil {
			return err
		}
	}
	if c.CAFile == "" {
		return errors.New(`ca_file: missing; name the home's CA certificate (ca.pem from the broker's data folder) or "system"`)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("cert_file, key_file: give both (a client certificate) or neither")
	}
	if !topics.ValidID(c.Home) {
		return fmt.Errorf("home: %q must be 1-64 of a-z 0-9 _ -", c.Home)
	}
	if !topics.ValidID(c.Agent) {
		return fmt.Errorf("agent: %q must be 1-64 of a-z 0-9 _ -", c.Agent)
	}
	if err := c.validateTokens(); err != nil {
		return err
	}
	if c.GPIO != GPIOSim && c.GPIO != GPIOPeriph {
		return fmt.Errorf("gpio: %q must be %q or %q", c.GPIO, GPIOPeriph, GPIOSim)
	}
	if c.Reconnect.Min < 10*time.Millisecond || c.Reconnect.Max < c.Reconnect.Min || c.Reconnect.Max > time.Hour {
		return fmt.Errorf("reconnect: min %v and max %v must satisfy 10ms <= min <= max <= 1h", c.Reconnect.Min, c.Reconnect.Max)
	}
	if c.KeepAlive < time.Second || c.KeepAlive > 20*time.Minute {
		return fmt.Errorf("keepalive: %v must be from 1s to 20m", c.KeepAlive)
	}
	if c.HomeAssistant != nil && !validPrefix(c.HomeAssistant.DiscoveryPrefix) {
		return fmt.Errorf("home_assistant.discovery_prefix: %q must be topic levels without wildcards", c.HomeAssistant.DiscoveryPrefix)
	}
	return c.validateDevices()
}

// brokers returns the broker URLs: Brokers, or Broker alone.
func (c *Config) brokers() []string {
	if len(c.Brokers) > 0 {
		return c.Brokers
	}
	if c.Broker != "" {
		return []string{c.Broker}
	}
	return nil
}

// tokenURLs returns the token URLs: TokenURLs, or TokenURL alone.
func (c *Config) tokenURLs() []string {
	if len(c.TokenURLs) > 0 {
		return c.TokenURLs
	}
	if c.TokenURL != "" {
		return []string{c.TokenURL}
	}
	return nil
}

// checkBroker checks one broker URL; key names it in the error.
func checkBroker(key, b string) error {
	u, err := url.Parse(b)
	switch {
	case b == "":
		return fmt.Errorf("%s: empty; e.g. mqtts://hub.local:8883", key)
	case err != nil || u.Host == "":
		return fmt.Errorf("%s: %q is not a URL like mqtts://hub.local:8883", key, b)
	case u.Scheme == "mqtt" || u.Scheme == "tcp" || u.Scheme == "ws":
		return fmt.Errorf("%s: %q is not encrypted; the agent speaks only mqtts:// or wss://", key, b)
	case u.Scheme != "mqtts" && u.Scheme != "ssl" && u.Scheme != "tls" && u.Scheme != "wss":
		return fmt.Errorf("%s: scheme %q is not supported; use mqtts:// or wss://", key, u.Scheme)
	case u.Port() == "":
		return fmt.Errorf("%s: %q has no port; e.g. mqtts://%s:8883", key, b, u.Hostname())
	}
	return nil
}

func (c *Config) validateTokens() error {
	haveCred := c.Credential != "" || c.CredentialFile != ""
	switch {
	case c.Credential != "" && c.CredentialFile != "":
		return errors.New("credential, credential_file: give one, not both")
	case haveCred && c.TokenFile != "":
		return errors.New("token_file: give either a credential (exchanged at token_url) or a token_file, not both")
	case !haveCred && c.TokenFile == "":
		return errors.New("credential_file: missing; give the agent credential from 'homemq agent add' (or a token_file)")
	case c.TokenFile != "":
		return nil
	}
	urls := c.tokenURLs()
	if len(urls) == 0 {
		return errors.New("token_url: missing; e.g. https://hub.local:8443/api/token (derived only from wss:// brokers)")
	}
	for i, t := range urls {
		if u, err := url.Parse(t); err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("%s: %q must be an https:// URL like https://hub.local:8443/api/token", listKey("token_url", i, len(urls)), t)
		}
	}
	if c.Credential != "" {
		return c.checkCredential(c.Credential, "credential")
	}
	return nil
}

// checkCredential checks a credential's form and that it names this agent.
func (c *Config) checkCredential(s, key string) error {
	cred, err := auth.ParseAgentCredential(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%s: %s", key, strings.TrimPrefix(err.Error(), "auth: "))
	}
	if cred.Home != c.Home || cred.Agent != c.Agent {
		return fmt.Errorf("%s: it is the credential of agent %q in home %q, but this config is agent %q in home %q", key, cred.Agent, cred.Home, c.Agent, c.Home)
	}
	return nil
}

func (c *Config) validateDevices() error {
	if len(c.Devices) == 0 {
		return errors.New("devices: none configured; an agent needs at least one")
	}
	if len(c.Devices) > MaxDevices {
		return fmt.Errorf("devices: %d configured, at most %d", len(c.Devices), MaxDevices)
	}
	ids, pins := map[string]bool{}, map[string]string{}
	for i, d := range c.Devices {
		key := fmt.Sprintf("devices[%d]", i)
		if !topics.ValidID(d.ID) {
			return fmt.Errorf("%s.id: %q must be 1-64 of a-z 0-9 _ -", key, d.ID)
		}
		key = fmt.Sprintf("devices[%d] (%s)", i, d.ID)
		if ids[d.ID] {
			return fmt.Errorf("%s.id: %q is used twice", key, d.ID)
		}
		ids[d.ID] = true
		if d.Pin == "" {
			return fmt.Errorf("%s.pin: missing; e.g. GPIO17", key)
		}
		if other, ok := pins[d.Pin]; ok {
			return fmt.Errorf("%s.pin: %s is already used by device %q", key, d.Pin, other)
		}
		pins[d.Pin] = d.ID
		if err := d.validate(key); err != nil {
			return err
		}
	}
	return nil
}

func (d DeviceConfig) validate(key string) error {
	if d.Initial != "off" && d.Initial != "on" {
		return fmt.Errorf("%s.initial: %q must be off or on", key, d.Initial)
	}
	switch d.Kind {
	case Switch:
	case Pulse:
		if d.Pulse <= 0 || d.Pulse > MaxPulse {
			return fmt.Errorf("%s.pulse: %v must be more than 0 and at most %v (e.g. 2s)", key, d.Pulse, MaxPulse)
		}
		if d.Initial != "off" {
			return fmt.Errorf("%s.initial: a pulse device always rests off", key)
		}
	case Input:
		if d.Debounce < 0 || d.Debounce > MaxDebounce {
			return fmt.Errorf("%s.debounce: %v must be from 0 to %v", key, d.Debounce, MaxDebounce)
		}
		if d.Pull != "up" && d.Pull != "down" && d.Pull != "none" {
			return fmt.Errorf("%s.pull: %q must be up, down or none", key, d.Pull)
		}
	case "":
		return fmt.Errorf("%s.kind: missing; switch, pulse or input", key)
	default:
		return fmt.Errorf("%s.kind: %q must be switch, pulse or input", key, d.Kind)
	}
	if err := d.validateUse(key); err != nil {
		return err
	}
	if d.Kind != Pulse && d.Pulse != 0 {
		return fmt.Errorf("%s.pulse: only pulse devices have one", key)
	}
	if d.Kind != Input && (d.Debounce != 0 || d.Pull != "") {
		return fmt.Errorf("%s.debounce, pull: only input devices have them", key)
	}
	if d.Kind == Input && d.Initial != "off" {
		return fmt.Errorf("%s.initial: an input's level comes from the pin", key)
	}
	return nil
}

// validateUse checks that the device's use fits its kind.
func (d DeviceConfig) validateUse(key string) error {
	switch d.Use {
	case "":
		return nil // applyDefaults fills it
	case UseSwitch, UseLight:
		if d.Kind != Switch {
			return fmt.Errorf("%s.use: %s needs kind switch, not %s", key, d.Use, d.Kind)
		}
	case UseDoor, UseLock:
		if d.Kind == Input {
			return fmt.Errorf("%s.use: %s needs kind pulse or switch; an input takes no commands", key, d.Use)
		}
	case UseInput:
		if d.Kind != Input {
			return fmt.Errorf("%s.use: input needs kind input, not %s", key, d.Kind)
		}
	default:
		return fmt.Errorf("%s.use: %q must be switch, light, door, lock or input", key, d.Use)
	}
	return nil
}

func validPrefix(p string) bool {
	if p == "" || strings.ContainsAny(p, "+#\x00") || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.HasPrefix(p, "$") {
		return false
	}
	for _, l := range strings.Split(p, "/") {
		if l == "" {
			return false
		}
	}
	return true
}

// path resolves a file name of the config relative to its folder.
func (c *Config) path(name string) string {
	if name == "" || filepath.IsAbs(name) || c.dir == "" {
		return name
	}
	return filepath.Join(c.dir, name)
}

// nonceFile returns the path of the agent's nonce file, or "" when the
// agent has no state folder.
func (c *Config) nonceFile() string {
	if c.StateDir == "" {
		return ""
	}
	return filepath.Join(c.path(c.StateDir), nonceFileName(c.Home, c.Agent))
}

// Device returns the configured device with that id.
func (c *Config) Device(id string) (DeviceConfig, bool) {
	for _, d := range c.Devices {
		if d.ID == id {
			return d, true
		}
	}
	return DeviceConfig{}, false
}
