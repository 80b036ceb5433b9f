package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"homemq/agent"
)

// nodeRedFlow is a Node-RED flow as its editor exports it: one MQTT broker
// config node over TLS with the broker's CA and an integration's user name
// and password (in flows_cred.json), an "mqtt in" node whose messages a
// file node appends to out, and an inject node that sends ON every second
// through an "mqtt out" node to the lamp's cmd topic. The client ID is left
// empty, so Node-RED makes up its own.
func nodeRedFlow(b *testBroker, out string) []map[string]any {
	host, port, _ := net.SplitHostPort(b.Addrs()["mqtts"])
	return []map[string]any{
		{"id": "tab1", "type": "tab", "label": "homemq"},
		{"id": "tls1", "type": "tls-config", "name": "homemq CA", "ca": b.CAFile, "cert": "", "key": "",
			"servername": "localhost", "verifyservercert": true, "alpnprotocol": ""},
		{"id": "broker1", "type": "mqtt-broker", "name": "homemq", "broker": host, "port": port, "tls": "tls1",
			"clientid": "", "autoConnect": true, "usetls": true, "protocolVersion": "4", "keepalive": "60",
			"cleansession": true, "autoUnsubscribe": true, "birthTopic": "", "closeTopic": "", "willTopic": ""},
		{"id": "in1", "type": "mqtt in", "z": "tab1", "name": "states", "topic": "homes/h1/agents/pi1/devices/+/state",
			"qos": "1", "datatype": "utf8", "broker": "broker1", "nl": false, "rap": true, "rh": 0, "inputs": 0,
			"x": 100, "y": 100, "wires": [][]string{{"file1"}}},
		{"id": "file1", "type": "file", "z": "tab1", "name": "", "filename": out, "filenameType": "str",
			"appendNewline": true, "createDir": true, "overwriteFile": "false", "encoding": "none", "x": 300, "y": 100, "wires": [][]string{}},
		{"id": "inject1", "type": "inject", "z": "tab1", "name": "lamp on", "props": []map[string]string{{"p": "payload"}},
			"repeat": "1", "crontab": "", "once": true, "onceDelay": "0.5", "topic": "", "payload": "ON", "payloadType": "str",
			"x": 100, "y": 200, "wires": [][]string{{"out1"}}},
		{"id": "out1", "type": "mqtt out", "z": "tab1", "name": "lamp cmd", "topic": "homes/h1/agents/pi1/devices/lamp/cmd",
			"qos": "1", "retain": "false", "respTopic": "", "contentType": "", "userProps": "", "correl": "", "expiry": "",
			"broker": "broker1", "x": 300, "y": 200, "wires": [][]string{}},
	}
}

// TestNodeRedReceivesStateAndCommands runs a real Node-RED (the node-red
// npm package) with a flow file: its MQTT-in node, over TLS with an
// integration credential, receives the agent's state, and its MQTT-out
// node sends a plain ON that the simulated agent executes.
func TestNodeRedReceivesStateAndCommands(t *testing.T) {
	node := needTool(t, "node")
	red := filepath.Join(repoRoot(), "e2e", "node", "node_modules", "node-red", "red.js")
	if _, err := os.Stat(red); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("e2e/node/node_modules/node-red is missing: make test runs npm ci")
		}
		t.Skip("e2e/node/node_modules/node-red is missing: run npm ci in e2e/node")
	}
	b := startBroker(t)
	cfg := agentConfig(t, b)
	a := startAgent(t, cfg, agent.Options{})
	h := watchHome(t, b)
	h.waitOnline(10 * time.Second)
	password := b.addIntegration(agentHome, "nodered", "service")

	dir := t.TempDir()
	out := filepath.Join(dir, "states.txt")
	flows, _ := json.Marshal(nodeRedFlow(b, out))
	creds, _ := json.Marshal(map[string]any{"broker1": map[string]string{"user": "service:nodered", "password": password}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	uiPort := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	settings := "module.exports = {uiHost: '127.0.0.1', uiPort: " + strconv.Itoa(uiPort) + ", httpAdminRoot: false, httpNodeRoot: false," +
		" credentialSecret: false, flowFile: 'flows.json', logging: {console: {level: 'info'}}, telemetry: {enabled: false}," +
		" diagnostics: {enabled: false}, externalModules: {autoInstall: false}};\n"
	for name, data := range map[string][]byte{"flows.json": flows, "flows_cred.json": creds, "settings.js": []byte(settings)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, node, red, "--userDir", dir, "--settings", filepath.Join(dir, "settings.js"), "flows.json")
	cmd.Dir = dir
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting Node-RED: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("Node-RED's log:\n%s", logs.String())
		}
	})

	eventually(t, 60*time.Second, "Node-RED's MQTT-in node receives the lamp's retained state", func() bool {
		got, _ := os.ReadFile(out)
		return strings.Contains(string(got), `"state":"off"`) || strings.Contains(string(got), `"state":"on"`)
	})
	eventually(t, 30*time.Second, "Node-RED's ON turns the simulated lamp on, and its MQTT-in node sees it", func() bool {
		got, _ := os.ReadFile(out)
		return a.pin(lampPin).Level() == gpio.High && strings.Contains(string(got), `"state":"on"`)
	})
	if strings.Contains(logs.String(), "Connection failed") || strings.Contains(logs.String(), "Error stopping node") {
		t.Logf("Node-RED reported trouble:\n%s", logs.String())
	}
}
