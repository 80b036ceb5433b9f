package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestShareGroupOfAnotherIdentityIsRefused: a viewer that joins a service's
// $share group would take part of the service's messages away from it. The
// group must be the subscriber's own (its sub, or sub~name): joining the
// service's group is refused in SUBACK (0x87), the viewer's own group works,
// and the service keeps every message.
func TestShareGroupOfAnotherIdentityIsRefused(t *testing.T) {
	b := startBroker(t)
	const states = "homes/h1/agents/pi/devices/+/state"
	svc := b.mustV5(overTLS, "service:ha/1", b.mint("service:ha", "h1=service"))
	if code := svc.subscribe(t, "$share/service:ha/"+states, 1); code != 1 {
		t.Fatalf("the service in its own group: SUBACK 0x%02X, want 0x01", code)
	}
	viewer := b.mustV5(overTLS, "user:carol", b.mint("user:carol", "h1=viewer"))
	for _, f := range []string{"$share/service:ha/" + states, "$share/service:ha~x/" + states, "$share/g/" + states} {
		if code := viewer.subscribe(t, f, 1); code != 0x87 {
			t.Fatalf("a viewer joining %s: SUBACK 0x%02X, want 0x87", f, code)
		}
	}
	for _, f := range []string{"$share/user:carol/" + states, "$share/user:carol~tv/" + states} {
		if code := viewer.subscribe(t, f, 1); code != 1 {
			t.Fatalf("a viewer in its own group %s: SUBACK 0x%02X, want 0x01", f, code)
		}
	}

	agent := b.mustV5(overTLS, "agent:pi", b.mint("agent:pi", "h1=agent"))
	const n = 10
	for i := 0; i < n; i++ {
		agent.publish(t, fmt.Sprintf("homes/h1/agents/pi/devices/d%d/state", i), []byte("on"), 1, false)
	}
	eventually(t, 10*time.Second, "the service gets every state", func() bool { return len(svc.received()) == n })
	// the viewer's own groups get the states too (one copy per client)
	eventually(t, 10*time.Second, "the viewer's own groups get every state", func() bool { return len(viewer.received()) >= n })
}
