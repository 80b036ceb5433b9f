package compare

import (
	"fmt"
	"strings"

	"homemq/bench/load"
)

// OneMillion is the connection count the memory figures are extrapolated
// to (docs/performance.md: one million idle connections on one box).
const OneMillion = 1_000_000

// idleGrowth renders how the idle cases' memory per connection grows with
// the connections held: one row per step, the median over the rounds of
// each target's RSS growth per connection, and what one million
// connections would take at the largest step's figure.
func idleGrowth(rep *Report) string {
	var b strings.Builder
	for _, cr := range rep.Cases {
		if cr.Case.Spec.Scenario != load.Idle {
			continue
		}
		fmt.Fprintf(&b, "\nMemory per connection step by step, %s (RSS growth per connection, median of the rounds):\n\n", cr.Case.Name)
		b.WriteString("| connections | homemq | bare mochi | Mosquitto |\n| ---: | ---: | ---: | ---: |\n")
		steps := idleSteps(cr)
		for i, n := range steps {
			fmt.Fprintf(&b, "| %s |", figure(float64(n), Throughput))
			for _, name := range []string{Homemq, Bare, Mosquitto} {
				fmt.Fprintf(&b, " %s |", bytesFigure(stepMedian(cr.Results[name], i)))
			}
			b.WriteString("\n")
		}
		if len(steps) > 0 {
			last := len(steps) - 1
			var at []string
			for _, name := range []string{Homemq, Bare, Mosquitto} {
				if v := stepMedian(cr.Results[name], last); v > 0 {
					at = append(at, fmt.Sprintf("%s %.1f GiB", name, v*OneMillion/(1<<30)))
				}
			}
			if len(at) > 0 {
				fmt.Fprintf(&b, "\nOne million such connections at the figure of %s: %s.\n", figure(float64(steps[last]), Throughput), strings.Join(at, ", "))
			}
		}
	}
	return b.String()
}

// idleSteps lists the connection counts of the case's steps, from the
// first result that has them.
func idleSteps(cr CaseResult) []int {
	for _, name := range []string{Homemq, Bare, Mosquitto} {
		for _, r := range cr.Results[name] {
			if len(r.Steps) > 0 {
				var n []int
				for _, st := range r.Steps {
					n = append(n, st.Conns)
				}
				return n
			}
		}
	}
	return nil
}

// stepMedian is the median over rs of the bytes per connection at step i.
func stepMedian(rs []load.Result, i int) float64 {
	var v []float64
	for _, r := range rs {
		if i < len(r.Steps) && r.Steps[i].BytesPerConn > 0 {
			v = append(v, r.Steps[i].BytesPerConn)
		}
	}
	return median(v)
}

// bytesFigure formats a byte count per connection: "35.7 KB", "1,148 B".
func bytesFigure(v float64) string {
	switch {
	case v <= 0:
		return "–"
	case v >= 10_000:
		return fmt.Sprintf("%.1f KB", v/1000)
	}
	return figure(v, Throughput) + " B"
}
