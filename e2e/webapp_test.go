package e2e

import (
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
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"homemq/agent"
	"homemq/agent/gpiosim"
	"homemq/auth"
	"homemq/broker"
	"homemq/envelope"
	"homemq/topics"
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

// publishAgentState makes an agent of another home look alive: its
// retained status and one device's retained state, as the Pi agent
// publishes them.
func publishAgentState(t *testing.T, b *testBroker, home, id, device string) {
	t.Helper()
	tok, _ := b.mintSpec(auth.Spec{Sub: "agent:" + id, Homes: map[string]string{home: "agent"}, Devices: []string{device}})
	c := b.mustV5(overTLS, "agent:"+id, tok)
	for topic, payload := range map[string]string{
		topics.StatusTopic(home, id):        "online",
		topics.StateTopic(home, id, device): `{"state":"off","kind":"switch"}`,
	} {
		if pr := c.publish(t, topic, []byte(payload), 1, true); pr.ReasonCode != 0 {
			t.Fatalf("publish %s: 0x%02X", topic, pr.ReasonCode)
		}
	}
}

// levels lists the levels a simulated pin went through, repeats merged.
func levels(p *gpiosim.Pin) string {
	var out []string
	for _, c := range p.History() {
		l := map[gpio.Level]string{gpio.High: "high", gpio.Low: "low"}[c.Level]
		if len(out) == 0 || out[len(out)-1] != l {
			out = append(out, l)
		}
	}
	return strings.Join(out, " ")
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
	InputButtons   int
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

// TestWebAppInBrowser drives the page in Chromium on a phone-sized screen,
// against the Pi agent on simulated GPIO: an admin signs in with a pasted
// token, sees the agent and its devices (an input has no buttons),
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
	pi := startAgent(t, agentConfig(t, b), agent.Options{}) // h1/pi1: lamp, door, button, fan
	for _, err := range []error{
		must(b.Registry.AddMember(agentHome, "user:ann", "admin")),
		must(b.Registry.AddMember(agentHome, "user:vic", "viewer")),
		// ann's pasted token names only h1: the first refresh brings h2
		must(b.Registry.AddHome("h2")),
		must(b.Registry.AddMember("h2", "user:ann", "member")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	publishAgentState(t, b, "h2", "pi2", "fan")
	// an operator watches what reaches the agent's command topics
	watcher := b.mustV5(overTLS, "service:watch", mustOperator(b))
	watcher.subscribe(t, topics.CommandTopic(agentHome, agentID, "+"), 1)

	adminTok, admin := b.mintSpec(auth.Spec{Sub: "user:ann", Homes: map[string]string{agentHome: "admin"}, TTL: ttl})
	adminJSON, _ := json.Marshal(map[string]any{"token": adminTok, "msg_key": envelope.EncodeKey(b.MessageKey(admin.ID)), "exp": admin.ExpiresAtTime().Unix()})
	viewerTok, _ := b.mintSpec(auth.Spec{Sub: "user:vic", Homes: map[string]string{agentHome: "viewer"}})
	other := b.mint("user:ann", agentHome+"=admin")
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
		"DEVICE":       agentHome + "/" + agentID + "/lamp",
		"PULSE":        agentHome + "/" + agentID + "/door",
		"INPUT":        agentHome + "/" + agentID + "/button",
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
	if !strings.Contains(res.ExpiredError, "sign-in expired at") {
		t.Errorf("an expired token: page shows %q", res.ExpiredError)
	}
	if !strings.Contains(res.BadTokenError, "0x86 bad user name or password") || !strings.Contains(res.BadTokenError, "signature") {
		t.Errorf("a token with a wrong signature: page shows %q", res.BadTokenError)
	}
	if !strings.HasPrefix(res.ExpiryText, "sign-in renews within 0:") {
		t.Errorf("expiry shown as %q", res.ExpiryText)
	}
	if res.InputButtons != 0 {
		t.Errorf("the button (an input) has %d command buttons", res.InputButtons)
	}
	if res.LampAfterOn != "On" || !strings.Contains(res.OnResult, "Turned on at") || !strings.Contains(res.PulseResult, "Unlocked at") {
		t.Errorf("commands: lamp %q (%q), door %q", res.LampAfterOn, res.OnResult, res.PulseResult)
	}
	if res.ForgedAdmin.OK || res.ForgedAdmin.Code != 0x87 || !strings.Contains(res.ForgedAdmin.Reason, "signature") ||
		!strings.Contains(res.ForgedAdminLog, "refused by the broker") {
		t.Errorf("a command sealed with a wrong key: %+v, page shows %q", res.ForgedAdmin, res.ForgedAdminLog)
	}
	if res.ViewerState != "On" || res.ViewerButtons != 0 || !strings.Contains(res.ViewerNote, "watch") {
		t.Errorf("viewer sees state %q, %d buttons, note %q", res.ViewerState, res.ViewerButtons, res.ViewerNote)
	}
	if res.ForgedViewer.OK || res.ForgedViewer.Code != 0x87 || !strings.Contains(res.ViewerLog, "0x87 not authorized") {
		t.Errorf("a viewer's console command: %+v, page shows %q", res.ForgedViewer, res.ViewerLog)
	}
	if fmt.Sprint(res.HomesBefore) != "[h1]" || fmt.Sprint(res.HomesAfter) != "[h1 h2]" || res.NewHomeRole != "member" || res.NewHomeState != "Off" {
		t.Errorf("the refresh did not bring the new membership: homes %v then %v, h2 role %q, fan %q",
			res.HomesBefore, res.HomesAfter, res.NewHomeRole, res.NewHomeState)
	}
	if res.Refreshes < 1 || res.ConnAfterExp != "connected" || !strings.Contains(res.ToggleResult, "Turned off at") || res.LampAfterOff != "Off" {
		t.Errorf("after the first token's expiry: %d refreshes, %q, toggle %q, lamp %q", res.Refreshes, res.ConnAfterExp, res.ToggleResult, res.LampAfterOff)
	}

	if got := levels(pi.pin(lampPin)); got != "low high low" {
		t.Errorf("the lamp's pin went %s, want low high low (on, then off)", got)
	}
	if got := levels(pi.pin(doorPin)); got != "low high low" {
		t.Errorf("the door's pin went %s, want one pulse", got)
	}
	var kids []string
	for _, m := range watcher.received() {
		e, err := envelope.Parse(m.Payload, envelope.DefaultPolicy())
		if err != nil {
			t.Fatalf("a command that is no envelope reached the agent: %q", m.Payload)
		}
		kids = append(kids, e.Kid)
	}
	if len(kids) != 3 || kids[0] != admin.ID || kids[1] != admin.ID || kids[2] == admin.ID {
		t.Errorf("commands with kids %q reached the agent: want on and pulse under %s, toggle under the refreshed token, nothing forged", kids, admin.ID)
	}
}

// mustOperator mints an operator token for service:watch.
func mustOperator(b *testBroker) string {
	tok, _ := b.mintSpec(auth.Spec{Sub: "service:watch", Operator: true, TTL: time.Hour}) // outlives the short user tokens
	return tok
}

func must[T any](_ T, err error) error { return err }
