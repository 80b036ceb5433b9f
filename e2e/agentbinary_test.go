package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildBinary builds the command package pkg (e.g. ./cmd/homemq-agent) into
// a temporary folder of the test and returns its path.
func buildBinary(t *testing.T, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// TestLeanAgentBinary runs the Pi's binary, homemq-agent run, against a
// real broker: --check accepts the config, the agent comes online and
// answers a signed command, and SIGTERM makes it say offline and exit 0,
// as homemq agent run does (both are internal/agentcmd).
func TestLeanAgentBinary(t *testing.T) {
	bin := buildBinary(t, "./cmd/homemq-agent")
	b := startBroker(t)
	h := watchHome(t, b)
	cfg := agentConfig(t, b)
	dir := t.TempDir()
	yaml := fmt.Sprintf(`broker: %s
ca_file: %s
home: %s
agent: %s
credential: %s
token_url: %s
gpio: sim
reconnect: {min: 100ms, max: 1s}
devices:
  - {id: lamp, kind: switch, pin: GPIO17}
`, cfg.Broker, cfg.CAFile, cfg.Home, cfg.Agent, cfg.Credential, cfg.TokenURL)
	conf := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "run", "--config", conf, "--check").CombinedOutput(); err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("homemq-agent run --check: %v\n%s", err, out)
	}

	proc := startAgentProcess(t, exec.Command(bin, "run", "--config", conf))
	h.waitOnline(15 * time.Second)
	n := h.send("lamp", `{"action":"on"}`, 30*time.Second)
	if ack := h.ack("lamp", n, 5*time.Second); !ack.OK || ack.State != "on" {
		t.Fatalf("ack %+v", ack)
	}
	proc.terminate(t)
	if s := retained(t, b, statusTopic()); s != "offline" {
		t.Fatalf("retained status after shutdown %q, want offline", s)
	}
}
