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

// TestAgentRetainedRateIsCapped: each retained message is written to disk
// with an fsync, so an agent re-publishing one state in a loop is held to
// limits.retained_rate (burst limits.retained_burst): beyond, PUBACK 0x96
// with a reason string. Plain publishes are not counted.
func TestAgentRetainedRateIsCapped(t *testing.T) {
	b := startBroker(t, func(c *broker.Config) {
		c.Limits.RetainedRate, c.Limits.RetainedBurst = 0.5, 5
		c.Limits.RefusalLimit = 0
	})
	a := b.mustV5(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"))
	state := "homes/h1/agents/pi/devices/d0/state"
	var codes []byte
	for i := 0; i < 8; i++ {
		codes = append(codes, a.publish(t, state, []byte(`{"on":true}`), 1, true).ReasonCode)
	}
	if string(codes[:5]) != "\x00\x00\x00\x00\x00" || codes[7] != 0x96 {
		t.Fatalf("PUBACK codes of 8 quick retained publishes with burst 5: %x, want five 00 then 96", codes)
	}
	pr := a.publish(t, state, []byte(`{"on":false}`), 1, true)
	if pr.ReasonCode != 0x96 || pr.Properties == nil || !strings.Contains(pr.Properties.ReasonString, "too many retained messages") {
		t.Fatalf("over the rate: %+v", pr)
	}
	if pr := a.publish(t, "homes/h1/agents/pi/devices/d0/event", []byte(`{"e":1}`), 1, false); pr.ReasonCode != 0 {
		t.Fatalf("a plain event while over the retained rate: 0x%02X", pr.ReasonCode)
	}
}
