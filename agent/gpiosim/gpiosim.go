// Package gpiosim is a simulated GPIO backend for the homemq agent: pins
// that implement periph.io's gpio.PinIO, whose output a test (or a laptop
// user) can read and whose input it can drive, with edges for WaitForEdge.
package gpiosim

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/pin"
)

// Bank is a set of simulated pins, made on first use by name. It is safe
// for concurrent use.
type Bank struct {
	mu       sync.Mutex
	pins     map[string]*Pin
	onChange func(name string, l gpio.Level)
}

// New returns an empty bank.
func New() *Bank { return &Bank{pins: map[string]*Pin{}} }

// OnChange calls f (from the goroutine that drove it) whenever an output
// pin's level changes, e.g. to log it on a laptop. Set it before use.
func (b *Bank) OnChange(f func(name string, l gpio.Level)) {
	b.mu.Lock()
	b.onChange = f
	b.mu.Unlock()
}

// Pin returns the pin called name, making it (an input at Low, no edge
// detection) if it does not exist yet. It never fails for a non-empty name;
// the error is for the agent's backend interface.
func (b *Bank) Pin(name string) (gpio.PinIO, error) {
	if name == "" {
		return nil, errors.New("gpiosim: a pin needs a name")
	}
	return b.Get(name), nil
}

// Get returns the simulated pin called name, making it if needed.
func (b *Bank) Get(name string) *Pin {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.pins[name]
	if !ok {
		p = &Pin{name: name, num: len(b.pins), bank: b, edges: make(chan struct{}, 1), halt: make(chan struct{})}
		b.pins[name] = p
	}
	return p
}

// Names lists the pins made so far, sorted.
func (b *Bank) Names() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	names := make([]string, 0, len(b.pins))
	for n := range b.pins {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (b *Bank) changed(name string, l gpio.Level) {
	b.mu.Lock()
	f := b.onChange
	b.mu.Unlock()
	if f != nil {
		f(name, l)
	}
}

// Change is one level change of a pin, as driven by the agent (Out) or by
// the test (Drive).
type Change struct {
	Level gpio.Level
	Time  time.Time
}

// Pin is one simulated pin. As an output it remembers the level the agent
// set and every change; as an input it reads the level the test drives and
// reports edges to WaitForEdge.
type Pin struct {
	name string
	num  int
	bank *Bank

	mu      sync.Mutex
	output  bool
	driven  bool // the test has driven it: pulls no longer decide its level
	level   gpio.Level
	pull    gpio.Pull
	edge    gpio.Edge
	history []Change
	edges   chan struct{} // capacity 1: edges collapse, as periph allows
	halt    chan struct{} // closed by Halt to wake WaitForEdge; then replaced
}

// String implements conn.Resource.
func (p *Pin) String() string { return fmt.Sprintf("sim:%s", p.name) }

// Name implements pin.Pin.
func (p *Pin) Name() string { return p.name }

// Number implements pin.Pin.
func (p *Pin) Number() int { return p.num }

// Function implements pin.Pin.
func (p *Pin) Function() string { return string(p.Func()) }

// Func implements pin.PinFunc.
func (p *Pin) Func() pin.Func {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.output {
		return gpio.OUT
	}
	return gpio.IN
}

// SupportedFuncs implements pin.PinFunc.
func (p *Pin) SupportedFuncs() []pin.Func { return []pin.Func{gpio.IN, gpio.OUT} }

// SetFunc implements pin.PinFunc.
func (p *Pin) SetFunc(f pin.Func) error {
	switch f {
	case gpio.IN:
		return p.In(gpio.PullNoChange, gpio.NoEdge)
	case gpio.OUT:
		return p.Out(p.Read())
	}
	return fmt.Errorf("gpiosim: %s: function %q is not supported", p.name, f)
}

// Halt wakes a WaitForEdge in progress (it returns false), as periph's
// drivers do when a pin is halted.
func (p *Pin) Halt() error {
	p.mu.Lock()
	close(p.halt)
	p.halt = make(chan struct{})
	p.mu.Unlock()
	return nil
}

// In implements gpio.PinIn: the pin becomes an input with that pull and
// edge detection; pending edges are dropped. Until the test drives it, a
// pull-up makes the input read High and a pull-down Low.
func (p *Pin) In(pull gpio.Pull, edge gpio.Edge) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.output = false
	if !p.driven {
		if pull == gpio.PullUp {
			p.level = gpio.High
		} else if pull == gpio.PullDown {
			p.level = gpio.Low
		}
	}
	if pull != gpio.PullNoChange {
		p.pull = pull
	}
	p.edge = edge
	select {
	case <-p.edges:
	default:
	}
	return nil
}

// Read implements gpio.PinIn: the level driven by Out or by Drive.
func (p *Pin) Read() gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.level
}

// WaitForEdge implements gpio.PinIn: it returns true at once if an edge
// happened since the last call, else waits up to timeout (forever if
// negative) for one. Halt makes it return false.
func (p *Pin) WaitForEdge(timeout time.Duration) bool {
	p.mu.Lock()
	halt := p.halt
	p.mu.Unlock()
	var after <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		after = t.C
	}
	select {
	case <-p.edges:
		return true
	case <-halt:
		return false
	case <-after:
		return false
	}
}

// Pull implements gpio.PinIn.
func (p *Pin) Pull() gpio.Pull {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pull
}

// DefaultPull implements gpio.PinIn: simulated pins float.
func (p *Pin) DefaultPull() gpio.Pull { return gpio.Float }

// Out implements gpio.PinOut: the pin becomes an output at l.
func (p *Pin) Out(l gpio.Level) error {
	p.mu.Lock()
	p.output = true
	changed := p.level != l || len(p.history) == 0
	if changed {
		p.level = l
		p.history = append(p.history, Change{Level: l, Time: time.Now()})
	}
	p.mu.Unlock()
	if changed {
		p.bank.changed(p.name, l)
	}
	return nil
}

// PWM implements gpio.PinOut; simulated pins have no PWM.
func (p *Pin) PWM(gpio.Duty, physic.Frequency) error {
	return fmt.Errorf("gpiosim: %s: PWM is not simulated", p.name)
}

// Drive sets the level of an input pin from outside, as a button or sensor
// would, and reports an edge to WaitForEdge if the level changed in a
// direction the pin's edge detection watches. Driving an output is an error.
func (p *Pin) Drive(l gpio.Level) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.output {
		return fmt.Errorf("gpiosim: %s is an output; only inputs can be driven", p.name)
	}
	p.driven = true
	if p.level == l {
		return nil
	}
	p.level = l
	p.history = append(p.history, Change{Level: l, Time: time.Now()})
	if p.edge == gpio.BothEdges || (p.edge == gpio.RisingEdge && l == gpio.High) || (p.edge == gpio.FallingEdge && l == gpio.Low) {
		select {
		case p.edges <- struct{}{}:
		default:
		}
	}
	return nil
}

// Level returns the pin's current level (what Read returns).
func (p *Pin) Level() gpio.Level { return p.Read() }

// IsOutput reports whether the pin is configured as an output.
func (p *Pin) IsOutput() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output
}

// History returns every level change so far, oldest first. The first Out
// of a pin is recorded even when it keeps the level.
func (p *Pin) History() []Change {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Change(nil), p.history...)
}
