package hooks

import "testing"

func TestAgentClient(t *testing.T) {
	for _, c := range []struct {
		id, agent string
		want      bool
	}{
		{"agent:pi", "pi", true},
		{"agent:pi/2", "pi", true},
		{"agent:pi2", "pi", false},
		{"agent:p", "pi", false},
		{"user:pi", "pi", false},
		{"user:admin/x", "pi", false},
		{"", "pi", false},
	} {
		if got := agentClient(c.id, c.agent); got != c.want {
			t.Errorf("agentClient(%q, %q) = %v, want %v", c.id, c.agent, got, c.want)
		}
	}
}
