package agent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"homemq/agent/gpiosim"
)

func TestPeriphRefusesAnUnknownPin(t *testing.T) {
	_, err := Periph{}.Pin("NO_SUCH_PIN_42")
	if err == nil {
		t.Fatal("periph handed out a pin that does not exist")
	}
	if !strings.Contains(err.Error(), "NO_SUCH_PIN_42") && !strings.Contains(err.Error(), "periph host drivers") {
		t.Fatalf("error %q names neither the pin nor the driver problem", err)
	}
}

func TestBackendFollowsTheConfig(t *testing.T) {
	if _, ok := backend(&Config{GPIO: GPIOSim}).(*gpiosim.Bank); !ok {
		t.Fatal("gpio: sim is not the simulated bank")
	}
	if _, ok := backend(&Config{GPIO: GPIOPeriph}).(Periph); !ok {
		t.Fatal("gpio: periph is not periph")
	}
}

// brokenPins is the simulated backend with one pin that cannot be had.
type brokenPins struct {
	*gpiosim.Bank
	broken string
}

func (b brokenPins) Pin(name string) (gpio.PinIO, error) {
	if name == b.broken {
		return nil, errors.New("pin is busy")
	}
	return b.Bank.Pin(name)
}

func TestRunStopsWhenAPinCannotBeOpened(t *testing.T) {
	cfg := Config{Broker: "mqtts://hub:8883", CAFile: "system", Home: "h1", Agent: "pi1", TokenFile: "unused",
		Devices: []DeviceConfig{{ID: "lamp", Kind: Switch, Pin: "L", Initial: "on", ActiveLow: true}, {ID: "door", Kind: Pulse, Pin: "D", Pulse: time.Second}}}
	bank := gpiosim.New()
	a, err := New(cfg, Options{Pins: brokenPins{bank, "D"}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "door") || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("Run = %v, want an error naming the device and the cause", err)
	}
	if l := bank.Get("L").Level(); l != gpio.Low {
		t.Fatalf("the lamp opened before the failure is at %v, want its safe level (on, active low: Low)", l)
	}
}
