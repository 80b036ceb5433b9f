package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"homemq/envelope"
	"homemq/registry"
)

// addIntegration registers integration id with role in home through the
// running broker's admin API and returns its MQTT password.
func (b *testBroker) addIntegration(home, id, role string) string {
	b.t.Helper()
	resp, err := b.registryAdmin().Do(context.Background(), registry.Request{Op: registry.OpIntegrationAdd, Home: home, Integration: id, Role: role})
	if err != nil {
		b.t.Fatalf("integration add: %v", err)
	}
	return resp.Credential
}

// integrationV3 connects like a stock MQTT 3.1.1 client with a static
// password: user name service:{id}, a client ID of its own.
func (b *testBroker) integrationV3(clientID, id, password string, opts ...func(*pahov3.ClientOptions)) (pahov3.Client, error) {
	return b.v3(overTLS, clientID, password, append([]func(*pahov3.ClientOptions){func(o *pahov3.ClientOptions) {
		o.SetUsername("service:" + id)
	}}, opts...)...)
}

// TestIntegrationRemovedWhileConnectedIsCutOff: an integration credential
// works as a static MQTT password with a stock client ID; its rights are
// its role in its home, judged on every packet; removing it cuts the live
// connection within a second, and it is refused afterwards.
func TestIntegrationRemovedWhileConnectedIsCutOff(t *testing.T) {
	b := startBroker(t)
	b.mustAdmin(registry.Request{Op: registry.OpHomeAdd, Home: "h1"}, registry.Request{Op: registry.OpHomeAdd, Home: "h2"})
	pw := b.addIntegration("h1", "ha", "service")

	lost := make(chan error, 1)
	c, err := b.integrationV3("9vQ3kJcXbW2rM0pLsT7aYe", "ha", pw, func(o *pahov3.ClientOptions) {
		o.SetConnectionLostHandler(func(_ pahov3.Client, err error) { lost <- err })
	})
	if err != nil {
		t.Fatalf("a stock client with an integration credential and a random client ID was refused: %v", err)
	}
	defer c.Disconnect(0)
	// its home's state: granted; another home: refused in SUBACK.
	tk := c.SubscribeMultiple(map[string]byte{"homes/h1/agents/+/devices/+/state": 1, "homes/h2/agents/+/devices/+/state": 1}, nil)
	if !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("subscribe: %v", tk.Error())
	}
	res := tk.(*pahov3.SubscribeToken).Result()
	if res["homes/h1/agents/+/devices/+/state"] != 1 || res["homes/h2/agents/+/devices/+/state"] != 0x80 {
		t.Fatalf("SUBACK %v: want own home granted, other home refused", res)
	}

	// the same credential with a wrong secret, or with another id, is refused
	if _, err := b.integrationV3("x", "ha", tampered(pw)); err == nil || !strings.Contains(err.Error(), "bad user name or password") {
		t.Fatalf("wrong secret: %v, want bad user name or password", err)
	}
	if _, err := b.integrationV3("x", "other", pw); err == nil {
		t.Fatal("another integration id with ha's password was accepted")
	}

	start := time.Now()
	if _, err := b.registryAdmin().Do(context.Background(), registry.Request{Op: registry.OpIntegrationRemove, Home: "h1", Integration: "ha"}); err != nil {
		t.Fatalf("integration remove: %v", err)
	}
	select {
	case <-lost:
		if d := time.Since(start); d > time.Second {
			t.Errorf("cut off after %v, want within a second", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the removed integration's connection is still open")
	}
	if _, err := b.integrationV3("9vQ3kJcXbW2rM0pLsT7aYe", "ha", pw); err == nil {
		t.Fatal("the removed integration's credential still connects")
	}
}

// TestStockClientIDCannotReachAnotherIdentitysSession: a client ID outside
// the identity's namespace is accepted, but keyed by identity: another
// identity with the same requested ID neither takes over the connection
// nor its session, and MQTT 5 clients are not told an assigned ID they did
// not ask for.
func TestStockClientIDCannotReachAnotherIdentitysSession(t *testing.T) {
	b := startBroker(t)
	victim := b.mustV5(overTLS, "kitchen-panel", b.mint("user:alice", "h1=admin"), func(c *paho.Connect) {
		c.CleanStart = false
		c.Properties = &paho.ConnectProperties{SessionExpiryInterval: &[]uint32{600}[0]}
	})
	victim.subscribe(t, "homes/h1/agents/+/status", 1)
	for _, id := range []string{"kitchen-panel", "user:alice/kitchen-panel", "user:alice"} {
		c, ca, err := b.v5(overTLS, id, b.mint("user:bob", "h1=viewer"), func(c *paho.Connect) { c.CleanStart = false })
		if err != nil {
			t.Fatalf("bob with client ID %q: %v", id, err)
		}
		if ca.SessionPresent {
			t.Errorf("bob with client ID %q resumed a session", id)
		}
		if ca.Properties != nil && ca.Properties.AssignedClientID != "" {
			t.Errorf("bob was told an assigned client ID %q he did not ask for", ca.Properties.AssignedClientID)
		}
		_ = c.Disconnect(&paho.Disconnect{})
	}
	select {
	case d := <-victim.disconnect:
		t.Fatalf("victim was taken over: %+v", d)
	case <-time.After(100 * time.Millisecond):
	}
	if code := victim.subscribe(t, "homes/h1/agents/a/status", 0); code != 0 {
		t.Fatalf("victim no longer works: 0x%02X", code)
	}
	// alice herself resumes her session under the ID she chose
	_ = victim.Disconnect(&paho.Disconnect{})
	_, ca, err := b.v5(overTLS, "kitchen-panel", b.mint("user:alice", "h1=admin"), func(c *paho.Connect) { c.CleanStart = false })
	if err != nil || !ca.SessionPresent {
		t.Fatalf("alice did not resume her own session: err=%v connack=%+v", err, ca)
	}
}

// TestIntegrationRotateChangesRightsAtOnce: `homemq integration rotate
// --role viewer` through the running broker cuts the live connection; the
// old password is refused, the new one connects with the new role only (a
// viewer's plain command is refused), and `list` shows the integration
// without its secret.
func TestIntegrationRotateChangesRightsAtOnce(t *testing.T) {
	b := startBroker(t)
	srv := b.Addrs()["https"]
	mustCLI(t, b.Data, srv, "home", "add", "h1")
	if _, err := tokCLI(t, b.Data, srv, "integration", "add", "--home", "h1", "--id", "ha", "--role", "admin"); err == nil || !strings.Contains(err.Error(), "viewer, member, service") {
		t.Fatalf("integration with role admin: %v, want a refusal naming the allowed roles", err)
	}
	old := strings.TrimSpace(mustCLI(t, b.Data, srv, "integration", "add", "--home", "h1", "--id", "ha", "--role", "service"))
	lost := make(chan error, 1)
	c, err := b.integrationV3("ha-main", "ha", old, func(o *pahov3.ClientOptions) {
		o.SetConnectionLostHandler(func(_ pahov3.Client, err error) { lost <- err })
	})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Disconnect(0)

	fresh := strings.TrimSpace(mustCLI(t, b.Data, srv, "integration", "rotate", "--home", "h1", "--id", "ha", "--role", "viewer"))
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("rotating the credential did not cut the live connection")
	}
	if _, err := b.integrationV3("ha-main", "ha", old); err == nil {
		t.Fatal("the old password still connects after rotate")
	}
	v5, _, err := b.v5(overTLS, "ha-v5", fresh, func(p *paho.Connect) { p.Username = "service:ha" })
	if err != nil {
		t.Fatalf("the new password does not connect: %v", err)
	}
	if pr := v5.publish(t, "homes/h1/agents/pi1/devices/lamp/cmd", []byte("ON"), 1, false); pr.ReasonCode != 0x87 {
		t.Errorf("a viewer integration's plain command got PUBACK 0x%02X, want 0x87", pr.ReasonCode)
	}
	mustCLI(t, b.Data, srv, "integration", "allow-door", "--home", "h1", "--agent", "pi1", "--device", "door")
	list := mustCLI(t, b.Data, srv, "integration", "list", "--home", "h1")
	if !strings.Contains(list, "service:ha") || !strings.Contains(list, "viewer") || strings.Contains(list, fresh) || !strings.Contains(list, "pi1/door") {
		t.Errorf("integration list = %q, want service:ha as viewer, the door grant pi1/door and no secret", list)
	}
}

// TestHomeAssistantPrefixEitherWay: the homeassistant/ mount serves Home
// Assistant's default prefix, and an integration set to the home's own
// prefix gets the topics as they are; through the mount an integration
// can neither write a discovery config nor reach another home.
func TestHomeAssistantPrefixEitherWay(t *testing.T) {
	b := startBroker(t)
	b.mustAdmin(registry.Request{Op: registry.OpHomeAdd, Home: "h1"}, registry.Request{Op: registry.OpHomeAdd, Home: "h2"})
	pi1 := b.mustV5(overTLS, "agent:pi1", b.mint("agent:pi1", "h1=agent"))
	if pr := pi1.publish(t, "homes/h1/discovery/switch/pi1/lamp/config", []byte(`{"name":"lamp"}`), 1, true); pr.ReasonCode != 0 {
		t.Fatalf("agent's discovery config: 0x%02X", pr.ReasonCode)
	}
	pi9 := b.mustV5(overTLS, "agent:pi9", b.mint("agent:pi9", "h2=agent"))
	if pr := pi9.publish(t, "homes/h2/discovery/switch/pi9/x/config", []byte(`{"name":"other home"}`), 1, true); pr.ReasonCode != 0 {
		t.Fatalf("other home's discovery config: 0x%02X", pr.ReasonCode)
	}
	pw := b.addIntegration("h1", "ha", "viewer")
	received := func(c pahov3.Client, filter string) chan string {
		got := make(chan string, 8)
		tk := c.Subscribe(filter, 0, func(_ pahov3.Client, m pahov3.Message) { got <- m.Topic() })
		if !tk.WaitTimeout(5*time.Second) || tk.Error() != nil || tk.(*pahov3.SubscribeToken).Result()[filter] != 0 {
			t.Fatalf("subscribe %q: %v %v", filter, tk.Error(), tk.(*pahov3.SubscribeToken).Result())
		}
		return got
	}
	mounted, err := b.integrationV3("ha-default", "ha", pw)
	if err != nil {
		t.Fatal(err)
	}
	defer mounted.Disconnect(0)
	direct, err := b.integrationV3("ha-prefixed", "ha", pw)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Disconnect(0)
	viaMount := received(mounted, "homeassistant/+/+/+/config")
	viaPrefix := received(direct, "homes/h1/discovery/+/+/+/config")
	for name, tc := range map[string]struct {
		got  chan string
		want string
	}{
		"default prefix": {viaMount, "homeassistant/switch/pi1/lamp/config"},
		"home's prefix":  {viaPrefix, "homes/h1/discovery/switch/pi1/lamp/config"},
	} {
		select {
		case topic := <-tc.got:
			if topic != tc.want {
				t.Errorf("%s: got %q, want %q", name, topic, tc.want)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: no discovery config arrived", name)
		}
	}
	never(t, 200*time.Millisecond, "another home's config through the mount", func() bool { return len(viaMount) > 0 })
	// Home Assistant's node-less filter is granted and stays empty
	empty := received(mounted, "homeassistant/+/+/config")
	never(t, 200*time.Millisecond, "a message on the node-less filter", func() bool { return len(empty) > 0 })
	// an integration may not write configs, mounted or not
	v5, _, err := b.v5(overTLS, "ha-v5", pw, func(p *paho.Connect) { p.Username = "service:ha" })
	if err != nil {
		t.Fatal(err)
	}
	if pr := v5.publish(t, "homeassistant/switch/pi1/lamp/config", []byte(`{"name":"forged"}`), 1, true); pr.ReasonCode != 0x87 {
		t.Errorf("an integration writing a config through the mount got 0x%02X, want 0x87", pr.ReasonCode)
	}
	// its birth on homeassistant/status is accepted and goes nowhere
	if pr := v5.publish(t, "homeassistant/status", []byte("online"), 1, true); pr.ReasonCode != 0 {
		t.Errorf("birth: 0x%02X, want accepted", pr.ReasonCode)
	}
	if pk, ok := b.Server.Topics.Retained.Get("homeassistant/status"); ok {
		t.Errorf("the birth was retained: %q", pk.Payload)
	}
}

// TestPlainCommandIsSealedByTheBroker: an integration's plain payload
// reaches the agent as an envelope the broker sealed — a fresh iat, exp at
// most 30 s later, a nonce, kid plain:{integration} — with the agent's
// command as msg; a plain command to a device whose discovery config says
// it guards a door is refused with a reason until the door grant is given,
// and then carries kid plain-door:{integration}; a viewer may not command.
func TestPlainCommandIsSealedByTheBroker(t *testing.T) {
	b := startBroker(t)
	b.mustAdmin(registry.Request{Op: registry.OpHomeAdd, Home: "h1"})
	pi1 := b.mustV5(overTLS, "agent:pi1", b.mint("agent:pi1", "h1=agent"))
	if pr := pi1.publish(t, "homes/h1/discovery/lock/pi1/door/config", []byte(`{"name":"door"}`), 1, true); pr.ReasonCode != 0 {
		t.Fatalf("lock config: 0x%02X", pr.ReasonCode)
	}
	if code := pi1.subscribe(t, "homes/h1/agents/pi1/devices/+/cmd", 1); code != 1 {
		t.Fatalf("agent subscribe: 0x%02X", code)
	}
	ha, _, err := b.v5(overTLS, "ha", b.addIntegration("h1", "ha", "service"), func(p *paho.Connect) { p.Username = "service:ha" })
	if err != nil {
		t.Fatal(err)
	}
	lastEnvelope := func(topic string) *envelope.Envelope {
		for _, p := range slices.Backward(pi1.received()) {
			if p.Topic == topic {
				var e envelope.Envelope
				if err := json.Unmarshal(p.Payload, &e); err != nil {
					t.Fatalf("the agent got %q, not an envelope: %v", p.Payload, err)
				}
				return &e
			}
		}
		return nil
	}
	lamp, door := "homes/h1/agents/pi1/devices/lamp/cmd", "homes/h1/agents/pi1/devices/door/cmd"
	sent := time.Now().Unix()
	if pr := ha.publish(t, lamp, []byte("ON"), 1, false); pr.ReasonCode != 0 {
		t.Fatalf("plain ON: 0x%02X %s", pr.ReasonCode, pr.Properties.ReasonString)
	}
	eventually(t, 5*time.Second, "the agent receives the sealed ON", func() bool { return lastEnvelope(lamp) != nil })
	e := lastEnvelope(lamp)
	if e.Kid != "plain:ha" || e.Msg != `{"action":"on"}` || e.Iat < sent-1 || e.Exp <= e.Iat || e.Exp-e.Iat > 30 || len(e.Nonce) != 22 {
		t.Errorf("sealed envelope %+v, want kid plain:ha, msg {\"action\":\"on\"}, fresh iat, exp within 30 s, a nonce", e)
	}
	if pr := ha.publish(t, lamp, []byte("ON please"), 1, false); pr.ReasonCode != 0x99 || pr.Properties.ReasonString == "" {
		t.Errorf("a payload that is no command got 0x%02X %q, want 0x99 with a reason", pr.ReasonCode, pr.Properties.ReasonString)
	}
	pr := ha.publish(t, door, []byte("PULSE"), 1, false)
	if pr.ReasonCode != 0x87 || !strings.Contains(pr.Properties.ReasonString, "homemq integration allow-door --home h1 --agent pi1 --device door") {
		t.Fatalf("plain PULSE to a lock without the grant: 0x%02X %q, want 0x87 saying how to allow it", pr.ReasonCode, pr.Properties.ReasonString)
	}
	never(t, 200*time.Millisecond, "the refused door command reaching the agent", func() bool { return lastEnvelope(door) != nil })
	b.mustAdmin(registry.Request{Op: registry.OpDoorAllow, Home: "h1", Agent: "pi1", Devices: []string{"door"}})
	if pr := ha.publish(t, door, []byte(`{"action":"pulse"}`), 1, false); pr.ReasonCode != 0 {
		t.Fatalf("plain pulse to a granted door: 0x%02X %s", pr.ReasonCode, pr.Properties.ReasonString)
	}
	eventually(t, 5*time.Second, "the agent receives the sealed pulse", func() bool { return lastEnvelope(door) != nil })
	if e := lastEnvelope(door); e.Kid != "plain-door:ha" || e.Msg != `{"action":"pulse"}` {
		t.Errorf("sealed door envelope %+v, want kid plain-door:ha and the pulse", e)
	}
	// a viewer integration may not command at all
	viewer, _, err := b.v5(overTLS, "ro", b.addIntegration("h1", "ro", "viewer"), func(p *paho.Connect) { p.Username = "service:ro" })
	if err != nil {
		t.Fatal(err)
	}
	if pr := viewer.publish(t, lamp, []byte("ON"), 1, false); pr.ReasonCode != 0x87 {
		t.Errorf("a viewer's plain command got 0x%02X, want 0x87", pr.ReasonCode)
	}
}
