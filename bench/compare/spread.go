package compare

import (
	"fmt"
	"slices"

	"homemq/bench/load"
)

// Spread summarises one figure over the rounds of a case: its median and
// the least and greatest value of any round.
type Spread struct {
	Median, Min, Max float64
	N                int // rounds that gave a value
}

// summarise returns the spread of v; ok is false when v is empty.
func summarise(v []float64) (s Spread, ok bool) {
	if len(v) == 0 {
		return Spread{}, false
	}
	return Spread{Median: median(v), Min: slices.Min(v), Max: slices.Max(v), N: len(v)}, true
}

// perRound pairs the results of two targets by round and returns f of
// each pair (a round where either target failed, or gave no positive
// figure, is left out). The ratio of a round is taken within that round,
// where both targets shared the machine's state, and only then summarised.
func perRound(a, b []load.Result, m Metric, f func(x, y float64) float64) []float64 {
	byRound := map[int]float64{}
	for i, r := range b {
		if v := m.value(r); v > 0 {
			byRound[roundOf(r, i)] = v
		}
	}
	var out []float64
	for i, r := range a {
		x := m.value(r)
		y, ok := byRound[roundOf(r, i)]
		if x > 0 && ok {
			out = append(out, f(x, y))
		}
	}
	return out
}

// roundOf is r's round, or its position for results that carry none.
func roundOf(r load.Result, i int) int {
	if r.Round > 0 {
		return r.Round
	}
	return i + 1
}

func divide(x, y float64) float64   { return x / y }
func subtract(x, y float64) float64 { return x - y }

// Outcome is a row's verdict against its goal.
type Outcome int

// The outcomes: the goal is met in every round, missed in every round, or
// met in some and missed in others (the spread crosses the goal, so the
// run cannot tell the effect from noise).
const (
	Met Outcome = iota
	Missed
	Inconclusive
)

func (o Outcome) String() string {
	switch o {
	case Missed:
		return "**no**"
	case Inconclusive:
		return "inconclusive"
	}
	return "yes"
}

// judgeAtLeast judges a figure that must be at least goal; judgeAtMost one
// that must be at most goal.
func judgeAtLeast(s Spread, goal float64) Outcome {
	switch {
	case s.Min >= goal:
		return Met
	case s.Max < goal:
		return Missed
	}
	return Inconclusive
}

func judgeAtMost(s Spread, goal float64) Outcome {
	switch {
	case s.Max <= goal:
		return Met
	case s.Min > goal:
		return Missed
	}
	return Inconclusive
}

// Comparison is one row's figures over the rounds: homemq against bare
// mochi (a ratio, or for memory a difference in bytes) and against
// Mosquitto (a ratio), each computed per round and then summarised.
type Comparison struct {
	VsBare, VsMosquitto     Spread
	HaveBare, HaveMosquitto bool
}

// compareRow computes the per-round comparisons of row in cr.
func compareRow(cr CaseResult, row Row) Comparison {
	var c Comparison
	vsBare := divide
	if row.Metric == BytesPerConn {
		vsBare = subtract
	}
	c.VsBare, c.HaveBare = summarise(perRound(cr.Results[Homemq], cr.Results[Bare], row.Metric, vsBare))
	c.VsMosquitto, c.HaveMosquitto = summarise(perRound(cr.Results[Homemq], cr.Results[Mosquitto], row.Metric, divide))
	return c
}

// verdict judges c against the row's goals: missed if any goal is missed
// in every round, inconclusive if any goal's spread crosses it, met
// otherwise; why names the goals missed (or, when none is missed for
// sure, the goals whose spread crosses them).
func (r Row) verdict(c Comparison) (Outcome, []string) {
	var missed, crossed []string
	judge := func(o Outcome, miss, goal string) {
		switch o {
		case Missed:
			missed = append(missed, miss)
		case Inconclusive:
			crossed = append(crossed, "spread crosses "+goal)
		}
	}
	if c.HaveBare {
		switch {
		case r.Metric == BytesPerConn && r.MaxExtra > 0:
			judge(judgeAtMost(c.VsBare, r.MaxExtra), fmt.Sprintf("more than bare + %.0f B", r.MaxExtra), fmt.Sprintf("bare + %.0f B", r.MaxExtra))
		case r.Metric != BytesPerConn && r.MinRatio > 0:
			judge(judgeAtLeast(c.VsBare, r.MinRatio), fmt.Sprintf("below %.2f× bare", r.MinRatio), fmt.Sprintf("%.2f× bare", r.MinRatio))
		case r.Metric != BytesPerConn && r.MaxRatio > 0:
			judge(judgeAtMost(c.VsBare, r.MaxRatio), fmt.Sprintf("above %.2f× bare", r.MaxRatio), fmt.Sprintf("%.2f× bare", r.MaxRatio))
		}
	}
	if r.AtLeastMosquitto && c.HaveMosquitto {
		judge(judgeAtLeast(c.VsMosquitto, 1), "below Mosquitto", "Mosquitto")
	}
	switch {
	case len(missed) > 0:
		return Missed, missed
	case len(crossed) > 0:
		return Inconclusive, crossed
	}
	return Met, nil
}

// ratioCell formats a ratio spread as "0.94× (0.90–0.98)"; one round
// gives the ratio alone.
func ratioCell(s Spread) string {
	if s.N <= 1 || s.Min == s.Max {
		return fmt.Sprintf("%.2f×", s.Median)
	}
	return fmt.Sprintf("%.2f× (%.2f–%.2f)", s.Median, s.Min, s.Max)
}

// bytesCell formats a spread of byte differences as "+3965 B (+3100…+4200)".
func bytesCell(s Spread) string {
	if s.N <= 1 || s.Min == s.Max {
		return fmt.Sprintf("%+.0f B", s.Median)
	}
	return fmt.Sprintf("%+.0f B (%+.0f…%+.0f)", s.Median, s.Min, s.Max)
}
