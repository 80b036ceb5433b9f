package compare

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

func TestVerdict(t *testing.T) {
	thr := Row{Metric: Throughput, MinRatio: 0.9, AtLeastMosquitto: true}
	p99 := Row{Metric: LatencyP99, MaxRatio: 1.2}
	mem := Row{Metric: BytesPerConn, MaxExtra: 2048}
	for _, tc := range []struct {
		name           string
		row            Row
		hmq, bare, mq  float64
		haveMq, wantOK bool
		why            string
	}{
		{"fast enough", thr, 95, 100, 90, true, true, ""},
		{"too slow for bare", thr, 80, 100, 70, true, false, "below 0.90× bare"},
		{"slower than mosquitto", thr, 95, 100, 120, true, false, "below Mosquitto"},
		{"mosquitto absent", thr, 95, 100, 0, false, true, ""},
		{"latency ok", p99, 110, 100, 0, true, true, ""},
		{"latency too high", p99, 130, 100, 0, true, false, "above 1.20× bare"},
		{"memory ok", mem, 30000, 29000, 700, true, true, ""},
		{"memory too high", mem, 32000, 29000, 700, true, false, "more than bare + 2048 B"},
	} {
		ok, why := tc.row.verdict(tc.hmq, tc.bare, tc.mq, tc.haveMq)
		if ok != tc.wantOK || strings.Join(why, ", ") != tc.why {
			t.Errorf("%s: got %v %q, want %v %q", tc.name, ok, why, tc.wantOK, tc.why)
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
		for _, r := range rates {
			rs = append(rs, load.Result{Rate: r})
		}
		return rs
	}
	bridge := Case{Name: "bridge", Unit: "µs", Only: Homemq, Rows: []Row{{Metric: LatencyP99}}}
	rep := &Report{Started: time.Now(), Rounds: 3, Duration: time.Second, Targets: []string{Homemq, Bare}, Skipped: map[string]string{Mosquitto: "not installed"},
		Cases: []CaseResult{
			{Case: c, Results: map[string][]load.Result{Homemq: res(80, 81, 79), Bare: res(100, 100, 100)}},
			{Case: bridge, Results: map[string][]load.Result{Homemq: {{P99: 2500}}}},
		}}
	md := rep.Markdown()
	for _, want := range []string{"| state | msgs/s | 0.80× | ≥ 0.90×, ≥ Mosquitto | – | **no**: below 0.90× bare | 80 | 100 | not measured |",
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
