// Command homemq-agent is the Pi agent alone, the binary to put on a
// Raspberry Pi: the same agent as "homemq agent run" (package
// internal/agentcmd), without the broker, so it is a fraction of the size
// and holds none of the broker's dependencies.
//
// Usage:
//
//	homemq-agent run --config agent.yaml [--log-level L] [--check] [--sim-input]
//	homemq-agent version
//
// See docs/agent.md for the config and for running it under systemd.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"homemq/internal/agentcmd"
	"homemq/internal/buildinfo"
)

// version is set at link time (-ldflags "-X main.version=v1.2.3"); a
// build from a checkout says "devel".
var version = "devel"

const usage = `usage: homemq-agent <command>

commands:
  run       run the Pi agent: homemq-agent run ` + agentcmd.Flags + `
  version   print the version, commit and Go version of this binary

run 'homemq-agent run -h' for its flags; docs/agent.md has an example config.
The agents in the broker's registry are managed with the full binary:
homemq agent add|rotate|remove|list.`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a command and returns the exit code: 0, 1 when the
// command failed, 2 for a command line that names no known command.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return 0
	case "run":
		err = agentcmd.Run("homemq-agent run", args[1:], stdout, stderr)
	case "version":
		if len(args) > 1 {
			err = fmt.Errorf("version takes no arguments, got %q", args[1])
			break
		}
		fmt.Fprintln(stdout, buildinfo.Line("homemq-agent", version))
	case "add", "rotate", "remove", "list":
		fmt.Fprintf(stderr, "homemq-agent: %q manages the broker's registry; run it where the broker runs: homemq agent %s …\n", args[0], args[0])
		return 2
	default:
		fmt.Fprintf(stderr, "homemq-agent: unknown command %q\n%s\n", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0 // the flag set printed the usage the user asked for
	}
	if err != nil {
		fmt.Fprintf(stderr, "homemq-agent %s: %v\n", args[0], err)
		return 1
	}
	return 0
}
