package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"homemq/topics"
)

// lockedBuffer is a bytes.Buffer safe to read while a process writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAgentCommand runs the built 'homemq agent run --config agent.yaml' on
// simulated GPIO: a bad config is refused naming the key, --check accepts a
// good one, the running agent answers a signed command and reports an
// input driven on its stdin, and SIGTERM leaves the lamp off, says offline
// and exits 0.
func TestAgentCommand(t *testing.T) {
	bin := homemqBinary(t)
	b := startBroker(t)
	h := watchHome(t, b)
	cfg := agentConfig(t, b)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "credential"), []byte(cfg.Credential+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`# the test's agent
broker: %s
ca_file: %s
home: %s
agent: %s
credential_file: credential   # next to this file
token_url: %s
gpio: sim
reconnect: {min: 100ms, max: 1s}
devices:
  - {id: lamp, kind: switch, pin: GPIO17}
  - {id: door, kind: pulse, pin: GPIO27, pulse: 300ms}
  - {id: button, kind: input, pin: GPIO22, active_low: true, debounce: 20ms}
`, cfg.Broker, cfg.CAFile, cfg.Home, cfg.Agent, cfg.TokenURL)
	good := filepath.Join(dir, "agent.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(yaml+"colour: blue\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(bin, "agent", "run", "--config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "colour") {
		t.Fatalf("a config with an unknown key: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "agent", "run", "--config", good, "--check").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("--check: %v\n%s", err, out)
	}

	cmd := exec.Command(bin, "agent", "run", "--config", good, "--sim-input", "--log-level", "debug")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	proc := startAgentProcess(t, cmd)
	stderr := &proc.stderr
	h.waitOnline(15 * time.Second)

	n := h.send("lamp", `{"action":"on"}`, 30*time.Second)
	if ack := h.ack("lamp", n, 5*time.Second); !ack.OK || ack.State != "on" {
		t.Fatalf("ack %+v", ack)
	}
	eventually(t, 3*time.Second, "the sim pin log line", func() bool {
		return strings.Contains(stderr.String(), "pin=GPIO17 level=High")
	})

	events := topics.EventTopic(agentHome, agentID, "button")
	if _, err := io.WriteString(stdin, "GPIO22 low\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the button event", func() bool { return len(h.on(events)) == 1 })

	proc.terminate(t)
	if s := retained(t, b, statusTopic()); s != "offline" {
		t.Fatalf("retained status after shutdown %q, want offline", s)
	}
	if s := stateOf(retained(t, b, topics.StateTopic(agentHome, agentID, "lamp"))); s != "off" {
		t.Fatalf("retained lamp state after shutdown %q, want off (its safe level)", s)
	}
}

// agentProcess is an agent binary started by a test, its stderr kept for
// the log of a failed test.
type agentProcess struct {
	cmd    *exec.Cmd
	stderr lockedBuffer
	exited chan error
}

// startAgentProcess starts cmd (an agent run) and kills it when the test
// ends, logging its stderr if the test failed.
func startAgentProcess(t *testing.T, cmd *exec.Cmd) *agentProcess {
	t.Helper()
	p := &agentProcess{cmd: cmd, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = io.Discard, &p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		err := <-p.exited
		p.exited <- err
		if t.Failed() {
			t.Logf("%s stderr:\n%s", cmd.Path, p.stderr.String())
		}
	})
	return p
}

// terminate sends SIGTERM and expects a clean exit within 10 s.
func (p *agentProcess) terminate(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		p.exited <- err
		if err != nil {
			t.Fatalf("%s exited with %v after SIGTERM", p.cmd.Path, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not stop after SIGTERM", p.cmd.Path)
	}
}
