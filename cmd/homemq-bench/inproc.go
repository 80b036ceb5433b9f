package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"homemq/bench/inproc"
)

// inprocCmd runs one in-process idle measurement (bench/inproc) in this
// process and prints it.
func inprocCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("inproc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s inproc.Spec
	fs.StringVar(&s.Target, "target", inproc.Homemq, "homemq or bare")
	fs.IntVar(&s.Conns, "conns", 100000, "idle connections to open through the in-process listener")
	steps := fs.String("steps", "10000,50000", "comma-separated connection counts at which to read memory too")
	fs.StringVar(&s.HeapProfile, "heap-profile", "", "write the heap profile with every connection open to this file")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if s.Steps, err = parseSteps(*steps); err != nil {
		return fmt.Errorf("--steps: %w", err)
	}
	r, err := inproc.Run(ctx, s)
	if *asJSON {
		if jerr := json.NewEncoder(stdout).Encode(r); jerr != nil && err == nil {
			err = jerr
		}
		return err
	}
	for _, st := range r.Steps {
		fmt.Fprintf(stdout, "%s in-process: %d connections: live heap %.0f B/conn, stacks %.0f B/conn, RSS %.0f B/conn, %.2f goroutines/conn\n",
			r.Target, st.Conns, st.HeapPerConn, st.StackPerConn, st.RSSPerConn, st.GoroutinesPerConn)
	}
	fmt.Fprintf(stdout, "%s in-process: %d connections opened in %.1fs; a client end (net.Pipe pair) weighs %.0f B and is subtracted\n",
		r.Target, r.Conns, r.Seconds, r.ClientBytes)
	return err
}

// parseSteps reads "1000,5000" as connection counts.
func parseSteps(list string) ([]int, error) {
	var out []int
	for _, f := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' }) {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q: want positive connection counts separated by commas", list)
		}
		out = append(out, n)
	}
	return out, nil
}
