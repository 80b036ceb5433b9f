package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"homemq/auth"
	"homemq/broker"
	"homemq/envelope"
	"homemq/webapp"
)

// TestWebAppModel runs the node:test unit tests of the page's pure helpers.
func TestWebAppModel(t *testing.T) {
	needTool(t, "node")
	cmd := exec.Command("node", "--test", "webapp-model.test.mjs")
	cmd.Dir = filepath.Join(repoRoot(), "e2e", "node")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node --test webapp-model.test.mjs: %v\n%s", err, out)
	}
}

// TestWebAppServed: the broker serves the app at / with its CSP, and every
// other endpoint of the HTTPS server still answers as before.
func TestWebAppServed(t *testing.T) {
	b := startBroker(t)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}, Timeout: 10 * time.Second}
	base := "https://" + b.Addrs()["https"]
	for _, tc := range []struct {
		method, path string
		status       int
		contains     string
		webapp       bool // answered by the web app (its CSP)
	}{
		{"GET", "/", 200, `src="/app.mjs"`, true},
		{"GET", "/app.mjs", 200, "envelope.mjs", true},
		{"GET", "/vendor/mqtt.esm.js", 200, "export default", true},
		{"GET", "/nope", 404, "not found", true},
		{"GET", "/healthz", 200, "ok", false},
		{"GET", "/.well-known/jwks.json", 200, `"keys"`, false},
		{"POST", "/api/token", 400, "unsupported_grant_type", false},
		{"GET", "/mqtt", 426, "", false},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader("{}"))
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tc.path == "/mqtt" {
				if resp.StatusCode/100 != 4 || strings.Contains(string(body), "homemq</title>") {
					t.Fatalf("GET /mqtt without upgrade: %d %q, want the WebSocket listener's refusal", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.contains) {
				t.Fatalf("status %d body %.200q, want %d with %q", resp.StatusCode, body, tc.status, tc.contains)
			}
			if got := resp.Header.Get("Content-Security-Policy") == webapp.CSP; got != tc.webapp {
				t.Fatalf("answered by the web app = %v, want %v (CSP %q)", got, tc.webapp, resp.Header.Get("Content-Security-Policy"))
			}
			if resp.Header.Get("Strict-Transport-Security") == "" || resp.Header.Get("X-Frame-Options") != "DENY" {
				t.Fatalf("the broker's security headers are missing: %v", resp.Header)
			}
		})
	}
}

// simAgent stands in for the Pi agent on simulated pins: it takes signed
// commands for its devices, drives a pin, answers with an ack carrying the
// command's nonce and publishes the retained state.
type simAgent struct {
	t     *testing.T
	home  string
	id    string
	kinds map[string]string // device -> switch | pulse
	c     *paho.Client

	mu      sync.Mutex
	pins    map[string]bool
	history map[string][]bool // every level each pin was driven to
	kids    []string          // the kid of every command acted on
}

func startSimAgent(t *testing.T, b *testBroker, home, id string, kinds map[string]string) *simAgent {
	t.Helper()
	a := &simAgent{t: t, home: home, id: id, kinds: kinds, pins: map[string]bool{}, history: map[string][]bool{}}
	devices := make([]string, 0, len(kinds))
	for d := range kinds {
		devices = append(devices, d)
		a.pins[d] = false
		a.history[d] = []bool{false}
	}
	tok, _ := b.mintSpec(auth.Spec{Sub: "agent:" + id, Homes: map[string]string{home: "agent"}, Devices: devices, TTL: time.Hour})
	cmds := make(chan *paho.Publish, 16)
	a.c = paho.NewClient(paho.ClientConfig{
		Conn: b.dial(overTLS),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			cmds <- pr.Packet
			return true, nil
		}},
		PingHandler: quietPinger{},
	})
	status := a.topic("status")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.c.Connect(ctx, &paho.Connect{ClientID: "agent:" + id, KeepAlive: 30, CleanStart: true,
		Username: "agent:" + id, UsernameFlag: true, Password: []byte(tok), PasswordFlag: true,
		WillMessage: &paho.WillMessage{Topic: status, Payload: []byte("offline"), QoS: 1, Retain: true}}); err != nil {
		t.Fatalf("sim agent connect: %v", err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = a.c.Disconnect(&paho.Disconnect{})
		<-done
	})
	if _, err := a.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: a.topic("devices/+/cmd"), QoS: 1}}}); err != nil {
		t.Fatalf("sim agent subscribe: %v", err)
	}
	a.publish(status, "online", true)
	for d := range kinds {
		a.publishState(d)
	}
	go func() {
		defer close(done)
		for {
			select {
			case pk := <-cmds:
				a.handle(pk)
			case <-a.c.Done():
				return
			}
		}
	}()
	return a
}

func (a *simAgent) topic(rest string) string {
	return fmt.Sprintf("homes/%s/agents/%s/%s", a.home, a.id, rest)
}

func (a *simAgent) publish(topic, payload string, retain bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.c.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: 1, Retain: retain}); err != nil {
		a.t.Logf("sim agent publish %s: %v", topic, err)
	}
}

func (a *simAgent) publishState(device string) {
	a.mu.Lock()
	st := map[bool]string{true: "on", false: "off"}[a.pins[device]]
	a.mu.Unlock()
	a.publish(a.topic("devices/"+device+"/state"), fmt.Sprintf(`{"state":%q,"kind":%q}`, st, a.kinds[device]), true)
}

func (a *simAgent) drive(device string, level bool) {
	a.mu.Lock()
	a.pins[device] = level
	a.history[device] = append(a.history[device], level)
	a.mu.Unlock()
	a.publishState(device)
}

func (a *simAgent) handle(pk *paho.Publish) {
	parts := strings.Split(pk.Topic, "/")
	device := parts[len(parts)-2]
	ack := func(nonce string, ok bool, result string) { // as agent.Ack
		m := map[string]any{"nonce": nonce, "ok": ok}
		if ok {
			m["result"] = result
		} else {
			m["error"] = result
		}
		b, _ := json.Marshal(m)
		a.publish(a.topic("devices/"+device+"/ack"), string(b), false)
	}
	env, err := envelope.Parse(pk.Payload, envelope.DefaultPolicy())
	if err != nil {
		a.t.Errorf("sim agent got a command the broker should have refused: %v", err)
		return
	}
	if time.Now().Unix() > env.Exp {
		ack(env.Nonce, false, "expired")
		return
	}
	var cmd struct{ Action string }
	_ = json.Unmarshal([]byte(env.Msg), &cmd)
	a.mu.Lock()
	a.kids = append(a.kids, env.Kid)
	level, kind := a.pins[device], a.kinds[device]
	a.mu.Unlock()
	switch {
	case kind == "switch" && (cmd.Action == "on" || cmd.Action == "off" || cmd.Action == "toggle"):
		a.drive(device, cmd.Action == "on" || (cmd.Action == "toggle" && !level))
	case kind == "pulse" && cmd.Action == "pulse":
		a.drive(device, true)
		time.Sleep(300 * time.Millisecond)
		a.drive(device, false)
	default:
		ack(env.Nonce, false, "unsupported_action")
		return
	}
	ack(env.Nonce, true, cmd.Action)
}

func (a *simAgent) snapshot() (history map[string][]bool, kids []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	history = map[string][]bool{}
	for d, h := range a.history {
		history[d] = append([]bool(nil), h...)
	}
	return history, append([]string(nil), a.kids...)
}

// spkiHash is the base64 SHA-256 of the broker's certificate key, which
// Chromium is told to trust (--ignore-certificate-errors-spki-list).
func spkiHash(t *testing.T, b *testBroker) string {
	t.Helper()
	cert, err := x509.ParseCertificate(b.TLSConfig().Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// browserResult is what e2e/node/webapp.test.mjs reports.
type browserResult struct {
	CSP            string
	ExpiredError   string
	BadTokenError  string
	ExpiryText     string
	LampAfterOn    string
	OnResult       string
	PulseResult    string
	ForgedAdmin    publishVerdict
	ForgedAdminLog string
	ViewerState    string
	ViewerButtons  int
	ViewerNote     string
	ForgedViewer   publishVerdict
	ViewerLog      string
	Refreshes      int
	HomesBefore    []string
	HomesAfter     []string
	NewHomeRole    string
	NewHomeState   string
	ConnAfterExp   string
	ToggleResult   string
	LampAfterOff   string
	Storage        int
	URLs           []string
	ConsoleErrors  []string
	Screenshots    []string
}

type publishVerdict struct {
	OK     bool
	Code   int
	Reason string
}

// TestWebAppInBrowser drives the page in Chromium on a phone-sized screen:
// an admin signs in with a pasted token, sees the agent and its devices,
// switches the lamp and pulses the door (the pins change, the page shows the
// acks and new states), a command forged in the console with a wrong key is
// refused with the broker's reason, the token is refreshed before it
// expires (bringing a home the user was added to) and commands keep
// working past the first token's expiry; a
// viewer signed in by token exchange sees the state, no buttons, and is
// refused when forging a command.
func TestWebAppInBrowser(t *testing.T) {
	chromium := needTool(t, "chromium")
	const ttl = 20 * time.Second
	b := startBroker(t, func(c *broker.Config) {
		c.Tokens.UserTTL = ttl
		c.Tokens.Leeway = time.Second
	})
	for _, err := range []error{
		must(b.Registry.AddHome("h1")),
		must(b.Registry.AddMember("h1", "user:ann", "admin")),
		must(b.Registry.AddMember("h1", "user:vic", "viewer")),
		// ann's pasted token names only h1: the first refresh brings h2
		must(b.Registry.AddHome("h2")),
		must(b.Registry.AddMember("h2", "user:ann", "member")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	agent := startSimAgent(t, b, "h1", "pi1", map[string]string{"lamp": "switch", "door": "pulse"})
	startSimAgent(t, b, "h2", "pi2", map[string]string{"fan": "switch"})

	adminTok, admin := b.mintSpec(auth.Spec{Sub: "user:ann", Homes: map[string]string{"h1": "admin"}, TTL: ttl})
	adminJSON, _ := json.Marshal(map[string]any{"token": adminTok, "msg_key": envelope.EncodeKey(envelope.DeriveKey(b.Master, admin.ID)), "exp": admin.ExpiresAtTime().Unix()})
	viewerTok, _ := b.mintSpec(auth.Spec{Sub: "user:vic", Homes: map[string]string{"h1": "viewer"}})
	other := b.mint("user:ann", "h1=admin")
	badTok := adminTok[:strings.LastIndexByte(adminTok, '.')] + other[strings.LastIndexByte(other, '.'):]
	artifacts := filepath.Join(repoRoot(), "e2e", "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(artifacts, "webapp-*.png"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	p := startNode(t, "webapp.test.mjs", map[string]string{
		"CHROMIUM":     chromium,
		"BASE_URL":     "https://" + b.Addrs()["https"] + "/",
		"SPKI":         spkiHash(t, b),
		"ARTIFACTS":    artifacts,
		"ADMIN_JSON":   string(adminJSON),
		"VIEWER_TOKEN": viewerTok,
		"BAD_TOKEN":    badTok,
		"PAST":         fmt.Sprint(admin.ExpiresAtTime().Add(time.Second + 500*time.Millisecond).UnixMilli()),
		"DEVICE":       "h1/pi1/lamp",
		"PULSE":        "h1/pi1/door",
		"NEW_HOME":     "h2/pi2/fan",
	})
	var res browserResult
	p.wait(90*time.Second, &res)
	t.Logf("screenshots: %v", res.Screenshots)

	if res.CSP != webapp.CSP {
		t.Errorf("page CSP %q", res.CSP)
	}
	if len(res.ConsoleErrors) > 0 {
		t.Errorf("the page logged errors (CSP violations?): %q", res.ConsoleErrors)
	}
	for _, u := range res.URLs {
		if strings.Contains(u, adminTok[:40]) || strings.Contains(u, viewerTok[:40]) || strings.Contains(u, "token=") {
			t.Errorf("a token went into a URL: %s", u)
		}
	}
	if res.Storage != 0 {
		t.Errorf("the page stored %d items in web storage or cookies", res.Storage)
	}
	if !strings.Contains(res.ExpiredError, "this token expired at") {
		t.Errorf("an expired token: page shows %q", res.ExpiredError)
	}
	if !strings.Contains(res.BadTokenError, "0x86 bad user name or password") || !strings.Contains(res.BadTokenError, "signature") {
		t.Errorf("a token with a wrong signature: page shows %q", res.BadTokenError)
	}
	if !strings.HasPrefix(res.ExpiryText, "token expires in 0:") {
		t.Errorf("expiry shown as %q", res.ExpiryText)
	}
	if res.LampAfterOn != "on" || !strings.Contains(res.OnResult, "on: done") || !strings.Contains(res.PulseResult, "pulse: done") {
		t.Errorf("commands: lamp %q (%q), door %q", res.LampAfterOn, res.OnResult, res.PulseResult)
	}
	if res.ForgedAdmin.OK || res.ForgedAdmin.Code != 0x87 || !strings.Contains(res.ForgedAdmin.Reason, "signature") ||
		!strings.Contains(res.ForgedAdminLog, "refused by the broker") {
		t.Errorf("a command sealed with a wrong key: %+v, page shows %q", res.ForgedAdmin, res.ForgedAdminLog)
	}
	if res.ViewerState != "on" || res.ViewerButtons != 0 || !strings.Contains(res.ViewerNote, "watch") {
		t.Errorf("viewer sees state %q, %d buttons, note %q", res.ViewerState, res.ViewerButtons, res.ViewerNote)
	}
	if res.ForgedViewer.OK || res.ForgedViewer.Code != 0x87 || !strings.Contains(res.ViewerLog, "0x87 not authorized") {
		t.Errorf("a viewer's console command: %+v, page shows %q", res.ForgedViewer, res.ViewerLog)
	}
	if fmt.Sprint(res.HomesBefore) != "[h1]" || fmt.Sprint(res.HomesAfter) != "[h1 h2]" || res.NewHomeRole != "member" || res.NewHomeState != "off" {
		t.Errorf("the refresh did not bring the new membership: homes %v then %v, h2 role %q, fan %q",
			res.HomesBefore, res.HomesAfter, res.NewHomeRole, res.NewHomeState)
	}
	if res.Refreshes < 1 || res.ConnAfterExp != "connected" || !strings.Contains(res.ToggleResult, "toggle: done") || res.LampAfterOff != "off" {
		t.Errorf("after the first token's expiry: %d refreshes, %q, toggle %q, lamp %q", res.Refreshes, res.ConnAfterExp, res.ToggleResult, res.LampAfterOff)
	}

	history, kids := agent.snapshot()
	if got := fmt.Sprint(history["lamp"]); got != "[false true false]" {
		t.Errorf("lamp pin went %s, want [false true false] (on, then toggle)", got)
	}
	if got := fmt.Sprint(history["door"]); got != "[false true false]" {
		t.Errorf("door pin went %s, want one pulse", got)
	}
	if len(kids) != 3 || kids[0] != admin.ID || kids[1] != admin.ID || kids[2] == admin.ID {
		t.Errorf("the agent acted on commands with kids %q: want on and pulse under %s, toggle under the refreshed token", kids, admin.ID)
	}
}

func must[T any](_ T, err error) error { return err }
