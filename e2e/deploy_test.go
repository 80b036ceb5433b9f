package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"homemq/broker"
	"homemq/certs"
)

// TestRealDeploymentCertificates: `homemq certs init` and `certs issue`
// make a CA and a server certificate that a configured (non-dev) broker
// serves, and that clients trusting that CA verify.
func TestRealDeploymentCertificates(t *testing.T) {
	bin := homemqBinary(t)
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("homemq %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("certs", "init", "--dir", caDir, "--name", "Test Home CA")
	run("certs", "issue", "--ca", caDir, "--name", "localhost", "--name", "127.0.0.1", "--out", filepath.Join(dir, "server"))
	if out, err := exec.Command(bin, "certs", "issue", "--ca", caDir, "--out", filepath.Join(dir, "x")).CombinedOutput(); err == nil || !strings.Contains(string(out), "at least one name") {
		t.Fatalf("certs issue without a name: %v %s", err, out)
	}
	b := startBrokerIn(t, filepath.Join(dir, "data"), func(c *broker.Config) {
		c.TLS = broker.TLSConfig{Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server-key.pem"), CA: filepath.Join(caDir, certs.CAFile)}
	})
	if _, err := os.Stat(filepath.Join(dir, "data", "certs")); err == nil {
		t.Fatal("a configured broker provisioned dev certificates")
	}
	pool, err := certs.CertPool(filepath.Join(caDir, certs.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", b.Addrs()["mqtts"], &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("TLS with the issued certificate: %v", err)
	}
	b.v5conn(conn, "user:a", b.mint("user:a", "h1=admin"))
}

// TestSendCLI: `homemq send` seals a command with a token's message key,
// the broker accepts it, and the device's ack comes back to the CLI.
func TestSendCLI(t *testing.T) {
	b := startBroker(t)
	bin := homemqBinary(t)
	topic := "homes/h1/agents/pi/devices/lamp/cmd"
	device := b.mustV5(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"))
	device.subscribe(t, "homes/h1/agents/pi/devices/+/cmd", 1)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() { // the device answers every command with an ack carrying its nonce
		answered := map[string]bool{}
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for _, p := range device.received() {
				var e struct{ Nonce string }
				if json.Unmarshal(p.Payload, &e) == nil && e.Nonce != "" && !answered[e.Nonce] {
					answered[e.Nonce] = true
					ack := fmt.Sprintf(`{"nonce":%q,"ok":true,"state":"on"}`, e.Nonce)
					_, _ = device.Publish(context.Background(), &paho.Publish{Topic: strings.TrimSuffix(p.Topic, "cmd") + "ack", QoS: 1, Payload: []byte(ack)})
				}
			}
		}
	}()
	args := []string{"send", "--data", b.Data, "--server", "mqtts://" + b.Addrs()["mqtts"], "--topic", topic, "--msg", `{"action":"on"}`}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "accepted: nonce") || !strings.Contains(string(out), `"ok":true`) {
		t.Fatalf("homemq send: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "send", "--data", b.Data, "--server", "mqtts://"+b.Addrs()["mqtts"], "--topic", "homes/h1/agents/pi/devices/lamp/state", "--msg", "x").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not a command topic") {
		t.Fatalf("send to a state topic: %v %s", err, out)
	}
	out, err = exec.Command(bin, "send", "--token", b.mint("user:v", "h1=viewer"), "--key", strings.Repeat("A", 43), "--server", "mqtts://"+b.Addrs()["mqtts"],
		"--cafile", b.CAFile, "--topic", topic, "--msg", "x", "--wait", "0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "command refused (0x87)") {
		t.Fatalf("a viewer's send: %v %s", err, out)
	}
}
