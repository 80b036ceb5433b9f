package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"homemq/broker"
)

// TestMemberCannotReadAnotherHome: plain, +, # and $share filters into h2
// are refused per filter in SUBACK (0x87 for MQTT 5, 0x80 for 3.1.1), and
// nothing of h2 is delivered, retained or live.
func TestMemberCannotReadAnotherHome(t *testing.T) {
	b := startBroker(t)
	// h2's agent publishes retained state first, so retained delivery is tested too
	h2agent := b.mustV5(overTLS, "agent:a2", b.mint("agent:a2", "h2=agent"))
	h2agent.publish(t, "homes/h2/agents/a2/devices/door/state", []byte("locked"), 1, true)

	m := b.mustV5(overTLS, "user:mem", b.mint("user:mem", "h1=member"))
	for _, f := range []string{
		"homes/h2/agents/a2/devices/door/state",
		"homes/+/agents/a2/devices/door/state",
		"homes/#",
		"#",
		"+/h2/#",
		"$share/g/homes/h2/agents/a2/devices/door/state",
		"$share/g/homes/+/agents/+/devices/+/state",
		"homes/h1/#", // a member may not read cmd, and # covers it
	} {
		if code := m.subscribe(t, f, 1); code != 0x87 {
			t.Errorf("member of h1 subscribing %q got 0x%02X, want 0x87", f, code)
		}
	}
	if code := m.subscribe(t, "homes/h1/agents/+/devices/+/state", 1); code != 1 {
		t.Fatalf("member's own home state: 0x%02X", code)
	}
	h2agent.publish(t, "homes/h2/agents/a2/devices/door/state", []byte("open"), 1, true)
	never(t, 500*time.Millisecond, "h2 state delivered to a member of h1", func() bool {
		for _, p := range m.received() {
			if strings.HasPrefix(p.Topic, "homes/h2/") {
				return true
			}
		}
		return false
	})

	// MQTT 3.1.1 gets 0x80 for the refused filter
	v3 := b.mustV3(overWSS, "user:mem/v3", b.mint("user:mem", "h1=member"))
	tk := v3.Subscribe("homes/h2/#", 1, nil)
	tk.WaitTimeout(5 * time.Second)
	st := tk.(*pahov3.SubscribeToken)
	if r := st.Result()["homes/h2/#"]; r != 0x80 {
		t.Errorf("v3 SUBACK for homes/h2/# = 0x%02X, want 0x80", r)
	}
}

// TestSharedSubscriptionsStayInTheirHome: shared groups of members of two
// homes only ever deliver each home's messages to its own members, and a
// group cannot span identities (each must use its own).
func TestSharedSubscriptionsStayInTheirHome(t *testing.T) {
	b := startBroker(t)
	a1 := b.mustV5(overTLS, "user:a1", b.mint("user:a1", "h1=viewer"))
	a2 := b.mustV5(overTLS, "user:a2", b.mint("user:a2", "h2=viewer"))
	if c := a2.subscribe(t, "$share/user:a1/homes/h2/agents/p/devices/d/state", 0); c != 0x87 {
		t.Fatalf("joining another identity's group: 0x%02X, want 0x87", c)
	}
	if c := a1.subscribe(t, "$share/user:a1/homes/h1/agents/p/devices/d/state", 0); c != 0 {
		t.Fatalf("0x%02X", c)
	}
	if c := a2.subscribe(t, "$share/user:a2/homes/h2/agents/p/devices/d/state", 0); c != 0 {
		t.Fatalf("0x%02X", c)
	}
	p1 := b.mustV5(overTLS, "agent:p", b.mint("agent:p", "h1=agent", "h2=agent"))
	for i := 0; i < 20; i++ {
		p1.publish(t, "homes/h1/agents/p/devices/d/state", []byte("h1"), 1, false)
		p1.publish(t, "homes/h2/agents/p/devices/d/state", []byte("h2"), 1, false)
	}
	eventually(t, 5*time.Second, "both homes delivered", func() bool { return len(a1.received()) == 20 && len(a2.received()) == 20 })
	for _, p := range a1.received() {
		if string(p.Payload) != "h1" {
			t.Fatalf("h1 viewer got %s", p.Payload)
		}
	}
	for _, p := range a2.received() {
		if string(p.Payload) != "h2" {
			t.Fatalf("h2 viewer got %s", p.Payload)
		}
	}
}

// TestRolesOnTheWire: viewer cannot command; an agent cannot command
// another agent's device nor publish another agent's state; a retained
// command is refused. MQTT 5 senders get PUBACK 0x87 with a reason string.
func TestRolesOnTheWire(t *testing.T) {
	b := startBroker(t)
	watcher := b.mustV5(overTLS, "user:owner", b.mint("user:owner", "h1=admin"))
	watcher.subscribe(t, "homes/h1/#", 1)

	cases := []struct {
		name, sub, role, topic string
		retain                 bool
	}{
		{"viewer commands", "user:guest", "viewer", "homes/h1/agents/pi/devices/lock/cmd", false},
		{"viewer publishes state", "user:guest", "viewer", "homes/h1/agents/pi/devices/lock/state", false},
		{"member publishes state", "user:kid", "member", "homes/h1/agents/pi/devices/lock/state", false},
		{"agent commands another agent's device", "agent:pi2", "agent", "homes/h1/agents/pi/devices/lock/cmd", false},
		{"agent commands its own device", "agent:pi2", "agent", "homes/h1/agents/pi2/devices/lock/cmd", false},
		{"agent publishes another agent's state", "agent:pi2", "agent", "homes/h1/agents/pi/devices/lock/state", false},
		{"agent publishes another agent's status", "agent:pi2", "agent", "homes/h1/agents/pi/status", false},
		{"admin retains a command", "user:owner", "admin", "homes/h1/agents/pi/devices/lock/cmd", true},
		{"admin publishes outside homes/", "user:owner", "admin", "other/topic", false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := b.mustV5(overPlain, tc.sub+"/"+string(rune('a'+i)), b.mint(tc.sub, "h1="+tc.role))
			pr := c.publish(t, tc.topic, []byte(`{"v":1}`), 1, tc.retain)
			if pr.ReasonCode != 0x87 {
				t.Fatalf("PUBACK 0x%02X, want 0x87", pr.ReasonCode)
			}
			if pr.Properties == nil || pr.Properties.ReasonString == "" {
				t.Fatal("PUBACK carries no reason string")
			}
		})
	}
	never(t, 300*time.Millisecond, "a refused publish was delivered", func() bool { return len(watcher.received()) > 0 })
}

// TestWillIntoAnotherHomeIsRefused: a will is judged at CONNECT.
func TestWillIntoAnotherHomeIsRefused(t *testing.T) {
	b := startBroker(t)
	for _, will := range []string{"homes/h2/agents/pi/status", "homes/h1/agents/pi/devices/lock/cmd", "homes/h1/agents/other/status"} {
		_, ca, err := b.v5(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"), func(c *paho.Connect) {
			c.WillMessage = &paho.WillMessage{Topic: will, Payload: []byte("offline"), Retain: true, QoS: 1}
		})
		if err == nil || ca == nil || ca.ReasonCode != 0x87 || !strings.Contains(ca.Properties.ReasonString, "will") {
			t.Errorf("will on %s: err=%v connack=%+v", will, err, ca)
		}
	}
	_, err := b.v3(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"), func(o *pahov3.ClientOptions) {
		o.SetWill("homes/h2/agents/pi/status", "offline", 1, true)
	})
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "not authori") {
		t.Errorf("v3 will into h2: %v, want not authorized", err)
	}
	// its own status is a fine will
	b.mustV5(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"), func(c *paho.Connect) {
		c.WillMessage = &paho.WillMessage{Topic: "homes/h1/agents/pi/status", Payload: []byte("offline"), Retain: true, QoS: 1}
	})
}

// TestRepeatedRefusalsDisconnect: a client that keeps publishing where it
// may not is disconnected after the configured number of refusals.
func TestRepeatedRefusalsDisconnect(t *testing.T) {
	b := startBroker(t, func(c *broker.Config) { c.Limits.RefusalLimit = 5 })
	c := b.mustV5(overTLS, "user:guest", b.mint("user:guest", "h1=viewer"))
	for i := 0; i < 4; i++ {
		if pr := c.publish(t, "homes/h1/agents/pi/devices/lock/cmd", []byte("x"), 1, false); pr.ReasonCode != 0x87 {
			t.Fatalf("refusal %d: 0x%02X", i, pr.ReasonCode)
		} else {
			t.Logf("refusal %d ok", i)
		}
	}
	_, _ = c.Publish(t.Context(), &paho.Publish{Topic: "homes/h1/agents/pi/devices/lock/cmd", QoS: 0, Payload: []byte("x")})
	select {
	case d := <-c.disconnect:
		if d.ReasonCode != 0x87 || !strings.Contains(d.Properties.ReasonString, "too many refused") {
			t.Fatalf("DISCONNECT 0x%02X %q", d.ReasonCode, d.Properties.ReasonString)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not disconnected after 5 refusals")
	}
}
