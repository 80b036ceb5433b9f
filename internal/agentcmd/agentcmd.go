// Package agentcmd is the Pi agent's run command, shared by the two
// binaries that run the agent: "homemq agent run" in the full homemq
// binary and "homemq-agent run" in the lean one built for the Pi. It
// imports only the agent's side of homemq, so the lean binary stays free
// of the broker's dependencies.
package agentcmd

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"periph.io/x/conn/v3/gpio"

	"homemq/agent"
	"homemq/agent/gpiosim"
)

// Flags is the synopsis of Run's flags, for a binary's usage text.
const Flags = "--config agent.yaml [--log-level L] [--check] [--sim-input]"

// Run runs the Pi agent with the command-line arguments args until SIGINT
// or SIGTERM. prog is the command as the user typed it ("homemq agent
// run", "homemq-agent run"), for the usage and the messages. With -h it
// prints the usage and returns flag.ErrHelp.
func Run(prog string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "the agent's YAML config (see docs/agent.md)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	check := fs.Bool("check", false, "check the config and exit")
	simInput := fs.Bool("sim-input", false, "with gpio: sim, read lines 'PIN high|low' from stdin to drive simulated inputs")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s %s\n", prog, Flags)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; run the agent with: %s --config agent.yaml", fs.Arg(0), prog)
	}
	if *configFile == "" {
		return errors.New("--config agent.yaml is required (see docs/agent.md for an example)")
	}
	cfg, err := agent.LoadConfig(*configFile)
	if err != nil {
		return err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(*logLevel))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	a, err := agent.New(cfg, agent.Options{Logger: log})
	if err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(stdout, "%s: ok (agent %s in home %s, %d devices, gpio %s)\n", *configFile, cfg.Agent, cfg.Home, len(cfg.Devices), a.Config().GPIO)
		return nil
	}
	if bank, ok := a.Pins().(*gpiosim.Bank); ok {
		bank.OnChange(func(name string, l gpio.Level) { log.Info("sim pin", "pin", name, "level", l.String()) })
		if *simInput {
			go driveSim(os.Stdin, bank, simInputs(cfg), log)
		}
	} else if *simInput {
		return errors.New("--sim-input needs gpio: sim in the config")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return a.Run(ctx)
}

// simInputs maps the pins of the config's inputs to their devices.
func simInputs(cfg agent.Config) map[string]string {
	m := map[string]string{}
	for _, d := range cfg.Devices {
		if d.Kind == agent.Input {
			m[d.Pin] = d.ID
		}
	}
	return m
}

// driveSim reads "PIN high|low|1|0" lines and drives simulated inputs. A
// pin that is not one of inputs (pin → device) is refused with the list of
// those that are: a typo must not drive a pin nobody watches.
func driveSim(r io.Reader, bank *gpiosim.Bank, inputs map[string]string, log *slog.Logger) {
	known := make([]string, 0, len(inputs))
	for pin, dev := range inputs {
		known = append(known, pin+" ("+dev+")")
	}
	slices.Sort(known)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			log.Warn("sim input: want 'PIN high' or 'PIN low'", "line", sc.Text())
			continue
		}
		var l gpio.Level
		switch strings.ToLower(f[1]) {
		case "high", "1", "on":
			l = gpio.High
		case "low", "0", "off":
			l = gpio.Low
		default:
			log.Warn("sim input: level must be high or low", "line", sc.Text())
			continue
		}
		if _, ok := inputs[f[0]]; !ok {
			log.Warn("sim input: not an input pin of this agent; nothing driven", "pin", f[0], "inputs", strings.Join(known, ", "))
			continue
		}
		if err := bank.Get(f[0]).Drive(l); err != nil {
			log.Warn("sim input", "error", err)
		}
	}
}
