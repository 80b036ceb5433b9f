package e2e

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"homemq/agent"
	"homemq/topics"
)

// Home Assistant MQTT discovery inside a home (docs/topics.md): the real
// agent publishes its retained discovery configs under
// homes/h1/discovery/…/{its id}/…/config, a viewer of the home (Home
// Assistant with discovery prefix homes/h1/discovery) reads them, another
// agent cannot write on the agent's node, and nobody outside the home reads.
func TestDiscoveryAgentPublishesViewerReads(t *testing.T) {
	b := startBroker(t)
	cfg := agentConfig(t, b)
	cfg.HomeAssistant = &agent.HomeAssistantConfig{DiscoveryPrefix: agent.DefaultHAPrefix(agentHome)}
	startAgent(t, cfg, agent.Options{})

	door := topics.DiscoveryTopic(agentHome, "lock", agentID, "door")
	var want []string
	for _, m := range agent.DiscoveryMessages(&cfg) {
		want = append(want, m.Topic)
	}

	// Home Assistant, connected as a viewer of the home, reads every config.
	ha := b.mustV5(overTLS, "service:ha", b.mint("service:ha", "h1=viewer"))
	if code := ha.subscribe(t, "homes/h1/discovery/#", 1); code != 1 {
		t.Fatalf("viewer subscribing homes/h1/discovery/# got 0x%02X; want granted QoS 1", code)
	}
	configs := func() map[string]*paho.Publish {
		got := map[string]*paho.Publish{}
		for _, p := range ha.received() {
			if len(p.Payload) == 0 {
				delete(got, p.Topic) // the agent clearing a config it does not have
				continue
			}
			got[p.Topic] = p
		}
		return got
	}
	eventually(t, 10*time.Second, "the agent's discovery configs reach Home Assistant", func() bool {
		got := configs()
		for _, topic := range want {
			if got[topic] == nil {
				return false
			}
		}
		return true
	})
	for topic := range configs() {
		if !slices.Contains(want, topic) {
			t.Errorf("Home Assistant got %q; want only the agent's configs %v", topic, want)
		}
	}
	var c struct {
		StateTopic        string `json:"state_topic"`
		AvailabilityTopic string `json:"availability_topic"`
		UniqueID          string `json:"unique_id"`
	}
	if err := json.Unmarshal(configs()[door].Payload, &c); err != nil {
		t.Fatalf("door's discovery config is not JSON: %v", err)
	}
	if c.StateTopic != topics.StateTopic(agentHome, agentID, "door") || c.AvailabilityTopic != statusTopic() || c.UniqueID == "" {
		t.Errorf("door's discovery config = %+v; want the door's state topic, the agent's status topic and a unique id", c)
	}

	// The configs are retained: a viewer connecting later gets them too.
	if got := retained(t, b, door); got != string(configs()[door].Payload) {
		t.Errorf("retained config on %s = %q; want the agent's %q", door, got, configs()[door].Payload)
	}

	// Another agent of the home may not write on pi1's node, retained or
	// not, but may publish on its own node; it may read nothing there.
	pi2 := b.mustV5(overTLS, "agent:pi2", b.mint("agent:pi2", "h1=agent"))
	for _, retain := range []bool{true, false} {
		if pr := pi2.publish(t, door, []byte(`{"name":"forged"}`), 1, retain); pr.ReasonCode != 0x87 {
			t.Errorf("agent pi2 publishing on pi1's node %s (retain %v) got PUBACK 0x%02X; want 0x87", door, retain, pr.ReasonCode)
		}
	}
	own := topics.DiscoveryTopic(agentHome, "switch", "pi2", "lamp")
	if pr := pi2.publish(t, own, []byte(`{"name":"pi2 lamp"}`), 1, true); pr.ReasonCode != 0 {
		t.Errorf("agent pi2 publishing its own discovery config %s got PUBACK 0x%02X; want 0", own, pr.ReasonCode)
	}
	if code := pi2.subscribe(t, "homes/h1/discovery/#", 1); code != 0x87 {
		t.Errorf("agent pi2 subscribing homes/h1/discovery/# got 0x%02X; want 0x87 (agents read no discovery config)", code)
	}
	eventually(t, 5*time.Second, "pi2's own config reaches Home Assistant", func() bool { return configs()[own] != nil })
	never(t, 300*time.Millisecond, "the forged config reaches Home Assistant", func() bool {
		for _, p := range ha.received() {
			if string(p.Payload) == `{"name":"forged"}` {
				return true
			}
		}
		return false
	})
	if got := retained(t, b, door); got != string(configs()[door].Payload) {
		t.Errorf("after pi2's attempts the retained config on %s = %q; want the agent's, unchanged", door, got)
	}

	// Members of the home may read it; a member of another home may not,
	// nor may a filter cross homes.
	member := b.mustV5(overTLS, "user:bob", b.mint("user:bob", "h1=member"))
	if code := member.subscribe(t, "homes/h1/discovery/lock/+/+/config", 1); code != 1 {
		t.Errorf("member subscribing h1's lock configs got 0x%02X; want granted QoS 1", code)
	}
	eve := b.mustV5(overTLS, "user:eve", b.mint("user:eve", "h2=member"))
	for _, f := range []string{"homes/h1/discovery/#", door, "homes/+/discovery/#"} {
		if code := eve.subscribe(t, f, 1); code != 0x87 {
			t.Errorf("member of h2 subscribing %q got 0x%02X; want 0x87", f, code)
		}
	}
	never(t, 300*time.Millisecond, "a member of another home receives h1's discovery", func() bool { return len(eve.received()) > 0 })
}

// TestDiscoveryOnlyAgentsPublish: nobody but the node's own agent may
// publish a discovery config, whatever its role in the home.
func TestDiscoveryOnlyAgentsPublish(t *testing.T) {
	b := startBroker(t)
	topic := topics.DiscoveryTopic("h1", "lock", "pi1", "door")
	for _, role := range []string{"admin", "member", "service", "viewer"} {
		sub := "user:" + role
		c := b.mustV5(overTLS, sub, b.mint(sub, "h1="+role))
		if pr := c.publish(t, topic, []byte(`{}`), 1, true); pr.ReasonCode != 0x87 {
			t.Errorf("%s of h1 publishing %s got PUBACK 0x%02X; want 0x87", role, topic, pr.ReasonCode)
		}
	}
	other := b.mustV5(overTLS, "agent:pi1", b.mint("agent:pi1", "h2=agent"))
	if pr := other.publish(t, topic, []byte(`{}`), 1, true); pr.ReasonCode != 0x87 {
		t.Errorf("agent pi1 of h2 publishing in h1 got PUBACK 0x%02X; want 0x87", pr.ReasonCode)
	}
	if got := retained(t, b, topic); got != "" {
		t.Errorf("a refused publish left the retained config %q", got)
	}
}
