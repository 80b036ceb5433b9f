package e2e

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"homemq/auth"
	"homemq/broker"
)

// revokeFile returns revocations.json of data ("" when absent).
func revokeFile(t *testing.T, data string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, auth.RevocationsFile))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// writeCLIConfig writes a config file for the CLI with the given
// listeners.https line and returns its path.
func writeCLIConfig(t *testing.T, data, https string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "homemq.yaml")
	y := "data: " + data + "\nlisteners:\n  https: \"" + https + "\"\n"
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRevokeCLIFailsLoudlyWhenTheRunningBrokerIsUnreachable: with a broker
// running on the data folder, `homemq revoke` that cannot reach its admin
// API (HTTPS off, wrong address, certificate for another name) exits
// non-zero with the reason and leaves revocations.json alone: the running
// broker would never read an entry written beside it, and would erase it.
func TestRevokeCLIFailsLoudlyWhenTheRunningBrokerIsUnreachable(t *testing.T) {
	b := startBroker(t, func(c *broker.Config) { c.Listeners.HTTPS = "127.0.0.2:0" })
	tok, c := b.mintSpec(auth.Spec{Sub: "user:lost", Homes: map[string]string{"h1": "admin"}})
	conn := b.mustV5(overTLS, "user:lost", tok)
	_, port, _ := net.SplitHostPort(b.Addrs()["https"])
	before := revokeFile(t, b.Data)

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"HTTPS off in the config", []string{"--config", writeCLIConfig(t, b.Data, "")}, "listeners.https is off"},
		{"nothing listens there", []string{"--server", "127.0.0.1:1"}, "did not answer"},
		{"certificate for another name", []string{"--server", "127.0.0.2:" + port}, "certificate is for"},
	} {
		args := append([]string{"revoke", "--jti", c.ID}, tc.args...)
		out, err := tokCLI(t, b.Data, "", args...)
		if err == nil {
			t.Errorf("%s: homemq revoke succeeded: %q", tc.name, out)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "nothing was revoked") || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: unclear error %q, want %q and that nothing was revoked", tc.name, msg, tc.want)
		}
		if got := revokeFile(t, b.Data); got != before {
			t.Errorf("%s: revocations.json changed beside the running broker:\n%s", tc.name, got)
		}
	}
	select {
	case d := <-conn.disconnect:
		t.Fatalf("the connection was closed (0x%02X) though nothing was revoked", d.ReasonCode)
	default:
	}
	if _, err := b.Verifier.Verify(tok); err != nil {
		t.Fatalf("the token is refused though nothing was revoked: %v", err)
	}
	// The registry commands explain a certificate for other names the same way.
	if _, err := tokCLI(t, b.Data, "127.0.0.2:"+port, "home", "add", "h2"); err == nil || !strings.Contains(err.Error(), "certificate is for") {
		t.Fatalf("home add through a certificate for other names: %v", err)
	}
}

// TestRevokeCLIReachesABrokerListeningOnEveryInterface: listeners.https
// ":PORT" (no host) is dialled on loopback.
func TestRevokeCLIReachesABrokerListeningOnEveryInterface(t *testing.T) {
	b := startBroker(t)
	tok, c := b.mintSpec(auth.Spec{Sub: "user:lost", Homes: map[string]string{"h1": "admin"}})
	conn := b.mustV5(overTLS, "user:lost", tok)
	_, port, _ := net.SplitHostPort(b.Addrs()["https"])
	out := mustCLI(t, b.Data, "", "revoke", "--jti", c.ID, "--config", writeCLIConfig(t, b.Data, ":"+port))
	if !strings.Contains(out, "connections were closed") {
		t.Fatalf("homemq revoke printed %q", out)
	}
	eventually(t, 10*time.Second, "the revoked token's connection is closed", func() bool {
		select {
		case d := <-conn.disconnect:
			return d.ReasonCode == 0x87
		default:
			return false
		}
	})
}

// TestRevokeCLIWithTheBrokerStopped: no broker runs on the data folder, so
// revoke writes revocations.json itself, and the broker started next
// refuses the token with reason "revoked".
func TestRevokeCLIWithTheBrokerStopped(t *testing.T) {
	data := t.TempDir()
	b := startBrokerIn(t, data)
	tok, c := b.mintSpec(auth.Spec{Sub: "user:lost", Homes: map[string]string{"h1": "admin"}})
	b.Close()

	out := mustCLI(t, data, "", "revoke", "--jti", c.ID)
	if !strings.Contains(out, "no broker runs") {
		t.Fatalf("homemq revoke printed %q", out)
	}
	if !strings.Contains(revokeFile(t, data), c.ID) {
		t.Fatal("revocations.json does not name the revoked jti")
	}
	b = startBrokerIn(t, data)
	_, ca, err := b.v5(overTLS, "user:lost", tok)
	if err == nil || ca == nil || ca.ReasonCode != 0x87 || ca.Properties == nil || !strings.Contains(ca.Properties.ReasonString, "revoked") {
		t.Fatalf("CONNECT with the token revoked while the broker was stopped: %v %+v", err, ca)
	}
	if !bytes.Contains([]byte(revokeFile(t, data)), []byte(c.ID)) {
		t.Fatal("the broker dropped the revocation from the file")
	}
}
