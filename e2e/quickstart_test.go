package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"homemq/envelope"
	"homemq/topics"
)

// quickstart is one run of the built binary as make run starts it:
// serve --demo in a data folder.
type quickstart struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr bytes.Buffer
	done   chan error

	mu     sync.Mutex
	stdout strings.Builder
}

// startQuickstart runs bin/homemq serve --demo on free ports in data.
func startQuickstart(t *testing.T, data string) *quickstart {
	t.Helper()
	q := &quickstart{t: t, done: make(chan error, 1)}
	q.cmd = exec.Command(homemqBinary(t), "serve", "--demo", "--data", data, "--mqtt", "127.0.0.1:0", "--https", "127.0.0.1:0")
	q.cmd.Dir = filepath.Dir(data)
	q.cmd.Stderr = &q.stderr
	out, err := q.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := q.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			q.mu.Lock()
			q.stdout.WriteString(sc.Text() + "\n")
			q.mu.Unlock()
		}
		q.done <- q.cmd.Wait()
	}()
	t.Cleanup(func() { _ = q.cmd.Process.Kill() })
	return q
}

func (q *quickstart) output() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.stdout.String()
}

var (
	signInLink = regexp.MustCompile(`https://([0-9.]+|localhost):(\d+)/#signin=([A-Za-z0-9_-]+)`)
	mqttsLine  = regexp.MustCompile(`mqtts://([0-9.]+:\d+)`)
)

// signIn waits for the banner and returns the printed sign-in link, the
// token and message key it carries, and the MQTT address.
func (q *quickstart) signIn() (link, token string, key []byte, mqttAddr string) {
	q.t.Helper()
	eventually(q.t, 30*time.Second, "the sign-in link is printed", func() bool { return signInLink.MatchString(q.output()) })
	out := q.output()
	m := signInLink.FindStringSubmatch(out)
	raw, err := base64.RawURLEncoding.DecodeString(m[3])
	if err != nil {
		q.t.Fatalf("the link's fragment is not base64url: %v", err)
	}
	var f struct {
		Token  string `json:"token"`
		MsgKey string `json:"msg_key"`
	}
	if err := json.Unmarshal(raw, &f); err != nil || f.Token == "" {
		q.t.Fatalf("the link's fragment %q is not {token, msg_key}: %v", raw, err)
	}
	if key, err = base64.RawURLEncoding.DecodeString(f.MsgKey); err != nil || len(key) != 32 {
		q.t.Fatalf("msg_key %q: %v", f.MsgKey, err)
	}
	return m[0], f.Token, key, mqttsLine.FindStringSubmatch(out)[1]
}

// interrupt sends Ctrl-C and returns the exit error within 15 s.
func (q *quickstart) interrupt() error {
	q.t.Helper()
	if err := q.cmd.Process.Signal(syscall.SIGINT); err != nil {
		q.t.Fatal(err)
	}
	select {
	case err := <-q.done:
		return err
	case <-time.After(15 * time.Second):
		q.t.Fatalf("homemq serve --demo did not exit within 15 s of Ctrl-C\n%s", q.stderr.String())
		return nil
	}
}

// TestQuickstartFirstMinute runs the built binary as make run does: the
// demo agent comes online, a command sent with the printed sign-in reaches
// it and is acknowledged, the printed commands name a binary that exists,
// the link opened in Chromium signs in without pasting anything and
// switches the lamp, Ctrl-C exits 0 with the agent's status turned offline,
// and a restart on the same data finds the same home with the agent online
// again.
func TestQuickstartFirstMinute(t *testing.T) {
	data := filepath.Join(t.TempDir(), "homemq-data")
	for run := 1; run <= 2; run++ {
		q := startQuickstart(t, data)
		link, token, key, addr := q.signIn()
		t.Logf("run %d: %s…", run, link[:60])
		for _, line := range strings.Split(q.output(), "\n") {
			if f := strings.Fields(line); len(f) > 1 && (f[1] == "send" || f[1] == "token") {
				if _, err := os.Stat(f[0]); err != nil {
					t.Errorf("the banner runs %s, which does not exist: %v", f[0], err)
				}
			}
		}

		// the printed sign-in connects as user:demo and sees the demo agent online
		pool := x509.NewCertPool()
		pemCA, err := os.ReadFile(filepath.Join(data, "certs", "ca.pem"))
		if err != nil || !pool.AppendCertsFromPEM(pemCA) {
			t.Fatalf("the dev CA: %v", err)
		}
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := (&testBroker{t: t}).v5over(conn, "user:demo/first-minute", token)
		if err != nil {
			t.Fatalf("run %d: the printed sign-in cannot connect: %v", run, err)
		}
		c.subscribe(t, "homes/demo/agents/demo-pi/#", 1)
		last := func(topic string) string {
			p := ""
			for _, m := range c.received() {
				if m.Topic == topic {
					p = string(m.Payload)
				}
			}
			return p
		}
		eventually(t, 30*time.Second, "the demo agent is online", func() bool {
			return last(topics.StatusTopic("demo", "demo-pi")) == "online"
		})
		eventually(t, 10*time.Second, "the demo door is locked", func() bool {
			return strings.Contains(last(topics.StateTopic("demo", "demo-pi", "door")), `"use":"door"`)
		})

		// a command from the printed sign-in reaches the agent
		cmdTopic := topics.CommandTopic("demo", "demo-pi", "lamp")
		claims := jwtClaims(t, token)
		env, err := envelope.Seal(key, cmdTopic, claims.ID, `{"action":"on"}`, time.Now(), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if pr := c.publish(t, cmdTopic, env, 1, false); pr.ReasonCode != 0 {
			t.Fatalf("run %d: the command was refused: 0x%02X %s", run, pr.ReasonCode, pr.Properties.ReasonString)
		}
		eventually(t, 10*time.Second, "the lamp's ack", func() bool {
			return strings.Contains(last(topics.AckTopic("demo", "demo-pi", "lamp")), `"ok":true`)
		})
		eventually(t, 10*time.Second, "the lamp is on", func() bool {
			return strings.Contains(last(topics.StateTopic("demo", "demo-pi", "lamp")), `"state":"on"`)
		})

		if run == 1 {
			openLinkInBrowser(t, data, link)
		}

		// the client sees the agent say offline when the demo stops
		before := len(c.received())
		if err := q.interrupt(); err != nil {
			t.Fatalf("run %d: Ctrl-C: %v, want exit 0\n%s", run, err, q.stderr.String())
		}
		sawOffline := false
		for _, m := range c.received()[before:] {
			if m.Topic == topics.StatusTopic("demo", "demo-pi") && string(m.Payload) == "offline" {
				sawOffline = true
			}
		}
		if !sawOffline {
			t.Errorf("run %d: the demo agent did not say offline when stopped: no ghost may stay online", run)
		}
	}
}

// jwtClaims reads a token's jti without checking it (the broker did).
func jwtClaims(t *testing.T, token string) struct{ ID string } {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		ID string `json:"jti"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return struct{ ID string }{c.ID}
}

// linkResult is what e2e/node/webapp-link.test.mjs reports.
type linkResult struct {
	AddressBar, Result, DoorState string
	ConsoleErrors, Screenshots    []string
	Error                         string
}

// openLinkInBrowser opens the printed sign-in link in Chromium and switches
// the lamp on from the page.
func openLinkInBrowser(t *testing.T, data, link string) {
	t.Helper()
	chromium := needTool(t, "chromium")
	certPEM, err := os.ReadFile(filepath.Join(data, "certs", "server.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		t.Fatal("server.pem holds no PEM block")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	artifacts := filepath.Join(repoRoot(), "e2e", "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	p := startNode(t, "webapp-link.test.mjs", map[string]string{
		"CHROMIUM": chromium, "LINK": link, "SPKI": base64.StdEncoding.EncodeToString(sum[:]), "ARTIFACTS": artifacts,
	})
	var res linkResult
	p.wait(60*time.Second, &res)
	if !strings.HasPrefix(res.Result, "Turned on at") || res.DoorState != "Locked" {
		t.Errorf("from the printed link: lamp result %q, door %q", res.Result, res.DoorState)
	}
	if strings.Contains(res.AddressBar, "#signin") {
		t.Errorf("the token stayed in the address bar: %s", res.AddressBar)
	}
	if len(res.ConsoleErrors) > 0 {
		t.Errorf("the page logged errors: %q", res.ConsoleErrors)
	}
}
