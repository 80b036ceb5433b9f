package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"homemq/auth"
	"homemq/envelope"
)

// nodeProcess is a running e2e/node script.
type nodeProcess struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan error
}

// startNode runs e2e/node/name with env in the background.
func startNode(t *testing.T, name string, env map[string]string) *nodeProcess {
	t.Helper()
	needTool(t, "node")
	dir := filepath.Join(repoRoot(), "e2e", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("e2e/node/node_modules is missing: make test runs npm ci")
		}
		t.Skip("e2e/node/node_modules is missing: run make node-deps")
	}
	p := &nodeProcess{t: t, name: name, cmd: exec.Command("node", name), done: make(chan error, 1)}
	p.cmd.Dir = dir
	p.cmd.Env = os.Environ()
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	return p
}

// exited reports whether the script has finished.
func (p *nodeProcess) exited() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

// wait waits for the script and decodes its last stdout line as JSON.
func (p *nodeProcess) wait(within time.Duration, out any) {
	p.t.Helper()
	select {
	case err := <-p.done:
		if err != nil {
			p.t.Fatalf("node %s: %v\n%s\n%s", p.name, err, p.stdout.String(), p.stderr.String())
		}
	case <-time.After(within):
		p.t.Fatalf("node %s did not finish within %v\n%s", p.name, within, p.stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(p.stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), out); err != nil {
		p.t.Fatalf("node %s printed %q: %v", p.name, p.stdout.String(), err)
	}
}

// TestMQTTjsOverWSS: MQTT.js, as an agent over WSS, subscribes to its cmd
// topic, publishes retained state and receives a signed command; a bad
// token is refused with CONNACK 0x86.
func TestMQTTjsOverWSS(t *testing.T) {
	b := startBroker(t)
	cmdTopic := "homes/h1/agents/web/devices/lamp/cmd"
	owner := b.mustV5(overTLS, "user:owner", b.mint("user:owner", "h1=admin"))
	owner.subscribe(t, "homes/h1/agents/web/devices/lamp/state", 1)
	p := startNode(t, "mqttjs.mjs", map[string]string{
		"URL":                 b.url(overWSS),
		"NODE_EXTRA_CA_CERTS": b.CAFile,
		"TOKEN":               b.mint("agent:web", "h1=agent"),
		"BAD_TOKEN":           b.mint("agent:web", "h1=agent") + "x",
		"CLIENT_ID":           "agent:web/mqttjs",
		"SUB":                 "agent:web",
		"CMD_TOPIC":           cmdTopic,
		"STATE_TOPIC":         "homes/h1/agents/web/devices/lamp/state",
	})
	// the owner sends one signed command once the script has subscribed
	eventually(t, 15*time.Second, "MQTT.js to subscribe to its cmd topic", func() bool {
		if p.exited() {
			return true
		}
		cl, ok := b.Server.Clients.Get("agent:web/mqttjs")
		if !ok {
			return false
		}
		_, ok = cl.State.Subscriptions.Get(cmdTopic)
		return ok
	})
	tok, claims := b.mintSpec(auth.Spec{Sub: "user:owner", Homes: map[string]string{"h1": "admin"}})
	sender := b.mustV5(overTLS, "user:owner/sender", tok)
	env, err := envelope.Seal(b.MessageKey(claims.ID), cmdTopic, claims.ID, `{"action":"on"}`, time.Now(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if pr := sender.publish(t, cmdTopic, env, 1, false); pr.ReasonCode != 0 {
		t.Fatalf("command refused: 0x%02X", pr.ReasonCode)
	}
	var res struct {
		GoodError string
		Granted   []int
		Received  *struct{ Topic, Payload string }
		BadCode   int
		BadMsg    string `json:"badMessage"`
	}
	p.wait(20*time.Second, &res)
	if res.GoodError != "" {
		t.Fatalf("MQTT.js with a good token: %s", res.GoodError)
	}
	if len(res.Granted) != 1 || res.Granted[0] != 1 {
		t.Fatalf("MQTT.js SUBACK %v, want [1]", res.Granted)
	}
	if res.Received == nil || res.Received.Topic != cmdTopic || !strings.Contains(res.Received.Payload, `"nonce"`) {
		t.Fatalf("MQTT.js received %+v, want the signed command", res.Received)
	}
	if res.BadCode != 0x86 {
		t.Fatalf("MQTT.js bad token: code %d (%s), want 134", res.BadCode, res.BadMsg)
	}
	eventually(t, 5*time.Second, "the state MQTT.js published", func() bool {
		r := owner.received()
		return len(r) > 0 && string(r[0].Payload) == "on"
	})
}
