package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodCredential = "hmq1.h1.pi1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// minimal is the smallest valid agent.yaml, plus extra lines.
func minimal(extra string) string {
	return `broker: mqtts://hub.local:8883
ca_file: ca.pem
home: h1
agent: pi1
credential: ` + goodCredential + `
token_url: https://hub.local:8443/api/token
devices:
  - {id: lamp, kind: switch, pin: GPIO17}
` + extra
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(minimal(`  - {id: door, kind: pulse, pin: GPIO27, pulse: 2s}
  - {id: button, kind: input, pin: GPIO22, active_low: true}
  - {id: pir, kind: input, pin: GPIO5}
home_assistant: {}
`)), "/etc/homemq")
	if err != nil {
		t.Fatal(err)
	}
	if c.GPIO != GPIOPeriph || c.KeepAlive != DefaultKeepAlive || c.Reconnect.Min != DefaultReconnectMin || c.Reconnect.Max != DefaultReconnectMax {
		t.Errorf("defaults: gpio %q keepalive %v reconnect %+v", c.GPIO, c.KeepAlive, c.Reconnect)
	}
	for id, want := range map[string]Use{"lamp": UseSwitch, "door": UseDoor, "button": UseInput} {
		if d, _ := c.Device(id); d.Use != want {
			t.Errorf("device %s: use %q, want the default %q", id, d.Use, want)
		}
	}
	if c.HomeAssistant.DiscoveryPrefix != "homes/h1/discovery" {
		t.Errorf("discovery prefix %q", c.HomeAssistant.DiscoveryPrefix)
	}
	if d, _ := c.Device("lamp"); d.Initial != "off" {
		t.Errorf("lamp initial %q, want off", d.Initial)
	}
	if d, _ := c.Device("door"); d.Pulse != 2*time.Second {
		t.Errorf("door pulse %v", d.Pulse)
	}
	if d, _ := c.Device("button"); d.Pull != "up" || d.Debounce != DefaultDebounce {
		t.Errorf("active-low button pull %q debounce %v, want up, %v", d.Pull, d.Debounce, DefaultDebounce)
	}
	if d, _ := c.Device("pir"); d.Pull != "down" {
		t.Errorf("active-high input pull %q, want down", d.Pull)
	}
	if got := c.path("ca.pem"); got != filepath.Join("/etc/homemq", "ca.pem") {
		t.Errorf("relative ca_file resolves to %q", got)
	}
	if got := c.path("/abs/ca.pem"); got != "/abs/ca.pem" {
		t.Errorf("absolute ca_file resolves to %q", got)
	}
}

func TestParseConfigDerivesTokenURLFromWSS(t *testing.T) {
	y := strings.Replace(minimal(""), "broker: mqtts://hub.local:8883", "broker: wss://hub.local:8443/mqtt", 1)
	y = strings.Replace(y, "token_url: https://hub.local:8443/api/token\n", "", 1)
	c, err := ParseConfig([]byte(y), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.TokenURL != "https://hub.local:8443/api/token" {
		t.Fatalf("token_url = %q", c.TokenURL)
	}
}

func TestParseConfigRefusals(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"empty", ``, "empty"},
		{"unknown key", minimal("colour: blue\n"), "colour"},
		{"unknown device key", minimal("  - {id: x, kind: switch, pin: P1, speed: 3}\n"), "speed"},
		{"two documents", minimal("---\nbroker: x\n"), "one YAML document"},
		{"no broker", strings.Replace(minimal(""), "broker: mqtts://hub.local:8883\n", "", 1), "broker: missing"},
		{"plain mqtt", strings.Replace(minimal(""), "mqtts://", "mqtt://", 1), "not encrypted"},
		{"plain ws", strings.Replace(minimal(""), "mqtts://hub.local:8883", "ws://hub.local:8443/mqtt", 1), "not encrypted"},
		{"odd scheme", strings.Replace(minimal(""), "mqtts://", "ftp://", 1), "not supported"},
		{"no port", strings.Replace(minimal(""), "hub.local:8883", "hub.local", 1), "no port"},
		{"no ca", strings.Replace(minimal(""), "ca_file: ca.pem\n", "", 1), "ca_file: missing"},
		{"cert without key", minimal("cert_file: c.pem\n"), "cert_file, key_file"},
		{"bad home", strings.Replace(minimal(""), "home: h1", "home: H1", 1), "home:"},
		{"bad agent", strings.Replace(minimal(""), "agent: pi1", "agent: pi/1", 1), "agent:"},
		{"no credential", strings.Replace(minimal(""), "credential: "+goodCredential+"\n", "", 1), "credential_file: missing"},
		{"two credentials", minimal("credential_file: cred.txt\n"), "not both"},
		{"credential and token file", minimal("token_file: tok\n"), "not both"},
		{"another agent's credential", strings.Replace(minimal(""), "hmq1.h1.pi1.", "hmq1.h1.pi2.", 1), `agent "pi2"`},
		{"garbled credential", strings.Replace(minimal(""), goodCredential, "hunter2", 1), "credential:"},
		{"http token url", strings.Replace(minimal(""), "https://hub.local:8443", "http://hub.local:8443", 1), "https://"},
		{"bad gpio", minimal("gpio: wiringpi\n"), "gpio:"},
		{"reconnect backwards", minimal("reconnect: {min: 10s, max: 1s}\n"), "reconnect:"},
		{"tiny keepalive", minimal("keepalive: 10ms\n"), "keepalive:"},
		{"wildcard prefix", minimal("home_assistant: {discovery_prefix: 'ha/#'}\n"), "discovery_prefix"},
		{"no devices", strings.Replace(minimal(""), "devices:\n  - {id: lamp, kind: switch, pin: GPIO17}\n", "", 1), "devices: none"},
		{"bad device id", minimal("  - {id: Door, kind: pulse, pin: P2, pulse: 1s}\n"), "devices[1].id"},
		{"duplicate id", minimal("  - {id: lamp, kind: switch, pin: P2}\n"), "used twice"},
		{"shared pin", minimal("  - {id: fan, kind: switch, pin: GPIO17}\n"), "already used by device \"lamp\""},
		{"no pin", minimal("  - {id: fan, kind: switch}\n"), "pin: missing"},
		{"no kind", minimal("  - {id: fan, pin: P2}\n"), "kind: missing"},
		{"bad kind", minimal("  - {id: fan, kind: dimmer, pin: P2}\n"), "dimmer"},
		{"pulse without time", minimal("  - {id: door, kind: pulse, pin: P2}\n"), "pulse:"},
		{"pulse too long", minimal("  - {id: door, kind: pulse, pin: P2, pulse: 1h}\n"), "pulse:"},
		{"pulse resting on", minimal("  - {id: door, kind: pulse, pin: P2, pulse: 1s, initial: on}\n"), "rests off"},
		{"bad initial", minimal("  - {id: fan, kind: switch, pin: P2, initial: half}\n"), "initial"},
		{"switch with pulse", minimal("  - {id: fan, kind: switch, pin: P2, pulse: 1s}\n"), "only pulse devices"},
		{"switch with debounce", minimal("  - {id: fan, kind: switch, pin: P2, debounce: 1s}\n"), "only input devices"},
		{"bad pull", minimal("  - {id: btn, kind: input, pin: P2, pull: sideways}\n"), "pull"},
		{"long debounce", minimal("  - {id: btn, kind: input, pin: P2, debounce: 1m}\n"), "debounce"},
		{"input initial on", minimal("  - {id: btn, kind: input, pin: P2, initial: on}\n"), "comes from the pin"},
		{"bad duration", minimal("  - {id: door, kind: pulse, pin: P2, pulse: soon}\n"), "soon"},
		{"unknown use", minimal("  - {id: fan, kind: switch, pin: P2, use: dimmer}\n"), "(fan).use"},
		{"light on a pulse", minimal("  - {id: fan, kind: pulse, pin: P2, pulse: 1s, use: light}\n"), "needs kind switch"},
		{"door on an input", minimal("  - {id: btn, kind: input, pin: P2, use: door}\n"), "an input takes no commands"},
		{"input use on a switch", minimal("  - {id: fan, kind: switch, pin: P2, use: input}\n"), "needs kind input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml), "")
			if err == nil {
				t.Fatalf("accepted; want an error mentioning %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestParseConfigTokenFile(t *testing.T) {
	y := strings.Replace(minimal(""), "credential: "+goodCredential+"\n", "token_file: agent.jwt\n", 1)
	y = strings.Replace(y, "token_url: https://hub.local:8443/api/token\n", "", 1)
	if _, err := ParseConfig([]byte(y), ""); err != nil {
		t.Fatalf("a token_file config without token_url: %v", err)
	}
}

func TestLoadConfigNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(p, []byte(minimal("bogus: 1\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("error %v should name the file and the key", err)
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("a missing file loaded")
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(minimal("")))
	f.Add([]byte(minimal("  - {id: door, kind: pulse, pin: P2, pulse: 2s}\nhome_assistant: {discovery_prefix: ha}\n")))
	f.Add([]byte("broker: wss://h:1/mqtt\nca_file: system\nhome: a\nagent: b\ntoken_file: t\ndevices: [{id: x, kind: input, pin: p}]\n"))
	f.Add([]byte("{}"))
	f.Add([]byte("- 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data, "")
		if err != nil {
			return
		}
		// Whatever was accepted must be safe to run: TLS, valid ids, a
		// token source, devices each on their own pin.
		if !strings.HasPrefix(c.Broker, "mqtts://") && !strings.HasPrefix(c.Broker, "wss://") && !strings.HasPrefix(c.Broker, "ssl://") && !strings.HasPrefix(c.Broker, "tls://") {
			t.Fatalf("accepted broker %q", c.Broker)
		}
		if c.CAFile == "" || len(c.Devices) == 0 {
			t.Fatalf("accepted a config without CA or devices: %+v", c)
		}
		if c.TokenFile == "" && !strings.HasPrefix(c.TokenURL, "https://") {
			t.Fatalf("accepted token_url %q", c.TokenURL)
		}
		pins := map[string]bool{}
		for _, d := range c.Devices {
			if pins[d.Pin] {
				t.Fatalf("two devices on pin %q", d.Pin)
			}
			pins[d.Pin] = true
			if d.Kind == Pulse && (d.Pulse <= 0 || d.Pulse > MaxPulse) {
				t.Fatalf("accepted pulse %v", d.Pulse)
			}
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig accepted what Validate refuses: %v", err)
		}
	})
}
