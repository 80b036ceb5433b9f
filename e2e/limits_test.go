package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/paho"

	"homemq/auth"
	"homemq/broker"
	"homemq/envelope"
)

// TestLimitsRefuseClearlyAndSpareOthers drives each connection limit over
// its edge with real clients and checks the refusal on the wire and that a
// bystander keeps working.
func TestLimitsRefuseClearlyAndSpareOthers(t *testing.T) {
	b := startBroker(t, func(c *broker.Config) {
		c.Limits.ConnsPerSub = 2
		c.Limits.MaxSubscriptions = 3
		c.Limits.CommandRate, c.Limits.CommandBurst = 1, 2
		c.Limits.WebSocketReadLimit = 16 << 10
	})
	bystander := b.mustV5(overTLS, "user:owner", b.mint("user:owner", "h1=admin"))
	bystander.subscribe(t, "homes/h1/agents/+/devices/+/state", 1)

	t.Run("connections per sub", func(t *testing.T) {
		tok := b.mint("user:many", "h1=viewer")
		b.mustV5(overTLS, "user:many/1", tok)
		b.mustV5(overWSS, "user:many/2", tok)
		_, ca, err := b.v5(overPlain, "user:many/3", tok)
		if err == nil || ca == nil || ca.ReasonCode != 0x97 || !strings.Contains(ca.Properties.ReasonString, "too many connections for user:many") {
			t.Fatalf("third connection of one sub: %v %+v", err, ca)
		}
	})
	t.Run("subscriptions per connection", func(t *testing.T) {
		c := b.mustV5(overTLS, "user:owner/subs", b.mint("user:owner", "h1=admin"))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var subs []paho.SubscribeOptions
		for i := 0; i < 5; i++ {
			subs = append(subs, paho.SubscribeOptions{Topic: fmt.Sprintf("homes/h1/agents/a%d/status", i)})
		}
		sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
		if err != nil && sa == nil {
			t.Fatal(err)
		}
		want := []byte{0, 0, 0, 0x87, 0x87}
		if string(sa.Reasons) != string(want) {
			t.Fatalf("SUBACK %v, want %v", sa.Reasons, want)
		}
	})
	t.Run("command rate", func(t *testing.T) {
		tok, claims := b.mintSpec(auth.Spec{Sub: "user:fast", Homes: map[string]string{"h1": "admin"}})
		c := b.mustV5(overTLS, "user:fast", tok)
		key := b.MessageKey(claims.ID)
		topic := "homes/h1/agents/pi/devices/lock/cmd"
		var codes []byte
		for i := 0; i < 4; i++ {
			env, _ := envelope.Seal(key, topic, claims.ID, `{"action":"on"}`, time.Now(), 30*time.Second)
			codes = append(codes, c.publish(t, topic, env, 1, false).ReasonCode)
		}
		if codes[0] != 0 || codes[1] != 0 || codes[3] != 0x96 {
			t.Fatalf("PUBACK codes %x, want 00 00 … 96", codes)
		}
	})
	t.Run("websocket frame size", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}}
		c, _, err := websocket.Dial(ctx, b.url(overWSS), &websocket.DialOptions{Subprotocols: []string{"mqtt"}, HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Write(ctx, websocket.MessageBinary, bigConnect(60<<10)); err != nil {
			return // refused while writing: fine
		}
		_, _, err = c.Read(ctx)
		if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
			t.Fatalf("60 KiB frame over a 16 KiB limit: %v, want close 1009", err)
		}
	})
	// the bystander is unaffected
	if code := bystander.subscribe(t, "homes/h1/agents/+/status", 1); code != 1 {
		t.Fatalf("bystander: 0x%02X", code)
	}
}

// TestConnectRatePerAddress: a flood of CONNECTs from one address is
// refused with 0x9F while the flood lasts.
func TestConnectRatePerAddress(t *testing.T) {
	b := startBroker(t, func(c *broker.Config) { c.Limits.ConnectRate, c.Limits.ConnectBurst = 1, 3 })
	tok := b.mint("user:flood", "h1=viewer")
	refused := 0
	for i := 0; i < 6; i++ {
		c, ca, err := b.v5(overPlain, fmt.Sprintf("user:flood/%d", i), tok)
		if err == nil {
			_ = c.Disconnect(&paho.Disconnect{})
			continue
		}
		if ca == nil || ca.ReasonCode != 0x9F || !strings.Contains(ca.Properties.ReasonString, "connection rate") {
			t.Fatalf("connect %d: %v %+v", i, err, ca)
		}
		refused++
	}
	if refused < 2 {
		t.Fatalf("only %d of 6 rapid connects were refused with burst 3", refused)
	}
}

// bigConnect is a well-formed MQTT 3.1.1 CONNECT whose password is n bytes.
func bigConnect(n int) []byte {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 60, 0, 1, 'x', 0, 1, 'u', byte(n >> 8), byte(n)}
	body = append(body, make([]byte, n)...)
	pk := []byte{0x10}
	for l := len(body); ; {
		d := byte(l % 128)
		if l /= 128; l > 0 {
			d |= 0x80
		}
		pk = append(pk, d)
		if l == 0 {
			break
		}
	}
	return append(pk, body...)
}
