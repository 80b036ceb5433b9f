package main

import (
	"fmt"
	"io"

	"homemq/internal/agentcmd"
)

func init() {
	register("agent", "run the Pi agent (agent run --config agent.yaml), or manage agents: agent add|rotate|remove|list", agentCmd)
}

const agentUsage = `usage:
  homemq agent run ` + agentcmd.Flags + `   run the Pi agent
  homemq agent add|rotate|remove|list …   manage agents in the broker's registry ('homemq agent add -h')`

// agentCmd runs the Pi agent (agent run, shared with the homemq-agent
// binary in internal/agentcmd); agent add|rotate|remove|list are the
// registry's commands (agentadmin.go).
func agentCmd(args []string, stdout, stderr io.Writer) error {
	if done, err := needsVerb(args, stdout, agentUsage); done {
		return err
	}
	switch args[0] {
	case "run":
		return agentcmd.Run("homemq agent run", args[1:], stdout, stderr)
	case "add", "rotate", "remove", "list":
		return agentAdmin(args, stdout, stderr)
	}
	return fmt.Errorf("unknown agent command %q\n%s", args[0], agentUsage)
}
