package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"periph.io/x/conn/v3/gpio"

	"homemq/agent"
	"homemq/auth"
	"homemq/broker"
	"homemq/envelope"
	"homemq/topics"
)

// TestBridgeSignalR runs e2e/node/bridge.test.mjs, the official
// @microsoft/signalr client against the broker's /signalr/home hub, once per
// transport. Three devices answer: h1/pi1/lamp is the Pi agent on simulated
// GPIO (its pin must end up high), h1/pi/lamp a plain MQTT client that acks
// each command and publishes live state, and h1/sr/door an agent that is
// itself a SignalR client in the script.
func TestBridgeSignalR(t *testing.T) {
	needTool(t, "node")
	for _, tr := range []string{"WebSockets", "ServerSentEvents", "LongPolling"} {
		t.Run(tr, func(t *testing.T) {
			b := startBroker(t)
			mqttAgent(t, b, "h1", "pi", "lamp")
			pi := startAgent(t, agentConfig(t, b), agent.Options{})
			watchHome(t, b).waitOnline(15 * time.Second)
			lamp := pi.pin(lampPin)
			if lamp.Level() != gpio.Low {
				t.Fatal("the lamp's pin is high before any command")
			}

			ann, annClaims := b.mintSpec(auth.Spec{Sub: "user:ann", Homes: map[string]string{"h1": "admin"}})
			vic, vicClaims := b.mintSpec(auth.Spec{Sub: "user:vic", Homes: map[string]string{"h1": "viewer"}})
			short, shortClaims := b.mintSpec(auth.Spec{Sub: "user:sam", Homes: map[string]string{"h1": "member"}, TTL: 5 * time.Second})
			sr := b.mint("agent:sr", "h1=agent")
			rita, ritaClaims := b.mintSpec(auth.Spec{Sub: "user:rita", Homes: map[string]string{"h1": "admin"}})
			ops, _ := b.mintSpec(auth.Spec{Sub: "service:ops", Operator: true})
			env := map[string]string{
				"URL":                 "https://" + b.Addrs()["https"] + "/signalr/home",
				"NODE_EXTRA_CA_CERTS": b.CAFile,
				"TRANSPORT":           tr,
				"TOKEN":               ann,
				"KID":                 annClaims.ID,
				"MSG_KEY":             envelope.EncodeKey(b.MessageKey(annClaims.ID)),
				"VIEWER_TOKEN":        vic,
				"VIEWER_KID":          vicClaims.ID,
				"VIEWER_MSG_KEY":      envelope.EncodeKey(b.MessageKey(vicClaims.ID)),
				"SHORT_TOKEN":         short,
				"SHORT_EXP":           strconv.FormatInt(shortClaims.ExpiresAtTime().Unix(), 10),
				"AGENT_TOKEN":         sr,
				"BAD_TOKEN":           tampered(ann),
				"REVOKE_TOKEN":        rita,
				"REVOKE_JTI":          ritaClaims.ID,
				"OPERATOR_TOKEN":      ops,
				"ADMIN_URL":           "https://" + b.Addrs()["https"] + "/api/admin/revoke",
			}
			env["PI_AGENT"] = agentID
			runNodeTest(t, "bridge.test.mjs", env, 90*time.Second)
			if lamp.Level() != gpio.High {
				t.Errorf("the lamp's pin is %v after the SignalR client switched it on", lamp.Level())
			}
		})
	}
}

// runNodeTest runs a node:test file in e2e/node with env and fails with
// its report when a test fails.
func runNodeTest(t *testing.T, name string, env map[string]string, within time.Duration) {
	t.Helper()
	dir := filepath.Join(repoRoot(), "e2e", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@microsoft", "signalr")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("e2e/node/node_modules is missing: make test runs npm ci")
		}
		t.Skip("e2e/node/node_modules is missing: run npm ci in e2e/node")
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", name)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test %s: %v\n%s", name, err, out)
	}
	if testing.Verbose() {
		t.Logf("%s", out)
	}
}

// mqttAgent stands in for the Pi agent on MQTT over TLS: it answers every
// command to home/agent/device with an ack carrying the envelope's nonce,
// publishes the new state retained, and publishes live state ticks
// ("live-N") every 100 ms.
func mqttAgent(t *testing.T, b *testBroker, home, agent, device string) *atomic.Int32 {
	t.Helper()
	var commands atomic.Int32
	tok := b.mint("agent:"+agent, home+"=agent")
	ackTopic := topics.AckTopic(home, agent, device)
	stateTopic := topics.StateTopic(home, agent, device)
	var cl *paho.Client
	cl = paho.NewClient(paho.ClientConfig{
		Conn:        b.dial(overTLS),
		PingHandler: quietPinger{},
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			commands.Add(1)
			env, err := envelope.Parse(pr.Packet.Payload, envelope.DefaultPolicy())
			ack := fmt.Sprintf(`{"nonce":%q,"ok":%t,"state":"on","msg":%q}`, env.Nonce, err == nil, env.Msg)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_, _ = cl.Publish(ctx, &paho.Publish{Topic: stateTopic, QoS: 1, Retain: true, Payload: []byte("on")})
				_, _ = cl.Publish(ctx, &paho.Publish{Topic: ackTopic, QoS: 1, Payload: []byte(ack)})
			}()
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.Connect(ctx, &paho.Connect{ClientID: "agent:" + agent, KeepAlive: 30, CleanStart: true, Password: []byte(tok), PasswordFlag: true}); err != nil {
		t.Fatalf("agent connect: %v", err)
	}
	if _, err := cl.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topics.CommandTopic(home, agent, device), QoS: 1}}}); err != nil {
		t.Fatalf("agent subscribe: %v", err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, _ = cl.Publish(ctx, &paho.Publish{Topic: stateTopic, QoS: 0, Payload: []byte("live-" + strconv.Itoa(n))})
				cancel()
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		_ = cl.Disconnect(&paho.Disconnect{})
	})
	return &commands
}

// TestBridgeHTTP checks, with a plain HTTP client, what the official
// clients do not show: negotiate's 401 and WWW-Authenticate on the real
// HTTPS server, and that a connection token is useless with another
// identity's token.
func TestBridgeHTTP(t *testing.T) {
	b := startBroker(t)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}, Timeout: 10 * time.Second}
	base := "https://" + b.Addrs()["https"] + "/signalr/home"
	do := func(method, url, tok string) *http.Response {
		req, _ := http.NewRequest(method, url, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := do("POST", base+"/negotiate?negotiateVersion=1", "garbage")
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("negotiate with a bad token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("the bridge's answers lack the HTTPS server's security headers")
	}
	revoked, rc := b.mintSpec(auth.Spec{Sub: "user:rev", Homes: map[string]string{"h1": "admin"}})
	if _, err := b.Revoke(broker.RevokeRequest{JTI: rc.ID}); err != nil {
		t.Fatal(err)
	}
	if resp := do("POST", base+"/negotiate?negotiateVersion=1", revoked); resp.StatusCode != 401 {
		t.Fatalf("negotiate with a revoked token: %d, want 401", resp.StatusCode)
	}

	// A connection is found only with a token of the identity that made it.
	ann, bob := b.mint("user:ann", "h1=admin"), b.mint("user:bob", "h1=admin")
	req, _ := http.NewRequest("POST", base+"/negotiate?negotiateVersion=1", nil)
	req.Header.Set("Authorization", "Bearer "+ann)
	nr, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var n struct{ ConnectionToken string }
	_ = json.NewDecoder(nr.Body).Decode(&n)
	nr.Body.Close()
	if n.ConnectionToken == "" {
		t.Fatal("negotiate gave no connection token")
	}
	if resp := do("GET", base+"?id="+n.ConnectionToken, bob); resp.StatusCode != 404 {
		t.Fatalf("another identity's poll: %d, want 404", resp.StatusCode)
	}
	if resp := do("GET", base+"?id="+n.ConnectionToken, ann); resp.StatusCode != 200 {
		t.Fatalf("the owner's first poll: %d, want 200", resp.StatusCode)
	}
}
