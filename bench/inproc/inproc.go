// Package inproc measures the memory of idle MQTT connections at a scale
// sockets cannot reach on one machine (each socket costs a descriptor on
// both sides): it starts homemq's broker, or the bare mochi server with
// the same options, in this process, opens 100,000 and more connections
// through an in-process listener (net.Pipe, as the SignalR bridge's), and
// reads the live heap, goroutine stacks and RSS per connection.
//
// The listener is a broker.PipeListener under an id of its own, not the
// broker's "internal" one: the Guard exempts "internal" clients from the
// connect-rate and keep-alive checks, and a measured connection must take
// the path of a network client.
package inproc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"homemq/bench"
	"homemq/bench/load"
	"homemq/bench/mqttc"
	"homemq/broker"
)

// ListenerID names the measured in-process listener.
const ListenerID = "mqtt-pipe"

// The targets Run can measure.
const (
	Homemq = "homemq" // broker.New: the Guard, storage, audit, metrics
	Bare   = "bare"   // bench.NewBare: mochi with homemq's options, allow-all
)

// Spec is one in-process idle run.
type Spec struct {
	Target string // Homemq or Bare
	Conns  int    // connections to open and hold
	Steps  []int  // also read memory at these counts on the way
	// Workers dial concurrently (default GOMAXPROCS).
	Workers int
	// HeapProfile, when set, is where to write the heap profile (in-use
	// space) with all Conns connections open.
	HeapProfile string
	// Limits are the broker's limits (default: homemq's defaults raised
	// out of a load's way by bench.ForLoad).
	Limits *broker.LimitsConfig
}

// Step is the memory of the target with Conns connections open, after a
// garbage collection; client ends are subtracted (see Result.ClientBytes).
type Step struct {
	Conns int `json:"conns"`
	// HeapPerConn is the growth of the live heap per connection, and
	// StackPerConn that of the goroutine stacks.
	HeapPerConn  float64 `json:"heap_per_conn"`
	StackPerConn float64 `json:"stack_per_conn"`
	// RSSPerConn is the growth of the process's resident memory per
	// connection (with garbage not yet returned to the OS).
	RSSPerConn float64 `json:"rss_per_conn"`
	// GoroutinesPerConn is the goroutines each connection adds.
	GoroutinesPerConn float64 `json:"goroutines_per_conn"`
}

// Result is what Run measured.
type Result struct {
	Target string `json:"target"`
	Conns  int    `json:"conns"`
	Steps  []Step `json:"steps"`
	// ClientBytes is the measured cost of one client end (the net.Pipe
	// and what the generator keeps), already subtracted from every step.
	ClientBytes float64 `json:"client_bytes"`
	// Seconds is how long opening all connections took.
	Seconds float64 `json:"seconds"`
}

// Run starts s.Target in this process, opens s.Conns idle connections
// through the in-process listener and reads memory at every step. Run it
// in a process of its own: the process's RSS is part of the result.
func Run(ctx context.Context, s Spec) (Result, error) {
	if s.Conns <= 0 {
		return Result{}, fmt.Errorf("inproc: a number of connections is needed")
	}
	if s.Workers <= 0 {
		s.Workers = runtime.GOMAXPROCS(0)
	}
	limits := bench.ForLoad(broker.DefaultConfig()).Limits
	if s.Limits != nil {
		limits = *s.Limits
	}
	res := Result{Target: s.Target, Conns: s.Conns, ClientBytes: clientCost()}
	base := read()
	pipe, target, srv, stop, err := start(s.Target, limits)
	if err != nil {
		return res, err
	}
	keep := make([]net.Conn, 0, s.Conns)
	baseClients := srv.Clients.Len() // mochi's inline client
	defer func() {
		// Close the clients and let the server remove them before it
		// shuts down: mochi's closeListenerClients (which a listener
		// without the broker's closer falls back on) takes the clients'
		// read lock twice and deadlocks against a concurrent removal.
		for _, c := range keep {
			_ = c.Close()
		}
		for end := time.Now().Add(30 * time.Second); srv.Clients.Len() > baseClients && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
		stop()
	}()
	if err := waitServing(pipe); err != nil {
		return res, err
	}
	ids, err := target.identities(16)
	if err != nil {
		return res, err
	}
	start := time.Now()
	for _, step := range steps(s) {
		opened, err := open(ctx, pipe, ids, len(keep), step-len(keep), s.Workers)
		keep = append(keep, opened...)
		if err != nil {
			return res, err
		}
		if len(keep) == step {
			res.Seconds = time.Since(start).Seconds()
		}
		time.Sleep(200 * time.Millisecond) // let the last connections' goroutines settle
		m := read()
		n := float64(len(keep))
		res.Steps = append(res.Steps, Step{
			Conns:             len(keep),
			HeapPerConn:       float64(m.heap-base.heap)/n - res.ClientBytes,
			StackPerConn:      float64(m.stack-base.stack) / n,
			RSSPerConn:        float64(m.rss-base.rss)/n - res.ClientBytes,
			GoroutinesPerConn: float64(m.goroutines-base.goroutines) / n,
		})
	}
	if s.HeapProfile != "" {
		if err := writeHeapProfile(s.HeapProfile); err != nil {
			return res, err
		}
	}
	return res, nil
}

// waitServing waits until mochi has handed the listener its establish
// function (Serve starts the listeners in goroutines of their own).
func waitServing(pipe *broker.PipeListener) error {
	for end := time.Now().Add(10 * time.Second); ; {
		c, err := pipe.Dial()
		if err == nil {
			return c.Close()
		}
		if time.Now().After(end) {
			return fmt.Errorf("inproc: the in-process listener is not serving after 10s: %w", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// steps returns s's steps below Conns, and Conns, in order.
func steps(s Spec) []int {
	var out []int
	for _, n := range s.Steps {
		if n > 0 && n < s.Conns {
			out = append(out, n)
		}
	}
	out = append(out, s.Conns)
	slices.Sort(out)
	return slices.Compact(out)
}

// target is what connections need of the broker under measurement.
type target struct{ t load.Target }

func (t target) identities(n int) ([]load.Identity, error) {
	ids := make([]load.Identity, n)
	for i := range ids {
		var err error
		if ids[i], err = t.t.Identity("user:idle-"+strconv.Itoa(i), "idle", "viewer"); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

var quiet = slog.New(slog.DiscardHandler)

// start runs the target with limits and the in-process listener.
func start(name string, limits broker.LimitsConfig) (*broker.PipeListener, target, *mqtt.Server, func(), error) {
	pipe := broker.NewPipeListener(ListenerID, limits.ConnectTimeout)
	switch name {
	case Homemq:
		dir, err := os.MkdirTemp("", "homemq-inproc-")
		if err != nil {
			return nil, target{}, nil, nil, err
		}
		cfg := broker.DefaultConfig()
		cfg.Data, cfg.Limits, cfg.Log.Level = dir, limits, "error"
		cfg.Listeners = broker.ListenersConfig{MQTTPlain: "127.0.0.1:0"}
		b, err := broker.New(cfg, broker.WithLogger(quiet))
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, target{}, nil, nil, err
		}
		if err := b.Server.AddListener(pipe); err != nil {
			return nil, target{}, nil, nil, err
		}
		if err := b.Start(); err != nil {
			_ = os.RemoveAll(dir)
			return nil, target{}, nil, nil, err
		}
		m, err := load.NewMinter(dir, cfg.Tokens)
		if err != nil {
			b.Close()
			return nil, target{}, nil, nil, err
		}
		return pipe, target{load.Target{Name: name, Minter: m}}, b.Server, func() { b.Close(); _ = os.RemoveAll(dir) }, nil
	case Bare:
		s := bench.NewBare(limits, quiet)
		if err := s.AddListener(pipe); err != nil {
			return nil, target{}, nil, nil, err
		}
		if err := s.Serve(); err != nil {
			return nil, target{}, nil, nil, err
		}
		return pipe, target{load.Target{Name: name}}, s, func() { _ = s.Close() }, nil
	}
	return nil, target{}, nil, nil, fmt.Errorf("inproc: unknown target %q (homemq or bare)", name)
}

// open dials n connections (numbered from first) with workers dialers and
// returns their client ends; the generator keeps nothing else of them.
func open(ctx context.Context, pipe *broker.PipeListener, ids []load.Identity, first, n, workers int) ([]net.Conn, error) {
	out := make([]net.Conn, n)
	var (
		next    atomic.Int64
		mu      sync.Mutex
		firstEr error
		wg      sync.WaitGroup
	)
	dial := func(context.Context) (net.Conn, error) { return pipe.Dial() }
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				k := int(next.Add(1) - 1)
				if k >= n {
					return
				}
				id := ids[(first+k)%len(ids)]
				c, err := mqttc.Dial(ctx, mqttc.Options{Dial: dial, ClientID: id.ClientID("p" + strconv.Itoa(first+k)),
					Username: id.Sub, Password: id.Password, Keepalive: 300, Timeout: 30 * time.Second, BufferSize: 256})
				if err != nil {
					mu.Lock()
					if firstEr == nil {
						firstEr = fmt.Errorf("inproc: connection %d: %w", first+k, err)
					}
					mu.Unlock()
					next.Store(int64(n)) // stop the others
					return
				}
				out[k] = c.NetConn()
			}
		}()
	}
	wg.Wait()
	if firstEr == nil && ctx.Err() != nil {
		firstEr = ctx.Err()
	}
	opened := out[:0]
	for _, c := range out {
		if c != nil {
			opened = append(opened, c)
		}
	}
	return opened, firstEr
}

// memory is one reading of this process.
type memory struct {
	heap, stack, rss int64
	goroutines       int
}

// read collects garbage and reads the live heap, stacks, RSS and
// goroutine count.
func read() memory {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	rss, _ := load.RSS(os.Getpid())
	return memory{heap: int64(m.HeapAlloc), stack: int64(m.StackInuse), rss: rss, goroutines: runtime.NumGoroutine()}
}

// clientCost measures what one client end costs this process: a net.Pipe
// pair and the slot that keeps it (the server end is the broker's, but a
// pipe's two ends share their channels, so the pair is counted here).
func clientCost() float64 {
	const n = 20000
	before := read()
	keep := make([]net.Conn, n)
	for i := range keep {
		keep[i], _ = net.Pipe()
	}
	after := read()
	runtime.KeepAlive(keep)
	return float64(after.heap-before.heap) / n
}

func writeHeapProfile(file string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
