package agent

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"homemq/agent/gpiosim"
	"homemq/envelope"
	"homemq/topics"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		msg, action, err string
	}{
		{`{"action":"on"}`, "on", ""},
		{` { "action" : "toggle" } `, "toggle", ""},
		{`{"action":"pulse"}`, "pulse", ""},
		{`{"action":"set_level-2"}`, "set_level-2", ""},
		{`on`, "", "not a JSON object"},
		{`"on"`, "", "not a JSON object"},
		{`[]`, "", "not a JSON object"},
		{``, "", "not a JSON object"},
		{`{}`, "", `no "action"`},
		{`{"action":"on","action":"off"}`, "", "twice"},
		{`{"Action":"on"}`, "", `"Action" is not known`},
		{`{"action":"on","duration":60}`, "", `"duration" is not known`},
		{`{"action":1}`, "", "must be a string"},
		{`{"action":null}`, "", "must be a string"},
		{`{"action":{"x":1}}`, "", "must be a string"},
		{`{"action":""}`, "", "must be 1-32"},
		{`{"action":"ON"}`, "", "must be 1-32"},
		{`{"action":"on off"}`, "", "must be 1-32"},
		{`{"action":"` + strings.Repeat("a", 33) + `"}`, "", "must be 1-32"},
		{`{"action":"on"} {}`, "", "after its JSON object"},
		{`{"action":"on"`, "", "unterminated"},
		{`{"action":"on",}`, "", "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.msg, func(t *testing.T) {
			c, err := ParseCommand(tt.msg)
			if tt.err == "" {
				if err != nil || c.Action != tt.action {
					t.Fatalf("ParseCommand = %+v, %v; want action %q", c, err, tt.action)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.err)
			}
		})
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{`{"action":"on"}`, `{"action":"toggle"}`, `{}`, `{"action":"on","action":"off"}`, `{"action":1}`, `{"a":"b"}`, `on`, `{"action":"\u006fn"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		c, err := ParseCommand(msg)
		if err != nil {
			return
		}
		if !validAction(c.Action) {
			t.Fatalf("accepted action %q", c.Action)
		}
		// Whatever was accepted is a JSON object that encoding/json reads
		// the same way, with no other member.
		var m map[string]any
		if err := json.Unmarshal([]byte(msg), &m); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", msg, err)
		}
		if len(m) != 1 || m["action"] != c.Action {
			t.Fatalf("accepted %q as %q, but encoding/json reads %v", msg, c.Action, m)
		}
	})
}

// testCommander is a commander over a switch (lamp), a pulse (door) and an
// input (button) on simulated pins, with a settable clock.
type testCommander struct {
	*commander
	pins *gpiosim.Bank
	now  time.Time
	key  []byte
}

func newTestCommander(t *testing.T) *testCommander {
	t.Helper()
	tc := &testCommander{pins: gpiosim.New(), now: time.Now(), key: []byte("0123456789abcdef0123456789abcdef")}
	devs := map[string]*device{}
	for _, cfg := range []DeviceConfig{
		{ID: "lamp", Kind: Switch, Pin: "L", Initial: "off"},
		{ID: "door", Kind: Pulse, Pin: "D", Initial: "off", Pulse: time.Hour},
		{ID: "button", Kind: Input, Pin: "B", Initial: "off", Pull: "down", Debounce: time.Millisecond},
	} {
		d := &device{cfg: cfg, pin: tc.pins.Get(cfg.Pin), log: quiet, notify: func(*device, State, *Event) {}}
		if err := d.open(time.Now()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.close)
		devs[cfg.ID] = d
	}
	tc.commander = newCommander("h1", "pi1", devs, func() time.Time { return tc.now }, quiet)
	return tc
}

func (tc *testCommander) seal(t *testing.T, device, msg string, iat time.Time, ttl time.Duration) []byte {
	t.Helper()
	p, err := envelope.Seal(tc.key, topics.CommandTopic("h1", "pi1", device), "jti-1", msg, iat, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func nonceOf(p []byte) string {
	var e envelope.Envelope
	_ = json.Unmarshal(p, &e)
	return e.Nonce
}

func TestHandle(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name, device, msg string
		iat               time.Time
		ttl               time.Duration
		payload           []byte // instead of a sealed msg
		wantOK            bool
		wantErr, result   string
		lampHigh          bool
	}{
		{name: "switch on", device: "lamp", msg: `{"action":"on"}`, iat: now, ttl: 30 * time.Second, wantOK: true, result: "on", lampHigh: true},
		{name: "expired", device: "lamp", msg: `{"action":"on"}`, iat: now.Add(-time.Minute), ttl: 30 * time.Second, wantErr: ErrExpired},
		{name: "expires this second", device: "lamp", msg: `{"action":"on"}`, iat: now.Add(-30 * time.Second), ttl: 30 * time.Second, wantErr: ErrExpired},
		{name: "beyond any lifetime", device: "lamp", msg: `{"action":"on"}`, iat: now.Add(2 * time.Hour), ttl: 30 * time.Second, wantErr: ErrLifetime},
		{name: "unknown device", device: "ghost", msg: `{"action":"on"}`, iat: now, ttl: 30 * time.Second, wantErr: ErrUnknownDev},
		{name: "bad msg", device: "lamp", msg: `on`, iat: now, ttl: 30 * time.Second, wantErr: ErrBadCommand},
		{name: "unknown action", device: "lamp", msg: `{"action":"pulse"}`, iat: now, ttl: 30 * time.Second, wantErr: ErrUnsupported},
		{name: "input takes none", device: "button", msg: `{"action":"on"}`, iat: now, ttl: 30 * time.Second, wantErr: ErrUnsupported},
		{name: "not an envelope", device: "lamp", payload: []byte(`{"action":"on"}`), wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestCommander(t)
			tc.now = now
			p := tt.payload
			if p == nil {
				p = tc.seal(t, tt.device, tt.msg, tt.iat, tt.ttl)
			}
			topic, ack, ok := tc.handle(topics.CommandTopic("h1", "pi1", tt.device), p)
			if !ok || topic != topics.AckTopic("h1", "pi1", tt.device) {
				t.Fatalf("no ack (ok %v) or ack on %q", ok, topic)
			}
			if ack.Nonce != nonceOf(p) {
				t.Fatalf("ack nonce %q, want the command's %q", ack.Nonce, nonceOf(p))
			}
			if ack.OK != tt.wantOK || ack.Error != tt.wantErr || ack.Result != tt.result {
				t.Fatalf("ack %+v, want ok %v error %q result %q", ack, tt.wantOK, tt.wantErr, tt.result)
			}
			if !ack.OK && ack.Detail == "" {
				t.Fatal("a refusal without a detail")
			}
			if got := tc.pins.Get("L").Level() == gpio.High; got != tt.lampHigh {
				t.Fatalf("lamp pin high = %v, want %v", got, tt.lampHigh)
			}
		})
	}
}

func TestHandleDuplicatesActOnce(t *testing.T) {
	tc := newTestCommander(t)
	p := tc.seal(t, "lamp", `{"action":"toggle"}`, tc.now, 30*time.Second)
	topic := topics.CommandTopic("h1", "pi1", "lamp")
	if _, ack, ok := tc.handle(topic, p); !ok || !ack.OK || ack.State != "on" {
		t.Fatalf("first delivery: %+v %v", ack, ok)
	}
	if _, ack, ok := tc.handle(topic, p); ok {
		t.Fatalf("a redelivery was answered again: %+v", ack)
	}
	if tc.pins.Get("L").Level() != gpio.High {
		t.Fatal("the redelivered toggle acted again")
	}
	// A redelivery of an expired command within the cache's grace is not
	// answered a second time either.
	q := tc.seal(t, "lamp", `{"action":"on"}`, tc.now.Add(-time.Minute), 30*time.Second)
	if _, ack, ok := tc.handle(topic, q); !ok || ack.Error != ErrExpired {
		t.Fatalf("expired: %+v", ack)
	}
	if _, _, ok := tc.handle(topic, q); ok {
		t.Fatal("the expired command's redelivery was answered again")
	}
}

func TestHandleIgnoresOtherTopics(t *testing.T) {
	tc := newTestCommander(t)
	p := tc.seal(t, "lamp", `{"action":"on"}`, tc.now, 30*time.Second)
	for _, topic := range []string{
		topics.CommandTopic("h2", "pi1", "lamp"),
		topics.CommandTopic("h1", "pi2", "lamp"),
		topics.StateTopic("h1", "pi1", "lamp"),
		"homes/h1/agents/pi1/devices/lamp",
		"elsewhere",
	} {
		if _, ack, ok := tc.handle(topic, p); ok {
			t.Errorf("%s: answered %+v", topic, ack)
		}
	}
	if tc.pins.Get("L").Level() != gpio.Low {
		t.Fatal("a command on a foreign topic drove the pin")
	}
}

func TestLenientNonce(t *testing.T) {
	tests := map[string]string{
		`{"nonce":"abc","v":9}`: "abc",
		`garbage`:               "",
		`{"nonce":1}`:           "",
		`{"nonce":"` + strings.Repeat("x", 65) + `"}`: "",
	}
	for in, want := range tests {
		if got := lenientNonce([]byte(in)); got != want {
			t.Errorf("lenientNonce(%q) = %q, want %q", in, got, want)
		}
	}
}

// skewedSource hands out tokens from a broker whose clock runs skew ahead
// of the agent's.
type skewedSource struct{ skew time.Duration }

func (s skewedSource) Token(context.Context) (Token, error) {
	return Token{Access: "t", Expiry: time.Now().Add(time.Hour), Skew: s.skew}, nil
}

// TestExpiryByTheBrokersClock: an agent whose clock is an hour behind (a Pi
// booted without network time) judges expiry by the broker's clock, learnt
// at the token exchange, and so refuses a command that expired 30 s ago by
// it; an offset within the tolerance is ignored, and with none known the
// agent's own clock rules.
func TestExpiryByTheBrokersClock(t *testing.T) {
	tests := []struct {
		name     string
		reported time.Duration // the skew the token exchange measured
		want     time.Duration // what the agent applies
		wantErr  string
	}{
		{"an hour behind", time.Hour, time.Hour, ErrExpired},
		{"unknown offset", 0, 0, ""},
		{"within tolerance", time.Second, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Broker: "mqtts://hub:8883", CAFile: "system", Home: "h1", Agent: "pi1", TokenFile: "unused",
				Devices: []DeviceConfig{{ID: "lamp", Kind: Switch, Pin: "L"}}}
			bank := gpiosim.New()
			a, err := New(cfg, Options{Pins: bank, Tokens: skewedSource{tt.reported}, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range a.devices {
				d.pin = bank.Get(d.cfg.Pin)
				if err := d.open(time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := a.tokens.get(context.Background()); err != nil {
				t.Fatal(err)
			}
			if a.tokens.clockSkew() != tt.want {
				t.Fatalf("applied skew %v, want %v", a.tokens.clockSkew(), tt.want)
			}
			// Sealed on a clock an hour ahead of the agent's, 60 s ago with a
			// 30 s lifetime: expired there, still good by the agent's clock.
			key := []byte("0123456789abcdef0123456789abcdef")
			p, err := envelope.Seal(key, topics.CommandTopic("h1", "pi1", "lamp"), "jti", `{"action":"on"}`, time.Now().Add(time.Hour-60*time.Second), 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_, ack, _ := a.cmd.handle(topics.CommandTopic("h1", "pi1", "lamp"), p)
			if ack.Error != tt.wantErr {
				t.Fatalf("ack %+v, want error %q", ack, tt.wantErr)
			}
			if high := bank.Get("L").Level() == gpio.High; high != (tt.wantErr == "") {
				t.Fatalf("lamp high = %v with ack %+v", high, ack)
			}
		})
	}
}

// TestHandlePlainCommandsToDoors: a broker-sealed plain command (kid
// plain:{integration}) may drive a switch but not a door; with the door
// grant (kid plain-door:{integration}) it may; a signed envelope may drive
// the door either way.
func TestHandlePlainCommandsToDoors(t *testing.T) {
	tests := []struct {
		name, device, kid, msg string
		wantErr                string
		doorMoves              bool
	}{
		{"plain to a switch", "lamp", envelope.PlainKid("ha", false), `{"action":"on"}`, "", false},
		{"plain to a door", "door", envelope.PlainKid("ha", false), `{"action":"pulse"}`, ErrDoorNotAllowed, false},
		{"plain to a granted door", "door", envelope.PlainKid("ha", true), `{"action":"pulse"}`, "", true},
		{"signed to a door", "door", "jti-1", `{"action":"pulse"}`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestCommander(t)
			p, err := envelope.Seal(tc.key, topics.CommandTopic("h1", "pi1", tt.device), tt.kid, tt.msg, tc.now, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_, ack, ok := tc.handle(topics.CommandTopic("h1", "pi1", tt.device), p)
			if !ok || ack.Error != tt.wantErr || ack.OK != (tt.wantErr == "") {
				t.Fatalf("ack %+v (ok %v), want error %q", ack, ok, tt.wantErr)
			}
			if tt.wantErr != "" && !strings.Contains(ack.Detail, "allow-door") {
				t.Errorf("detail %q does not say how to allow it", ack.Detail)
			}
			if moved := tc.pins.Get("D").Level() == gpio.High; moved != tt.doorMoves {
				t.Fatalf("door pin high = %v, want %v", moved, tt.doorMoves)
			}
		})
	}
}
