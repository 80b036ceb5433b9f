package compare

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"homemq/bench/load"
)

// The two targets of the cluster comparison.
const (
	SingleNode  = "single"
	ClusterNode = "cluster"
)

// ClusterCases are the scenarios run on one node and on a cluster, with
// the payloads of the single-node cases of the same names: QoS 1 state
// as fast as it goes, and its latency at a fixed rate.
func ClusterCases(d, w time.Duration) []Case {
	var cases []Case
	for _, c := range Cases(d, w, 0) {
		if c.Name == "state, QoS 1, 64 B, 4 → 4" || strings.HasPrefix(c.Name, "state latency") {
			cases = append(cases, c)
		}
	}
	return cases
}

// Cluster is the cluster comparison of `homemq-bench cluster`: each case
// on a single homemq node and on a cluster of Nodes nodes (publishers on
// the first, subscribers on the last), taking turns within each round.
type Cluster struct {
	Nodes  int
	Rounds int
	Cases  []Case
	// Results are by case name, then target (SingleNode, ClusterNode).
	Results map[string]map[string][]load.Result
	Errors  []string
}

// Add records the result r of case c on target (round r.Round).
func (c *Cluster) Add(cs Case, target string, r load.Result) {
	if c.Results == nil {
		c.Results = map[string]map[string][]load.Result{}
	}
	if c.Results[cs.Name] == nil {
		c.Results[cs.Name] = map[string][]load.Result{}
	}
	c.Results[cs.Name][target] = append(c.Results[cs.Name][target], r)
}

// RunCluster runs bench (the homemq-bench program) `cluster` in a process
// of its own and reads its JSON.
func RunCluster(ctx context.Context, bench string, nodes, rounds int, d, w time.Duration, log io.Writer) *Cluster {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bench, "cluster", "--json", "--nodes", strconv.Itoa(nodes), "--rounds", strconv.Itoa(rounds),
		"--duration", d.String(), "--warmup", w.String())
	cmd.Stdout = &out
	cmd.Stderr = io.MultiWriter(&stderr, log)
	c := &Cluster{Nodes: nodes, Rounds: rounds}
	err := cmd.Run()
	if err == nil {
		err = json.Unmarshal(out.Bytes(), c)
	}
	if err != nil {
		c.Errors = append(c.Errors, fmt.Sprintf("homemq-bench cluster: %v %s", err, strings.TrimSpace(lastLine(stderr.String()))))
	}
	return c
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Markdown renders the cluster table: per case and metric, the
// cluster / single ratio taken within each round (median, least–greatest)
// and each target's median.
func (c *Cluster) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Cluster (`homemq-bench cluster`: %d homemq nodes with embedded NATS in one process, JetStream replicas %d, "+
		"publishers on node a and subscribers on node %c, next to a single homemq node in the same process with the same load; "+
		"the two take turns within each round; medians of %d rounds, the ratio taken within each round, least–greatest in brackets):\n\n",
		c.Nodes, min(3, c.Nodes), 'a'+rune(c.Nodes-1), c.Rounds)
	b.WriteString("| scenario | metric | cluster / single | cluster | single node |\n| --- | --- | ---: | ---: | ---: |\n")
	for _, cs := range c.Cases {
		res := c.Results[cs.Name]
		for _, row := range cs.Rows {
			metric := cs.Unit
			switch row.Metric {
			case LatencyP50:
				metric = "p50 µs"
			case LatencyP99:
				metric = "p99 µs"
			case LatencyP999:
				continue // too few samples in a short window to mean much
			}
			ratio := "–"
			if s, ok := summarise(perRound(res[ClusterNode], res[SingleNode], row.Metric, divide)); ok {
				ratio = ratioCell(s)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", cs.Name, metric, ratio,
				figure(medianOf(res[ClusterNode], row.Metric), row.Metric), figure(medianOf(res[SingleNode], row.Metric), row.Metric))
		}
	}
	for _, e := range c.Errors {
		fmt.Fprintf(&b, "\n- cluster run failed: %s\n", e)
	}
	return b.String()
}

// medianOf is the median of metric m over rs.
func medianOf(rs []load.Result, m Metric) float64 {
	var v []float64
	for _, r := range rs {
		if x := m.value(r); x > 0 {
			v = append(v, x)
		}
	}
	return median(v)
}
