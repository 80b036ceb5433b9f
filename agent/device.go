package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// State is what the agent publishes, retained, on a device's state topic:
//
//	{"state":"on","kind":"switch","use":"light","since":"2025-01-02T03:04:05.678Z"}
//
// A pulse that is on also says until when. Use tells an app what to show
// (a door is locked when off, unlocked when on).
type State struct {
	State string     `json:"state"` // "on" or "off"
	Kind  Kind       `json:"kind"`
	Use   Use        `json:"use,omitempty"`
	Since time.Time  `json:"since"`           // when it last changed
	Until *time.Time `json:"until,omitempty"` // a pulse's planned end
}

// Event is what an input publishes on its event topic when its debounced
// level changes: {"state":"on","time":"…"}.
type Event struct {
	State string    `json:"state"`
	Time  time.Time `json:"time"`
}

// onOff names a logical level.
func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// device is one configured device on its pin. Pin operations never wait
// on the network: changes are reported through notify, which must not block.
type device struct {
	cfg    DeviceConfig
	pin    gpio.PinIO
	log    *slog.Logger
	notify func(d *device, s State, ev *Event) // after every change, in order

	mu     sync.Mutex
	on     bool
	since  time.Time
	until  time.Time   // pulse: when it goes off (zero when off)
	timer  *time.Timer // pulse: the pending off
	gen    uint64      // pulse: which timer is current
	closed bool
	done   chan struct{} // input: the watcher has stopped
}

// level is the pin level that means on (or off).
func (d *device) level(on bool) gpio.Level { return gpio.Level(on != d.cfg.ActiveLow) }

// logical reads a pin level as on or off.
func (d *device) logical(l gpio.Level) bool { return bool(l) != d.cfg.ActiveLow }

// open puts the pin in its safe initial state: outputs at their initial
// level (pulses off), inputs with their pull and edge detection, read once.
func (d *device) open(now time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.since = now
	if d.cfg.Kind == Input {
		pull := map[string]gpio.Pull{"up": gpio.PullUp, "down": gpio.PullDown, "none": gpio.Float}[d.cfg.Pull]
		if err := d.pin.In(pull, gpio.BothEdges); err != nil {
			return fmt.Errorf("device %s: pin %s as input: %w", d.cfg.ID, d.cfg.Pin, err)
		}
		d.on = d.logical(d.pin.Read())
		return nil
	}
	d.on = d.cfg.Initial == "on"
	if err := d.pin.Out(d.level(d.on)); err != nil {
		return fmt.Errorf("device %s: pin %s as output: %w", d.cfg.ID, d.cfg.Pin, err)
	}
	return nil
}

// state returns the device's current state.
func (d *device) state() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stateLocked()
}

func (d *device) stateLocked() State {
	s := State{State: onOff(d.on), Kind: d.cfg.Kind, Use: d.cfg.Use, Since: d.since.UTC()}
	if !d.until.IsZero() {
		u := d.until.UTC()
		s.Until = &u
	}
	return s
}

// Actions lists the command actions a kind of device takes. Doors and
// locks (see DeviceActions) also take lock and unlock.
func Actions(k Kind) []string {
	switch k {
	case Switch:
		return []string{"on", "off", "toggle"}
	case Pulse:
		return []string{"pulse", "off"}
	}
	return nil
}

// DeviceActions lists the command actions a configured device takes: those
// of its kind, and for a door or lock the absolute unlock (on, or a pulse)
// and lock (off).
func DeviceActions(c DeviceConfig) []string {
	a := Actions(c.Kind)
	if c.Kind != Input && (c.Use == UseDoor || c.Use == UseLock) {
		a = append(a, "unlock", "lock")
	}
	return a
}

// lockAction maps a door's or lock's absolute action to its kind's action.
func (d *device) lockAction(action string) string {
	if d.cfg.Use != UseDoor && d.cfg.Use != UseLock {
		return action
	}
	switch {
	case action == "lock":
		return "off"
	case action == "unlock" && d.cfg.Kind == Pulse:
		return "pulse"
	case action == "unlock":
		return "on"
	}
	return action
}

// actionError is a refused or failed action: a stable code for the ack.
type actionError struct {
	Code   string // unsupported_action, closed, gpio_error
	Detail string
}

func (e *actionError) Error() string { return e.Detail }

// do performs a command action and returns the result word for the ack:
// for lock and unlock, "locked" or "unlocked".
func (d *device) do(action string, now time.Time) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return "", &actionError{"closed", "the agent is shutting down"}
	}
	kindAction := d.lockAction(action)
	if kindAction == action {
		return d.doLocked(action, action, now)
	}
	result, err := d.doLocked(action, kindAction, now)
	if err == nil {
		result = "unlocked"
		if action == "lock" {
			result = "locked"
		}
	}
	return result, err
}

// doLocked performs action, a kind's own action asked for as asked.
func (d *device) doLocked(asked, action string, now time.Time) (string, error) {
	switch d.cfg.Kind {
	case Switch:
		switch action {
		case "on", "off":
			return action, d.setLocked(action == "on", now)
		case "toggle":
			return onOff(!d.on), d.setLocked(!d.on, now)
		}
	case Pulse:
		switch action {
		case "pulse":
			return d.pulseLocked(now)
		case "off":
			d.stopTimerLocked()
			return "off", d.setLocked(false, now)
		}
	case Input:
		return "", &actionError{"unsupported_action", fmt.Sprintf("device %s is an input; it takes no commands", d.cfg.ID)}
	}
	return "", &actionError{"unsupported_action", fmt.Sprintf("device %s (%s) does not know action %q; it knows %v", d.cfg.ID, d.cfg.Kind, asked, DeviceActions(d.cfg))}
}

// setLocked drives the pin and, if the logical state changed, reports it.
func (d *device) setLocked(on bool, now time.Time) error {
	if err := d.pin.Out(d.level(on)); err != nil {
		return &actionError{"gpio_error", fmt.Sprintf("pin %s: %v", d.cfg.Pin, err)}
	}
	if on == d.on {
		return nil
	}
	d.on = on
	d.since = now
	if !on {
		d.until = time.Time{}
	}
	d.notify(d, d.stateLocked(), nil)
	return nil
}

// pulseLocked turns the output on until now + Pulse. A pulse while one is
// running extends it: it then ends Pulse after this command, never sooner.
func (d *device) pulseLocked(now time.Time) (string, error) {
	result := "pulse"
	if d.on {
		result = "extended"
	}
	d.stopTimerLocked()
	if err := d.pin.Out(d.level(true)); err != nil {
		// Whatever half happened, make sure the strike is not left on.
		_ = d.pin.Out(d.level(false))
		return "", &actionError{"gpio_error", fmt.Sprintf("pin %s: %v", d.cfg.Pin, err)}
	}
	if !d.on {
		d.since = now
	}
	d.on = true
	d.until = now.Add(d.cfg.Pulse)
	d.gen++
	gen := d.gen
	d.timer = time.AfterFunc(d.cfg.Pulse, func() { d.pulseEnd(gen) })
	d.notify(d, d.stateLocked(), nil)
	return result, nil
}

func (d *device) stopTimerLocked() {
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

// pulseEnd switches a pulse off. A failing pin is retried: a door strike
// must not stay open because one write failed.
func (d *device) pulseEnd(gen uint64) {
	for attempt := 0; ; attempt++ {
		d.mu.Lock()
		if d.timer == nil || d.gen != gen || d.closed { // stopped, extended or closed meanwhile
			d.mu.Unlock()
			return
		}
		err := d.pin.Out(d.level(false))
		if err == nil {
			d.timer = nil
			d.on, d.since, d.until = false, time.Now(), time.Time{}
			d.notify(d, d.stateLocked(), nil)
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
		d.log.Error("pulse: cannot switch the pin off; retrying", "device", d.cfg.ID, "pin", d.cfg.Pin, "attempt", attempt+1, "error", err)
		time.Sleep(min(time.Duration(attempt+1)*100*time.Millisecond, 2*time.Second))
	}
}

// close stops the device and leaves outputs at their safe level (a
// switch's initial level, a pulse off); inputs stop being watched.
func (d *device) close() {
	d.mu.Lock()
	d.closed = true
	d.stopTimerLocked()
	done := d.done
	if d.cfg.Kind != Input {
		on := d.cfg.Initial == "on"
		if err := d.pin.Out(d.level(on)); err != nil {
			d.log.Error("shutdown: cannot set the safe level", "device", d.cfg.ID, "pin", d.cfg.Pin, "error", err)
		} else if on != d.on {
			d.on, d.since, d.until = on, time.Now(), time.Time{}
			d.notify(d, d.stateLocked(), nil)
		}
	}
	d.mu.Unlock()
	if done != nil {
		_ = d.pin.Halt() // wakes WaitForEdge
		<-done
	}
}

func (d *device) running(ctx context.Context) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.closed && ctx.Err() == nil
}

// watch follows an input until ctx ends: after an edge it waits until the
// pin has been still for Debounce, reads it, and reports a change of the
// logical level as state and event. A bounce that returns to the old level
// is no change.
func (d *device) watch(ctx context.Context) {
	d.mu.Lock()
	d.done = make(chan struct{})
	done := d.done
	d.mu.Unlock()
	go func() {
		defer close(done)
		for d.running(ctx) {
			if !d.pin.WaitForEdge(time.Second) {
				continue
			}
			for d.running(ctx) && d.pin.WaitForEdge(d.cfg.Debounce) {
			}
			if !d.running(ctx) {
				return
			}
			on := d.logical(d.pin.Read())
			d.mu.Lock()
			if d.closed {
				d.mu.Unlock()
				return
			}
			if on != d.on {
				now := time.Now()
				d.on, d.since = on, now
				d.notify(d, d.stateLocked(), &Event{State: onOff(on), Time: now.UTC()})
			}
			d.mu.Unlock()
		}
	}()
}
