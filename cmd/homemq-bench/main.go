// Command homemq-bench is homemq's load generator and the driver of
// `make bench-compare`.
//
//	homemq-bench run --addr 127.0.0.1:1883 --scenario state --pubs 4 --subs 4 --qos 1
//	homemq-bench run --addr 127.0.0.1:1883 --data ./homemq-data --scenario command
//	homemq-bench run --addr 127.0.0.1:1883 --data ./homemq-data --https 127.0.0.1:8443 --scenario signalr
//	homemq-bench compare --bin bin --out docs/performance.md
//	homemq-bench inproc --target homemq --conns 200000 --heap-profile heap.pprof
//	homemq-bench cluster --nodes 3 --rounds 3
//
// run puts one scenario on one broker and prints what it measured (JSON
// with --json); with --data it mints homemq tokens from that data folder,
// without it connects with no password. compare starts homemq, the bare
// mochi server and Mosquitto one after the other on free loopback ports,
// runs every scenario against each in rounds and writes the medians and
// ratios into docs/performance.md. inproc opens idle connections to a
// broker in its own process through an in-process listener, past what
// sockets allow on one machine, and prints memory per connection. cluster
// puts the same load on a single node and on a cluster of nodes in its
// own process (publishers on the first node, subscribers on the last).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"homemq/auth"
	"homemq/bench/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "homemq-bench:", err)
		os.Exit(1)
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: homemq-bench run|compare|inproc|cluster|cluster-scale [flags] (-h for the flags)")
	}
	switch args[0] {
	case "run":
		return runCmd(ctx, args[1:], stdout, stderr)
	case "compare":
		return compareCmd(ctx, args[1:], stdout, stderr)
	case "inproc":
		return inprocCmd(ctx, args[1:], stdout, stderr)
	case "cluster":
		return clusterCmd(ctx, args[1:], stdout, stderr)
	case "cluster-scale":
		return clusterScaleCmd(ctx, args[1:], stdout, stderr)
	case "scale-node":
		return scaleNodeCmd(args[1:], os.Stdin, stdout, stderr)
	}
	return fmt.Errorf("unknown command %q: want run, compare, inproc, cluster or cluster-scale", args[0])
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s load.Spec
	addr := fs.String("addr", "127.0.0.1:1883", "the broker's MQTT address")
	name := fs.String("target", "broker", "a name for the broker in the result")
	data := fs.String("data", "", "homemq data folder to mint tokens from (empty: no passwords)")
	caFile := fs.String("ca", "", "connect with TLS, trusting this CA file")
	pid := fs.Int("pid", 0, "the broker's process id (idle: memory per connection)")
	https := fs.String("https", "", "homemq's HTTPS address (signalr), trusting --data's dev CA")
	scenario := fs.String("scenario", "state", "state, command, connect, idle or signalr")
	qos := fs.Uint("qos", 0, "QoS of publishes and subscriptions (0 or 1)")
	startAt := fs.Int64("start-at", 0, "Unix nanoseconds at which to start measuring (several processes, one window)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	fs.IntVar(&s.Pubs, "pubs", 4, "publishers per group")
	fs.IntVar(&s.Subs, "subs", 4, "subscribers per group")
	fs.IntVar(&s.Groups, "groups", 1, "independent groups (own home each)")
	fs.IntVar(&s.GroupBase, "group-base", 0, "index of the first group (distinct per process)")
	fs.IntVar(&s.Size, "size", 64, "state payload bytes")
	fs.Float64Var(&s.Rate, "rate", 0, "messages/s per publisher (0: as fast as the window allows)")
	fs.IntVar(&s.Window, "window", 256, "messages in flight per group")
	fs.DurationVar(&s.Warmup, "warmup", 500*time.Millisecond, "load before measuring")
	fs.DurationVar(&s.Duration, "duration", 3*time.Second, "measured window")
	fs.IntVar(&s.Workers, "workers", 8, "connect, idle: concurrent dialers")
	fs.IntVar(&s.Conns, "conns", 10000, "idle: connections to hold")
	fs.DurationVar(&s.Settle, "settle", 2*time.Second, "idle: wait before reading memory")
	fs.IntVar(&s.Sources, "sources", 1, "idle: loopback source addresses to dial from (127.0.0.1 …)")
	steps := fs.String("steps", "", "idle: comma-separated connection counts at which to read memory too, e.g. 1000,5000,10000")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *qos > 1 {
		return fmt.Errorf("--qos %d: the load tool speaks QoS 0 and 1", *qos)
	}
	s.Scenario, s.QoS = load.Scenario(*scenario), byte(*qos)
	var err error
	if s.Steps, err = parseSteps(*steps); err != nil {
		return fmt.Errorf("--steps: %w", err)
	}
	if *startAt > 0 {
		s.StartAt = time.Unix(0, *startAt)
	}
	t := load.Target{Name: *name, Addr: *addr, PID: *pid}
	if *data != "" {
		m, err := load.NewMinter(*data, auth.Config{})
		if err != nil {
			return err
		}
		t.Minter = m
	}
	if *caFile != "" {
		conf, err := clientTLS(*caFile)
		if err != nil {
			return err
		}
		t.TLS = conf
	}
	if *https != "" {
		conf, err := clientTLS(filepath.Join(*data, "certs", "ca.pem"))
		if err != nil {
			return err
		}
		t.HTTPS, t.HTTPSTLS = *https, conf
	}
	raiseFileLimit()
	r, err := load.Run(ctx, t, s)
	if *asJSON {
		if jerr := json.NewEncoder(stdout).Encode(r); jerr != nil && err == nil {
			err = jerr
		}
	} else {
		printResult(stdout, r)
	}
	return err
}

func printResult(w io.Writer, r load.Result) {
	switch r.Scenario {
	case load.Connect:
		fmt.Fprintf(w, "%s %s: %.0f connects/s (%d in %.2fs), %d errors %s\n", r.Target, r.Scenario, r.Rate, r.Connects, r.Seconds, r.Errors, r.FirstError)
	case load.Idle:
		for _, st := range r.Steps {
			fmt.Fprintf(w, "%s %s: at %d connections RSS %d bytes, %.0f bytes/connection\n", r.Target, r.Scenario, st.Conns, st.RSS, st.BytesPerConn)
		}
		fmt.Fprintf(w, "%s %s: %d connections, RSS %d -> %d bytes, %.0f bytes/connection, %d errors %s\n",
			r.Target, r.Scenario, r.Conns, r.RSSBefore, r.RSSAfter, r.BytesPerConn, r.Errors, r.FirstError)
	default:
		fmt.Fprintf(w, "%s %s: %.0f msgs/s delivered (%d published, %d delivered in %.2fs), latency p50 %.0fµs p99 %.0fµs p99.9 %.0fµs, refused %d, lost %d, stalls %d, %d errors %s\n",
			r.Target, r.Scenario, r.Rate, r.Published, r.Delivered, r.Seconds, r.P50, r.P99, r.P999, r.Refused, r.Lost, r.Stalls, r.Errors, r.FirstError)
	}
}

// clientTLS trusts the CA in file, for 127.0.0.1.
func clientTLS(file string) (*tls.Config, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca %s: no PEM certificate in it", file)
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, nil
}

// raiseFileLimit lifts the soft open-file limit to the hard one, for
// thousands of connections (children inherit it).
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
