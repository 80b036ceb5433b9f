package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"homemq/auth"
	"homemq/bench"
	"homemq/bench/compare"
	"homemq/bench/load"
)

// clusterCmd runs the cluster comparison in this process: a single homemq
// node and a cluster of --nodes nodes with embedded NATS, the cluster
// cases (compare.ClusterCases) on each in turn, publishers on the first
// node and subscribers on the last. It prints the table, or the results
// as JSON for `homemq-bench compare`.
func clusterCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodes := fs.Int("nodes", 3, "cluster nodes (2 or more)")
	rounds := fs.Int("rounds", 3, "rounds (medians and spreads over them)")
	d := fs.Duration("duration", 2*time.Second, "measured window per run")
	w := fs.Duration("warmup", 500*time.Millisecond, "load before measuring, per run")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "homemq-bench-cluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.DiscardHandler)
	raiseFileLimit()

	start := time.Now()
	single, err := bench.StartSingle(dir+"/single", quiet)
	if err != nil {
		return fmt.Errorf("single node: %w", err)
	}
	defer single.Close()
	cl, err := bench.StartCluster(dir+"/cluster", *nodes, quiet)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	defer cl.Close()
	fmt.Fprintf(stderr, "[cluster] a single node and %d clustered nodes up in %.1fs\n", *nodes, time.Since(start).Seconds())

	targets := map[string]load.Target{}
	for name, n := range map[string]*bench.Nodes{compare.SingleNode: single, compare.ClusterNode: cl} {
		m, err := load.NewMinter(n.Data, auth.Config{})
		if err != nil {
			return err
		}
		targets[name] = load.Target{Name: name, Addr: n.Addrs[0], SubAddr: n.Addrs[len(n.Addrs)-1], Minter: m}
	}
	res := &compare.Cluster{Nodes: *nodes, Rounds: *rounds, Cases: compare.ClusterCases(*d, *w)}
	for round := 1; round <= *rounds && ctx.Err() == nil; round++ {
		order := []string{compare.SingleNode, compare.ClusterNode}
		if round%2 == 0 {
			order[0], order[1] = order[1], order[0]
		}
		for _, cs := range res.Cases {
			for _, name := range order {
				spec := cs.Spec
				spec.GroupBase = round * 10 // fresh homes: no subscription of an earlier run is still draining
				r, err := load.Run(ctx, targets[name], spec)
				r.Round = round
				if err != nil {
					res.Errors = append(res.Errors, fmt.Sprintf("%s, %s, round %d: %v", cs.Name, name, round, err))
					fmt.Fprintf(stderr, "[cluster] %s, %s, round %d: error: %v\n", cs.Name, name, round, err)
					continue
				}
				res.Add(cs, name, r)
				fmt.Fprintf(stderr, "[cluster] round %d %-7s %s: %.0f msgs/s, p50 %.0fµs p99 %.0fµs, lost %d\n",
					round, name, cs.Name, r.Rate, r.P50, r.P99, r.Lost)
			}
		}
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	_, err = io.WriteString(stdout, res.Markdown())
	return err
}
