package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"homemq/registry"
)

func init() {
	register("home", "manage homes in the registry: home add|remove|list", homeCmd)
}

const homeUsage = `usage:
  homemq home add H       register a home
  homemq home remove H    delete an empty home
  homemq home list
` + eachAlsoTakes + " (before or after H)"

func homeCmd(args []string, stdout, stderr io.Writer) error {
	if done, err := needsVerb(args, stdout, homeUsage); done {
		return err
	}
	verb := args[0]
	ops := map[string]string{"add": registry.OpHomeAdd, "remove": registry.OpHomeRemove, "list": registry.OpHomeList}
	op, ok := ops[verb]
	if !ok {
		return fmt.Errorf("unknown home command %q\n%s", verb, homeUsage)
	}
	fs := newFlags("home "+verb, stderr)
	var cf commonFlags
	cf.add(fs, flagData, flagConfig, flagServer)
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	var home string
	switch {
	case verb == "list" && len(pos) == 0:
	case verb != "list" && len(pos) == 1:
		home = pos[0]
	default:
		return errors.New(homeUsage)
	}
	t, err := cf.connect()
	if err != nil {
		return err
	}
	defer t.close()
	resp, err := t.do(registry.Request{Op: op, Home: home})
	if err != nil {
		return err
	}
	switch verb {
	case "add":
		fmt.Fprintf(stdout, "home %s added; next: homemq agent add --home %s --id AGENT, homemq member add --home %s --user USER --role admin\n", home, home, home)
	case "remove":
		fmt.Fprintf(stdout, "home %s removed\n", home)
	case "list":
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "HOME\tCREATED")
		for _, h := range resp.Homes {
			fmt.Fprintf(tw, "%s\t%s\n", h.ID, h.Created.Format(time.RFC3339))
		}
		return tw.Flush()
	}
	return nil
}

// parseInterspersed parses flags given before or after the positional
// arguments (home add H --data D) and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
