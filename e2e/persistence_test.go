package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"homemq/certs"
	"homemq/envelope"
)

// procBroker is `homemq serve` as a process on fixed loopback ports, so it
// can be killed and started again on the same data folder and addresses.
type procBroker struct {
	t                   *testing.T
	data                string
	mqtts, https, plain string
	served              *servedBinary
	pool                *x509.CertPool
}

// unusedAddr returns a loopback address whose port was free just now.
func unusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startProcBroker(t *testing.T) *procBroker {
	t.Helper()
	p := &procBroker{t: t, data: t.TempDir(), mqtts: unusedAddr(t), https: unusedAddr(t), plain: unusedAddr(t)}
	p.start()
	return p
}

// start runs the broker (again) and waits until it serves.
func (p *procBroker) start() {
	p.t.Helper()
	p.served = serveBinary(p.t, p.data, "--mqtt", p.mqtts, "--https", p.https, "--mqtt-plain", p.plain, "--log-level", "error")
	if got := p.served.addrs["mqtts"]; got != p.mqtts {
		p.t.Fatalf("serve listens on %s, want %s", got, p.mqtts)
	}
	pool, err := certs.CertPool(filepath.Join(p.data, "certs", certs.CAFile))
	if err != nil {
		p.t.Fatal(err)
	}
	p.pool = pool
}

// kill9 kills the broker with SIGKILL: no shutdown code runs.
func (p *procBroker) kill9() {
	p.t.Helper()
	if err := p.served.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatal(err)
	}
	_ = p.served.cmd.Wait()
}

// minted is what `homemq token mint --json` prints.
type minted struct {
	Token  string `json:"token"`
	MsgKey string `json:"msg_key"`
	JTI    string `json:"jti"`
	Exp    int64  `json:"exp"`
}

// mint runs `homemq token mint --json` on the data folder.
func (p *procBroker) mint(sub, home string) minted {
	p.t.Helper()
	out, err := exec.Command(homemqBinary(p.t), "token", "mint", "--data", p.data, "--sub", sub, "--home", home, "--ttl", "1h", "--json").Output()
	if err != nil {
		p.t.Fatalf("token mint: %v", err)
	}
	var m minted
	if err := json.Unmarshal(out, &m); err != nil || m.Token == "" || m.MsgKey == "" || m.JTI == "" {
		p.t.Fatalf("token mint --json printed %s (%v)", out, err)
	}
	return m
}

// seal makes a command envelope for topic with m's message key.
func (m minted) seal(t *testing.T, topic, msg string, ttl time.Duration) []byte {
	t.Helper()
	key, err := base64.RawURLEncoding.DecodeString(m.MsgKey)
	if err != nil {
		t.Fatal(err)
	}
	env, err := envelope.Seal(key, topic, m.JTI, msg, time.Now(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// waitPast waits until the wall clock has passed instant. It is for the
// one thing no event can stand for: a process that is down (a killed
// broker) while a real instant, taken from the data under test (an
// envelope's exp), passes. It waits exactly that long, never a guess.
func waitPast(t *testing.T, instant time.Time, what string) {
	t.Helper()
	eventually(t, 10*time.Second, what, func() bool { return time.Now().After(instant) })
}

// persistent asks for a session that outlives the connection.
func persistent(cp *paho.Connect) {
	hour := uint32(3600)
	cp.CleanStart = false
	cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &hour}
}

// v5 connects an MQTT 5 client over TLS.
func (p *procBroker) v5(clientID, token string, edit ...func(*paho.Connect)) (*v5client, *paho.Connack) {
	p.t.Helper()
	conn, err := tls.Dial("tcp", p.mqtts, &tls.Config{RootCAs: p.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err != nil {
		p.t.Fatalf("dial %s: %v", p.mqtts, err)
	}
	vc, ca, err := (&testBroker{t: p.t}).v5over(conn, clientID, token, edit...)
	if err != nil {
		p.t.Fatalf("connect %s: %v", clientID, err)
	}
	return vc, ca
}

func payloads(ps []*paho.Publish) []string {
	var out []string
	for _, p := range ps {
		out = append(out, string(p.Payload))
	}
	return out
}

// TestCrashKeepsRetainedStateAndQueuedCommands: commands queued for an
// offline agent and retained state survive kill -9 of the broker; after
// the restart the agent gets each queued command exactly once, and a
// command whose envelope expired during the outage never.
func TestCrashKeepsRetainedStateAndQueuedCommands(t *testing.T) {
	p := startProcBroker(t)
	agentTok := p.mint("agent:pi", "h1=agent")
	owner := p.mint("user:owner", "h1=admin")
	viewer := p.mint("user:viewer", "h1=viewer")
	cmdFilter := "homes/h1/agents/pi/devices/+/cmd"
	lamp, door, lock := "homes/h1/agents/pi/devices/lamp/cmd", "homes/h1/agents/pi/devices/door/cmd", "homes/h1/agents/pi/devices/lock/cmd"
	lampState := "homes/h1/agents/pi/devices/lamp/state"

	agent, _ := p.v5("agent:pi", agentTok.Token, persistent)
	if code := agent.subscribe(t, cmdFilter, 1); code != 1 {
		t.Fatalf("agent subscribe: 0x%02X", code)
	}
	if pr := agent.publish(t, lampState, []byte("on"), 1, true); pr.ReasonCode != 0 {
		t.Fatalf("retained state refused: 0x%02X", pr.ReasonCode)
	}
	if err := agent.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}

	sender, _ := p.v5("user:owner", owner.Token)
	queued := map[string][]byte{
		lamp: owner.seal(t, lamp, `{"action":"on"}`, 60*time.Second),
		door: owner.seal(t, door, `{"action":"pulse"}`, 60*time.Second),
	}
	short := owner.seal(t, lock, `{"action":"unlock"}`, 2*time.Second)
	for _, c := range []struct {
		topic string
		env   []byte
	}{{lamp, queued[lamp]}, {lock, short}, {door, queued[door]}} {
		if pr := sender.publish(t, c.topic, c.env, 1, false); pr.ReasonCode != 0 {
			t.Fatalf("command to %s refused: 0x%02X %s", c.topic, pr.ReasonCode, pr.Properties.ReasonString)
		}
	}

	p.kill9()
	var e struct{ Exp int64 }
	if err := json.Unmarshal(short, &e); err != nil || e.Exp == 0 {
		t.Fatalf("the short command has no exp: %v %s", err, short)
	}
	waitPast(t, time.Unix(e.Exp, 0), "the short command's exp while the broker is down")
	p.start()

	watcher, _ := p.v5("user:viewer", viewer.Token)
	watcher.subscribe(t, lampState, 1)
	eventually(t, 5*time.Second, "the retained state after the restart", func() bool { return len(watcher.received()) == 1 })
	if got := watcher.received()[0]; string(got.Payload) != "on" || !got.Retain {
		t.Fatalf("retained state after the restart: %q retain=%v, want \"on\" retained", got.Payload, got.Retain)
	}

	agent, ca := p.v5("agent:pi", agentTok.Token, persistent)
	if !ca.SessionPresent {
		t.Fatal("the agent's session did not survive the crash (CONNACK session present = false)")
	}
	eventually(t, 10*time.Second, "the two queued commands", func() bool { return len(agent.received()) >= 2 })
	never(t, 1500*time.Millisecond, "a third delivery (a duplicate or the expired command)", func() bool { return len(agent.received()) > 2 })
	for _, got := range agent.received() {
		want, ok := queued[got.Topic]
		if !ok || !bytes.Equal(got.Payload, want) {
			t.Fatalf("delivered %s %s, want only the two long-lived commands", got.Topic, got.Payload)
		}
		delete(queued, got.Topic)
	}
	if len(queued) != 0 {
		t.Fatalf("not delivered after the restart: %v", queued)
	}
}

// TestRestartUnderLoadLosesNoAcknowledgedMessage: publishers send QoS 1
// messages as fast as they are acknowledged while the broker is killed
// with SIGKILL; every message that was PUBACKed reaches the persistent
// subscriber, before or after the restart (duplicates are allowed, losses
// are not).
func TestRestartUnderLoadLosesNoAcknowledgedMessage(t *testing.T) {
	p := startProcBroker(t)
	sinkTok := p.mint("user:sink", "h1=member")
	sink, _ := p.v5("user:sink/s1", sinkTok.Token, persistent)
	if code := sink.subscribe(t, "homes/h1/agents/+/devices/+/state", 1); code != 1 {
		t.Fatalf("subscribe: 0x%02X", code)
	}

	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		wg    sync.WaitGroup
	)
	for i, name := range []string{"pi1", "pi2"} {
		tok := p.mint("agent:"+name, "h1=agent")
		pub, _ := p.v5("agent:"+name, tok.Token)
		topic := fmt.Sprintf("homes/h1/agents/%s/devices/d%d/state", name, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				msg := fmt.Sprintf("%s-%d", name, n)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				pr, err := pub.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(msg)})
				cancel()
				if err != nil || pr == nil || pr.ReasonCode != 0 {
					return // the broker is gone
				}
				mu.Lock()
				acked[msg] = true
				mu.Unlock()
			}
		}()
	}
	eventually(t, 20*time.Second, "load: 150 acknowledged messages", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 150
	})
	p.kill9()
	wg.Wait()
	got := map[string]bool{} // what the subscriber got, before the kill and after the restart
	for _, m := range payloads(sink.received()) {
		got[m] = true
	}

	p.start()
	sink, ca := p.v5("user:sink/s1", sinkTok.Token, persistent)
	if !ca.SessionPresent {
		t.Fatal("the subscriber's session did not survive the crash")
	}
	missing := func() []string {
		for _, m := range payloads(sink.received()) {
			got[m] = true
		}
		var miss []string
		for m := range acked {
			if !got[m] {
				miss = append(miss, m)
			}
		}
		return miss
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if miss := missing(); len(miss) > 0 {
		t.Fatalf("%d of %d acknowledged messages were lost in the crash, e.g. %v", len(miss), len(acked), miss[:min(5, len(miss))])
	}
	t.Logf("%d messages acknowledged before the kill, all delivered", len(acked))
}
