package compare

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"

	"homemq/bench/load"
)

// Markers delimit the generated part of docs/performance.md.
const (
	BeginMarker = "<!-- bench-compare:begin -->"
	EndMarker   = "<!-- bench-compare:end -->"
)

// Machine names where the absolute figures were measured.
type Machine struct {
	CPUs      int
	CPU       string
	Go        string
	Kernel    string
	MemoryMiB int
	Mosquitto string
}

// DescribeMachine reads the CPU model from /proc/cpuinfo and the rest from
// the runtime, /proc and `mosquitto -h`.
func DescribeMachine(mosquitto string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), CPU: "unknown CPU", Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryMiB = kb >> 10
		}
	}
	if mosquitto != "" {
		out, _ := exec.Command(mosquitto, "-h").CombinedOutput() // exits 3 after printing its usage
		if first, _, _ := strings.Cut(string(out), "\n"); strings.Contains(first, "version") {
			m.Mosquitto = strings.TrimSpace(first)
		}
	}
	return m
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func values(rs []load.Result, m Metric) []float64 {
	v := make([]float64, 0, len(rs))
	for _, r := range rs {
		v = append(v, m.value(r))
	}
	return v
}

// median of v (0 for none).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ratio(a, b float64) (float64, bool) {
	if a <= 0 || b <= 0 {
		return 0, false
	}
	return a / b, true
}

func (r Row) hasGoal() bool {
	return r.MinRatio > 0 || r.MaxRatio > 0 || r.MaxExtra > 0 || r.AtLeastMosquitto
}

func (r Row) goal() string {
	var g []string
	switch {
	case r.MinRatio > 0:
		g = append(g, fmt.Sprintf("≥ %.2f×", r.MinRatio))
	case r.MaxRatio > 0:
		g = append(g, fmt.Sprintf("≤ %.2f×", r.MaxRatio))
	case r.MaxExtra > 0:
		g = append(g, fmt.Sprintf("≤ bare + %.0f B", r.MaxExtra))
	}
	if r.AtLeastMosquitto {
		g = append(g, "≥ Mosquitto")
	}
	if len(g) == 0 {
		return "–"
	}
	return strings.Join(g, ", ")
}

func (m Metric) label(unit string) string {
	switch m {
	case LatencyP50:
		return "p50 " + unit
	case LatencyP99:
		return "p99 " + unit
	case LatencyP999:
		return "p99.9 " + unit
	case AdmitSeconds:
		return "s until all re-admitted"
	case DeliverSeconds:
		return "s until all commands delivered"
	case CPUSeconds:
		return "broker CPU s"
	case Delivered:
		return "queued commands delivered"
	}
	return unit
}

// Markdown renders the report: the table of medians, ratios first, then
// the machine, the generator check and any notes.
func (rep *Report) Markdown() string {
	var b bytes.Buffer
	haveMosq := slices.Contains(rep.Targets, Mosquitto)
	fmt.Fprintf(&b, "Measured by `make bench-compare` on %s: rounds per scenario: %d, measured window per run: %v, targets taking turns within each round (homemq, bare mochi, Mosquitto); every figure is the median of the rounds; a ratio is taken within each round and shown as its median (least–greatest over the rounds); a goal is met (yes) or missed (**no**) only if every round says so, otherwise the row is inconclusive.\n\n",
		rep.Started.UTC().Format("2006-01-02"), rep.Rounds, rep.Duration)
	b.WriteString("| scenario | metric | homemq / bare | goal | homemq / Mosquitto | met | homemq | bare mochi | Mosquitto |\n")
	b.WriteString("| --- | --- | ---: | --- | ---: | --- | ---: | ---: | ---: |\n")
	var notes []string
	for _, cr := range rep.Cases {
		for _, row := range cr.Case.Rows {
			h := median(values(cr.Results[Homemq], row.Metric))
			bare := median(values(cr.Results[Bare], row.Metric))
			mq := median(values(cr.Results[Mosquitto], row.Metric))
			c := compareRow(cr, row)
			hb, mb := "–", "–"
			if c.HaveBare {
				if row.Metric == BytesPerConn {
					hb = bytesCell(c.VsBare)
				} else {
					hb = ratioCell(c.VsBare)
				}
			}
			if c.HaveMosquitto && haveMosq {
				mb = ratioCell(c.VsMosquitto)
			}
			met := "–"
			if row.hasGoal() {
				o, why := row.verdict(c)
				met = o.String()
				if len(why) > 0 {
					met += ": " + strings.Join(why, ", ")
				}
			}
			mqCell, bareCell := figure(mq, row.Metric), figure(bare, row.Metric)
			if !haveMosq {
				mqCell = "not measured"
			}
			if cr.Case.Only != "" {
				mqCell, bareCell = "no such feature", "no such feature"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", cr.Case.Name, row.Metric.label(cr.Case.Unit),
				hb, row.goal(), mb, met, figure(h, row.Metric), bareCell, mqCell)
		}
		notes = append(notes, caseNotes(cr)...)
	}
	b.WriteString(idleGrowth(rep))
	m := rep.Machine
	fmt.Fprintf(&b, "\nMachine: %d × %s, %d MiB, Linux %s, %s", m.CPUs, m.CPU, m.MemoryMiB, m.Kernel, m.Go)
	if m.Mosquitto != "" {
		fmt.Fprintf(&b, ", %s", m.Mosquitto)
	}
	fmt.Fprintf(&b, ". Load average before the run %s, after %s. The whole run took %s. Absolute figures hold for this machine only; the ratios are what to compare.\n",
		rep.LoadBefore, rep.LoadAfter, rep.Elapsed.Round(1e9))
	for name, why := range rep.Skipped {
		notes = append(notes, fmt.Sprintf("%s: no column: %s.", name, why))
	}
	if c := rep.Check; c != nil {
		one, two := median(c.One), median(c.Two)
		line := fmt.Sprintf("Generator check (%s, %s split into 2 groups, against %s): one generator process %s msgs/s, two processes %s msgs/s",
			"state", fmt.Sprintf("QoS %d, %d B, %d → %d per group", c.Spec.QoS, c.Spec.Size, c.Spec.Pubs, c.Spec.Subs), c.Target, figure(one, Throughput), figure(two, Throughput))
		if x, ok := ratio(two, one); ok {
			verdict := "so one generator is not the bottleneck"
			if x > 1.05 {
				verdict = "**so the generator limits the measured rate**"
			}
			line += fmt.Sprintf(" (%.2f×, %s)", x, verdict)
		}
		if len(c.Errors) > 0 {
			line += "; errors: " + strings.Join(c.Errors, "; ")
		}
		fmt.Fprintf(&b, "\n%s.\n", line)
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes from this run:\n\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	if rep.ExtraTables != "" {
		b.WriteString("\n" + rep.ExtraTables)
	}
	return b.String()
}

func caseNotes(cr CaseResult) []string {
	var notes []string
	for _, name := range []string{Homemq, Bare, Mosquitto} {
		var lost, refused, errs int64
		first := ""
		for _, r := range cr.Results[name] {
			lost += r.Lost
			refused += r.Refused
			errs += r.Errors
			if first == "" {
				first = r.FirstError
			}
		}
		if lost > 0 || refused > 0 || errs > 0 {
			n := fmt.Sprintf("%s, %s: %d messages lost, %d refused, %d client errors", cr.Case.Name, name, lost, refused, errs)
			if first != "" {
				n += " (first: " + first + ")"
			}
			notes = append(notes, n+".")
		}
		for _, e := range cr.Errors[name] {
			notes = append(notes, fmt.Sprintf("%s, %s: a run failed: %s.", cr.Case.Name, name, e))
		}
	}
	return notes
}

// figure formats a median for the table, with thousands separators.
func figure(v float64, m Metric) string {
	if v <= 0 {
		return "–"
	}
	if m == AdmitSeconds || m == DeliverSeconds || m == CPUSeconds {
		return fmt.Sprintf("%.2f s", v)
	}
	if m == LatencyP50 || m == LatencyP99 || m == LatencyP999 {
		if v >= 1000 {
			return fmt.Sprintf("%.1f ms", v/1000)
		}
		return fmt.Sprintf("%.0f µs", v)
	}
	s := fmt.Sprintf("%.0f", v)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// WriteBetweenMarkers replaces what lies between BeginMarker and EndMarker
// in file with content.
func WriteBetweenMarkers(file, content string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, BeginMarker), strings.Index(s, EndMarker)
	if i < 0 || j < i {
		return fmt.Errorf("compare: %s has no %s … %s section to fill", file, BeginMarker, EndMarker)
	}
	out := s[:i+len(BeginMarker)] + "\n" + strings.TrimSpace(content) + "\n" + s[j:]
	return os.WriteFile(file, []byte(out), 0o644)
}
