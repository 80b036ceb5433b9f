package agent

import (
	"fmt"
	"sync"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/host/v3"

	"homemq/agent/gpiosim"
)

// Pins hands out GPIO pins by name. The agent's backends are Periph (real
// hardware) and gpiosim.Bank (simulated).
type Pins interface {
	Pin(name string) (gpio.PinIO, error)
}

// Periph is the real-hardware backend: periph.io's host drivers, pins by
// the names gpioreg knows (GPIO17, P1_11, …).
type Periph struct{}

var (
	periphOnce sync.Once
	periphErr  error
)

// Pin initialises periph's host drivers once and returns the named pin.
func (Periph) Pin(name string) (gpio.PinIO, error) {
	periphOnce.Do(func() { _, periphErr = host.Init() })
	if periphErr != nil {
		return nil, fmt.Errorf("gpio: periph host drivers failed to start: %w (is this a Raspberry Pi, and may this user use /dev/gpiomem? try gpio: sim on a laptop)", periphErr)
	}
	p := gpioreg.ByName(name)
	if p == nil {
		return nil, fmt.Errorf("gpio: no pin called %q on this board; use a name like GPIO17 (see 'gpioinfo' or periph's pin list)", name)
	}
	return p, nil
}

// backend returns the Pins for cfg.GPIO.
func backend(cfg *Config) Pins {
	if cfg.GPIO == GPIOSim {
		return gpiosim.New()
	}
	return Periph{}
}
