package e2e

import (
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"homemq/agent"
	"homemq/auth"
	"homemq/certs"
	"homemq/cluster"
)

// clusterAgentConfig is the test agent h1/pi1 (one lamp) for the given
// broker URLs, with a token minted by node b (the nodes share their
// signing keys) in a token file: a node's registry is its own until the
// registry is replicated, so a credential would exchange on one node only.
func clusterAgentConfig(t *testing.T, b *testBroker, brokers ...string) agent.Config {
	t.Helper()
	tok, _ := b.mintSpec(auth.Spec{Sub: "agent:" + agentID, Homes: map[string]string{agentHome: "agent"}, TTL: time.Hour})
	file := filepath.Join(t.TempDir(), "agent.token")
	if err := os.WriteFile(file, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	return agent.Config{
		Brokers:   brokers,
		CAFile:    b.CAFile, // one CA for every node (startCluster)
		Home:      agentHome,
		Agent:     agentID,
		TokenFile: file,
		GPIO:      agent.GPIOSim,
		Devices:   []agent.DeviceConfig{{ID: "lamp", Kind: agent.Switch, Pin: lampPin}},
		Reconnect: agent.ReconnectConfig{Min: 100 * time.Millisecond, Max: 500 * time.Millisecond},
	}
}

// connectedTo reports whether the agent holds a live connection on node b.
func connectedTo(b *testBroker) bool {
	cl, ok := b.Server.Clients.Get("agent:" + agentID)
	return ok && !cl.Closed()
}

// commandWorks sends lamp action through h until the agent acks one
// with ok within the bound: a command sent before the agent's
// subscription reached the cluster is not kept for it (each try has its
// own nonce, so the agent executes each at most once).
func commandWorks(t *testing.T, h *home, action string, within time.Duration) {
	t.Helper()
	eventually(t, within, "the agent acks a lamp "+action+" command", func() bool {
		nonce := h.send("lamp", `{"action":"`+action+`"}`, time.Minute)
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if acks := h.acks("lamp", nonce); len(acks) > 0 {
				if !acks[0].OK {
					t.Fatalf("lamp %s: ack %+v, want ok", action, acks[0])
				}
				return true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	})
}

// TestClusterClientsKnowSeveralNodes: an agent given [a dead address, A,
// B] skips the dead one and connects to A; when A is closed it reconnects
// to B (the next in its list) and keeps receiving commands sent on C.
// homemq send --server tries its addresses in order and names each
// failure when none accepts.
func TestClusterClientsKnowSeveralNodes(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	dead := "mqtts://" + freeAddr(t)
	cfg := clusterAgentConfig(t, a, dead, "mqtts://"+a.Addrs()["mqtts"], "mqtts://"+b.Addrs()["mqtts"])
	startAgent(t, cfg, agent.Options{})
	h := watchHome(t, c)

	eventually(t, 15*time.Second, "the agent connects to A past the dead address", func() bool { return connectedTo(a) })
	if connectedTo(b) {
		t.Fatal("the agent is connected to B as well as A")
	}
	commandWorks(t, h, "on", 15*time.Second)

	a.Close()
	eventually(t, 20*time.Second, "the agent reconnects to B after A closed", func() bool { return connectedTo(b) })
	commandWorks(t, h, "off", 20*time.Second) // sent on C, executed by the agent on B

	t.Run("send tries each server", func(t *testing.T) {
		bin := homemqBinary(t)
		topic := "homes/" + agentHome + "/agents/" + agentID + "/devices/lamp/cmd"
		out, err := exec.Command(bin, "send", "--data", b.Data, "--cafile", b.CAFile,
			"--server", dead+",mqtts://"+c.Addrs()["mqtts"], "--topic", topic, "--msg", `{"action":"on"}`).CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"ok":true`) {
			t.Fatalf("send past a dead server to C: %v\n%s", err, out)
		}
		closedA := "mqtts://" + a.Addrs()["mqtts"]
		out, err = exec.Command(bin, "send", "--data", b.Data, "--cafile", b.CAFile,
			"--server", dead+","+closedA, "--topic", topic, "--msg", `{"action":"on"}`, "--wait", "0").CombinedOutput()
		if err == nil || !strings.Contains(string(out), dead+": ") || !strings.Contains(string(out), closedA+": ") {
			t.Fatalf("send with no server up: exit %v, want an error naming each server\n%s", err, out)
		}
	})
}

// TestSIGTERMDrainsAClusterNode: homemq serve as a (one-node) cluster node
// drains on SIGTERM before it stops: its MQTT 5 client gets DISCONNECT
// 0x8B saying the node drains, and the process exits 0. homemq drain on a
// single node says it cannot drain.
func TestSIGTERMDrainsAClusterNode(t *testing.T) {
	t.Parallel()
	t.Run("single node", func(t *testing.T) {
		b := startBroker(t)
		out, err := exec.Command(homemqBinary(t), "drain", "--data", b.Data, "--server", b.Addrs()["https"]).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "single node cannot drain") {
			t.Fatalf("homemq drain on a single node: exit %v, want it to say it cannot drain\n%s", err, out)
		}
		if code, body := healthzAt(t, b, b.Addrs()["https"]); code != 200 || body != "ok\n" {
			t.Fatalf("/healthz after a refused drain: %d %q", code, body)
		}
	})

	data := t.TempDir()
	secret := filepath.Join(t.TempDir(), "cluster.secret")
	cfg := filepath.Join(t.TempDir(), "homemq.yaml")
	if err := os.WriteFile(secret, []byte(cluster.NewSecret().String()), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("cluster:\n  embedded:\n    name: solo\n    cluster_listen: %s\n  secret_file: %s\ndrain:\n  period: 2s\n", freeAddr(t), secret)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s := serveBinary(t, data, "--config", cfg)
	tok, err := exec.Command(homemqBinary(t), "token", "mint", "--data", data, "--sub", "user:ann", "--home", "h1=viewer").Output()
	if err != nil {
		t.Fatalf("token mint: %v", err)
	}
	pool, err := certs.CertPool(filepath.Join(data, "certs", certs.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	tb := &testBroker{t: t, Data: data, pool: pool}
	conn, err := tls.Dial("tcp", s.addrs["mqtts"], tb.tlsConfig())
	if err != nil {
		t.Fatalf("dial the node: %v", err)
	}
	c, ca, err := tb.v5over(conn, "user:ann", strings.TrimSpace(string(tok)))
	if err != nil {
		t.Fatalf("connect: %v %+v", err, ca)
	}

	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d := c.disconnected(t, 10*time.Second, "SIGTERM")
	if d.ReasonCode != 0x8B || d.Properties == nil || !strings.Contains(d.Properties.ReasonString, "draining") {
		t.Fatalf("on SIGTERM the client got %#x %+v, want 0x8B saying the node drains", d.ReasonCode, d.Properties)
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("homemq serve exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("homemq serve did not exit within 20s of SIGTERM")
	}
}
