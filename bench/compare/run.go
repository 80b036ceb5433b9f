package compare

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"time"

	"homemq/bench/load"
)

// Config says what to compare and for how long.
type Config struct {
	// Homemq, Bare and Mosquitto are the programs of the three targets;
	// an empty Mosquitto skips that column (the report says so).
	Homemq, Bare, Mosquitto string
	// Bench is the homemq-bench program, for the check that two generator
	// processes do not measure more than one ("" skips the check).
	Bench string
	// Work is a scratch folder for configurations, the data folder and logs.
	Work string
	// Rounds per case (medians and spreads are taken over them; 0 is
	// DefaultRounds), the measured window
	// and the warmup of each run, and the connections of the idle case.
	Rounds           int
	Duration, Warmup time.Duration
	IdleConns        int
	// Cases overrides Cases(Duration, Warmup, IdleConns).
	Cases []Case
	// Log receives one progress line per run.
	Log io.Writer
}

// CaseResult is every run of one case.
type CaseResult struct {
	Case    Case
	Results map[string][]load.Result // by target, one per round
	Errors  map[string][]string
}

// GeneratorCheck is the same load from one generator process and split
// over two: if the generator limited the rate, two would measure more.
type GeneratorCheck struct {
	Target   string
	Spec     load.Spec
	One, Two []float64 // delivered msgs/s per round
	Errors   []string
}

// DefaultRounds is the rounds per case when Config.Rounds is 0: enough for
// a spread that tells an effect of a few per cent from the noise of a
// shared machine.
const DefaultRounds = 5

// Report is the outcome of a comparison run.
type Report struct {
	Started     time.Time
	Elapsed     time.Duration
	Machine     Machine
	Rounds      int
	Duration    time.Duration
	Targets     []string
	Skipped     map[string]string // target -> why it has no column
	Cases       []CaseResult
	Check       *GeneratorCheck
	LoadBefore  string
	LoadAfter   string
	ExtraTables string // e.g. the Go benchmarks, appended by the caller
}

// Run starts the targets, runs every case against each in rounds (within a
// round the targets take turns: homemq, bare, Mosquitto), and reports. The
// targets of the throughput cases run side by side for the whole run (an
// idle broker costs nothing); each idle-memory run gets a fresh process.
// Every target process is stopped before Run returns.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Rounds <= 0 {
		cfg.Rounds = DefaultRounds
	}
	if cfg.Cases == nil {
		cfg.Cases = Cases(cfg.Duration, cfg.Warmup, cfg.IdleConns)
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	e, err := newEnv(cfg)
	if err != nil {
		return nil, err
	}
	rep := &Report{Started: time.Now(), Machine: DescribeMachine(cfg.Mosquitto), Rounds: cfg.Rounds, Duration: cfg.Duration,
		Skipped: map[string]string{}, LoadBefore: loadAverage()}
	rep.Targets = []string{Homemq, Bare}
	if cfg.Mosquitto != "" {
		rep.Targets = append(rep.Targets, Mosquitto)
	} else {
		rep.Skipped[Mosquitto] = "Mosquitto is not installed (apt-get install mosquitto)"
	}
	servers := map[string]*server{}
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	var live []string
	for _, name := range rep.Targets {
		s, err := e.start(ctx, name)
		if err != nil {
			if name == Mosquitto {
				rep.Skipped[name] = err.Error()
				continue
			}
			return nil, err
		}
		servers[name] = s
		live = append(live, name)
	}
	rep.Targets = live

	// Cases on the shared servers first; then the servers stop, so that each
	// idle-memory run has the machine (and homemq its data folder) alone.
	cases := slices.Clone(cfg.Cases)
	rank := func(c Case) int {
		if fresh(c) {
			return 1
		}
		return 0
	}
	slices.SortStableFunc(cases, func(a, b Case) int { return cmp.Compare(rank(a), rank(b)) })
	total, n := 0, 0
	for _, c := range cases {
		if c.Only != "" {
			total += c.rounds(cfg.Rounds)
		} else {
			total += c.rounds(cfg.Rounds) * len(live)
		}
	}
	for _, c := range cases {
		if fresh(c) && len(servers) > 0 {
			for _, s := range servers {
				s.stop()
			}
			servers = map[string]*server{}
		}
		cr := CaseResult{Case: c, Results: map[string][]load.Result{}, Errors: map[string][]string{}}
		for round := 1; round <= c.rounds(cfg.Rounds); round++ {
			for _, name := range live {
				if err := ctx.Err(); err != nil {
					return rep, err
				}
				if c.Only != "" && c.Only != name {
					continue
				}
				n++
				if c.Spec.Scenario == load.Storm { // sessions of earlier rounds stay in homemq's store: new agents each round
					c.Spec.GroupBase = 100*round + slices.Index(live, name)
				}
				r, err := e.runOne(ctx, servers, name, c)
				r.Round = round
				if err != nil {
					cr.Errors[name] = append(cr.Errors[name], err.Error())
				} else {
					cr.Results[name] = append(cr.Results[name], r)
				}
				fmt.Fprintf(cfg.Log, "[%3d/%d] %-58s %-9s round %d: %s\n", n, total, c.Name, name, round, summary(c, r, err))
			}
		}
		rep.Cases = append(rep.Cases, cr)
	}
	for _, s := range servers {
		s.stop()
	}
	servers = map[string]*server{}
	if cfg.Bench != "" && len(rep.Cases) > 0 {
		rep.Check = e.generatorCheck(ctx, rep.Cases[0], live)
	}
	rep.Elapsed = time.Since(rep.Started)
	rep.LoadAfter = loadAverage()
	return rep, ctx.Err()
}

// rounds is how many of n rounds case c runs.
func (c Case) rounds(n int) int {
	if c.Rounds > 0 {
		return min(c.Rounds, n)
	}
	return n
}

// fresh reports whether c needs a fresh target process per run.
func fresh(c Case) bool { return c.Spec.Scenario == load.Idle || c.Spec.Scenario == load.Storm }

// runOne runs case c against target name: on the running server, or for
// the idle case on a fresh one.
func (e *env) runOne(ctx context.Context, servers map[string]*server, name string, c Case) (load.Result, error) {
	if fresh(c) {
		s, err := e.startWith(ctx, name, c.Spec.Scenario == load.Storm)
		if err != nil {
			return load.Result{}, err
		}
		defer s.stop()
		time.Sleep(500 * time.Millisecond) // let the start-up garbage settle before the first reading
		return load.Run(ctx, e.target(s, c.TLS), c.Spec)
	}
	s := servers[name]
	select {
	case <-s.done: // it died: note it and carry on with a fresh one
		fresh, err := e.start(ctx, name)
		if err != nil {
			return load.Result{}, err
		}
		servers[name] = fresh
		return load.Result{}, fmt.Errorf("%s had exited (%v); restarted", name, s.err)
	default:
	}
	return load.Run(ctx, e.target(s, c.TLS), c.Spec)
}

func summary(c Case, r load.Result, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	var s string
	switch c.Spec.Scenario {
	case load.Idle:
		s = fmt.Sprintf("%.0f B/conn (%d conns)", r.BytesPerConn, r.Conns)
	case load.Connect:
		s = fmt.Sprintf("%.0f connects/s", r.Rate)
	case load.Storm:
		s = fmt.Sprintf("%d/%d re-admitted in %.2fs (%d sessions present), %d/%d queued commands delivered, %.2f CPU s",
			r.Connects, r.Conns, r.Seconds, r.SessionsPresent, r.Delivered, r.Published, r.CPUSeconds)
	default:
		s = fmt.Sprintf("%.0f msgs/s, p50 %.0fµs p99 %.0fµs", r.Rate, r.P50, r.P99)
		if r.Lost > 0 || r.Refused > 0 {
			s += fmt.Sprintf(", lost %d, refused %d", r.Lost, r.Refused)
		}
	}
	if r.Errors > 0 {
		s += fmt.Sprintf(" (%d errors: %s)", r.Errors, r.FirstError)
	}
	return s
}

// generatorCheck runs case c's load (split in two groups) against the
// fastest target, from this process and from two homemq-bench processes
// measuring the same window.
func (e *env) generatorCheck(ctx context.Context, c CaseResult, live []string) *GeneratorCheck {
	best, bestRate := "", -1.0
	for _, name := range live {
		if m := median(values(c.Results[name], Throughput)); m > bestRate {
			best, bestRate = name, m
		}
	}
	spec := c.Case.Spec
	spec.Pubs, spec.Subs, spec.Groups = max(1, spec.Pubs/2), max(1, spec.Subs/2), 2
	chk := &GeneratorCheck{Target: best, Spec: spec}
	s, err := e.start(ctx, best)
	if err != nil {
		chk.Errors = append(chk.Errors, err.Error())
		return chk
	}
	defer s.stop()
	t := e.target(s, c.Case.TLS)
	for round := 1; round <= e.cfg.Rounds && ctx.Err() == nil; round++ {
		r, err := load.Run(ctx, t, spec)
		if err != nil {
			chk.Errors = append(chk.Errors, err.Error())
		} else {
			chk.One = append(chk.One, r.Rate)
		}
		two, err := e.twoProcesses(ctx, s, spec)
		if err != nil {
			chk.Errors = append(chk.Errors, err.Error())
		} else {
			chk.Two = append(chk.Two, two)
		}
		fmt.Fprintf(e.cfg.Log, "[check] %s round %d: one process %.0f msgs/s, two processes %.0f msgs/s\n", best, round, r.Rate, two)
	}
	return chk
}

// twoProcesses runs one group of spec in each of two homemq-bench processes
// that measure the same window, and returns their summed rate.
func (e *env) twoProcesses(ctx context.Context, s *server, spec load.Spec) (float64, error) {
	start := time.Now().Add(2*time.Second + spec.Warmup)
	var wg sync.WaitGroup
	rates := make([]float64, 2)
	errs := make([]error, 2)
	for i := range 2 {
		args := []string{"run", "--json", "--target", s.name, "--addr", s.plain, "--scenario", string(spec.Scenario),
			"--pubs", strconv.Itoa(spec.Pubs), "--subs", strconv.Itoa(spec.Subs), "--groups", "1", "--group-base", strconv.Itoa(10 + i),
			"--qos", strconv.Itoa(int(spec.QoS)), "--size", strconv.Itoa(spec.Size), "--duration", spec.Duration.String(),
			"--start-at", strconv.FormatInt(start.UnixNano(), 10), "--data", e.data}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, time.Until(start)+spec.Duration+30*time.Second)
			defer cancel()
			var out, stderr bytes.Buffer
			cmd := exec.CommandContext(cctx, e.cfg.Bench, args...)
			cmd.Stdout, cmd.Stderr = &out, &stderr
			if err := cmd.Run(); err != nil {
				errs[i] = fmt.Errorf("generator %d: %v: %s", i, err, stderr.String())
				return
			}
			var r load.Result
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				errs[i] = fmt.Errorf("generator %d: %v", i, err)
				return
			}
			rates[i] = r.Rate
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return rates[0] + rates[1], nil
}
