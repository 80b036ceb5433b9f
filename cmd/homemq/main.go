// Command homemq is the home message hub: an MQTT broker that checks a JWT
// at CONNECT and every packet after it, signed commands with a replay cache,
// a Pi agent, a SignalR bridge, and the tools to mint tokens and certificates.
//
// Usage:
//
//	homemq serve   [--config FILE] [--data DIR] [--mqtt ADDR] [--https ADDR] [--mqtt-plain ADDR]
//	homemq agent run --config agent.yaml | homemq agent add|rotate|remove|list …
//	homemq token mint [--data DIR] [--config FILE] --sub SUB --home HOME=ROLE … [--operator] [--ttl DUR] [--json]
//	homemq certs init --dir DIR | homemq certs issue --ca DIR --name NAME … --out PREFIX
//	homemq revoke  [--data DIR] [--config FILE] [--server HOST:PORT] (--jti ID | --sub SUB)
//	homemq send    [--data DIR] [--config FILE] | --token T --key K, --topic T --msg M
//	homemq version
//
// Every command answers -h and --help with its usage (exit status 0).
// --data and --config mean the same in every command that takes them, and
// so does --server except in send, where it is the MQTT address (flags.go);
// --data defaults to the config's data folder, else ./homemq-data.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one subcommand.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

func register(name, summary string, run func([]string, io.Writer, io.Writer) error) {
	commands[name] = command{summary: summary, run: run}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a subcommand and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if isHelp(args[0]) || args[0] == "help" {
		usage(stdout)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "homemq: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	if err := c.run(args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // the flag set printed the usage the user asked for
		}
		fmt.Fprintf(stderr, "homemq %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: homemq <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nrun 'homemq <command> -h' for its flags")
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool { return arg == "-h" || arg == "--help" || arg == "-help" }

// needsVerb handles the first argument of a command that takes a verb
// (home add, keys rotate): none is an error that shows usage, and -h or
// --help prints usage to stdout. It reports whether the command is done.
func needsVerb(args []string, stdout io.Writer, usage string) (bool, error) {
	switch {
	case len(args) == 0:
		return true, errors.New(usage)
	case isHelp(args[0]):
		fmt.Fprintln(stdout, usage)
		return true, nil
	}
	return false, nil
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("homemq "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return fmt.Sprint(*m) }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
