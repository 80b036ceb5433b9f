package e2e

import (
	"net"
	"slices"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"homemq/agent"
	"homemq/broker"
)

// TestAgentOfflineQueuedAndExpiredCommands: an agent whose network dies
// without a DISCONNECT is marked offline by its will; of two commands sent
// meanwhile, the one that outlives the outage is executed once when the
// agent is back, the one that expired during it never (its ack says so).
//
// The commands are sent over MQTT 3.1.1; the broker holds both for the
// agent's persistent session (its ACL check of a delivery must not refuse
// a session just because it is offline) with a message expiry taken from
// the envelope. The short one expires in the queue: the broker drops it
// and answers for it with an "expired" ack. That ack, which only the broker
// can send while the agent is cut off, is what the test waits for before it
// lets the agent back: the outage has then outlasted the short command.
func TestAgentOfflineQueuedAndExpiredCommands(t *testing.T) {
	b := startBroker(t)
	h := watchHome(t, b)
	a := startAgent(t, agentConfig(t, b), agent.Options{})
	h.waitOnline(10 * time.Second)

	a.net.cut()
	eventually(t, 5*time.Second, "status offline after the agent vanished", func() bool { return h.last(statusTopic()) == "offline" })
	if s := retained(t, b, statusTopic()); s != "offline" {
		t.Fatalf("retained status %q while the agent is away, want offline", s)
	}

	lampBefore, doorBefore := len(a.pin(lampPin).History()), len(a.pin(doorPin).History())
	long := h.send("lamp", `{"action":"on"}`, 30*time.Second)
	short := h.send("door", `{"action":"pulse"}`, 2*time.Second) // exp: 1 to 2 s from now (whole seconds)
	if ack := h.ack("door", short, 10*time.Second); ack.OK || ack.Error != agent.ErrExpired {
		t.Fatalf("the expired command's ack %+v, want error %s", ack, agent.ErrExpired)
	}
	if len(a.pin(lampPin).History()) != lampBefore || len(a.pin(doorPin).History()) != doorBefore {
		t.Fatal("a pin moved while the agent was cut off")
	}
	a.net.restore()
	h.waitOnline(10 * time.Second)

	if ack := h.ack("lamp", long, 10*time.Second); !ack.OK || ack.State != "on" {
		t.Fatalf("the queued command's ack %+v, want ok with state on", ack)
	}
	if a.pin(lampPin).Level() != gpio.High {
		t.Fatal("the queued command was not executed")
	}
	never(t, time.Second, "a second ack or a door movement", func() bool {
		return len(h.acks("lamp", long)) > 1 || len(h.acks("door", short)) > 1 || len(a.pin(doorPin).History()) != doorBefore
	})
	if got := a.pin(lampPin).History()[lampBefore:]; len(got) != 1 {
		t.Fatalf("lamp pin changes after the outage: %v, want exactly one", got)
	}
}

// freeAddr returns a loopback address with a port that was free just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestAgentTokenRenewalAndBrokerRestart: with 3-second agent tokens the
// agent renews through /api/token and moves its connection to each new
// token before the old one expires, never going offline, and commands keep
// working (one sent while it reconnects waits in its session); after the
// broker restarts on the same data folder, the agent comes back by itself
// and works again.
func TestAgentTokenRenewalAndBrokerRestart(t *testing.T) {
	addrs := broker.ListenersConfig{MQTT: freeAddr(t), HTTPS: freeAddr(t), MQTTPlain: freeAddr(t)}
	setup := func(c *broker.Config) {
		c.Listeners = addrs
		c.Tokens.AgentTTL = 3 * time.Second
	}
	data := t.TempDir()
	b := startBrokerIn(t, data, setup)
	h := watchHome(t, b)
	a := startAgent(t, agentConfig(t, b), agent.Options{})
	h.waitOnline(10 * time.Second)

	const renewed = "token renewed: reconnecting with it before the old one expires"
	for i := 1; i <= 3; i++ {
		eventually(t, 10*time.Second, "token renewal", func() bool { return a.logs.count(renewed) >= i })
		h.waitOnline(5 * time.Second)
		n := h.send("lamp", `{"action":"toggle"}`, 30*time.Second)
		if ack := h.ack("lamp", n, 5*time.Second); !ack.OK {
			t.Fatalf("after renewal %d: ack %+v", i, ack)
		}
	}
	if st := h.on(statusTopic()); len(st) < 4 || slices.Contains(st, "offline") {
		t.Fatalf("status messages %v: want online after each renewal and never offline", st)
	}
	if lvl := a.pin(lampPin).Level(); lvl != gpio.High {
		t.Fatalf("lamp pin %v after three toggles, want High", lvl)
	}

	b.Close()
	b2 := startBrokerIn(t, data, setup)
	h2 := watchHome(t, b2)
	h2.waitOnline(15 * time.Second)
	n := h2.send("lamp", `{"action":"off"}`, 30*time.Second)
	if ack := h2.ack("lamp", n, 10*time.Second); !ack.OK || ack.State != "off" {
		t.Fatalf("after the broker restart: ack %+v", ack)
	}
	if a.pin(lampPin).Level() != gpio.Low {
		t.Fatal("the lamp pin did not follow the command after the restart")
	}
}
