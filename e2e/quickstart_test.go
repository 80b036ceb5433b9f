package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
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
	inviteLink = regexp.MustCompile(`https://([0-9.]+|localhost):(\d+)/#invite=([A-Za-z0-9_-]{43})`)
	mqttsLine  = regexp.MustCompile(`mqtts://([0-9.]+:\d+)`)
	watchToken = regexp.MustCompile(`mosquitto_sub .* -u user:demo -P '([^']+)'`)
)

// banner waits for the banner and returns the printed invite link, the
// token of the printed mosquitto_sub line, and the MQTT address.
func (q *quickstart) banner() (link, token, mqttAddr string) {
	q.t.Helper()
	eventually(q.t, 30*time.Second, "the invite link is printed", func() bool { return inviteLink.MatchString(q.output()) })
	// the banner is written line by line: wait for its last lines too
	eventually(q.t, 10*time.Second, "the banner's homemq send, token and member lines", func() bool {
		return q.printed("send") != "" && q.printed("token") != "" && q.printed("member") != ""
	})
	out := q.output()
	w := watchToken.FindStringSubmatch(out)
	if w == nil {
		q.t.Fatalf("no mosquitto_sub line for user:demo:\n%s", out)
	}
	return inviteLink.FindString(out), w[1], mqttsLine.FindStringSubmatch(out)[1]
}

// printed returns the command of the banner that runs the binary with
// verb, from the binary's path on.
func (q *quickstart) printed(verb string) string {
	for _, line := range strings.Split(q.output(), "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if strings.HasSuffix(f[i], "homemq") && f[i+1] == verb {
				return strings.Join(f[i:], " ")
			}
		}
	}
	return ""
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
// demo agent comes online; the printed invite link, opened in Chromium,
// signs in without pasting anything and switches the lamp; the printed
// homemq send line reaches the agent too; Ctrl-C exits 0 with the agent's
// status turned offline; and a restart on the same data finds the same
// home with the agent online again.
func TestQuickstartFirstMinute(t *testing.T) {
	data := filepath.Join(t.TempDir(), "homemq-data")
	for run := 1; run <= 2; run++ {
		q := startQuickstart(t, data)
		link, token, addr := q.banner()
		t.Logf("run %d: %s…", run, link[:50])
		for _, verb := range []string{"send", "token", "member"} {
			line := q.printed(verb)
			if line == "" {
				t.Errorf("the banner has no homemq %s line:\n%s", verb, q.output())
				continue
			}
			if _, err := os.Stat(strings.Fields(line)[0]); err != nil {
				t.Errorf("the banner runs %s, which does not exist: %v", strings.Fields(line)[0], err)
			}
		}

		// the printed watcher's token sees the demo agent online
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
			t.Fatalf("run %d: the printed mosquitto_sub token cannot connect: %v", run, err)
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
		eventually(t, 10*time.Second, "the demo door is a door", func() bool {
			return strings.Contains(last(topics.StateTopic("demo", "demo-pi", "door")), `"use":"door"`)
		})

		// the printed send line, run as printed, reaches the agent
		send := exec.Command("sh", "-c", q.printed("send"))
		send.Dir = q.cmd.Dir
		if out, err := send.CombinedOutput(); err != nil || !strings.Contains(string(out), `"ok":true`) {
			t.Fatalf("run %d: the printed send line: %v\n%s", run, err, out)
		}
		eventually(t, 10*time.Second, "the lamp is on", func() bool {
			return strings.Contains(last(topics.StateTopic("demo", "demo-pi", "lamp")), `"state":"on"`)
		})
		if run == 1 {
			openLinkInBrowser(t, data, link)
		} else {
			// the printed line for another phone makes a new invite
			inv := exec.Command("sh", "-c", q.printed("member"))
			inv.Dir = q.cmd.Dir
			if out, err := inv.CombinedOutput(); err != nil || !inviteLink.Match(out) {
				t.Errorf("the printed member invite line: %v\n%s", err, out)
			}
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

// linkResult is what e2e/node/webapp-link.test.mjs reports.
type linkResult struct {
	AddressBar, Sub, Result, DoorState string
	ConsoleErrors, Screenshots         []string
	Error                              string
}

// openLinkInBrowser opens the printed invite link in Chromium and switches
// the lamp from the page.
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
	if res.Sub != "user:demo" {
		t.Errorf("the printed link signed in as %q, want user:demo", res.Sub)
	}
	if strings.Contains(res.AddressBar, "#invite") {
		t.Errorf("the token stayed in the address bar: %s", res.AddressBar)
	}
	if len(res.ConsoleErrors) > 0 {
		t.Errorf("the page logged errors: %q", res.ConsoleErrors)
	}
}
