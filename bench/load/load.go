package load

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Scenario names a kind of load.
type Scenario string

// The scenarios of make bench-compare (docs/performance.md).
const (
	// State: Pubs agents per group publish state, Subs viewers per group
	// receive every group's message (fan-in and fan-out at once).
	State Scenario = "state"
	// Command: Pubs admins per group publish signed envelopes to cmd
	// topics of one agent, which Subs agent connections receive.
	Command Scenario = "command"
	// Connect: Workers clients connect with a JWT, get CONNACK and
	// disconnect, over and over.
	Connect Scenario = "connect"
	// Idle: Conns connections are opened and held; the broker's memory
	// is read before and after.
	Idle Scenario = "idle"
)

// Spec is one load run.
type Spec struct {
	Scenario Scenario
	// Pubs and Subs are per group; each group has its own home, so groups
	// are independent (and may run in different processes).
	Pubs, Subs int
	Groups     int
	GroupBase  int // index of the first group (distinct per process)
	QoS        byte
	Size       int     // state payload bytes (at least 8: the send time)
	Rate       float64 // messages/s per publisher; 0: as fast as Window allows
	Window     int     // messages published but not yet delivered, per group (default 256)
	// Warmup runs before measuring; Duration is the measured window.
	Warmup, Duration time.Duration
	// StartAt, when set, is when measuring starts (so that several
	// processes measure the same window).
	StartAt time.Time
	Workers int           // connect, idle: concurrent dialers (default 8)
	Tokens  int           // connect: distinct tokens to connect with (default 30000)
	Conns   int           // idle: connections to hold; storm: agents
	Steps   []int         // idle: also read memory at these counts on the way to Conns
	Sources int           // idle: loopback source addresses to dial from (127.0.0.1 …; default 1)
	Settle  time.Duration // idle: wait before reading memory (default 2s)
}

func (s Spec) withDefaults() Spec {
	if s.Groups <= 0 {
		s.Groups = 1
	}
	if s.Window <= 0 {
		s.Window = 256
	}
	if s.Size < stampSize {
		s.Size = stampSize
	}
	if s.Duration <= 0 {
		s.Duration = 2 * time.Second
	}
	if s.Workers <= 0 {
		s.Workers = 8
	}
	if s.Tokens <= 0 {
		s.Tokens = 30000
	}
	if s.Settle <= 0 {
		s.Settle = 2 * time.Second
	}
	return s
}

// Result is what one run measured. Rates are per second of the measured
// window; latencies are in microseconds.
type Result struct {
	Scenario Scenario `json:"scenario"`
	Target   string   `json:"target"`
	// Round is the comparison round the run belongs to (0: none), so that
	// the figures of two targets are compared within one round.
	Round     int     `json:"round,omitempty"`
	Seconds   float64 `json:"seconds"`
	Published int64   `json:"published,omitempty"`
	Delivered int64   `json:"delivered,omitempty"`
	// Rate is delivered messages/s (state, command) or completed
	// connects/s (connect).
	Rate         float64 `json:"rate,omitempty"`
	P50          float64 `json:"p50_us,omitempty"`
	P99          float64 `json:"p99_us,omitempty"`
	P999         float64 `json:"p999_us,omitempty"`
	Samples      uint64  `json:"samples,omitempty"`
	Refused      int64   `json:"refused,omitempty"` // publishes answered with a negative PUBACK
	Lost         int64   `json:"lost,omitempty"`    // published, neither refused nor delivered 3 s after the window
	Stalls       int64   `json:"stalls,omitempty"`  // window waits that timed out
	Connects     int64   `json:"connects,omitempty"`
	TokensReused int64   `json:"tokens_reused,omitempty"` // connects that presented a token used before
	Conns        int     `json:"conns,omitempty"`
	RSSBefore    int64   `json:"rss_before,omitempty"`
	RSSAfter     int64   `json:"rss_after,omitempty"`
	BytesPerConn float64 `json:"bytes_per_conn,omitempty"`
	// Steps is the idle scenario's memory at each step, the last at Conns.
	Steps      []IdleStep `json:"steps,omitempty"`
	Errors     int64      `json:"errors,omitempty"`
	FirstError string     `json:"first_error,omitempty"`
	StormResult
}

// Run puts the load of s on t and reports what it measured. Every loop
// ends within a bounded time after s's window.
func Run(ctx context.Context, t Target, s Spec) (Result, error) {
	s = s.withDefaults()
	var r Result
	var err error
	switch s.Scenario {
	case State, Command:
		r, err = runFlow(ctx, t, s)
	case Connect:
		r, err = runConnect(ctx, t, s)
	case Idle:
		r, err = runIdle(ctx, t, s)
	case SignalR:
		r, err = runSignalR(ctx, t, s)
	case Storm:
		r, err = runStorm(ctx, t, s)
	default:
		return r, fmt.Errorf("load: unknown scenario %q (state, command, connect, idle, signalr, storm)", s.Scenario)
	}
	r.Scenario, r.Target = s.Scenario, t.Name
	return r, err
}

// errCounter counts errors and keeps the first.
type errCounter struct {
	mu    sync.Mutex
	n     int64
	first string
}

func (e *errCounter) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == 0 {
		e.first = err.Error()
	}
	e.n++
}

func (e *errCounter) fill(r *Result) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r.Errors, r.FirstError = e.n, e.first
}

// waitUntil sleeps until t or ctx ends; it reports false for ctx.
// measure waits out the warm-up (or until StartAt), then holds measuring
// true for Duration. atStart runs just before measuring starts and atEnd just
// after it stops (nil for none). It returns the measured seconds and whether
// ctx allowed the whole window.
func (s Spec) measure(ctx context.Context, measuring *atomic.Bool, atStart, atEnd func()) (float64, bool) {
	start := s.StartAt
	if start.IsZero() {
		start = time.Now().Add(s.Warmup)
	}
	ok := waitUntil(ctx, start)
	if atStart != nil {
		atStart()
	}
	t0 := time.Now()
	measuring.Store(true)
	ok = ok && waitUntil(ctx, t0.Add(s.Duration))
	measuring.Store(false)
	if atEnd != nil {
		atEnd()
	}
	return time.Since(t0).Seconds(), ok
}

func waitUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
