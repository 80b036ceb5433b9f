package topics

import "testing"

func TestAgentSubject(t *testing.T) {
	for _, c := range []struct {
		sub, agent string
		ok         bool
	}{
		{"agent:pi1", "pi1", true},
		{"agent:", "", true},
		{"user:alice", "", false},
		{"service:ha", "", false},
		{"agentpi", "", false},
		{"", "", false},
	} {
		agent, ok := AgentOfSubject(c.sub)
		if agent != c.agent || ok != c.ok {
			t.Errorf("AgentOfSubject(%q) = %q %v, want %q %v", c.sub, agent, ok, c.agent, c.ok)
		}
		if c.ok && AgentSubject(agent) != c.sub {
			t.Errorf("AgentSubject(%q) = %q, want %q", agent, AgentSubject(agent), c.sub)
		}
	}
}

func TestSplitSubject(t *testing.T) {
	for _, c := range []struct {
		sub, kind, id string
		ok            bool
	}{
		{"user:alice", "user", "alice", true},
		{"agent:pi1", "agent", "pi1", true},
		{"service:ha:x", "service", "ha:x", true},
		{"alice", "alice", "", false},
		{"", "", "", false},
	} {
		kind, id, ok := SplitSubject(c.sub)
		if kind != c.kind || id != c.id || ok != c.ok {
			t.Errorf("SplitSubject(%q) = %q %q %v, want %q %q %v", c.sub, kind, id, ok, c.kind, c.id, c.ok)
		}
	}
}

func TestClientIDRule(t *testing.T) {
	for _, c := range []struct {
		clientID, sub, owner string
		belongs              bool
	}{
		{"agent:pi", "agent:pi", "agent:pi", true},
		{"agent:pi/send", "agent:pi", "agent:pi", true},
		{"agent:pi/a/b", "agent:pi", "agent:pi", true},
		{"agent:pi2", "agent:pi", "agent:pi2", false},
		{"agent:p", "agent:pi", "agent:p", false},
		{"user:ann/x", "agent:pi", "user:ann", false},
		{"/x", "", "", false},
		{"", "", "", false},
	} {
		if got := ClientIDBelongsTo(c.clientID, c.sub); got != c.belongs {
			t.Errorf("ClientIDBelongsTo(%q, %q) = %v, want %v", c.clientID, c.sub, got, c.belongs)
		}
		if got := ClientIDOwner(c.clientID); got != c.owner {
			t.Errorf("ClientIDOwner(%q) = %q, want %q", c.clientID, got, c.owner)
		}
	}
}

func TestAnyLevelMakesFilters(t *testing.T) {
	for got, want := range map[string]string{
		CommandTopic("h1", "pi", AnyLevel):   "homes/h1/agents/pi/devices/+/cmd",
		StateTopic("h1", AnyLevel, AnyLevel): "homes/h1/agents/+/devices/+/state",
		EventTopic("h1", AnyLevel, AnyLevel): "homes/h1/agents/+/devices/+/event",
		StatusTopic("h1", AnyLevel):          "homes/h1/agents/+/status",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}
