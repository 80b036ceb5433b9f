package main

import (
	"fmt"
	"io"

	"homemq/cluster"
)

func init() {
	register("cluster", "cluster tools: cluster secret (prints a new secret for cluster.secret_file)", clusterCmd)
}

func clusterCmd(args []string, stdout, _ io.Writer) error {
	const usage = "usage: homemq cluster secret > /etc/homemq/cluster.secret   (make it once, copy it to every node, mode 0600)"
	if done, err := needsVerb(args, stdout, usage); done {
		return err
	}
	switch args[0] {
	case "secret":
		if len(args) > 1 {
			return fmt.Errorf("cluster secret takes no arguments\n%s", usage)
		}
		_, err := io.WriteString(stdout, cluster.NewSecret().String())
		return err
	}
	return fmt.Errorf("unknown cluster command %q\n%s", args[0], usage)
}
