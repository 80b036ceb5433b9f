package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"homemq/agent"
	"homemq/auth"
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

// commandWorks sends lamp action through h and waits for the agent's ok.
func commandWorks(t *testing.T, h *home, action string) {
	t.Helper()
	nonce := h.send("lamp", `{"action":"`+action+`"}`, time.Minute)
	if a := h.ack("lamp", nonce, 15*time.Second); !a.OK {
		t.Fatalf("lamp %s: ack %+v, want ok", action, a)
	}
}

// TestClusterClientsKnowSeveralNodes: an agent given [a dead address, A,
// B] skips the dead one and connects to A; when A is closed it reconnects
// to B (the next in its list) and keeps receiving commands sent on C.
// homemq send --server tries its addresses in order and names each
// failure when none accepts.
func TestClusterClientsKnowSeveralNodes(t *testing.T) {
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
	commandWorks(t, h, "on")

	a.Close()
	eventually(t, 20*time.Second, "the agent reconnects to B after A closed", func() bool { return connectedTo(b) })
	eventually(t, 20*time.Second, "a command sent on C reaches the agent on B", func() bool {
		nonce := h.send("lamp", `{"action":"off"}`, time.Minute)
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if acks := h.acks("lamp", nonce); len(acks) > 0 {
				return acks[0].OK
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	})

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
