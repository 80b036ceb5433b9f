package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"homemq/auth"
	"homemq/bench"
	"homemq/bench/load"
	"homemq/bench/scale"
)

// scaleNodeCmd is one node of clusterScaleCmd, in a process of its own
// (bench.ServeNode): it is not meant to be run by hand.
func scaleNodeCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scale-node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "data folder")
	name := fs.String("name", "", "cluster node name (none: a single node)")
	route := fs.String("route", "", "NATS route listen address")
	peers := fs.String("peers", "", "NATS routes of the other nodes, comma separated")
	secret := fs.String("secret", "", "cluster secret file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raiseFileLimit()
	var ps []string
	if *peers != "" {
		ps = strings.Split(*peers, ",")
	}
	return bench.ServeNode(*data, *name, *route, ps, *secret, stdin, stdout)
}

// scaleResult is what clusterScaleCmd measured.
type scaleResult struct {
	Machine     string             `json:"machine"`
	Steps       []int              `json:"steps"`
	Single      []scale.IdleNode   `json:"single_idle"`
	Cluster     []scale.IdleNode   `json:"cluster_idle"`
	RoundTrips  []roundTrips       `json:"round_trips"`
	Readmission *scale.Readmission `json:"readmission,omitempty"`
	Errors      []string           `json:"errors,omitempty"`
	Load        [2]string          `json:"load"`
	Seconds     float64            `json:"seconds"`
}

type roundTrips struct {
	Round  int             `json:"round"`
	Target string          `json:"target"`
	Times  scale.Quantiles `json:"times"`
	Lost   int             `json:"lost"`
}

// clusterScaleCmd measures a cluster's scale with every node a process
// of its own (this binary's scale-node): idle agents spread over three
// nodes against one node, a command's round trip across nodes against
// one node, and how the agents of a killed node come back.
func clusterScaleCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster-scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stepsFlag := fs.String("steps", "100,200,400", "idle agents per node at each reading (the single node gets as many)")
	commands := fs.Int("commands", 200, "commands per round-trip run")
	rounds := fs.Int("rounds", 3, "round-trip rounds (single node and cluster alternate)")
	agents := fs.Int("agents", 300, "agents on the node that is killed")
	backoff := fs.Duration("backoff", time.Second, "the agents' first reconnect wait (the Pi agent's reconnect.min)")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	steps, err := parseSteps(*stepsFlag)
	if err != nil || len(steps) == 0 {
		return fmt.Errorf("--steps: %v", err)
	}
	slices.Sort(steps)
	steps = slices.Compact(steps)
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "homemq-bench-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	raiseFileLimit()
	start := time.Now()
	res := scaleResult{Steps: steps, Machine: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	res.Load[0] = loadAvg()
	logf := func(f string, a ...any) { fmt.Fprintf(stderr, "[cluster-scale] "+f+"\n", a...) }

	single, err := bench.StartNodeProcs(ctx, exe, filepath.Join(dir, "single"), 1)
	if err != nil {
		return fmt.Errorf("single node: %w", err)
	}
	defer single[0].Stop()
	cl, err := bench.StartNodeProcs(ctx, exe, filepath.Join(dir, "cluster"), 3)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	defer func() {
		for _, p := range cl {
			p.Stop()
		}
	}()
	logf("one node and three clustered nodes up in %.1fs", time.Since(start).Seconds())
	ts := map[string]load.Target{}
	for name, d := range map[string]string{"single": filepath.Join(dir, "single", "node-0"), "cluster": filepath.Join(dir, "cluster", "node-0")} {
		m, err := load.NewMinter(d, auth.Config{})
		if err != nil {
			return err
		}
		ts[name] = load.Target{Name: name, Minter: m}
	}

	// 1. idle agents: perNode on the single node, then perNode on each of three.
	for _, run := range []struct {
		name  string
		procs []*bench.NodeProc
		out   *[]scale.IdleNode
	}{{"single", single, &res.Single}, {"cluster", cl, &res.Cluster}} {
		t0 := time.Now()
		idle, err := scale.IdleSpread(ctx, ts[run.name], run.procs, steps, 2*time.Second)
		if err != nil {
			return fmt.Errorf("idle agents on the %s: %w", run.name, err)
		}
		*run.out = idle
		for _, n := range idle {
			logf("idle %s node %s: %d agents (%.0f/s), RSS %.1f KB/conn, heap %.1f KB/conn, stacks %.1f KB/conn (%.1fs)",
				run.name, n.Node, n.Conns, n.Rate, n.RSSPerConn/1024, n.HeapPerConn/1024, n.StackPerConn/1024, time.Since(t0).Seconds())
		}
	}

	// 2. command round trips: admin on a, agent on c; admin and agent on the single node.
	for round := 1; round <= *rounds && ctx.Err() == nil; round++ {
		order := []string{"single", "cluster"}
		if round%2 == 0 {
			order[0], order[1] = order[1], order[0]
		}
		for _, name := range order {
			admin, agent := single[0].Addr, single[0].Addr
			if name == "cluster" {
				admin, agent = cl[0].Addr, cl[2].Addr
			}
			rtts, lost, err := scale.RoundTrips(ctx, ts[name], fmt.Sprintf("rt%d", round), admin, agent, *commands)
			if err != nil {
				res.Errors = append(res.Errors, fmt.Sprintf("round trip, %s, round %d: %v", name, round, err))
				logf("round trip %s round %d: %v", name, round, err)
				continue
			}
			q := scale.Summarize(rtts)
			res.RoundTrips = append(res.RoundTrips, roundTrips{Round: round, Target: name, Times: q, Lost: lost})
			logf("round trip %s round %d: p50 %.2f ms p99 %.2f ms max %.2f ms, lost %d", name, round, q.P50, q.P99, q.Max, lost)
		}
	}

	// 3. re-admission: the agents of node b come back on c and a after kill -9.
	if *agents > 0 && ctx.Err() == nil {
		as, err := scale.MakeAgents(ts["cluster"], "k", *agents)
		if err != nil {
			return err
		}
		addrs := []string{cl[0].Addr, cl[1].Addr, cl[2].Addr}
		r, err := scale.Readmit(ctx, as, addrs, 1, cl[1].Kill, *backoff, time.Minute, 2*time.Minute)
		for _, a := range as {
			a.Close()
		}
		if err != nil {
			res.Errors = append(res.Errors, "re-admission: "+err.Error())
		}
		res.Readmission = &r
		logf("re-admission: %d of %d back, p50 %.0f ms p99 %.0f ms max %.0f ms, %d attempts, %v",
			r.Back, r.Agents, r.Times.P50, r.Times.P99, r.Times.Max, r.Attempts, r.Where)
	}
	res.Load[1] = loadAvg()
	res.Seconds = time.Since(start).Seconds()
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	_, err = io.WriteString(stdout, res.markdown(cl))
	return err
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// markdown prints the results as the tables of docs/performance.md.
func (r scaleResult) markdown(cl []*bench.NodeProc) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, load average %s before, %s after, %.0f s\n\n", r.Machine, r.Load[0], r.Load[1], r.Seconds)
	b.WriteString("| idle agents | node | connections | connects/s to reach it | RSS / conn | heap / conn | stacks / conn | RSS of the node |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, set := range []struct {
		name string
		ns   []scale.IdleNode
	}{{"one node", r.Single}, {"three nodes", r.Cluster}} {
		for _, n := range set.ns {
			fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %.1f KB | %.1f KB | %.1f KB | %.0f MiB |\n", set.name, n.Node, n.Conns, n.Rate,
				n.RSSPerConn/1024, n.HeapPerConn/1024, n.StackPerConn/1024, float64(n.RSS)/(1<<20))
		}
	}
	b.WriteString("\n| command round trip | round | p50 ms | p99 ms | max ms | lost |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, t := range r.RoundTrips {
		where := "one node"
		if t.Target == "cluster" {
			where = "admin on a, agent on c"
		}
		fmt.Fprintf(&b, "| %s | %d | %.2f | %.2f | %.2f | %d |\n", where, t.Round, t.Times.P50, t.Times.P99, t.Times.Max, t.Lost)
	}
	if ra := r.Readmission; ra != nil {
		fmt.Fprintf(&b, "\nre-admission after kill -9 of node b: %d of %d agents back (p50 %.0f ms, p99 %.0f ms, max %.0f ms), %d connection attempts; where: ",
			ra.Back, ra.Agents, ra.Times.P50, ra.Times.P99, ra.Times.Max, ra.Attempts)
		for _, p := range cl {
			fmt.Fprintf(&b, "%s %d ", p.Name, ra.Where[p.Addr])
		}
		b.WriteString("\n")
		for k, n := range ra.Failures {
			fmt.Fprintf(&b, "- %d failed attempts: %s\n", n, k)
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "\nerror: %s\n", e)
	}
	return b.String()
}
