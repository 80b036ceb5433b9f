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

	"homemq/bench/inproc"
)

// InprocSteps are the counts at which the in-process runs read memory on
// the way to their total.
var InprocSteps = []int{10000, 50000}

// Inproc is the in-process idle measurement of a comparison: rounds of
// `homemq-bench inproc` for homemq and bare mochi, taking turns.
type Inproc struct {
	Conns   int
	Results map[string][]inproc.Result
	Errors  []string
	// ProfileTop is `go tool pprof -top` of homemq's heap with every
	// connection open ("" when none was taken).
	ProfileTop string
}

// RunInproc runs bench (the homemq-bench program) `inproc` rounds times
// for each of homemq and bare mochi, each in a process of its own.
func RunInproc(ctx context.Context, bench string, conns, rounds int, log io.Writer) *Inproc {
	in := &Inproc{Conns: conns, Results: map[string][]inproc.Result{}}
	steps := make([]string, 0, len(InprocSteps))
	for _, n := range InprocSteps {
		steps = append(steps, strconv.Itoa(n))
	}
	for round := 1; round <= rounds && ctx.Err() == nil; round++ {
		for _, name := range []string{inproc.Homemq, inproc.Bare} {
			var out, stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, bench, "inproc", "--json", "--target", name, "--conns", strconv.Itoa(conns), "--steps", strings.Join(steps, ","))
			cmd.Stdout, cmd.Stderr = &out, &stderr
			var r inproc.Result
			err := cmd.Run()
			if err == nil {
				err = json.Unmarshal(out.Bytes(), &r)
			}
			if err != nil {
				in.Errors = append(in.Errors, fmt.Sprintf("%s round %d: %v %s", name, round, err, strings.TrimSpace(stderr.String())))
				fmt.Fprintf(log, "[inproc] %s round %d: error: %v\n", name, round, err)
				continue
			}
			in.Results[name] = append(in.Results[name], r)
			if n := len(r.Steps); n > 0 {
				st := r.Steps[n-1]
				fmt.Fprintf(log, "[inproc] %-6s round %d: %d conns: heap %.0f + stacks %.0f B/conn, RSS %.0f B/conn\n", name, round, st.Conns, st.HeapPerConn, st.StackPerConn, st.RSSPerConn)
			}
		}
	}
	return in
}

// Markdown renders the in-process table: per step, each target's live
// heap, stacks and RSS per connection (medians over the rounds), and the
// extrapolation to one million connections.
func (in *Inproc) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "In-process idle connections (`homemq-bench inproc`: the broker and %s connections through an in-process listener in one process, client ends subtracted; medians of %d rounds):\n\n",
		figure(float64(in.Conns), Throughput), len(in.Results[inproc.Homemq]))
	b.WriteString("| connections | target | live heap / conn | stacks / conn | heap + stacks / conn | RSS / conn | goroutines / conn |\n")
	b.WriteString("| ---: | --- | ---: | ---: | ---: | ---: | ---: |\n")
	var steps []int
	for _, rs := range in.Results {
		for _, r := range rs {
			if len(r.Steps) > len(steps) {
				steps = steps[:0]
				for _, st := range r.Steps {
					steps = append(steps, st.Conns)
				}
			}
		}
	}
	last := map[string]float64{}
	for i, n := range steps {
		for _, name := range []string{inproc.Homemq, inproc.Bare} {
			get := func(f func(inproc.Step) float64) float64 {
				var v []float64
				for _, r := range in.Results[name] {
					if i < len(r.Steps) {
						v = append(v, f(r.Steps[i]))
					}
				}
				return median(v)
			}
			heap := get(func(s inproc.Step) float64 { return s.HeapPerConn })
			stack := get(func(s inproc.Step) float64 { return s.StackPerConn })
			rss := get(func(s inproc.Step) float64 { return s.RSSPerConn })
			g := get(func(s inproc.Step) float64 { return s.GoroutinesPerConn })
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %.2f |\n", figure(float64(n), Throughput), name,
				bytesFigure(heap), bytesFigure(stack), bytesFigure(heap+stack), bytesFigure(rss), g)
			last[name] = rss
		}
	}
	var at []string
	for _, name := range []string{inproc.Homemq, inproc.Bare} {
		if v := last[name]; v > 0 {
			at = append(at, fmt.Sprintf("%s %.1f GiB", name, v*OneMillion/(1<<30)))
		}
	}
	if len(at) > 0 {
		fmt.Fprintf(&b, "\nOne million idle connections at the in-process RSS per connection: %s (goal: 16 KB per connection, 15.3 GiB).\n", strings.Join(at, ", "))
	}
	for _, e := range in.Errors {
		fmt.Fprintf(&b, "\n- in-process run failed: %s\n", e)
	}
	if in.ProfileTop != "" {
		b.WriteString("\nWhere homemq's idle connections' heap lives (`go tool pprof -top -sample_index=inuse_space`, first lines):\n\n```\n" + strings.TrimSpace(in.ProfileTop) + "\n```\n")
	}
	return b.String()
}
