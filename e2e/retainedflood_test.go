package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"homemq/auth"
	"homemq/broker"
)

// TestAgentRetainedFloodIsCapped: every retained message is kept in memory,
// written with an fsync and sent to each new subscriber. An agent may hold
// limits.retained_per_agent retained topics (0x97 beyond; replacing or
// clearing its own stays possible), each at most limits.max_retained_size
// bytes (0x95), and when its token names devices, only for those (0x87).
func TestAgentRetainedFloodIsCapped(t *testing.T) {
	b := startBroker(t, func(c *broker.Config) {
		c.Limits.RetainedPerAgent = 3
		c.Limits.MaxRetainedSize = 1024
		c.Limits.RefusalLimit = 0
	})
	devices := []string{"d0", "d1", "d2", "d3"}
	tok, _ := b.mintSpec(auth.Spec{Sub: "agent:pi", Homes: map[string]string{"h1": "agent"}, Devices: devices})
	a := b.mustV5(overTLS, "agent:pi", tok)
	state := func(d string) string { return "homes/h1/agents/pi/devices/" + d + "/state" }
	expect := func(what, topic string, payload []byte, code byte, reason string) {
		t.Helper()
		pr := a.publish(t, topic, payload, 1, true)
		got := ""
		if pr.Properties != nil {
			got = pr.Properties.ReasonString
		}
		if pr.ReasonCode != code || !strings.Contains(got, reason) {
			t.Fatalf("%s: PUBACK 0x%02X %q, want 0x%02X %q", what, pr.ReasonCode, got, code, reason)
		}
	}
	for i := 0; i < 3; i++ {
		expect(fmt.Sprintf("retained state %d", i), state(devices[i]), []byte(`{"on":true}`), 0, "")
	}
	expect("a fourth retained topic", state("d3"), []byte(`{"on":true}`), 0x97, "too many retained topics")
	expect("a fourth retained discovery config", "homes/h1/discovery/switch/pi/d3/config", []byte(`{}`), 0x97, "too many retained topics")
	expect("replacing its own", state("d0"), []byte(`{"on":false}`), 0, "")
	expect("clearing its own", state("d1"), nil, 0, "")
	expect("the fourth once one was cleared", state("d3"), []byte(`{"on":true}`), 0, "")
	expect("a retained payload over the size limit", state("d0"), make([]byte, 2048), 0x95, "over the limit")
	expect("a device outside the token's list", state("ghost"), []byte(`{"on":true}`), 0x87, "device list")
	expect("a discovery config outside the token's list", "homes/h1/discovery/switch/pi/ghost/config", []byte(`{}`), 0x87, "device list")

	// the broker holds exactly the three allowed retained states
	w := b.mustV5(overTLS, "user:w", b.mint("user:w", "h1=viewer"))
	w.subscribe(t, "homes/h1/agents/pi/devices/+/state", 0)
	eventually(t, 5*time.Second, "the retained states", func() bool { return len(w.received()) == 3 })
	never(t, 200*time.Millisecond, "more than three retained states", func() bool { return len(w.received()) > 3 })
}
