package e2e

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"homemq/certs"
)

// processNode is one `homemq serve` process of a cluster, with what a
// client needs to reach it.
type processNode struct {
	*servedBinary
	name string
	tb   *testBroker // TLS trust (the cluster's CA) and client helpers
}

// startClusterProcesses starts n `homemq serve` processes as one cluster,
// as an operator would: each with its own data folder and a config file
// naming its routes and the one cluster secret, the nodes sharing one CA.
// They start at once (each waits for its peers) and must all print their
// welcome within two minutes.
func startClusterProcesses(t *testing.T, n int) []*processNode {
	t.Helper()
	holdClusterSlot(t)
	bin := homemqBinary(t)
	l := newClusterLayout(t, n)
	nodes := make([]*processNode, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range nodes {
		data := l.dirs[i]
		name := string(rune('a' + i))
		cfg := filepath.Join(t.TempDir(), "homemq.yaml")
		yaml := fmt.Sprintf("log:\n  level: warn\nlimits:\n  connect_rate: 0\ncluster:\n  embedded:\n    name: %s\n    cluster_listen: %s\n    routes: [%s]\n  secret_file: %s\n",
			name, l.routes[i], strings.Join(l.peers(i), ", "), l.secret)
		if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := launchServe(t, bin, data, 2*time.Minute, "--config", cfg)
			if err != nil {
				errs[i] = fmt.Errorf("node %s: %w", name, err)
				return
			}
			pool, err := certs.CertPool(filepath.Join(data, "certs", certs.CAFile))
			if err != nil {
				errs[i] = err
				return
			}
			nodes[i] = &processNode{servedBinary: s, name: name, tb: &testBroker{t: t, Data: data, pool: pool}}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("start the cluster's processes: %v", err)
	}
	return nodes
}

// cli runs the homemq binary with args and returns its trimmed output.
func (p *processNode) cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(homemqBinary(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("homemq %s on node %s: %v\n%s", strings.Join(args, " "), p.name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// mint mints a token with the node's data folder (its keys are the
// cluster's).
func (p *processNode) mint(t *testing.T, sub, home string) string {
	t.Helper()
	return p.cli(t, "token", "mint", "--data", p.data, "--sub", sub, "--home", home)
}

// connect opens an MQTT 5 connection over TLS to the node.
func (p *processNode) connect(t *testing.T, clientID, token string) (*v5client, *paho.Connack, error) {
	t.Helper()
	conn, err := tls.Dial("tcp", p.addrs["mqtts"], p.tb.tlsConfig())
	if err != nil {
		return nil, nil, err
	}
	return p.tb.v5over(conn, clientID, token)
}

func (p *processNode) mustConnect(t *testing.T, clientID, token string) *v5client {
	t.Helper()
	c, ca, err := p.connect(t, clientID, token)
	if err != nil {
		t.Fatalf("connect %s to node %s: %v %+v", clientID, p.name, err, ca)
	}
	return c
}

// TestClusterOfThreeProcesses: three `homemq serve` processes with the
// embedded engine, configured from files as an operator would, are one
// broker for real clients and the real CLI. A command sent with `homemq
// send` to node A reaches the agent on C once; the agent's retained state,
// published on C, is read by a viewer connecting to B; `homemq revoke` on A
// cuts the viewer's connection on C; after `homemq keys rotate` on B, a
// token minted on B is accepted on C; a client id connecting on C takes
// over its connection on A.
func TestClusterOfThreeProcesses(t *testing.T) {
	t.Parallel()
	nodes := startClusterProcesses(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	const (
		cmdTopic   = "homes/h1/agents/pi/devices/door/cmd"
		stateTopic = "homes/h1/agents/pi/devices/door/state"
	)

	agent := c.mustConnect(t, "pi", c.mint(t, "agent:pi", "h1=agent"))
	if code := agent.subscribe(t, "homes/h1/agents/pi/devices/+/cmd", 1); code != 1 {
		t.Fatalf("agent SUBACK %#x", code)
	}
	t.Run("a command sent on A reaches the agent on C once", func(t *testing.T) {
		a.cli(t, "send", "--data", a.data, "--server", "mqtts://"+a.addrs["mqtts"], "--topic", cmdTopic, "--msg", `{"action":"unlock"}`, "--wait", "0")
		eventually(t, 10*time.Second, "the command on C", func() bool { return len(publishes(agent, cmdTopic)) > 0 })
		time.Sleep(100 * time.Millisecond) // a duplicate would arrive right behind it
		if got := publishes(agent, cmdTopic); len(got) != 1 || !strings.Contains(string(got[0].Payload), "unlock") {
			t.Fatalf("agent on C got %d commands %v, want the one sent on A", len(got), got)
		}
	})

	viewerTok := a.mint(t, "user:vic", "h1=viewer")
	t.Run("a state retained on C is read on B", func(t *testing.T) {
		agent.publish(t, stateTopic, []byte(`{"locked":false}`), 1, true)
		v := b.mustConnect(t, "vic-b", viewerTok)
		v.subscribe(t, "homes/h1/agents/+/devices/+/state", 1)
		eventually(t, 10*time.Second, "the retained state on B", func() bool { return len(publishes(v, stateTopic)) > 0 })
		if p := publishes(v, stateTopic)[0]; !p.Retain || string(p.Payload) != `{"locked":false}` {
			t.Fatalf("viewer on B got %+v, want the retained state", p)
		}
	})

	t.Run("homemq revoke on A cuts the viewer on C", func(t *testing.T) {
		v := c.mustConnect(t, "vic-c", viewerTok)
		a.cli(t, "revoke", "--data", a.data, "--server", a.addrs["https"], "--sub", "user:vic")
		d := v.disconnected(t, 5*time.Second, "the revocation on A")
		if d.ReasonCode != 0x87 {
			t.Fatalf("viewer on C disconnected with %#x, want 0x87", d.ReasonCode)
		}
		if _, ca, err := b.connect(t, "vic-b2", viewerTok); err == nil {
			t.Fatalf("the revoked token connected on B: %+v", ca)
		}
	})

	t.Run("a token minted after keys rotate on B is accepted on C", func(t *testing.T) {
		out := b.cli(t, "keys", "rotate", "--data", b.data, "--server", b.addrs["https"])
		if !strings.Contains(out, "new signing key") {
			t.Fatalf("keys rotate: %s", out)
		}
		tok := b.mint(t, "user:ann", "h1=admin")
		eventually(t, 10*time.Second, "C accepts a token of the new key", func() bool {
			cl, _, err := c.connect(t, "ann-c", tok)
			if err != nil {
				return false
			}
			_ = cl.Disconnect(&paho.Disconnect{})
			return true
		})
	})

	t.Run("a client id on C takes over its connection on A", func(t *testing.T) {
		tok := a.mint(t, "user:bob", "h1=member")
		first := a.mustConnect(t, "bob-phone", tok)
		c.mustConnect(t, "bob-phone", tok)
		d := first.disconnected(t, 5*time.Second, "the takeover from C")
		if d.ReasonCode != 0x8E {
			t.Fatalf("the connection on A ended with %#x, want 0x8E session taken over", d.ReasonCode)
		}
	})
}
