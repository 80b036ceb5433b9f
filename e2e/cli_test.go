package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"homemq/certs"
)

// servedBinary is `homemq serve` running as a process.
type servedBinary struct {
	cmd    *exec.Cmd
	data   string
	stdout *bytes.Buffer
	lines  []string
	addrs  map[string]string
}

// serveBinary starts the built binary in dev mode on free ports and waits
// for its welcome text.
func serveBinary(t *testing.T, data string, extra ...string) *servedBinary {
	t.Helper()
	s, err := launchServe(t, homemqBinary(t), data, 20*time.Second, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// launchServe starts `bin serve` on free ports with data and extra and
// waits up to within for its welcome text; unlike serveBinary it may run
// on several goroutines at once (a cluster's nodes start together). The
// process is killed when the test ends.
func launchServe(t *testing.T, bin, data string, within time.Duration, extra ...string) (*servedBinary, error) {
	args := append([]string{"serve", "--data", data, "--mqtt", "127.0.0.1:0", "--https", "127.0.0.1:0", "--mqtt-plain", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &servedBinary{cmd: cmd, data: data, stdout: new(bytes.Buffer), addrs: map[string]string{}}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	done := make(chan struct{})
	welcomed := false
	go func() {
		defer close(done)
		for sc.Scan() {
			line := sc.Text()
			s.lines = append(s.lines, line)
			if strings.HasPrefix(line, "Mint more tokens") || strings.Contains(line, "CA certificate") && !strings.Contains(strings.Join(args, " "), "--data") {
				welcomed = true
				return
			}
		}
	}()
	select {
	case <-done:
		if !welcomed {
			return nil, fmt.Errorf("serve ended before its welcome (its error is on stderr above): %q", s.lines)
		}
	case <-time.After(within):
		return nil, fmt.Errorf("serve printed no welcome within %v: %q", within, s.lines)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	re := regexp.MustCompile(`(mqtts|wss|https|mqtt)://([0-9.]+:[0-9]+)`)
	for _, l := range s.lines {
		if m := re.FindStringSubmatch(l); m != nil {
			if _, ok := s.addrs[m[1]]; !ok {
				s.addrs[m[1]] = m[2]
			}
		}
	}
	return s, nil
}

// TestLaunchServeReportsAnEarlyExit: a serve that exits before its
// welcome (here: a config file that does not exist) is an error of
// launchServe, not a broker without addresses.
func TestLaunchServeReportsAnEarlyExit(t *testing.T) {
	_, err := launchServe(t, homemqBinary(t), t.TempDir(), 20*time.Second, "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if err == nil || !strings.Contains(err.Error(), "ended before its welcome") {
		t.Fatalf("launchServe of a serve that cannot start: %v, want an error", err)
	}
}

func (s *servedBinary) line(prefix string) string {
	for _, l := range s.lines {
		if strings.HasPrefix(strings.TrimSpace(l), prefix) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// TestServePrintsCommandsThatWork runs the two mosquitto lines `homemq
// serve` prints for a new user, exactly as printed, and expects the state
// to arrive; then SIGTERM stops the broker cleanly.
func TestServePrintsCommandsThatWork(t *testing.T) {
	needTool(t, "mosquitto_sub")
	s := serveBinary(t, t.TempDir())
	subLine, pubLine := s.line("mosquitto_sub"), s.line("mosquitto_pub")
	if subLine == "" || pubLine == "" {
		t.Fatalf("welcome has no mosquitto lines:\n%s", strings.Join(s.lines, "\n"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub := exec.CommandContext(ctx, "sh", "-c", subLine+" -C 1 -W 15")
	var subOut bytes.Buffer
	sub.Stdout, sub.Stderr = &subOut, &subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	// No wait for the subscription: the printed mosquitto_pub retains the
	// state (-r), so it reaches mosquitto_sub whether that subscribes
	// before or after the publish.
	if out, err := exec.CommandContext(ctx, "sh", "-c", pubLine).CombinedOutput(); err != nil {
		t.Fatalf("the printed mosquitto_pub failed: %v\n%s", err, out)
	}
	if err := sub.Wait(); err != nil {
		t.Fatalf("the printed mosquitto_sub failed: %v\n%s", err, subOut.String())
	}
	if got := strings.TrimSpace(subOut.String()); got != "homes/demo/agents/demo-pi/devices/lamp/state on" {
		t.Fatalf("mosquitto_sub printed %q", got)
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.cmd.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("serve did not exit cleanly on SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	for _, f := range []string{"signing-keys.json", "msg-master.key", "certs/ca-key.pem", "certs/server-key.pem"} {
		st, err := os.Stat(filepath.Join(s.data, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
}

// TestMosquittoClientsAreRefusedWithReasons: the real mosquitto clients see
// the refusal, over TLS, for MQTT 5 and 3.1.1.
func TestMosquittoClientsAreRefusedWithReasons(t *testing.T) {
	needTool(t, "mosquitto_pub")
	b := startBroker(t)
	host, port := hostPortOf(t, b.Addrs()["mqtts"])
	for _, bt := range badTokens(t, b)[:4] {
		for _, v := range []string{"mqttv5", "mqttv311"} {
			args := []string{"-h", host, "-p", port, "--cafile", b.CAFile, "-V", v, "-i", "user:mallory", "-u", "user:mallory", "-P", bt.token, "-t", "homes/h1/agents/a/devices/d/cmd", "-m", "x"}
			out, err := exec.Command("mosquitto_pub", args...).CombinedOutput()
			if err == nil {
				t.Fatalf("%s %s: mosquitto_pub succeeded", bt.name, v)
			}
			want := "bad user name or password"
			if !strings.Contains(strings.ToLower(string(out)), want) {
				t.Errorf("%s %s: mosquitto_pub said %q, want %q", bt.name, v, out, want)
			}
		}
	}
	// and a good token works with both
	good := b.mint("agent:pi", "h1=agent")
	for _, v := range []string{"mqttv5", "mqttv311"} {
		out, err := exec.Command("mosquitto_pub", "-h", host, "-p", port, "--cafile", b.CAFile, "-V", v, "-i", "agent:pi", "-u", "agent:pi", "-P", good,
			"-t", "homes/h1/agents/pi/devices/d/state", "-m", "on", "-q", "1").CombinedOutput()
		if err != nil {
			t.Fatalf("good token %s: %v %s", v, err, out)
		}
	}
}

// TestConfigErrorsNameTheKey: an unknown key or a bad value stops serve
// with a message that names it.
func TestConfigErrorsNameTheKey(t *testing.T) {
	bin := homemqBinary(t)
	cases := map[string]struct{ yaml, want string }{
		"unknown key":      {"tokens:\n  levee: 2s\n", "levee"},
		"bad duration":     {"tokens:\n  leeway: soon\n", "soon"},
		"out of range":     {"envelope:\n  max_lifetime: 2h\n", "envelope.max_lifetime"},
		"alg none":         {"tokens:\n  algorithms: [none]\n", "tokens.algorithms"},
		"bad log level":    {"log:\n  level: loud\n", "log.level"},
		"cert without key": {"tls:\n  cert: x.pem\n", "tls.cert and tls.key"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "homemq.yaml")
			if err := os.WriteFile(f, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "serve", "--config", f, "--data", t.TempDir()).CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit %v, want 1: %s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("message %q does not name %q", out, tc.want)
			}
		})
	}
}

// TestTokenMintCLI: the JWT alone on stdout, or JSON with msg_key, and a
// clear message for bad input.
func TestTokenMintCLI(t *testing.T) {
	b := startBroker(t)
	bin := homemqBinary(t)
	out, err := exec.Command(bin, "token", "mint", "--data", b.Data, "--sub", "user:alice", "--home", "h1=admin").Output()
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(string(out))
	if strings.Count(tok, ".") != 2 || strings.Contains(tok, "\n") {
		t.Fatalf("stdout is not a JWT alone: %q", out)
	}
	b.mustV5(overTLS, "user:alice", tok)

	out, err = exec.Command(bin, "token", "mint", "--data", b.Data, "--sub", "agent:pi", "--home", "h1=agent", "--ttl", "5m", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["token"] == nil || raw["msg_key"] == nil || raw["exp"] == nil {
		t.Fatalf("--json output lacks token/msg_key/exp: %s", out)
	}
	if exp := int64(raw["exp"].(float64)); exp < time.Now().Add(4*time.Minute).Unix() || exp > time.Now().Add(6*time.Minute).Unix() {
		t.Fatalf("exp %d is not about 5 minutes away", exp)
	}
	for _, bad := range [][]string{
		{"--sub", "alice", "--home", "h1=admin"},
		{"--sub", "user:alice", "--home", "h1=king"},
		{"--sub", "user:alice", "--home", "H1=admin"},
		{"--sub", "user:alice", "--home", "h1"},
		{"--sub", "user:alice"},
		{"--sub", "user:alice", "--home", "h1=admin", "--ttl", "48h"},
	} {
		cmd := exec.Command(bin, append([]string{"token", "mint", "--data", b.Data}, bad...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err == nil {
			t.Errorf("token mint %v succeeded", bad)
		} else if !strings.HasPrefix(stderr.String(), "homemq token: ") {
			t.Errorf("token mint %v: unclear message %q", bad, stderr.String())
		}
	}
}

func hostPortOf(t *testing.T, addr string) (string, string) {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	return addr[:i], addr[i+1:]
}

// TestRevokeCLIClosesTheConnection: `homemq revoke --jti` against a running
// broker closes the token's connection at once and refuses it afterwards.
func TestRevokeCLIClosesTheConnection(t *testing.T) {
	data := t.TempDir()
	s := serveBinary(t, data)
	bin := homemqBinary(t)
	out, err := exec.Command(bin, "token", "mint", "--data", data, "--sub", "user:lost", "--home", "h1=admin", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Token, JTI string }
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	b := &testBroker{t: t, Data: data}
	b.pool, err = certs.CertPool(filepath.Join(data, "certs", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", s.addrs["mqtts"], b.tlsConfig())
	if err != nil {
		t.Fatal(err)
	}
	c := b.v5conn(conn, "user:lost", m.Token)
	out, err = exec.Command(bin, "revoke", "--data", data, "--server", s.addrs["https"], "--jti", m.JTI).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "matching connections were closed") {
		t.Fatalf("homemq revoke: %v %s", err, out)
	}
	select {
	case d := <-c.disconnect:
		if d.ReasonCode != 0x87 {
			t.Fatalf("DISCONNECT 0x%02X", d.ReasonCode)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the revoked token's connection is still open")
	}
	out, err = exec.Command(bin, "revoke", "--data", data, "--server", s.addrs["https"]).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "exactly one of --jti") {
		t.Fatalf("revoke without a target: %v %s", err, out)
	}
}
