package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"periph.io/x/conn/v3/gpio"

	"homemq/agent"
	"homemq/certs"
	"homemq/envelope"
	"homemq/topics"
)

// TestClusterKillNodeUnderLoad: three `homemq serve` processes; six Pi
// agents (in-process, simulated pins, every node's address, persistent
// sessions), three of them first on node C; a phone (MQTT 5, persistent
// session) and an integration (MQTT 3.1.1, persistent session), both
// first on C. An owner on A publishes signed QoS 1 commands to the agents
// in turn (9 a second over three connections, 1.5 a second per agent);
// after 4 s C is killed with SIGKILL and the sending goes on for 5 s.
// Then: every command A acknowledged was executed exactly once by its
// agent (no command is executed twice; one without a PUBACK may or may
// not run); the agents, the phone and the integration are back on A or B
// and receive; a retained state set on C before the kill is served by A
// and B; a token revoked on C before the kill is still refused by A and B.
func TestClusterKillNodeUnderLoad(t *testing.T) {
	t.Parallel()
	const (
		home      = "h1"
		nAgents   = 6
		onVictim  = 3 // agents 0..onVictim-1 start on C
		before    = 4 * time.Second
		after     = 5 * time.Second
		interval  = 110 * time.Millisecond // ~9 commands/s, 1.5/s per agent, 3/s per sender connection
		lampPin   = "GPIO17"
		buttonPin = "GPIO22"
	)
	nodes := startClusterProcesses(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	victim, survivors := c, []*processNode{a, b}
	names := map[string]string{}
	for _, n := range nodes {
		names["mqtts://"+n.addrs["mqtts"]] = n.name
	}
	caFile := filepath.Join(a.data, "certs", certs.CAFile)
	srv := a.addrs["https"]

	mustCLI(t, a.data, srv, "home", "add", home)
	integration := strings.TrimSpace(mustCLI(t, a.data, srv, "integration", "add", "--home", home, "--id", "ha", "--role", "viewer"))
	revoked := a.mint(t, "user:eve", home+"=viewer")
	victim.cli(t, "revoke", "--data", victim.data, "--server", victim.addrs["https"], "--sub", "user:eve")

	// The agents: 0..2 list C first, the others A or B first.
	order := func(first int) []*processNode { return append(slices.Clone(nodes[first:]), nodes[:first]...) }
	agents := make([]*killAgent, nAgents)
	for i := range agents {
		id := fmt.Sprintf("pi%d", i+1)
		cred := strings.TrimSpace(mustCLI(t, a.data, srv, "agent", "add", "--home", home, "--id", id, "--device", "lamp", "--device", "button"))
		first := 2 // C
		if i >= onVictim {
			first = i % 2 // A or B
		}
		var brokers, tokenURLs agent.URLList
		for _, n := range order(first) {
			brokers = append(brokers, "mqtts://"+n.addrs["mqtts"])
			tokenURLs = append(tokenURLs, "https://"+n.addrs["https"]+"/api/token")
		}
		cfg := agent.Config{
			Brokers: brokers, TokenURLs: tokenURLs, CAFile: caFile, ServerName: "localhost",
			Home: home, Agent: id, Credential: cred, GPIO: agent.GPIOSim, StateDir: t.TempDir(),
			Devices: []agent.DeviceConfig{
				{ID: "lamp", Kind: agent.Switch, Pin: lampPin},
				{ID: "button", Kind: agent.Input, Pin: buttonPin, ActiveLow: true, Debounce: 20 * time.Millisecond},
			},
			Reconnect: agent.ReconnectConfig{Min: 100 * time.Millisecond, Max: 500 * time.Millisecond},
		}
		agents[i] = startKillAgent(t, id, cfg)
	}
	for i, ag := range agents {
		want := order(2)[0].name
		if i >= onVictim {
			want = nodes[i%2].name
		}
		eventually(t, 60*time.Second, ag.id+" connected to node "+want, func() bool { return names[ag.log.node(time.Now())] == want })
	}

	// The phone and the integration, first on C.
	var urls []string
	for _, n := range order(2) {
		urls = append(urls, "mqtts://"+n.addrs["mqtts"])
	}
	phone := startPhone(t, urls, a.tb.tlsConfig(), a.mint(t, "user:phone", home+"=viewer"), "homes/"+home+"/agents/+/devices/+/state")
	ha := startIntegration(t, urls, a.tb.tlsConfig(), "service:ha", integration, "homes/"+home+"/agents/+/devices/+/event")
	if phone.server() != victim.addrs["mqtts"] || ha.server() != victim.addrs["mqtts"] {
		t.Fatalf("the phone is on %s and the integration on %s, want both on C (%s)", phone.server(), ha.server(), victim.addrs["mqtts"])
	}

	// A retained state, set on C before the kill.
	const gateState = `{"state":"open"}`
	gate := topics.StateTopic(home, "pi0", "gate")
	if pr := victim.mustConnect(t, "pi0", victim.mint(t, "agent:pi0", home+"=agent")).publish(t, gate, []byte(gateState), 1, true); pr.ReasonCode != 0 {
		t.Fatalf("retained state on C: PUBACK %#x", pr.ReasonCode)
	}

	// The sender, on A: an owner sealing commands with its message key.
	var mint struct {
		Token  string `json:"token"`
		MsgKey string `json:"msg_key"`
		JTI    string `json:"jti"`
	}
	if err := json.Unmarshal([]byte(a.cli(t, "token", "mint", "--data", a.data, "--sub", "user:owner", "--home", home+"=admin", "--json")), &mint); err != nil {
		t.Fatal(err)
	}
	key, err := decodeMsgKey(mint.MsgKey)
	if err != nil {
		t.Fatal(err)
	}
	// Three connections in turn, so that a stall of several seconds after
	// the kill (the replay ledger's quorum) followed by the burst of
	// queued publishes stays within each one's command_burst.
	var senders []*v5client
	for i := range 3 {
		senders = append(senders, a.mustConnect(t, fmt.Sprintf("sender-%d", i), mint.Token))
	}
	sender := senders[0]
	if code := sender.subscribe(t, "homes/"+home+"/agents/+/devices/+/ack", 1); code != 1 {
		t.Fatalf("sender's ack SUBACK %#x", code)
	}

	var (
		mu       sync.Mutex
		sent     []*sentCommand
		inflight sync.WaitGroup
		killedAt time.Time
	)
	start := time.Now()
	tick := time.NewTicker(interval)
	for i := 0; time.Since(start) < before+after; i++ {
		<-tick.C
		if killedAt.IsZero() && time.Since(start) >= before {
			killedAt = time.Now()
			if err := victim.cmd.Process.Kill(); err != nil {
				t.Fatalf("kill -9 node C: %v", err)
			}
			t.Logf("killed node C (SIGKILL) after %d commands", len(sent))
		}
		ag := agents[i%nAgents]
		action := []string{"on", "off"}[(i/nAgents)%2]
		topic := topics.CommandTopic(home, ag.id, "lamp")
		env, err := envelope.Seal(key, topic, mint.JTI, `{"action":"`+action+`"}`, time.Now(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		var e envelope.Envelope
		_ = json.Unmarshal(env, &e)
		sc := &sentCommand{n: i, agent: ag, nonce: e.Nonce, at: time.Now()}
		mu.Lock()
		sent = append(sent, sc)
		mu.Unlock()
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			pr, err := senders[sc.n%len(senders)].Publish(ctx, &paho.Publish{Topic: topic, Payload: env, QoS: 1})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && pr != nil && pr.ReasonCode < 0x80:
				sc.acked = true
			case pr != nil:
				sc.outcome = fmt.Sprintf("PUBACK %#x %s", pr.ReasonCode, pr.Properties.ReasonString)
			default:
				sc.outcome = fmt.Sprint(err)
			}
		}()
	}
	tick.Stop()
	inflight.Wait()

	t.Run("the agents are back on A or B", func(t *testing.T) {
		for _, ag := range agents {
			eventually(t, 30*time.Second, ag.id+" connected to a survivor", func() bool {
				n := names[ag.log.node(time.Now())]
				return n != "" && n != victim.name
			})
		}
	})

	var acked, executed, twice, lost, unacked []*sentCommand
	// Wait (a generous bound) for every acknowledged command to run; the
	// assertion below names the ones that never did.
	done := func() bool {
		for _, sc := range sent {
			if sc.acked && sc.agent.log.executions(sc.nonce) == 0 {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(15 * time.Second); !done() && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	idle := func() int {
		total := 0
		for _, ag := range agents {
			total += ag.log.executed()
		}
		return total
	}
	for prev := -1; prev != idle(); { // idle: nothing more executes within a second
		prev = idle()
		for range 10 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, sc := range sent {
		runs := sc.agent.log.executions(sc.nonce)
		if sc.acked {
			acked = append(acked, sc)
		} else {
			unacked = append(unacked, sc)
		}
		if runs > 0 {
			executed = append(executed, sc)
		}
		if runs > 1 {
			twice = append(twice, sc)
		}
		if sc.acked && runs == 0 {
			lost = append(lost, sc)
		}
	}
	t.Logf("sent %d commands (%d before the kill), acknowledged %d, executed %d, executed twice %d, acknowledged but never executed %d",
		len(sent), countBefore(sent, killedAt), len(acked), len(executed), len(twice), len(lost))
	for _, ag := range agents[:onVictim] {
		t.Logf("%s (on C) reconnected %s", ag.id, ag.log.reconnected(killedAt, names))
	}
	for _, sc := range unacked {
		t.Logf("not acknowledged: %s (%s); executed %d times", sc.describe(killedAt, names), sc.outcome, sc.agent.log.executions(sc.nonce))
	}
	for _, sc := range twice {
		t.Errorf("executed %d times: %s", sc.agent.log.executions(sc.nonce), sc.describe(killedAt, names))
	}
	for _, sc := range lost {
		t.Errorf("acknowledged but never executed: %s", sc.describe(killedAt, names))
	}
	// The agents' acks cross back to A as QoS 1 messages, perhaps after
	// the streams' new leaders: wait for them with a generous bound.
	noAck := func() (out []*sentCommand) {
		got := sender.received()
		for _, sc := range executed {
			if sc.acked && !slices.ContainsFunc(got, func(p *paho.Publish) bool { return okAckOf(p, sc.nonce) }) {
				out = append(out, sc)
			}
		}
		return out
	}
	for deadline := time.Now().Add(15 * time.Second); len(noAck()) > 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	for _, sc := range noAck() {
		t.Errorf("no ok ack reached the sender within 15 s for %s", sc.describe(killedAt, names))
	}

	t.Run("the phone and the integration receive on a survivor", func(t *testing.T) {
		eventually(t, 30*time.Second, "the phone reconnected to A or B", func() bool {
			s := phone.server()
			return phone.ups() > 1 && s != "" && s != victim.addrs["mqtts"]
		})
		eventually(t, 30*time.Second, "the integration reconnected to A or B", func() bool {
			s := ha.server()
			return ha.ups() > 1 && s != "" && s != victim.addrs["mqtts"]
		})
		t.Logf("the phone reconnected %s from the kill, the integration %s", phone.lastUp(killedAt), ha.lastUp(killedAt))
		ag := agents[0] // was on C
		lamp := topics.StateTopic(home, ag.id, "lamp")
		since := time.Now()
		n := len(sent)
		env, err := envelope.Seal(key, topics.CommandTopic(home, ag.id, "lamp"), mint.JTI, `{"action":"toggle"}`, time.Now(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if pr := sender.publish(t, topics.CommandTopic(home, ag.id, "lamp"), env, 1, false); pr.ReasonCode != 0 {
			t.Fatalf("command %d on A after the kill: PUBACK %#x", n, pr.ReasonCode)
		}
		eventually(t, 10*time.Second, "the phone gets "+ag.id+"'s lamp state after the kill", func() bool { return phone.gotSince(lamp, since) })
		btn := ag.bank.Get(buttonPin)
		for _, l := range []gpio.Level{gpio.Low, gpio.High} {
			if err := btn.Drive(l); err != nil {
				t.Fatal(err)
			}
			time.Sleep(60 * time.Millisecond) // longer than the debounce: two events
		}
		eventually(t, 10*time.Second, "the integration gets "+ag.id+"'s button event after the kill", func() bool {
			return ha.gotSince(topics.EventTopic(home, ag.id, "button"), since)
		})
	})

	t.Run("the retained state set on C is served by A and B", func(t *testing.T) {
		for _, n := range survivors {
			v := n.mustConnect(t, "reader-"+n.name, n.mint(t, "user:reader", home+"=viewer"))
			v.subscribe(t, gate, 1)
			eventually(t, 10*time.Second, "the retained gate state on "+n.name, func() bool { return len(publishes(v, gate)) > 0 })
			if p := publishes(v, gate)[0]; !p.Retain || string(p.Payload) != gateState {
				t.Fatalf("node %s served %q retain=%v, want %s retained", n.name, p.Payload, p.Retain, gateState)
			}
		}
	})

	t.Run("the token revoked on C stays refused on A and B", func(t *testing.T) {
		for _, n := range survivors {
			cl, ca, err := n.connect(t, "eve-"+n.name, revoked)
			if err == nil {
				_ = cl.Disconnect(&paho.Disconnect{})
				t.Fatalf("node %s admitted the token revoked on C: %+v", n.name, ca)
			}
			if ca == nil || ca.ReasonCode < 0x80 {
				t.Fatalf("node %s: the revoked token's CONNECT failed without a refusing CONNACK: %v", n.name, err)
			}
			t.Logf("node %s refuses the token revoked on C: CONNACK %#x %q", n.name, ca.ReasonCode, ca.Properties.ReasonString)
		}
	})
}

// countBefore counts the commands sent before t.
func countBefore(sent []*sentCommand, t time.Time) int {
	n := 0
	for _, sc := range sent {
		if sc.at.Before(t) {
			n++
		}
	}
	return n
}

// okAckOf reports whether p is an agent's ok ack of the command nonce.
func okAckOf(p *paho.Publish, nonce string) bool {
	var a agent.Ack
	return strings.HasSuffix(p.Topic, "/ack") && json.Unmarshal(p.Payload, &a) == nil && a.Nonce == nonce && a.OK
}
