package main

import (
	"errors"
	"fmt"
	"io"

	"homemq/broker"
)

func init() {
	register("drain", "move a cluster node's clients to the other nodes before stopping it: drain "+registryFlags, drainCmd)
}

// drainCmd asks the running node to drain (broker.Broker.Drain): its
// /healthz turns 503, it refuses new clients and disconnects the connected
// ones in batches over drain.period. The node keeps running, refusing
// clients, until it is stopped.
func drainCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("drain", stderr)
	var cf commonFlags
	cf.add(fs, flagData, flagConfig, flagServer)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("drain takes no arguments, got %q\nusage: homemq drain %s", fs.Args(), registryFlags)
	}
	t, err := cf.connect()
	if err != nil {
		return err
	}
	defer t.close()
	if !t.online() {
		return errors.New("no broker is running on " + t.cfg.Data + ": there is nothing to drain")
	}
	var st broker.DrainStatus
	if err := t.post(broker.DrainPath, &st); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "draining: /healthz answers 503, new clients are refused with 0x88 (server unavailable), and the %d connected clients are moved over %s\n", st.Clients, st.Period)
	fmt.Fprintln(stdout, "stop the node once they have left (e.g. systemctl stop homemq); until then it refuses every client")
	return nil
}
