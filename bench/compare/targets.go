package compare

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"homemq/bench"
	"homemq/bench/load"
	"homemq/broker"
	"homemq/certs"
)

// The targets, in the order every round runs them.
const (
	Homemq    = "homemq"
	Bare      = "bare"
	Mosquitto = "mosquitto"
)

// server is one running target process.
type server struct {
	name  string
	bin   string
	args  []string
	log   string // the log file's path
	cmd   *exec.Cmd
	plain string // MQTT/TCP address
	tls   string // MQTT over TLS address
	https string // homemq's HTTPS address (SignalR bridge)
	done  chan struct{}
	err   error
}

// env is what the targets share: the homemq data folder (keys and dev
// certificates, also used by the bare server and Mosquitto for TLS), the
// client TLS configuration and the token minter.
type env struct {
	cfg    Config
	data   string
	dev    certs.Dev
	tls    *tls.Config
	minter *load.Minter
}

func newEnv(cfg Config) (*env, error) {
	e := &env{cfg: cfg, data: filepath.Join(cfg.Work, "homemq-data")}
	if err := os.MkdirAll(e.data, 0o700); err != nil {
		return nil, err
	}
	var err error
	if e.minter, err = load.NewMinter(e.data, broker.DefaultConfig().Tokens); err != nil {
		return nil, err
	}
	if e.dev, err = certs.EnsureDev(filepath.Join(e.data, "certs")); err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(e.dev.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	e.tls = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return e, nil
}

// target describes s to the load tool.
func (e *env) target(s *server, useTLS bool) load.Target {
	t := load.Target{Name: s.name, Addr: s.plain, PID: s.cmd.Process.Pid}
	if useTLS {
		t.Addr, t.TLS = s.tls, e.tls
	}
	if s.https != "" {
		t.HTTPS, t.HTTPSTLS = s.https, e.tls
	}
	t.Restart = s.restart
	// Every target gets the same tokens and signed envelopes; only homemq
	// checks them.
	t.Minter = e.minter
	return t
}

// freePort returns a loopback address nobody listens on right now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// start runs target name on free loopback ports and waits until both its
// MQTT listeners accept connections.
func (e *env) start(ctx context.Context, name string) (*server, error) {
	return e.startWith(ctx, name, false)
}

// startWith is start; persist asks Mosquitto to save its state every
// second (homemq always persists; the bare server cannot).
func (e *env) startWith(ctx context.Context, name string, persist bool) (*server, error) {
	s := &server{name: name}
	var err error
	if s.plain, err = freePort(); err != nil {
		return nil, err
	}
	if s.tls, err = freePort(); err != nil {
		return nil, err
	}
	var args []string
	var bin string
	switch name {
	case Homemq:
		bin = e.cfg.Homemq
		file, err := e.homemqConfig(s)
		if err != nil {
			return nil, err
		}
		args = []string{"serve", "--config", file}
	case Bare:
		bin = e.cfg.Bare
		ws, err := freePort()
		if err != nil {
			return nil, err
		}
		args = []string{"--mqtt-plain", s.plain, "--mqtt", s.tls, "--ws", ws, "--cert", e.dev.CertFile, "--key", e.dev.KeyFile, "--log-level", "error"}
	case Mosquitto:
		bin = e.cfg.Mosquitto
		file, err := e.mosquittoConfig(s, persist)
		if err != nil {
			return nil, err
		}
		args = []string{"-c", file}
	default:
		return nil, fmt.Errorf("compare: unknown target %q", name)
	}
	if bin == "" {
		return nil, fmt.Errorf("compare: no program for target %s", name)
	}
	s.bin, s.args, s.log = bin, args, filepath.Join(e.cfg.Work, name+".log")
	if err := s.launch(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// launch starts s's program and waits until it is ready.
func (s *server) launch(ctx context.Context) error {
	logFile, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	s.done, s.err = make(chan struct{}), nil
	s.cmd = exec.Command(s.bin, s.args...)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	// If this process dies, the kernel kills the target too.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("compare: start %s: %w", s.name, err)
	}
	done := s.done
	cmd := s.cmd
	go func() { err := cmd.Wait(); s.err = err; close(done) }()
	if err := s.waitReady(ctx, 15*time.Second); err != nil {
		s.stop()
		return fmt.Errorf("compare: %s did not come up (see %s): %w", s.name, s.log, err)
	}
	return nil
}

// restart kills s (SIGKILL: no shutdown, no final save) and starts it
// again on the same addresses and data; it returns the new process id.
func (s *server) restart(ctx context.Context) (int, error) {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	if err := s.launch(ctx); err != nil {
		return 0, err
	}
	return s.cmd.Process.Pid, nil
}

func (s *server) waitReady(ctx context.Context, limit time.Duration) error {
	end := time.Now().Add(limit)
	for _, addr := range []string{s.plain, s.tls} {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				_ = c.Close()
				break
			}
			select {
			case <-s.done:
				return fmt.Errorf("exited: %v", s.err)
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(end) {
				return fmt.Errorf("nothing listens on %s after %v", addr, limit)
			}
		}
	}
	return nil
}

// stop asks the target to end (SIGTERM), and kills it after 5 seconds.
func (s *server) stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// homemqConfig writes the YAML homemq runs with: DefaultConfig on free
// loopback ports (TLS, HTTPS, and plain MQTT for the load), the data
// folder, and the flood limits raised by bench.ForLoad.
func (e *env) homemqConfig(s *server) (string, error) {
	var err error
	if s.https, err = freePort(); err != nil {
		return "", err
	}
	cfg := bench.ForLoad(broker.DefaultConfig())
	l := cfg.Limits
	doc := map[string]any{
		"data":      e.data,
		"listeners": map[string]string{"mqtt": s.tls, "https": s.https, "mqtt_plain": s.plain},
		"limits": map[string]any{
			"conns_per_sub": l.ConnsPerSub, "conns_per_addr": l.ConnsPerAddr,
			"https_conns_per_addr": l.HTTPSConnsPerAddr,
			"connect_rate":         l.ConnectRate, "connect_burst": l.ConnectBurst,
			"command_rate": l.CommandRate, "command_burst": l.CommandBurst,
			"sessions_per_sub": l.SessionsPerSub, "retained_per_agent": l.RetainedPerAgent,
			"max_retained_size": l.MaxRetainedSize,
			"retained_rate":     l.RetainedRate, "retained_burst": l.RetainedBurst,
		},
		"envelope": map[string]any{"replay_quota": cfg.Envelope.ReplayQuota},
		"log":      map[string]string{"level": "error"},
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return "", err
	}
	file := filepath.Join(e.cfg.Work, "homemq.yaml")
	return file, os.WriteFile(file, b, 0o600)
}

// mosquittoConfig writes a Mosquitto configuration with the same two MQTT
// listeners on loopback, anonymous access (it checks nothing, like the
// bare server), no persistence, TCP_NODELAY as Go sets it, homemq's
// receive maximum, and a queue long enough not to drop QoS 1 messages in
// this load's bursts.
func (e *env) mosquittoConfig(s *server, persist bool) (string, error) {
	_, plainPort, _ := net.SplitHostPort(s.plain)
	_, tlsPort, _ := net.SplitHostPort(s.tls)
	inflight := broker.DefaultConfig().Limits.MaxInflight
	conf := "# written by homemq-bench compare\n" +
		"per_listener_settings false\nallow_anonymous true\npersistence false\n" +
		"log_dest stderr\nlog_type error\nset_tcp_nodelay true\n" +
		"max_inflight_messages " + strconv.Itoa(int(inflight)) + "\nmax_queued_messages 100000\n" +
		"max_connections -1\n"
	if persist {
		db := filepath.Join(e.cfg.Work, "mosquitto-db")
		if err := os.RemoveAll(db); err != nil {
			return "", err
		}
		if err := os.MkdirAll(db, 0o700); err != nil {
			return "", err
		}
		conf = strings.Replace(conf, "persistence false\n", "persistence true\npersistence_location "+db+"/\nautosave_interval 1\n", 1)
	}
	if os.Geteuid() == 0 {
		conf += "user root\n" // keep reading the 0600 certificate key of the data folder
	}
	conf += "listener " + plainPort + " 127.0.0.1\n" +
		"listener " + tlsPort + " 127.0.0.1\ncertfile " + e.dev.CertFile + "\nkeyfile " + e.dev.KeyFile + "\n"
	file := filepath.Join(e.cfg.Work, "mosquitto.conf")
	return file, os.WriteFile(file, []byte(conf), 0o600)
}
