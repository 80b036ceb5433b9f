package e2e

import (
	"crypto/rand"
	"encoding/json"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"periph.io/x/conn/v3/gpio"

	"homemq/agent"
	"homemq/broker"
	"homemq/registry"
	"homemq/topics"
)

// haClient behaves like Home Assistant's MQTT integration as its source
// shows (homeassistant/components/mqtt: client.py, discovery.py, const.py,
// generated/mqtt.py): MQTT 3.1.1 with a clean session, a random 22
// character base62 client ID of its own, keep-alive 60, a will of
// "offline" on homeassistant/status (QoS 0, not retained) and a birth of
// "online" there after subscribing; its discovery subscriptions
// {prefix}/+/+/config and {prefix}/+/+/+/config at QoS 0 with the default
// prefix homeassistant, together in one SUBSCRIBE with the discovery
// topics of the integrations it ships (tasmota, esphome, …); then for each
// discovered entity its state and availability topics, and ON/OFF (or the
// lock's payloads) to its command topic.
type haClient struct {
	t      *testing.T
	client pahov3.Client
	lost   chan error

	mu      sync.Mutex
	configs map[string]map[string]any // discovery topic -> config (deleted when cleared)
	msgs    map[string][]string       // topic -> payloads
}

// haIntegrationTopics are the subscriptions Home Assistant makes for the
// MQTT discovery of the integrations it ships (generated/mqtt.py): none is
// ours, and each is refused.
var haIntegrationTopics = []string{
	"drop_connect/discovery/#", "dsmr/#", "esphome/discover/#", "fully/deviceInfo/+", "inels/status/#",
	"pglab/discovery/#", "cloudapp/QBUSMQTTGW/state", "cloudapp/QBUSMQTTGW/config", "cloudapp/QBUSMQTTGW/+/state",
	"tasmota/discovery/#",
}

// base62ID is what Home Assistant uses as its client ID when none is
// configured: 22 base62 characters of a random UUID.
func base62ID() string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	out := make([]byte, 22)
	for i := range out {
		m := new(big.Int)
		n.DivMod(n, big.NewInt(62), m)
		out[21-i] = alphabet[m.Int64()]
	}
	return string(out)
}

// startHA connects a Home Assistant-like client to b with an integration's
// user name and password, subscribes like Home Assistant and publishes its
// birth.
func startHA(t *testing.T, b *testBroker, id, password string) *haClient {
	t.Helper()
	ha := &haClient{t: t, lost: make(chan error, 1), configs: map[string]map[string]any{}, msgs: map[string][]string{}}
	c, err := b.v3(overTLS, base62ID(), password, func(o *pahov3.ClientOptions) {
		o.SetUsername("service:"+id).SetKeepAlive(60*time.Second).
			SetWill("homeassistant/status", "offline", 0, false).
			SetConnectionLostHandler(func(_ pahov3.Client, err error) { ha.lost <- err })
	})
	if err != nil {
		t.Fatalf("Home Assistant could not connect: %v", err)
	}
	ha.client = c
	t.Cleanup(func() { c.Disconnect(0) })
	filters := map[string]byte{"homeassistant/+/+/config": 0, "homeassistant/+/+/+/config": 0}
	for _, f := range haIntegrationTopics {
		filters[f] = 0
	}
	tk := c.SubscribeMultiple(filters, ha.record)
	if !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("Home Assistant's subscribe: %v", tk.Error())
	}
	for f, q := range tk.(*pahov3.SubscribeToken).Result() {
		if strings.HasPrefix(f, "homeassistant/") && q != 0 {
			t.Errorf("Home Assistant's discovery subscription %q got 0x%02X, want granted QoS 0", f, q)
		}
		if !strings.HasPrefix(f, "homeassistant/") && q != 0x80 {
			t.Errorf("Home Assistant's subscription %q (not ours) got 0x%02X, want refused", f, q)
		}
	}
	if pt := c.Publish("homeassistant/status", 0, false, "online"); !pt.WaitTimeout(5*time.Second) || pt.Error() != nil {
		t.Fatalf("birth: %v", pt.Error())
	}
	return ha
}

func (ha *haClient) record(_ pahov3.Client, m pahov3.Message) {
	ha.mu.Lock()
	defer ha.mu.Unlock()
	ha.msgs[m.Topic()] = append(ha.msgs[m.Topic()], string(m.Payload()))
	if strings.HasPrefix(m.Topic(), "homeassistant/") && strings.HasSuffix(m.Topic(), "/config") {
		if len(m.Payload()) == 0 {
			delete(ha.configs, m.Topic())
			return
		}
		var c map[string]any
		if err := json.Unmarshal(m.Payload(), &c); err != nil {
			ha.t.Errorf("discovery config on %s is not JSON: %v", m.Topic(), err)
			return
		}
		ha.configs[m.Topic()] = c
	}
}

// config returns the discovered config on topic, if any.
func (ha *haClient) config(topic string) map[string]any {
	ha.mu.Lock()
	defer ha.mu.Unlock()
	return ha.configs[topic]
}

func (ha *haClient) last(topic string) string {
	ha.mu.Lock()
	defer ha.mu.Unlock()
	if m := ha.msgs[topic]; len(m) > 0 {
		return m[len(m)-1]
	}
	return ""
}

// entity subscribes to a discovered entity's state and availability, as
// Home Assistant does when it sets the entity up.
func (ha *haClient) entity(c map[string]any) {
	ha.t.Helper()
	q := byte(c["qos"].(float64))
	tk := ha.client.SubscribeMultiple(map[string]byte{c["state_topic"].(string): q, c["availability_topic"].(string): q}, ha.record)
	if !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		ha.t.Fatalf("entity subscribe: %v", tk.Error())
	}
	for f, g := range tk.(*pahov3.SubscribeToken).Result() {
		if g > 2 {
			ha.t.Fatalf("entity subscription %q refused: 0x%02X", f, g)
		}
	}
}

func (ha *haClient) command(c map[string]any, payload string) {
	ha.t.Helper()
	pt := ha.client.Publish(c["command_topic"].(string), byte(c["qos"].(float64)), false, payload)
	if !pt.WaitTimeout(5*time.Second) || pt.Error() != nil {
		ha.t.Fatalf("command %s: %v", payload, pt.Error())
	}
}

// TestHomeAssistantDiscoversAndSwitches: a client that behaves like stock
// Home Assistant, given only the broker, port, CA, user name and password
// of an integration, connects over TLS, discovers the simulated agent's
// devices as what they are, switches the lamp with ON and sees the state
// change; a plain PULSE to the door (a lock) is refused by the agent until
// the home's admin allows it; the refusal limit is not reached by its
// standard subscriptions.
func TestHomeAssistantDiscoversAndSwitches(t *testing.T) {
	b := startBroker(t, func(c *broker.Config) { c.Limits.RefusalLimit = 5 })
	cfg := agentConfig(t, b)
	cfg.HomeAssistant = &agent.HomeAssistantConfig{}
	cfg.StateDir = t.TempDir()
	a := startAgent(t, cfg, agent.Options{})
	h := watchHome(t, b)
	h.waitOnline(10 * time.Second)

	ha := startHA(t, b, "ha", b.addIntegration(agentHome, "ha", "service"))
	lampCfg, doorCfg, buttonCfg := "homeassistant/switch/pi1/lamp/config", "homeassistant/lock/pi1/door/config", "homeassistant/binary_sensor/pi1/button/config"
	eventually(t, 10*time.Second, "Home Assistant discovers the lamp, the door and the button", func() bool {
		return ha.config(lampCfg) != nil && ha.config(doorCfg) != nil && ha.config(buttonCfg) != nil
	})
	if ha.config(buttonCfg)["command_topic"] != nil {
		t.Error("an input was discovered with a command topic")
	}

	lamp := ha.config(lampCfg)
	ha.entity(lamp)
	eventually(t, 5*time.Second, "the lamp is available and off", func() bool {
		return ha.last(lamp["availability_topic"].(string)) == "online" && stateOf(ha.last(lamp["state_topic"].(string))) == "off"
	})
	ha.command(lamp, lamp["payload_on"].(string))
	eventually(t, 5*time.Second, "the lamp's pin goes high and Home Assistant sees state on", func() bool {
		return a.pin(lampPin).Level() == gpio.High && stateOf(ha.last(lamp["state_topic"].(string))) == lamp["state_on"]
	})
	ha.command(lamp, lamp["payload_off"].(string))
	eventually(t, 5*time.Second, "the lamp goes off again", func() bool {
		return a.pin(lampPin).Level() == gpio.Low && stateOf(ha.last(lamp["state_topic"].(string))) == lamp["state_off"]
	})

	// The door is a lock: a plain unlock is refused until the home's admin
	// gives the door grant (by the broker, which read the agent's lock
	// config, and again by the agent, TestHandlePlainCommandsToDoors).
	door := ha.config(doorCfg)
	ha.entity(door)
	ackTopic := topics.AckTopic(agentHome, agentID, "door")
	before := len(a.pin(doorPin).History())
	ha.command(door, door["payload_unlock"].(string))
	eventually(t, 5*time.Second, "the broker refuses the plain unlock, on the record", func() bool {
		return findAudit(auditLines(t, b), map[string]string{"event": "command", "outcome": "refused", "reason": "door_not_allowed",
			"sub": "service:ha", "topic": door["command_topic"].(string)}) != nil
	})
	never(t, 300*time.Millisecond, "the door pin moving on a plain command without a door grant", func() bool {
		return len(a.pin(doorPin).History()) != before
	})
	b.mustAdmin(registry.Request{Op: registry.OpDoorAllow, Home: agentHome, Agent: agentID, Devices: []string{"door"}})
	ha.command(door, door["payload_unlock"].(string))
	eventually(t, 5*time.Second, "the door pulses once allowed, and the agent acks it", func() bool {
		acks := h.on(ackTopic)
		return len(a.pin(doorPin).History()) > before && len(acks) > 0 && strings.Contains(acks[len(acks)-1], `"ok":true`)
	})
	select {
	case err := <-ha.lost:
		t.Fatalf("Home Assistant was disconnected: %v", err)
	default:
	}
	// the audit log names the integration as the sender of each command
	eventually(t, 5*time.Second, "the audit log names service:ha as the lamp's commander", func() bool {
		return findAudit(auditLines(t, b), map[string]string{"event": "command", "outcome": "allowed", "sub": "service:ha",
			"topic": lamp["command_topic"].(string)}) != nil
	})
}
