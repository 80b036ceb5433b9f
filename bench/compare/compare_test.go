package compare

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"homemq/bench/inproc"
	"homemq/bench/load"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestSummarise(t *testing.T) {
	if _, ok := summarise(nil); ok {
		t.Error("no values summarised")
	}
	got, _ := summarise([]float64{0.95, 0.85, 0.9, 1.0, 0.8})
	if want := (Spread{Median: 0.9, Min: 0.8, Max: 1.0, N: 5}); got != want {
		t.Errorf("summarise = %+v, want %+v", got, want)
	}
}

// TestPerRound: ratios are taken within a round, and a round where one
// target failed is left out rather than paired with another round.
func TestPerRound(t *testing.T) {
	h := []load.Result{{Round: 1, Rate: 90}, {Round: 2, Rate: 50}, {Round: 3, Rate: 120}}
	b := []load.Result{{Round: 1, Rate: 100}, {Round: 3, Rate: 100}} // round 2 failed on bare
	got := perRound(h, b, Throughput, divide)
	if want := []float64{0.9, 1.2}; !slices.Equal(got, want) {
		t.Errorf("perRound = %v, want %v", got, want)
	}
	mem := perRound([]load.Result{{BytesPerConn: 35000}}, []load.Result{{BytesPerConn: 32000}}, BytesPerConn, subtract)
	if want := []float64{3000}; !slices.Equal(mem, want) {
		t.Errorf("perRound of bytes = %v, want %v (results without a round pair by position)", mem, want)
	}
}

func TestVerdict(t *testing.T) {
	thr := Row{Metric: Throughput, MinRatio: 0.9, AtLeastMosquitto: true}
	p99 := Row{Metric: LatencyP99, MaxRatio: 1.2}
	mem := Row{Metric: BytesPerConn, MaxExtra: 2048}
	sp := func(min, med, max float64) Spread { return Spread{Median: med, Min: min, Max: max, N: 5} }
	one := func(v float64) Spread { return Spread{Median: v, Min: v, Max: v, N: 1} }
	for _, tc := range []struct {
		name     string
		row      Row
		bare, mq Spread
		haveMq   bool
		want     Outcome
		why      string
	}{
		{"fast enough in every round", thr, sp(0.91, 0.95, 0.99), sp(1.0, 1.1, 1.2), true, Met, ""},
		{"too slow in every round", thr, sp(0.7, 0.8, 0.85), sp(1.0, 1.1, 1.2), true, Missed, "below 0.90× bare"},
		{"spread crosses the goal", thr, sp(0.85, 0.92, 0.97), sp(1.0, 1.1, 1.2), true, Inconclusive, "spread crosses 0.90× bare"},
		{"missed beats inconclusive", thr, sp(0.85, 0.92, 0.97), sp(0.5, 0.6, 0.7), true, Missed, "below Mosquitto"},
		{"one round decides", thr, one(0.89), one(1.1), true, Missed, "below 0.90× bare"},
		{"on the goal is met", thr, sp(0.9, 0.9, 0.9), one(1), true, Met, ""},
		{"slower than mosquitto", thr, sp(0.91, 0.95, 0.99), sp(0.8, 0.85, 0.9), true, Missed, "below Mosquitto"},
		{"mosquitto absent", thr, sp(0.91, 0.95, 0.99), Spread{}, false, Met, ""},
		{"latency ok", p99, sp(1.0, 1.1, 1.15), Spread{}, false, Met, ""},
		{"latency too high", p99, sp(1.25, 1.3, 1.4), Spread{}, false, Missed, "above 1.20× bare"},
		{"latency noisy", p99, sp(1.1, 1.15, 1.3), Spread{}, false, Inconclusive, "spread crosses 1.20× bare"},
		{"memory ok", mem, sp(900, 1000, 1100), Spread{}, false, Met, ""},
		{"memory too high", mem, sp(3000, 3500, 4000), Spread{}, false, Missed, "more than bare + 2048 B"},
		{"memory noisy", mem, sp(1500, 2000, 2500), Spread{}, false, Inconclusive, "spread crosses bare + 2048 B"},
	} {
		c := Comparison{VsBare: tc.bare, HaveBare: true, VsMosquitto: tc.mq, HaveMosquitto: tc.haveMq}
		got, why := tc.row.verdict(c)
		if got != tc.want || strings.Join(why, ", ") != tc.why {
			t.Errorf("%s: got %v %q, want %v %q", tc.name, got, why, tc.want, tc.why)
		}
	}
}

func TestCells(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{ratioCell(Spread{Median: 0.94, Min: 0.9, Max: 0.98, N: 5}), "0.94× (0.90–0.98)"},
		{ratioCell(Spread{Median: 0.94, Min: 0.94, Max: 0.94, N: 1}), "0.94×"},
		{bytesCell(Spread{Median: 3965, Min: 3100, Max: 4200, N: 3}), "+3965 B (+3100…+4200)"},
		{bytesCell(Spread{Median: -12, Min: -12, Max: -12, N: 1}), "-12 B"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestFigure(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		m    Metric
		want string
	}{
		{1234567, Throughput, "1,234,567"},
		{999, Throughput, "999"},
		{0, Throughput, "–"},
		{250, LatencyP99, "250 µs"},
		{1500, LatencyP999, "1.5 ms"},
	} {
		if got := figure(tc.v, tc.m); got != tc.want {
			t.Errorf("figure(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

const benchOutput = `goos: linux
BenchmarkStateQoS0/allow-2     	   49130	      7500 ns/op	    3899 B/op	      19 allocs/op
BenchmarkStateQoS0/guard-2     	   45638	      8000 ns/op	    3898 B/op	      21 allocs/op
BenchmarkStateQoS0/guard-2     	   45638	     10000 ns/op	    3898 B/op	      21 allocs/op
BenchmarkStateQoS0/guard-2     	   45638	      9000 ns/op	    3898 B/op	      21 allocs/op
BenchmarkStateQoS0/homemq-2    	   45638	     15000 ns/op	    3898 B/op	      30 allocs/op
BenchmarkIdleConn/guard-2      	    2000	    118771 ns/op	     41882 B/conn	   24356 B/op	     160 allocs/op
BenchmarkGuardOnPacketRead-2   	 5125849	        70 ns/op	       0 B/op	       0 allocs/op
PASS
`

func TestGoBenchTable(t *testing.T) {
	tab := GoBenchTable(strings.NewReader(benchOutput))
	for _, want := range []string{
		"| StateQoS0 | 1.20× | 2.00× | 7.50 µs | 9.00 µs | 15.00 µs | 19, 21, 30 |",
		"| GuardOnPacketRead | – | – | – | 70 ns | – | –, 0, – |",
		"- IdleConn/guard: 41882 B/conn (median)",
	} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
}

func TestWriteBetweenMarkers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "p.md")
	doc := "# T\n\nbefore\n" + BeginMarker + "\nold\n" + EndMarker + "\nafter\n"
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteBetweenMarkers(file, "new table\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(file)
	want := "# T\n\nbefore\n" + BeginMarker + "\nnew table\n" + EndMarker + "\nafter\n"
	if string(b) != want {
		t.Errorf("got\n%s\nwant\n%s", b, want)
	}
	if err := os.WriteFile(file, []byte("no markers"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteBetweenMarkers(file, "x"); err == nil {
		t.Error("a file without markers was written")
	}
}

func TestMarkdownSaysWhatIsMissed(t *testing.T) {
	c := Case{Name: "state", Unit: "msgs/s", Rows: []Row{{Metric: Throughput, MinRatio: 0.9, AtLeastMosquitto: true}}}
	res := func(rates ...float64) []load.Result {
		var rs []load.Result
		for i, r := range rates {
			rs = append(rs, load.Result{Round: i + 1, Rate: r})
		}
		return rs
	}
	noisy := Case{Name: "noisy", Unit: "msgs/s", Rows: c.Rows}
	bridge := Case{Name: "bridge", Unit: "µs", Only: Homemq, Rows: []Row{{Metric: LatencyP99}}}
	rep := &Report{Started: time.Now(), Rounds: 3, Duration: time.Second, Targets: []string{Homemq, Bare}, Skipped: map[string]string{Mosquitto: "not installed"},
		Cases: []CaseResult{
			{Case: c, Results: map[string][]load.Result{Homemq: res(80, 81, 79), Bare: res(100, 100, 100)}},
			{Case: noisy, Results: map[string][]load.Result{Homemq: res(85, 95, 92), Bare: res(100, 100, 100)}},
			{Case: bridge, Results: map[string][]load.Result{Homemq: {{P99: 2500}}}},
		}}
	md := rep.Markdown()
	for _, want := range []string{"| state | msgs/s | 0.80× (0.79–0.81) | ≥ 0.90×, ≥ Mosquitto | – | **no**: below 0.90× bare | 80 | 100 | not measured |",
		"| noisy | msgs/s | 0.92× (0.85–0.95) | ≥ 0.90×, ≥ Mosquitto | – | inconclusive: spread crosses 0.90× bare | 92 | 100 | not measured |",
		"mosquitto: no column: not installed", "| bridge | p99 µs | – | – | – | – | 2.5 ms | no such feature | no such feature |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

// TestRunAgainstRealProcesses builds homemq and the bare server, and runs
// a short comparison with every kind of scenario against the real
// processes (and Mosquitto when it is installed).
func TestRunAgainstRealProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two programs and starts brokers")
	}
	dir := t.TempDir()
	bin := func(name, pkg string) string {
		out := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", out, pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
		return out
	}
	cfg := Config{Homemq: bin("homemq", "homemq/cmd/homemq"), Bare: bin("homemq-bare", "homemq/bench/cmd/homemq-bare"),
		Work: filepath.Join(dir, "work"), Rounds: 1, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond}
	if p, err := exec.LookPath("mosquitto"); err == nil {
		cfg.Mosquitto = p
	} else if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		cfg.Mosquitto = "/usr/sbin/mosquitto"
	}
	if err := os.MkdirAll(cfg.Work, 0o700); err != nil {
		t.Fatal(err)
	}
	all := Cases(cfg.Duration, cfg.Warmup, 200)
	var cases []Case
	for _, c := range all {
		switch {
		case c.Name == "state, QoS 0, 64 B, 4 → 4", c.Spec.Scenario == load.Idle, c.TLS:
			cases = append(cases, c)
		case c.Spec.Scenario == load.Storm:
			c.Spec.Conns = 50
			cases = append(cases, c)
		case c.Spec.Scenario == load.Connect, c.Spec.Scenario == load.Command && c.Spec.Rate == 0, c.Spec.Scenario == load.SignalR:
			c.Spec.Tokens = 200
			cases = append(cases, c)
		}
	}
	cfg.Cases = cases
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Cases) != len(cases) {
		t.Fatalf("%d cases reported, want %d", len(rep.Cases), len(cases))
	}
	for _, cr := range rep.Cases {
		for _, name := range rep.Targets {
			if cr.Case.Only != "" && cr.Case.Only != name {
				if len(cr.Results[name]) > 0 {
					t.Errorf("%s ran on %s", cr.Case.Name, name)
				}
				continue
			}
			if len(cr.Errors[name]) > 0 || len(cr.Results[name]) != 1 {
				t.Errorf("%s on %s: %v", cr.Case.Name, name, cr.Errors[name])
				continue
			}
			r := cr.Results[name][0]
			if v := cr.Case.Rows[0].Metric.value(r); v <= 0 || r.Errors > 0 {
				t.Errorf("%s on %s: %+v", cr.Case.Name, name, r)
			}
		}
	}
	md := rep.Markdown()
	if !strings.Contains(md, "| JWT connects") || !strings.Contains(md, rep.Machine.CPU) {
		t.Errorf("markdown lacks rows or the machine:\n%s", md)
	}
	// No target outlives Run.
	for _, prog := range []string{cfg.Homemq, cfg.Bare} {
		if pids := running(prog); len(pids) > 0 {
			t.Errorf("%s still runs as %v after Run returned", prog, pids)
		}
	}
}

// running lists the processes whose program is prog, from /proc.
func running(prog string) []string {
	var pids []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if exe, err := os.Readlink(filepath.Join(d, "exe")); err == nil && exe == prog {
			pids = append(pids, filepath.Base(d))
		}
	}
	return pids
}

func TestIdleGrowth(t *testing.T) {
	steps := func(perConn ...float64) load.Result {
		r := load.Result{Scenario: load.Idle}
		for i, v := range perConn {
			r.Steps = append(r.Steps, load.IdleStep{Conns: []int{1000, 15000}[i], BytesPerConn: v})
		}
		return r
	}
	c := Case{Name: "idle connections (15000)", Spec: load.Spec{Scenario: load.Idle}}
	rep := &Report{Cases: []CaseResult{{Case: c, Results: map[string][]load.Result{
		Homemq: {steps(40000, 36000), steps(42000, 34000), steps(41000, 35000)},
		Bare:   {steps(33000, 32000)},
	}}}}
	md := idleGrowth(rep)
	for _, want := range []string{
		"| 1,000 | 41.0 KB | 33.0 KB | – |",
		"| 15,000 | 35.0 KB | 32.0 KB | – |",
		"One million such connections at the figure of 15,000: homemq 32.6 GiB, bare 29.8 GiB.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("growth table lacks %q:\n%s", want, md)
		}
	}
}

func TestInprocMarkdown(t *testing.T) {
	res := func(heap, stack, rss float64) inproc.Result {
		return inproc.Result{Steps: []inproc.Step{
			{Conns: 10000, HeapPerConn: heap + 100, StackPerConn: stack, RSSPerConn: rss + 100, GoroutinesPerConn: 2},
			{Conns: 100000, HeapPerConn: heap, StackPerConn: stack, RSSPerConn: rss, GoroutinesPerConn: 2},
		}}
	}
	in := &Inproc{Conns: 100000, Results: map[string][]inproc.Result{
		inproc.Homemq: {res(17000, 8000, 30000), res(18000, 8000, 31000), res(19000, 8000, 50000)},
		inproc.Bare:   {res(15000, 8000, 28000)},
	}, Errors: []string{"bare round 2: killed"}, ProfileTop: "flat flat%\n196MB newClient\n"}
	md := in.Markdown()
	for _, want := range []string{
		"| 100,000 | homemq | 18.0 KB | 8,000 B | 26.0 KB | 31.0 KB | 2.00 |",
		"| 10,000 | bare | 15.1 KB | 8,000 B | 23.1 KB | 28.1 KB | 2.00 |",
		"homemq 28.9 GiB, bare 26.1 GiB",
		"in-process run failed: bare round 2: killed",
		"196MB newClient",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("in-process table lacks %q:\n%s", want, md)
		}
	}
}
