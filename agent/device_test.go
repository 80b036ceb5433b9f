package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"

	"homemq/agent/gpiosim"
)

// changes records what a device reports.
type changes struct {
	mu     sync.Mutex
	states []State
	events []Event
}

func (c *changes) notify(_ *device, s State, ev *Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.states = append(c.states, s)
	if ev != nil {
		c.events = append(c.events, *ev)
	}
}

func (c *changes) snapshot() ([]State, []Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]State(nil), c.states...), append([]Event(nil), c.events...)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newDevice(t *testing.T, cfg DeviceConfig) (*device, *gpiosim.Pin, *changes) {
	t.Helper()
	if cfg.Pin == "" {
		cfg.Pin = "P1"
	}
	c := &Config{Devices: []DeviceConfig{cfg}}
	c.applyDefaults()
	ch := &changes{}
	pin := gpiosim.New().Get(cfg.Pin)
	d := &device{cfg: c.Devices[0], pin: pin, log: quiet, notify: ch.notify}
	if err := d.open(time.Now()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	return d, pin, ch
}

func TestSwitchActions(t *testing.T) {
	tests := []struct {
		name      string
		activeLow bool
		initial   string
		actions   []string
		wantState string
		wantLevel gpio.Level
		results   []string
	}{
		{"on", false, "off", []string{"on"}, "on", gpio.High, []string{"on"}},
		{"on then off", false, "off", []string{"on", "off"}, "off", gpio.Low, []string{"on", "off"}},
		{"toggle twice", false, "off", []string{"toggle", "toggle"}, "off", gpio.Low, []string{"on", "off"}},
		{"active low on", true, "off", []string{"on"}, "on", gpio.Low, []string{"on"}},
		{"active low starts high", true, "off", nil, "off", gpio.High, nil},
		{"initial on", false, "on", nil, "on", gpio.High, nil},
		{"initial on, active low, toggled", true, "on", []string{"toggle"}, "off", gpio.High, []string{"off"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, pin, _ := newDevice(t, DeviceConfig{ID: "lamp", Kind: Switch, ActiveLow: tt.activeLow, Initial: tt.initial})
			for i, a := range tt.actions {
				res, err := d.do(a, time.Now())
				if err != nil || res != tt.results[i] {
					t.Fatalf("do(%s) = %q, %v; want %q", a, res, err, tt.results[i])
				}
			}
			if s := d.state().State; s != tt.wantState {
				t.Fatalf("state %q, want %q", s, tt.wantState)
			}
			if pin.Level() != tt.wantLevel || !pin.IsOutput() {
				t.Fatalf("pin %v (output %v), want %v", pin.Level(), pin.IsOutput(), tt.wantLevel)
			}
		})
	}
}

// TestLockActions: doors and locks take the absolute lock and unlock, on a
// pulse (unlock pulses) or on a switch (unlock is on); other devices refuse them.
func TestLockActions(t *testing.T) {
	tests := []struct {
		name      string
		cfg       DeviceConfig
		actions   []string
		results   []string
		wantState string
	}{
		{"door unlock pulses", DeviceConfig{ID: "door", Kind: Pulse, Pulse: time.Hour}, []string{"unlock"}, []string{"unlocked"}, "on"},
		{"door lock ends the pulse", DeviceConfig{ID: "door", Kind: Pulse, Pulse: time.Hour}, []string{"unlock", "lock"}, []string{"unlocked", "locked"}, "off"},
		{"door lock when locked", DeviceConfig{ID: "door", Kind: Pulse, Pulse: time.Hour}, []string{"lock"}, []string{"locked"}, "off"},
		{"lock on a switch", DeviceConfig{ID: "bolt", Kind: Switch, Use: UseLock}, []string{"unlock", "unlock"}, []string{"unlocked", "unlocked"}, "on"},
		{"lock on a switch, locked", DeviceConfig{ID: "bolt", Kind: Switch, Use: UseLock}, []string{"unlock", "lock"}, []string{"unlocked", "locked"}, "off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _, _ := newDevice(t, tt.cfg)
			for i, a := range tt.actions {
				if res, err := d.do(a, time.Now()); err != nil || res != tt.results[i] {
					t.Fatalf("do(%s) = %q, %v; want %q", a, res, err, tt.results[i])
				}
			}
			if s := d.state(); s.State != tt.wantState || s.Use == "" {
				t.Fatalf("state %+v, want %q with a use", s, tt.wantState)
			}
		})
	}
	lamp, _, _ := newDevice(t, DeviceConfig{ID: "lamp", Kind: Switch, Use: UseLight})
	if _, err := lamp.do("unlock", time.Now()); err == nil || !strings.Contains(err.Error(), "does not know action \"unlock\"") {
		t.Fatalf("a light unlocked: %v", err)
	}
}

func TestSwitchReportsOnlyChanges(t *testing.T) {
	d, _, ch := newDevice(t, DeviceConfig{ID: "lamp", Kind: Switch})
	for _, a := range []string{"on", "on", "off", "off", "toggle"} {
		if _, err := d.do(a, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	states, _ := ch.snapshot()
	var got []string
	for _, s := range states {
		got = append(got, s.State)
	}
	if want := []string{"on", "off", "on"}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("reported states %v, want %v", got, want)
	}
}

func TestRefusedActions(t *testing.T) {
	tests := []struct {
		kind   Kind
		action string
	}{
		{Switch, "pulse"},
		{Switch, "dim"},
		{Pulse, "on"},
		{Pulse, "toggle"},
		{Input, "on"},
		{Input, "off"},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind)+" "+tt.action, func(t *testing.T) {
			cfg := DeviceConfig{ID: "d", Kind: tt.kind, Pulse: time.Second}
			if tt.kind != Pulse {
				cfg.Pulse = 0
			}
			d, pin, ch := newDevice(t, cfg)
			before := len(pin.History())
			_, err := d.do(tt.action, time.Now())
			var ae *actionError
			if !errors.As(err, &ae) || ae.Code != ErrUnsupported {
				t.Fatalf("do(%s) error %v, want %s", tt.action, err, ErrUnsupported)
			}
			if len(pin.History()) != before {
				t.Fatal("a refused action changed the pin")
			}
			if s, _ := ch.snapshot(); len(s) != 0 {
				t.Fatal("a refused action reported a state")
			}
		})
	}
}

// The pulse tests run in a synctest bubble: the pulse's timer runs on the
// bubble's clock, so a test checks the exact instant the pin goes off
// without waiting for it.

func TestPulseGoesOffByItself(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, pin, ch := newDevice(t, DeviceConfig{ID: "door", Kind: Pulse, Pulse: 60 * time.Millisecond})
		res, err := d.do("pulse", time.Now())
		if err != nil || res != "pulse" {
			t.Fatalf("pulse: %q, %v", res, err)
		}
		if pin.Level() != gpio.High || d.state().Until == nil {
			t.Fatalf("pin %v, state %+v right after the pulse command", pin.Level(), d.state())
		}
		time.Sleep(d.cfg.Pulse - time.Millisecond)
		synctest.Wait()
		if pin.Level() != gpio.High {
			t.Fatalf("the pulse ended before its %v", d.cfg.Pulse)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if pin.Level() != gpio.Low {
			t.Fatalf("the pulse did not end after its %v", d.cfg.Pulse)
		}
		h := pin.History()
		if len(h) != 3 || h[1].Level != gpio.High || h[2].Level != gpio.Low {
			t.Fatalf("pin history %v, want initial Low, High, Low", h)
		}
		if d := h[2].Time.Sub(h[1].Time); d != 60*time.Millisecond {
			t.Fatalf("the pulse lasted %v, want 60ms", d)
		}
		states, _ := ch.snapshot()
		if len(states) != 2 || states[0].State != "on" || states[1].State != "off" || states[1].Until != nil {
			t.Fatalf("states %+v, want on then off", states)
		}
	})
}

func TestPulseExtendsAndOffEndsIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, pin, _ := newDevice(t, DeviceConfig{ID: "door", Kind: Pulse, Pulse: 500 * time.Millisecond, ActiveLow: true})
		if pin.Level() != gpio.High {
			t.Fatal("an active-low strike must rest high")
		}
		if _, err := d.do("pulse", time.Now()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		second := time.Now()
		res, err := d.do("pulse", second)
		if err != nil || res != "extended" {
			t.Fatalf("second pulse: %q, %v; want extended", res, err)
		}
		// The first pulse's end passes; the extended one ends Pulse after
		// the second command, not sooner.
		time.Sleep(d.cfg.Pulse - time.Millisecond)
		synctest.Wait()
		if pin.Level() != gpio.Low {
			t.Fatalf("the extended pulse ended %v after the second command, want %v", time.Since(second), d.cfg.Pulse)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if pin.Level() != gpio.High {
			t.Fatalf("the extended pulse did not end %v after the second command", d.cfg.Pulse)
		}
		h := pin.History()
		if len(h) != 3 {
			t.Fatalf("history %v: an extension must not switch the pin off and on", h)
		}
		if end := h[2].Time; end.Sub(second) != d.cfg.Pulse {
			t.Fatalf("the extended pulse ended %v after the second command, want %v", end.Sub(second), d.cfg.Pulse)
		}
		// off ends a pulse at once, and its timer does nothing later.
		if _, err := d.do("pulse", time.Now()); err != nil {
			t.Fatal(err)
		}
		if res, err := d.do("off", time.Now()); err != nil || res != "off" || pin.Level() != gpio.High {
			t.Fatalf("off: %q %v, pin %v", res, err, pin.Level())
		}
		n := len(pin.History())
		time.Sleep(2 * d.cfg.Pulse)
		synctest.Wait()
		if len(pin.History()) != n {
			t.Fatal("the cancelled pulse's timer drove the pin")
		}
	})
}

func TestCloseLeavesSafeLevels(t *testing.T) {
	door, doorPin, _ := newDevice(t, DeviceConfig{ID: "door", Kind: Pulse, Pulse: time.Hour})
	lamp, lampPin, _ := newDevice(t, DeviceConfig{ID: "lamp", Kind: Switch, Initial: "off"})
	heat, heatPin, _ := newDevice(t, DeviceConfig{ID: "heat", Kind: Switch, Initial: "on", ActiveLow: true})
	_, _ = door.do("pulse", time.Now())
	_, _ = lamp.do("on", time.Now())
	_, _ = heat.do("off", time.Now())
	for _, d := range []*device{door, lamp, heat} {
		d.close()
	}
	if doorPin.Level() != gpio.Low || lampPin.Level() != gpio.Low || heatPin.Level() != gpio.Low {
		t.Fatalf("after close: door %v lamp %v heat %v; want Low, Low, Low (active-low heat back on)", doorPin.Level(), lampPin.Level(), heatPin.Level())
	}
	if _, err := lamp.do("on", time.Now()); err == nil {
		t.Fatal("a closed device took a command")
	}
}

// The input tests run in a synctest bubble: the watcher's edge and
// debounce timers run on the bubble's clock.

func TestInputDebounce(t *testing.T) {
	tests := []struct {
		name       string
		activeLow  bool
		drive      []gpio.Level // at once, within the debounce
		wantEvents []string
	}{
		{"clean press", false, []gpio.Level{gpio.High}, []string{"on"}},
		{"bouncing press", false, []gpio.Level{gpio.High, gpio.Low, gpio.High, gpio.Low, gpio.High}, []string{"on"}},
		{"glitch back to rest", false, []gpio.Level{gpio.High, gpio.Low}, nil},
		{"active low press", true, []gpio.Level{gpio.Low}, []string{"on"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d, pin, ch := newDevice(t, DeviceConfig{ID: "btn", Kind: Input, ActiveLow: tt.activeLow, Debounce: 100 * time.Millisecond})
				if pin.IsOutput() {
					t.Fatal("an input pin was made an output")
				}
				if d.state().State != "off" {
					t.Fatalf("a resting input reads %q", d.state().State)
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				d.watch(ctx)
				for _, l := range tt.drive {
					if err := pin.Drive(l); err != nil {
						t.Fatal(err)
					}
				}
				// Nothing is reported while the pin may still bounce, the
				// change as soon as it has been still for Debounce.
				time.Sleep(d.cfg.Debounce - time.Millisecond)
				synctest.Wait()
				if _, events := ch.snapshot(); len(events) != 0 {
					t.Fatalf("events %+v before the pin was still for %v", events, d.cfg.Debounce)
				}
				time.Sleep(time.Millisecond)
				synctest.Wait()
				_, events := ch.snapshot()
				if len(events) != len(tt.wantEvents) {
					t.Fatalf("events %+v, want %v", events, tt.wantEvents)
				}
				for i, e := range events {
					if e.State != tt.wantEvents[i] {
						t.Fatalf("event %d = %q, want %q", i, e.State, tt.wantEvents[i])
					}
				}
			})
		})
	}
}

func TestInputCloseStopsWatcher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, pin, ch := newDevice(t, DeviceConfig{ID: "btn", Kind: Input, Debounce: time.Millisecond})
		d.watch(context.Background())
		done := make(chan struct{})
		go func() { d.close(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("close did not stop the watcher")
		}
		_ = pin.Drive(gpio.High)
		time.Sleep(10 * d.cfg.Debounce)
		synctest.Wait()
		if s, _ := ch.snapshot(); len(s) != 0 {
			t.Fatal("a closed input still reports")
		}
	})
}
