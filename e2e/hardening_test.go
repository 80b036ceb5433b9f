package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/paho"

	"homemq/broker"
)

// TestSilentSocketIsClosedBeforeConnect: mochi waits forever for CONNECT;
// homemq gives a new socket limits.connect_timeout to send it, TLS included.
func TestSilentSocketIsClosedBeforeConnect(t *testing.T) {
	b := startBroker(t, func(c *broker.Config) { c.Limits.ConnectTimeout = 500 * time.Millisecond })
	for name, addr := range map[string]string{"tls": b.Addrs()["mqtts"], "plain": b.Addrs()["mqtt"]} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			if err != io.EOF && !isReset(err) {
				t.Fatalf("silent socket: read returned %v, want the broker to close it", err)
			}
		})
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "closed"))
}

// TestHugePacketIsRefusedWithoutAllocating: a PUBLISH that announces 200 MB
// is refused by its header (MQTT 5 DISCONNECT 0x95) instead of mochi
// allocating the buffer.
func TestHugePacketIsRefusedWithoutAllocating(t *testing.T) {
	b := startBroker(t)
	c := b.mustV5(overTLS, "user:a", b.mint("user:a", "h1=admin"))
	// write a raw PUBLISH header announcing 200 MB on the client's socket
	hdr := []byte{0x30, 0x80, 0x80, 0x80, 0x64} // remaining length 200 MiB as a variable byte integer
	if _, err := c.conn.Write(hdr); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-c.disconnect:
		if d.ReasonCode != 0x95 {
			t.Fatalf("DISCONNECT 0x%02X, want 0x95 packet too large", d.ReasonCode)
		}
	case err := <-c.clientError:
		_ = err // closed without a DISCONNECT is acceptable too: the packet was refused by its header
	case <-time.After(5 * time.Second):
		t.Fatal("the broker waited for 200 MB")
	}
}

// TestKeepaliveAndSessionExpiryAreCapped: keep-alive 0 ("never time out")
// and an unbounded session expiry are capped and announced in CONNACK.
func TestKeepaliveAndSessionExpiryAreCapped(t *testing.T) {
	b := startBroker(t)
	forever := uint32(0xFFFFFFFF)
	_, ca, err := b.v5(overTLS, "user:a", b.mint("user:a", "h1=admin"), func(cp *paho.Connect) {
		cp.KeepAlive = 0
		cp.CleanStart = false
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &forever}
	})
	if err != nil {
		t.Fatal(err)
	}
	if ca.Properties.ServerKeepAlive == nil || *ca.Properties.ServerKeepAlive != 300 {
		t.Errorf("server keep-alive %v, want 300", ca.Properties.ServerKeepAlive)
	}
	if ca.Properties.SessionExpiryInterval == nil || *ca.Properties.SessionExpiryInterval != 86400 {
		t.Errorf("session expiry %v, want 86400", ca.Properties.SessionExpiryInterval)
	}
}

// TestSysTopicsAreForOperatorsOnly: $SYS leaks broker internals.
func TestSysTopicsAreForOperatorsOnly(t *testing.T) {
	b := startBroker(t)
	c := b.mustV5(overTLS, "user:a", b.mint("user:a", "h1=admin"))
	for _, f := range []string{"$SYS/#", "$SYS/broker/clients/connected", "other/#"} {
		if code := c.subscribe(t, f, 0); code != 0x87 {
			t.Errorf("admin of h1 subscribing %s: 0x%02X, want 0x87", f, code)
		}
	}
}

// TestQoS2RefusalIsAPubrec: mochi answers a refused QoS 2 publish with a
// PUBACK; homemq sends the PUBREC with 0x87 the protocol asks for.
func TestQoS2RefusalIsAPubrec(t *testing.T) {
	b := startBroker(t)
	c := b.mustV5(overTLS, "user:v", b.mint("user:v", "h1=viewer"))
	pr := c.publish(t, "homes/h1/agents/pi/devices/lock/cmd", []byte("x"), 2, false)
	if pr.ReasonCode != 0x87 || pr.Properties == nil || !strings.Contains(pr.Properties.ReasonString, "viewer") {
		t.Fatalf("QoS 2 refusal: %+v", pr)
	}
	// the connection still works afterwards
	if code := c.subscribe(t, "homes/h1/agents/+/devices/+/state", 1); code != 1 {
		t.Fatalf("0x%02X", code)
	}
}

// TestWebSocketOriginAndSubprotocol: a page on another origin cannot open
// MQTT over WebSocket with the user's browser; the mqtt subprotocol is required.
func TestWebSocketOriginAndSubprotocol(t *testing.T) {
	b := startBroker(t)
	url := b.url(overWSS)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		Subprotocols: []string{"mqtt"}, HTTPClient: hc,
		HTTPHeader: http.Header{"Origin": {"https://evil.example"}},
	})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign Origin: err=%v resp=%v, want 403", err, resp)
	}
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("no subprotocol: %v, want close 1008", err)
	}
	// same-origin browsers are fine
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		Subprotocols: []string{"mqtt"}, HTTPClient: hc,
		HTTPHeader: http.Header{"Origin": {"https://" + b.Addrs()["https"]}},
	})
	if err != nil {
		t.Fatalf("same origin refused: %v", err)
	}
	conn.CloseNow()
}

// TestHTTPSIsTLS12PlusOnly: TLS 1.1 is refused on both TLS ports.
func TestHTTPSIsTLS12PlusOnly(t *testing.T) {
	b := startBroker(t)
	for _, addr := range []string{b.Addrs()["https"], b.Addrs()["mqtts"]} {
		_, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: b.pool, ServerName: "localhost", MaxVersion: tls.VersionTLS11})
		if err == nil {
			t.Errorf("%s accepted TLS 1.1", addr)
		}
	}
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}}).Get("https://" + b.Addrs()["https"] + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	if resp.StatusCode != 200 || line != "ok\n" || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("healthz: %d %q %v", resp.StatusCode, line, resp.Header)
	}
}
