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

// IdleSpread connects perNode agents (persistent sessions subscribed to
// their commands) to every node of procs at once, waits settle, and reads
// each node's memory. The agents stay connected until the returned close
// is called.
func IdleSpread(ctx context.Context, t load.Target, procs []*bench.NodeProc, perNode int, settle time.Duration) ([]IdleNode, func(), error) {
	type before struct{ rss, heap, stack int64 }
	bs := make([]before, len(procs))
	for i, p := range procs {
		var err error
		if bs[i].heap, bs[i].stack, err = p.Heap(); err != nil {
			return nil, func() {}, err
		}
		if bs[i].rss, err = load.RSS(p.PID()); err != nil {
			return nil, func() {}, err
		}
	}
	agents := make([][]*Agent, len(procs))
	closeAll := func() {
		for _, as := range agents {
			for _, a := range as {
				a.Close()
			}
		}
	}
	for i, p := range procs {
		var err error
		if agents[i], err = MakeAgents(t, "i"+p.Name+"-", perNode); err != nil {
			return nil, closeAll, err
		}
	}
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() { errs[i] = ConnectAgents(ctx, agents[i], p.Addr, 16) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, closeAll, err
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return nil, closeAll, ctx.Err()
	}
	out := make([]IdleNode, len(procs))
	for i, p := range procs {
		heap, stack, err := p.Heap()
		if err != nil {
			return nil, closeAll, err
		}
		rss, err := load.RSS(p.PID())
		if err != nil {
			return nil, closeAll, fmt.Errorf("bench: node %s: %w", p.Name, err)
		}
		out[i] = IdleNode{Node: p.Name, Conns: perNode, RSS: rss,
			RSSPerConn:   PerConn(bs[i].rss, rss, perNode),
			HeapPerConn:  PerConn(bs[i].heap, heap, perNode),
			StackPerConn: PerConn(bs[i].stack, stack, perNode)}
	}
	return out, closeAll, nil
}
