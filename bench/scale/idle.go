package scale

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"homemq/bench"
	"homemq/bench/load"
)

// IdleNode is one node's memory with its idle agents connected.
type IdleNode struct {
	Node  string `json:"node"`
	Conns int    `json:"conns"`
	// Seconds is how long the node took to connect and subscribe the
	// agents added at this step (all nodes took theirs at once), Rate
	// those agents per second.
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"rate"`
	// RSS is the node process's resident memory with the agents connected;
	// the per-connection figures are growths since before the first,
	// divided by Conns (heap and stacks after a GC).
	RSS          int64   `json:"rss"`
	RSSPerConn   float64 `json:"rss_per_conn"`
	HeapPerConn  float64 `json:"heap_per_conn"`
	StackPerConn float64 `json:"stack_per_conn"`
}

// PerConn is (after − before) / n, 0 when n is 0.
func PerConn(before, after int64, n int) float64 {
	if n <= 0 {
		return 0
	}
	return float64(after-before) / float64(n)
}

// IdleSpread connects agents (persistent sessions subscribed to their
// commands) to every node of procs at once, up to each of steps per node
// in turn, and after settle at each step reads each node's memory: one
// IdleNode per step and node. When it returns, every agent has left (its
// session ended).
func IdleSpread(ctx context.Context, t load.Target, procs []*bench.NodeProc, steps []int, settle time.Duration) ([]IdleNode, error) {
	if len(steps) == 0 {
		return nil, nil
	}
	perNode := steps[len(steps)-1]
	type before struct{ rss, heap, stack int64 }
	bs := make([]before, len(procs))
	for i, p := range procs {
		var err error
		if bs[i].heap, bs[i].stack, err = p.Heap(); err != nil {
			return nil, err
		}
		if bs[i].rss, err = load.RSS(p.PID()); err != nil {
			return nil, err
		}
	}
	agents := make([][]*Agent, len(procs))
	defer func() {
		var wg sync.WaitGroup
		for _, as := range agents {
			for k := 0; k < 16; k++ {
				wg.Go(func() {
					for j := k; j < len(as); j += 16 {
						as[j].Leave()
					}
				})
			}
		}
		wg.Wait()
	}()
	for i, p := range procs {
		var err error
		if agents[i], err = MakeAgents(t, "i"+p.Name+"-", perNode); err != nil {
			return nil, err
		}
	}
	var out []IdleNode
	from := 0
	for _, step := range steps {
		secs := make([]float64, len(procs))
		errs := make([]error, len(procs))
		var wg sync.WaitGroup
		for i, p := range procs {
			wg.Go(func() {
				t0 := time.Now()
				errs[i] = ConnectAgents(ctx, agents[i][from:step], p.Addr, 16)
				secs[i] = time.Since(t0).Seconds()
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		select {
		case <-time.After(settle):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		for i, p := range procs {
			heap, stack, err := p.Heap()
			if err != nil {
				return nil, err
			}
			rss, err := load.RSS(p.PID())
			if err != nil {
				return nil, fmt.Errorf("bench: node %s: %w", p.Name, err)
			}
			out = append(out, IdleNode{Node: p.Name, Conns: step, RSS: rss, Seconds: secs[i], Rate: float64(step-from) / secs[i],
				RSSPerConn:   PerConn(bs[i].rss, rss, step),
				HeapPerConn:  PerConn(bs[i].heap, heap, step),
				StackPerConn: PerConn(bs[i].stack, stack, step)})
		}
		from = step
	}
	return out, nil
}
