package agentcmd

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"periph.io/x/conn/v3/gpio"

	"homemq/agent/gpiosim"
)

// TestDriveSimRefusesUnknownPins: --sim-input drives only the config's
// inputs; any other pin, a bad level or a short line is refused with a
// message, and nothing is driven.
func TestDriveSimRefusesUnknownPins(t *testing.T) {
	tests := []struct {
		line, want string
		driven     bool
	}{
		{"GPIO22 low", "", true},
		{"GPIO99 low", "not an input pin of this agent", false},
		{"GPIO17 high", "inputs=\"GPIO22 (button)\"", false}, // an output
		{"GPIO22 sideways", "level must be high or low", false},
		{"GPIO22", "want 'PIN high'", false},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			bank := gpiosim.New()
			_ = bank.Get("GPIO22").In(gpio.PullUp, gpio.BothEdges)
			var logs bytes.Buffer
			driveSim(strings.NewReader(tt.line+"\n"), bank, map[string]string{"GPIO22": "button"}, slog.New(slog.NewTextHandler(&logs, nil)))
			if tt.want != "" && !strings.Contains(logs.String(), tt.want) {
				t.Errorf("log %q does not say %q", logs.String(), tt.want)
			}
			if driven := len(bank.Get("GPIO22").History()) > 0; driven != tt.driven {
				t.Errorf("GPIO22 driven = %v, want %v", driven, tt.driven)
			}
			if n := len(bank.Get("GPIO99").History()) + len(bank.Get("GPIO17").History()); n != 0 {
				t.Errorf("another pin was driven %d times", n)
			}
		})
	}
}
