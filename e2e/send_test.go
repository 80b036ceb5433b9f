package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"homemq/agent"
	"homemq/certs"
)

// TestSendRefusalsExitNonZero: homemq send, against the Pi agent, exits
// non-zero when the device answers "ok":false (a script must not take a
// refused command for done), and a TLS failure says which CA to trust.
func TestSendRefusalsExitNonZero(t *testing.T) {
	b := startBroker(t)
	startAgent(t, agentConfig(t, b), agent.Options{}) // h1/pi1: lamp, door, button, fan
	bin := homemqBinary(t)
	server := "mqtts://" + b.Addrs()["mqtts"]
	topic := "homes/" + agentHome + "/agents/" + agentID + "/devices/lamp/cmd"

	out, err := exec.Command(bin, "send", "--data", b.Data, "--server", server, "--cafile", b.CAFile, "--topic", topic, "--msg", `{"action":"on"}`).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"ok":true`) {
		t.Fatalf("a good command: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "send", "--data", b.Data, "--server", server, "--cafile", b.CAFile, "--topic", topic, "--msg", `{"action":"dance"}`).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `"ok":false`) || !strings.Contains(string(out), "the device refused the command: unsupported_action") {
		t.Fatalf("a command the device refuses: exit %v, want non-zero with the reason\n%s", err, out)
	}

	// no CA given (the test broker's CA is not the system's): say what to pass
	tok := b.mint("user:ann", agentHome+"=admin")
	key := strings.Repeat("A", 43)
	out, err = exec.Command(bin, "send", "--token", tok, "--key", key, "--server", server, "--topic", topic, "--msg", `{"action":"on"}`, "--wait", "0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "pass --cafile") {
		t.Fatalf("TLS without the CA: %v\n%s", err, out)
	}
	// another CA: say that it is not this broker's
	other := filepath.Join(t.TempDir(), "other")
	if _, err := certs.EnsureDev(other); err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(other, certs.CAFile)
	if _, err := os.Stat(otherCA); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "send", "--token", tok, "--key", key, "--server", server, "--cafile", otherCA, "--topic", topic, "--msg", `{"action":"on"}`, "--wait", "0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "does not chain to") {
		t.Fatalf("TLS with another CA: %v\n%s", err, out)
	}
}
