package main

import (
	"fmt"
	"io"
	"strings"

	"homemq/auth"
)

func init() {
	register("keys", "rotate the token-signing key: keys rotate (old keys verify until their tokens expired)", keysCmd)
}

func keysCmd(args []string, stdout, stderr io.Writer) error {
	const usage = "usage: homemq keys rotate " + registryFlags
	if done, err := needsVerb(args, stdout, usage); done {
		return err
	}
	if args[0] != "rotate" {
		return fmt.Errorf("unknown keys command %q\n%s", args[0], usage)
	}
	fs := newFlags("keys rotate", stderr)
	var cf commonFlags
	cf.add(fs, flagData, flagConfig, flagServer)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	t, err := cf.connect()
	if err != nil {
		return err
	}
	defer t.close()
	// One path, decided by the data folder's lock (registry.db) as for
	// every registry command and revoke: a running broker holds it and
	// rotates its own key set, which it saves; else the file is rotated
	// here while the lock is held, and a broker starting meanwhile waits
	// for the lock before it reads the keys (broker.New).
	keep := auth.RotationKeep(t.cfg.Tokens)
	var resp auth.RotateResponse
	switch {
	case t.online():
		err = t.post(auth.KeysRotatePath, &resp)
	case t.cfg.Cluster != nil:
		// the node adopts the cluster's key set when it starts, which
		// would silently undo a rotation of its file
		err = fmt.Errorf("the broker on %s is a cluster node (cluster: in the config) and is not running: rotate on a running node, which rotates the keys of the whole cluster", t.cfg.Data)
	default:
		var keys *auth.KeySet
		if keys, err = auth.LoadOrCreateKeys(t.cfg.Data); err == nil {
			resp, err = auth.RotateKeys(keys, keep)
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "new signing key %s signs every token from now on\n", resp.Kid)
	fmt.Fprintf(stdout, "keys kept for verification: %s (a retired key is dropped at the first rotation %v after it retired)\n", strings.Join(resp.Keys, ", "), keep)
	return nil
}
