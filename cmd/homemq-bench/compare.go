package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"homemq/bench/compare"
)

func compareCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg compare.Config
	fs.StringVar(&cfg.Homemq, "homemq", "bin/homemq", "the homemq program")
	fs.StringVar(&cfg.Bare, "bare", "bin/homemq-bare", "the bare mochi comparison server")
	mosquitto := fs.String("mosquitto", "", "the mosquitto program (default: found on PATH or in /usr/sbin; \"none\" skips it)")
	fs.StringVar(&cfg.Work, "work", "", "scratch folder for configs, data and logs (default: a new temporary folder)")
	fs.IntVar(&cfg.Rounds, "rounds", compare.DefaultRounds, "rounds per scenario (medians and spreads over them)")
	fs.DurationVar(&cfg.Duration, "duration", 2*time.Second, "measured window per run")
	fs.DurationVar(&cfg.Warmup, "warmup", 500*time.Millisecond, "load before measuring, per run")
	fs.IntVar(&cfg.IdleConns, "idle-conns", 15000, "connections of the idle-memory scenarios (plain and TLS), dialled from 4 loopback addresses")
	out := fs.String("out", "", "markdown file whose bench-compare section to replace (default: print the section)")
	goBench := fs.String("gobench", "", "`go test -bench` output of ./bench to add as a table")
	rawJSON := fs.String("json", "", "also write every result as JSON to this file")
	timeout := fs.Duration("timeout", 30*time.Minute, "stop (and report what ran) after this long")
	noCheck := fs.Bool("no-check", false, "skip the two-generator-process check")
	only := fs.String("only", "", "run only the scenarios whose name contains this text (e.g. storm, idle)")
	stormAgents := fs.Int("storm-agents", compare.StormAgents, "agents of the reconnect storm")
	inprocConns := fs.Int("inproc-conns", 100000, "in-process idle connections per run (homemq-bench inproc; 0 skips them)")
	inprocRounds := fs.Int("inproc-rounds", 3, "rounds of the in-process idle runs")
	clusterRounds := fs.Int("cluster-rounds", 3, "rounds of the cluster comparison (homemq-bench cluster, 3 nodes; 0 skips it)")
	profileTop := fs.String("idle-profile", "", "`go tool pprof -top` output of an idle homemq's heap to add under the in-process table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Mosquitto = findMosquitto(*mosquitto)
	compare.StormAgents = *stormAgents
	if *only != "" {
		for _, c := range compare.Cases(cfg.Duration, cfg.Warmup, cfg.IdleConns) {
			if strings.Contains(c.Name, *only) {
				cfg.Cases = append(cfg.Cases, c)
			}
		}
		if len(cfg.Cases) == 0 {
			return fmt.Errorf("--only %q: no scenario's name contains it", *only)
		}
		*noCheck = true
	}
	if !*noCheck {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		cfg.Bench = self
	}
	for _, p := range []*string{&cfg.Homemq, &cfg.Bare} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("%s: %w (build it first: make bench-compare does)", *p, err)
		}
		*p = abs
	}
	if cfg.Work == "" {
		dir, err := os.MkdirTemp("", "homemq-bench-")
		if err != nil {
			return err
		}
		cfg.Work = dir
	}
	fmt.Fprintf(stderr, "homemq-bench compare: work folder %s\n", cfg.Work)
	cfg.Log = stderr
	raiseFileLimit()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rep, err := compare.Run(ctx, cfg)
	if rep == nil {
		return err
	}
	if err != nil {
		fmt.Fprintf(stderr, "homemq-bench compare: stopped early: %v; reporting what ran\n", err)
	}
	if *inprocConns > 0 && ctx.Err() == nil {
		self, serr := os.Executable()
		if serr != nil {
			return serr
		}
		in := compare.RunInproc(ctx, self, *inprocConns, *inprocRounds, stderr)
		if *profileTop != "" {
			if b, rerr := os.ReadFile(*profileTop); rerr == nil {
				in.ProfileTop = string(b)
			}
		}
		rep.ExtraTables += in.Markdown() + "\n"
	}
	if *clusterRounds > 0 && *only == "" && ctx.Err() == nil {
		self, serr := os.Executable()
		if serr != nil {
			return serr
		}
		rep.ExtraTables += compare.RunCluster(ctx, self, 3, *clusterRounds, cfg.Duration, cfg.Warmup, stderr).Markdown() + "\n"
	}
	if *goBench != "" {
		f, ferr := os.Open(*goBench)
		if ferr != nil {
			return ferr
		}
		rep.ExtraTables += "Per-publish hook cost, in-process (Go benchmarks, medians of the `-count` runs):\n\n" + compare.GoBenchTable(f)
		f.Close()
	}
	if *rawJSON != "" {
		b, jerr := json.MarshalIndent(rep, "", "  ")
		if jerr != nil {
			return jerr
		}
		if werr := os.WriteFile(*rawJSON, b, 0o644); werr != nil {
			return werr
		}
	}
	md := rep.Markdown()
	if *out == "" {
		fmt.Fprint(stdout, md)
	} else if werr := compare.WriteBetweenMarkers(*out, md); werr != nil {
		return werr
	} else {
		fmt.Fprintf(stderr, "homemq-bench compare: wrote the table into %s\n", *out)
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// findMosquitto returns the Mosquitto program to use, or "" to skip it.
func findMosquitto(flagValue string) string {
	switch flagValue {
	case "none":
		return ""
	case "":
		if p, err := exec.LookPath("mosquitto"); err == nil {
			return p
		}
		if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
			return "/usr/sbin/mosquitto"
		}
		return ""
	}
	return flagValue
}
