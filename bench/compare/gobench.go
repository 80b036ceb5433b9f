package compare

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// benchLine is one line of `go test -bench -benchmem` output.
type benchLine struct {
	name                string // without the -GOMAXPROCS suffix
	ns, bytes, allocs   float64
	hasBytes, hasAllocs bool
	custom              float64 // a b.ReportMetric value
	unit                string  // its unit
}

// parseBench reads `go test -bench` output and returns, per benchmark
// name, every measurement (one per -count).
func parseBench(r io.Reader) map[string][]benchLine {
	out := map[string][]benchLine{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		l := benchLine{name: f[0]}
		if i := strings.LastIndexByte(l.name, '-'); i > 0 {
			if _, err := strconv.Atoi(l.name[i+1:]); err == nil {
				l.name = l.name[:i]
			}
		}
		ok := false
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				l.ns, ok = v, true
			case "B/op":
				l.bytes, l.hasBytes = v, true
			case "allocs/op":
				l.allocs, l.hasAllocs = v, true
			default:
				if l.unit == "" && f[i+1] != "ns/op" {
					l.custom, l.unit = v, f[i+1]
				}
			}
		}
		if ok {
			out[l.name] = append(out[l.name], l)
		}
	}
	return out
}

// GoBenchTable renders `go test -bench` output of ./bench as a markdown
// table: every Benchmark…/guard and …/homemq next to its …/allow (the
// Guard alone, and the whole broker, against the allow-all hook), as
// medians over -count runs; benchmarks without variants follow.
func GoBenchTable(r io.Reader) string {
	lines := parseBench(r)
	med := func(name string, get func(benchLine) float64) float64 {
		var v []float64
		for _, l := range lines[name] {
			v = append(v, get(l))
		}
		return median(v)
	}
	ns := func(l benchLine) float64 { return l.ns }
	var names []string
	for n := range lines {
		if base, ok := strings.CutSuffix(n, "/allow"); ok {
			names = append(names, base)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("| Go benchmark (`go test -bench . ./bench`) | Guard / allow-all | homemq / allow-all | allow-all | Guard | homemq | allocs/op: allow-all, Guard, homemq |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, base := range names {
		a, g, h := base+"/allow", base+"/guard", base+"/homemq"
		ans, gns, hns := med(a, ns), med(g, ns), med(h, ns)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s, %s, %s |\n", strings.TrimPrefix(base, "Benchmark"), times(gns, ans), times(hns, ans),
			nsFigure(ans), nsFigure(gns), nsFigure(hns), allocCell(lines[a]), allocCell(lines[g]), allocCell(lines[h]))
	}
	var single []string
	for n := range lines {
		if !strings.HasSuffix(n, "/guard") && !strings.HasSuffix(n, "/allow") && !strings.HasSuffix(n, "/homemq") {
			single = append(single, n)
		}
	}
	sort.Strings(single)
	for _, n := range single {
		fmt.Fprintf(&b, "| %s | – | – | – | %s | – | –, %s, – |\n", strings.TrimPrefix(n, "Benchmark"), nsFigure(med(n, ns)), allocCell(lines[n]))
	}
	if len(custom(lines)) > 0 {
		b.WriteString("\n")
		for _, l := range custom(lines) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func times(a, b float64) string {
	if r, ok := ratio(a, b); ok {
		return fmt.Sprintf("%.2f×", r)
	}
	return "–"
}

func allocCell(ls []benchLine) string {
	if len(ls) == 0 {
		return "–"
	}
	var allocs []float64
	for _, l := range ls {
		allocs = append(allocs, l.allocs)
	}
	return fmt.Sprintf("%.0f", median(allocs))
}

// custom lists the benchmarks that report their own unit (b.ReportMetric),
// such as IdleConn's B/conn, as sentences.
func custom(lines map[string][]benchLine) []string {
	var names []string
	for n, ls := range lines {
		if len(ls) > 0 && ls[0].unit != "" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var out []string
	for _, n := range names {
		var v []float64
		for _, l := range lines[n] {
			v = append(v, l.custom)
		}
		out = append(out, fmt.Sprintf("- %s: %.0f %s (median)", strings.TrimPrefix(n, "Benchmark"), median(v), lines[n][0].unit))
	}
	return out
}

func nsFigure(ns float64) string {
	switch {
	case ns <= 0:
		return "–"
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.2f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}
