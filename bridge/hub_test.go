package bridge

import (
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/internal/eventually"
)

// device answers every command on cmdTopic with an ack carrying its nonce,
// like an agent does; it counts the commands it saw.
func (h *harness) device(home, agent, dev string, answer bool) *atomic.Int32 {
	var n atomic.Int32
	cmd := "homes/" + home + "/agents/" + agent + "/devices/" + dev + "/cmd"
	ack := "homes/" + home + "/agents/" + agent + "/devices/" + dev + "/ack"
	err := h.mq.Subscribe(cmd, int(time.Now().UnixNano()%1000000), func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		n.Add(1)
		if !answer {
			return
		}
		var env struct{ Nonce string }
		_ = json.Unmarshal(pk.Payload, &env)
		go func() {
			_ = h.mq.Publish(ack, []byte(`{"nonce":"`+env.Nonce+`", "ok":true,`+"\r\n"+` "state":"on"}`), false, 1)
		}()
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return &n
}

func TestSendCommand(t *testing.T) {
	for _, tr := range allTransports {
		t.Run(tr, func(t *testing.T) {
			h := newHarness(t)
			seen := h.device("h1", "pi", "lamp", true)
			c := h.connect(tr, h.mint("user:ann", 0, "h1=admin"))
			c.handshake()

			m := c.invoke("1", "SendCommand", "h1", "pi", "lamp", `{"nonce":"n1","msg":"on"}`)
			if m.HasError || string(m.Result) != `{"nonce":"n1","ok":true,"state":"on"}` {
				t.Fatalf("SendCommand: %+v (result %s)", m, m.Result)
			}
			// The envelope may also be passed as an object.
			m = c.invoke("2", "SendCommand", "h1", "pi", "lamp", map[string]string{"nonce": "n2", "msg": "off"})
			if m.HasError || !strings.Contains(string(m.Result), `"nonce":"n2"`) {
				t.Fatalf("SendCommand with an object: %+v", m)
			}
			m = c.invoke("3", "SendCommandAsync", "h1/pi/lamp", `{"nonce":"n3"}`)
			if m.HasError || !strings.Contains(string(m.Result), `"nonce":"n3"`) {
				t.Fatalf("SendCommandAsync: %+v", m)
			}
			if got := seen.Load(); got != 3 {
				t.Errorf("the device saw %d commands, want 3", got)
			}
			for _, bad := range [][]any{
				{"SendCommandAsync", "h1/pi", `{}`},
				{"SendCommandAsync", "h1/pi/Lamp", `{}`},
				{"SendCommand", "h1", "pi", "lamp", 42},
				{"SendCommand", "h1", "pi", 7, `{}`},
			} {
				if m := c.invoke("5", bad[0].(string), bad[1:]...); !m.HasError {
					t.Errorf("%v: no error", bad)
				}
			}
		})
	}
}

// A device that does not answer makes SendCommand fail after AckTimeout.
func TestAckTimeout(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AckTimeout = 200 * time.Millisecond })
	seen := h.device("h1", "pi", "mute", false)
	c := h.connect(WebSockets, h.mint("user:ann", 0, "h1=admin"))
	c.handshake()
	if m := c.invoke("1", "SendCommand", "h1", "pi", "mute", `{"nonce":"n4"}`); m.Error != ErrAckTimeout.Error() {
		t.Errorf("no ack: %+v, want %q", m, ErrAckTimeout)
	}
	if seen.Load() != 1 {
		t.Errorf("the device saw %d commands, want 1", seen.Load())
	}
}

// Concurrent commands to one device each get their own ack.
func TestConcurrentCommands(t *testing.T) {
	h := newHarness(t)
	h.device("h1", "pi", "lamp", true)
	c := h.connect(WebSockets, h.mint("user:ann", 0, "h1=admin"))
	c.handshake()
	const n = 6
	for i := range n {
		b, _ := json.Marshal(map[string]any{"type": 1, "invocationId": string(rune('a' + i)), "target": "SendCommand",
			"arguments": []string{"h1", "pi", "lamp", `{"nonce":"x` + string(rune('a'+i)) + `"}`}})
		c.send(append(b, RecordSeparator))
	}
	for range n {
		m := c.nextMessage()
		if m.Type != TypeCompletion || m.HasError || !strings.Contains(string(m.Result), `"nonce":"x`+m.InvocationID+`"`) {
			t.Fatalf("completion %+v (%s)", m, m.Result)
		}
	}
}

// An agent connected over SignalR receives its commands as Command and
// ReceiveCommandAsync invocations and answers with Ack.
func TestAgentReceivesCommands(t *testing.T) {
	for _, tr := range allTransports {
		t.Run(tr, func(t *testing.T) {
			h := newHarness(t)
			acks := make(chan string, 1)
			_ = h.mq.Subscribe("homes/h1/agents/pi/devices/+/ack", 7, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
				acks <- pk.TopicName + " " + string(pk.Payload)
			})
			c := h.connect(tr, h.mint("agent:pi", 0, "h1=agent", "h2=viewer"))
			c.handshake()
			if err := h.mq.Publish("homes/h1/agents/pi/devices/lamp/cmd", []byte(`{"nonce":"n1"}`), false, 1); err != nil {
				t.Fatal(err)
			}
			want := []string{`{"type":1,"target":"Command","arguments":["h1","pi","lamp","{\"nonce\":\"n1\"}"]}`,
				`{"type":1,"target":"ReceiveCommandAsync","arguments":["{\"nonce\":\"n1\"}"]}`}
			for _, w := range want {
				if got := string(c.next()); got != w {
					t.Fatalf("got %s, want %s", got, w)
				}
			}
			if m := c.invoke("1", "Ack", "h1", "pi", "lamp", `{"nonce":"n1","ok":true}`); m.HasError {
				t.Fatalf("Ack: %s", m.Error)
			}
			select {
			case got := <-acks:
				if got != `homes/h1/agents/pi/devices/lamp/ack {"nonce":"n1","ok":true}` {
					t.Errorf("ack published as %q", got)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the ack did not reach the broker")
			}
		})
	}
}

// When the broker closes the MQTT session (token expired, revoked), the
// client gets a Close message that says why and must not reconnect.
func TestBrokerClosesSession(t *testing.T) {
	tests := []struct {
		code   byte
		reason string
		want   string
	}{
		{0xA0, "token expired at 2030-01-01T00:00:00Z; reconnect or re-authenticate with a fresh token", "token expired at 2030-01-01T00:00:00Z"},
		{0xA0, "", "token expired"},
		{0x87, "token revoked", "token revoked"},
	}
	for _, tr := range allTransports {
		for _, tt := range tests {
			t.Run(tr+"/"+tt.want, func(t *testing.T) {
				h := newHarness(t)
				c := h.connect(tr, h.mint("user:ann", 0, "h1=admin"))
				c.handshake()
				var cl *mqtt.Client
				for _, x := range h.mq.Clients.GetAll() {
					if strings.HasPrefix(x.ID, "user:ann/signalr-") {
						cl = x
					}
				}
				if cl == nil {
					t.Fatal("no MQTT session named user:ann/signalr-{connectionId}")
				}
				_ = h.mq.DisconnectClient(cl, packets.Code{Code: tt.code, Reason: tt.reason}) // returns the code
				m := c.nextMessage()
				if m.Type != TypeClose || !strings.Contains(m.Error, tt.want) || m.AllowReconnect {
					t.Fatalf("got %+v, want a Close saying %q without allowReconnect", m, tt.want)
				}
				c.waitEnded()
			})
		}
	}
}

// A token past its exp cannot invoke anything, even before the connection
// is closed; the connection closes at exp plus leeway at the latest.
//
// The bridge judges exp by the wall clock and the harness serves real
// HTTP, so the test invokes until the refusal comes instead of sleeping
// until exp: the refusal is the event under test. Tokens carry whole
// seconds, so a 1 s token expires within a second; the connection then
// stays open for the leeway (2 s), long enough to see the refusal.
func TestInvocationAfterExpiry(t *testing.T) {
	h := newHarness(t)
	c := h.connect(WebSockets, h.mint("user:ann", time.Second, "h1=admin"))
	c.handshake()
	exp := h.srv.lookup(c.id, "user:ann").currentClaims().ExpiresAtTime()
	var refused Message
	eventually.That(t, 5*time.Second, "an invocation refused for the expired token", func() bool {
		refused = c.invoke("1", "Subscribe", "h1")
		return refused.Error != ""
	})
	if !strings.Contains(refused.Error, "token expired") || time.Now().Before(exp) {
		t.Fatalf("invocation refused with %+v before exp %v, want a refusal for the expired token after it", refused, exp)
	}
	for {
		m := c.nextMessage()
		if m.Type == TypeClose {
			if !strings.Contains(m.Error, "token expired") || m.AllowReconnect {
				t.Fatalf("close %+v", m)
			}
			return
		}
	}
}

// CancelInvocation ends a waiting SendCommand, which still completes.
func TestCancelInvocation(t *testing.T) {
	h := newHarness(t)
	h.device("h1", "pi", "mute", false)
	c := h.connect(WebSockets, h.mint("user:ann", 0, "h1=admin"))
	c.handshake()
	c.send([]byte(`{"type":1,"invocationId":"9","target":"SendCommand","arguments":["h1","pi","mute","{\"nonce\":\"z\"}"]}` + "\x1e"))
	sc := h.srv.lookup(c.id, "user:ann")
	eventually.That(t, 5*time.Second, "the invocation to run", func() bool {
		sc.hub.mu.Lock()
		defer sc.hub.mu.Unlock()
		return sc.hub.running["9"] != nil
	})
	c.send([]byte(`{"type":5,"invocationId":"9"}` + "\x1e"))
	if m := c.nextMessage(); m.InvocationID != "9" || !strings.Contains(m.Error, "canceled") {
		t.Fatalf("got %+v, want a canceled completion", m)
	}
}

// A connection runs at most MaxInvocations at once.
func TestInvocationLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxInvocations = 1 })
	h.device("h1", "pi", "mute", false)
	c := h.connect(WebSockets, h.mint("user:ann", 0, "h1=admin"))
	c.handshake()
	c.send([]byte(`{"type":1,"invocationId":"1","target":"SendCommand","arguments":["h1","pi","mute","{\"nonce\":\"z\"}"]}` + "\x1e"))
	if m := c.invoke("2", "Subscribe", "h1"); !strings.Contains(m.Error, "too many invocations") {
		t.Fatalf("second invocation: %+v", m)
	}
}
