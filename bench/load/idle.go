package load

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"homemq/bench/mqttc"
)

// IdleStep is the broker's memory with Conns idle connections open.
type IdleStep struct {
	Conns int   `json:"conns"`
	RSS   int64 `json:"rss"`
	// BytesPerConn is the RSS growth since before the first connection,
	// per open connection.
	BytesPerConn float64 `json:"bytes_per_conn"`
	// HeapLive is the broker's live heap as its target reports it (0: not
	// known), HeapPerConn its growth per connection.
	HeapLive    int64   `json:"heap_live,omitempty"`
	HeapPerConn float64 `json:"heap_per_conn,omitempty"`
}

// sourceIP is the loopback source address of connection i over n
// addresses: 127.0.0.1, 127.0.0.2, …
func sourceIP(i, n int) string {
	if n <= 1 {
		return ""
	}
	return "127.0.0." + strconv.Itoa(1+i%n)
}

// idleSteps returns the checkpoints of s: its Steps up to Conns, and Conns.
func idleSteps(s Spec) []int {
	var steps []int
	for _, n := range s.Steps {
		if n > 0 && n < s.Conns {
			steps = append(steps, n)
		}
	}
	steps = append(steps, s.Conns)
	slices.Sort(steps)
	return slices.Compact(steps)
}

// runIdle opens Conns connections with Workers dialers (spread over
// Sources loopback source addresses) and holds them; the broker's resident
// memory (and live heap, where the target reports it) is read before the
// first connection and, after Settle, at every step of Steps and at Conns.
func runIdle(ctx context.Context, t Target, s Spec) (Result, error) {
	if t.PID == 0 {
		return Result{}, fmt.Errorf("load: idle needs the broker's process id to read its memory")
	}
	if s.Conns <= 0 {
		return Result{}, fmt.Errorf("load: idle needs a number of connections")
	}
	ids, err := identities(t, s.GroupBase, 16)
	if err != nil {
		return Result{}, err
	}
	before, err := RSS(t.PID)
	if err != nil {
		return Result{}, err
	}
	var heapBefore int64
	if t.HeapLive != nil {
		heapBefore, _ = t.HeapLive()
	}
	conns := make([]*mqttc.Conn, s.Conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	var (
		errs errCounter
		open int
	)
	r := Result{RSSBefore: before}
	from := 0
	for _, step := range idleSteps(s) {
		open += openIdle(ctx, t, s, ids, conns[from:step], from, &errs)
		from = step
		if !waitUntil(ctx, time.Now().Add(s.Settle)) {
			errs.fill(&r)
			return r, ctx.Err()
		}
		st := IdleStep{Conns: open}
		if st.RSS, err = RSS(t.PID); err != nil {
			return r, err
		}
		if open > 0 {
			st.BytesPerConn = float64(st.RSS-before) / float64(open)
		}
		if t.HeapLive != nil {
			if h, err := t.HeapLive(); err == nil && h > 0 {
				st.HeapLive = h
				if open > 0 {
					st.HeapPerConn = float64(h-heapBefore) / float64(open)
				}
			}
		}
		r.Steps = append(r.Steps, st)
	}
	last := r.Steps[len(r.Steps)-1]
	r.Conns, r.RSSAfter, r.BytesPerConn = open, last.RSS, last.BytesPerConn
	errs.fill(&r)
	if open < s.Conns {
		return r, fmt.Errorf("load: only %d of %d idle connections opened to %s: %s", open, s.Conns, t.Name, r.FirstError)
	}
	return r, nil
}

// openIdle fills conns (connections first..first+len(conns)-1) with
// Workers dialers, three tries each, and returns how many opened.
func openIdle(ctx context.Context, t Target, s Spec, ids []Identity, conns []*mqttc.Conn, first int, errs *errCounter) int {
	var (
		next   atomic.Int64
		opened atomic.Int64
		wg     sync.WaitGroup
	)
	for w := 0; w < s.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				k := int(next.Add(1) - 1)
				if k >= len(conns) {
					return
				}
				i := first + k
				id := ids[i%len(ids)]
				o := mqttc.Options{Addr: t.Addr, TLS: t.TLS, ClientID: id.ClientID("i" + strconv.Itoa(i)), LocalIP: sourceIP(i, s.Sources),
					Username: id.Sub, Password: id.Password, Keepalive: 300, Timeout: 10 * time.Second, BufferSize: smallBuffers}
				for try := 0; try < 3; try++ {
					c, err := mqttc.Dial(ctx, o)
					if err == nil {
						conns[k] = c
						opened.Add(1)
						break
					}
					errs.add(err)
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	return int(opened.Load())
}
