package main

import (
	"bufio"
	"context"
	"errors"
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

func init() {
	register("agent", "run the Pi agent (agent run --config agent.yaml), or manage agents: agent add|rotate|remove|list", agentCmd)
}

const agentUsage = `usage:
  homemq agent run --config agent.yaml [--log-level L] [--check] [--sim-input]   run the Pi agent
  homemq agent add|rotate|remove|list …   manage agents in the broker's registry ('homemq agent add -h')`

// agentCmd runs the Pi agent (agent run); agent add|rotate|remove|list are
// the registry's commands (agentadmin.go).
func agentCmd(args []string, stdout, stderr io.Writer) error {
	if done, err := needsVerb(args, stdout, agentUsage); done {
		return err
	}
	switch args[0] {
	case "run":
		return agentRun(args[1:], stdout, stderr)
	case "add", "rotate", "remove", "list":
		return agentAdmin(args, stdout, stderr)
	}
	return fmt.Errorf("unknown agent command %q\n%s", args[0], agentUsage)
}

// agentRun runs the Pi agent until SIGINT or SIGTERM.
func agentRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("agent run", stderr)
	configFile := fs.String("config", "", "the agent's YAML config (see docs/agent.md)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	check := fs.Bool("check", false, "check the config and exit")
	simInput := fs.Bool("sim-input", false, "with gpio: sim, read lines 'PIN high|low' from stdin to drive simulated inputs")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: homemq agent run --config agent.yaml [--log-level L] [--check] [--sim-input]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; run the agent with: homemq agent run --config agent.yaml", fs.Arg(0))
	}
	if *configFile == "" {
		return errors.New("--config agent.yaml is required (see docs/agent.md for an example)")
	}
	cfg, err := agent.LoadConfig(*configFile)
	if err != nil {
		return err
	}
	log := newLogger(*logLevel, stderr)
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
