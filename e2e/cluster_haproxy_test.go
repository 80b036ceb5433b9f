package e2e

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"homemq/agent"
	"homemq/auth"
)

// haproxyConfig is a front for the nodes as docs/cluster.md shows it: TCP
// mode (TLS ends on the nodes), one frontend for MQTT over TLS and one for
// HTTPS and WebSocket, and each backend checking every node's /healthz
// over TLS, so a draining node (503) gets no new clients. The checks run
// every 200 ms here, to keep the test short.
const haproxyConfig = `global
  maxconn 2000

defaults
  mode tcp
  timeout connect 2s
  timeout client 10m
  timeout server 10m
  timeout check 1s
  default-server inter 200ms fastinter 200ms downinter 200ms rise 1 fall 1

frontend mqtts
  bind %s
  default_backend mqtts_nodes

frontend https
  bind %s
  default_backend https_nodes

backend mqtts_nodes
  balance roundrobin
  option httpchk
  http-check send meth GET uri /healthz
  http-check expect status 200
%s
backend https_nodes
  balance roundrobin
  option httpchk
  http-check send meth GET uri /healthz
  http-check expect status 200
%s`

// front is a running haproxy before the nodes.
type front struct {
	mqtts, https string // its addresses
	out          *bytes.Buffer
}

// startHAProxy writes the config for nodes and runs the real haproxy until
// the test ends; it skips the test when haproxy is not installed (outside
// CI, which installs it).
func startHAProxy(t *testing.T, nodes []*testBroker) *front {
	t.Helper()
	bin := needTool(t, "haproxy")
	f := &front{mqtts: freeAddr(t), https: freeAddr(t), out: &bytes.Buffer{}}
	var mqtts, https strings.Builder
	for i, n := range nodes {
		a := n.Addrs()
		_, hport, _ := net.SplitHostPort(a["https"])
		fmt.Fprintf(&mqtts, "  server node%d %s check port %s check-ssl verify none\n", i, a["mqtts"], hport)
		fmt.Fprintf(&https, "  server node%d %s check check-ssl verify none\n", i, a["https"])
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, haproxyConfig, f.mqtts, f.https, mqtts.String(), https.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-f", cfg, "-db")
	var mu sync.Mutex
	cmd.Stdout, cmd.Stderr = lockedWriter{&mu, f.out}, lockedWriter{&mu, f.out}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			mu.Lock()
			t.Logf("haproxy said:\n%s", f.out)
			mu.Unlock()
		}
	})
	eventually(t, 10*time.Second, "haproxy accepts on its MQTT front", func() bool {
		c, err := tls.Dial("tcp", f.mqtts, nodes[0].tlsConfig())
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return f
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// v5 connects an MQTT 5 client through the front's MQTT port.
func (f *front) v5(b *testBroker, clientID, token string) (*v5client, *paho.Connack, error) {
	b.t.Helper()
	conn, err := tls.Dial("tcp", f.mqtts, b.tlsConfig())
	if err != nil {
		return nil, nil, err
	}
	return b.v5over(conn, clientID, token)
}

func (f *front) mustV5(b *testBroker, clientID, token string) *v5client {
	b.t.Helper()
	c, ca, err := f.v5(b, clientID, token)
	if err != nil {
		b.t.Fatalf("connect %s through the front: %v (%+v)", clientID, err, ca)
	}
	return c
}

// home connects an admin of h1 through the front over MQTT 3.1.1 and
// watches the home, as watchHome does on one node.
func (f *front) home(t *testing.T, b *testBroker, id string) (*home, error) {
	tok, claims := b.mintSpec(auth.Spec{Sub: "user:owner", Homes: map[string]string{agentHome: "admin"}, TTL: time.Hour})
	h := &home{t: t, claims: claims, key: b.MessageKey(claims.ID)}
	h.client = pahov3.NewClient(pahov3.NewClientOptions().AddBroker("ssl://" + f.mqtts).SetClientID("user:owner/" + id).
		SetUsername("u").SetPassword(tok).SetTLSConfig(b.tlsConfig()).SetAutoReconnect(false).
		SetConnectTimeout(5 * time.Second).SetProtocolVersion(4).SetCleanSession(true).SetOrderMatters(false))
	if tk := h.client.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		return nil, fmt.Errorf("connect through the front: %v", tk.Error())
	}
	t.Cleanup(func() { h.client.Disconnect(0) })
	if tk := h.client.Subscribe("homes/"+agentHome+"/#", 1, h.record); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		return nil, fmt.Errorf("subscribe: %v", tk.Error())
	}
	return h, nil
}

// healthzAt returns the status and body of GET /healthz at addr.
func healthzAt(t *testing.T, b *testBroker, addr string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}}
	res, err := c.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz at %s: %v", addr, err)
	}
	defer res.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(res.Body)
	return res.StatusCode, body.String()
}

// TestClusterBehindHAProxy: three nodes behind a real haproxy pass the
// basic suite through the front, on one CA: TLS and WSS connect, an ACL
// refusal, a signed command delivered to an agent connected through the
// front, a revocation cutting a connection made through it. Then the
// agent's node is drained with homemq drain: its /healthz says draining,
// its MQTT 5 clients are told 0x8B (server shutting down), a CONNECT to it
// is refused 0x88 (server unavailable), the agent ends up on another node
// through the front and commands keep working.
func TestClusterBehindHAProxy(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	a := nodes[0]
	fr := startHAProxy(t, nodes)

	if code, body := healthzAt(t, a, fr.https); code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("/healthz through the front: %d %q", code, body)
	}

	viewer := fr.mustV5(a, "user:viewer", a.mint("user:viewer", "h1=viewer"))
	if code := viewer.subscribe(t, "homes/h1/agents/pi1/devices/+/state", 1); code != 1 {
		t.Fatalf("viewer SUBACK %#x through the front, want 1", code)
	}
	if code := viewer.subscribe(t, "homes/h1/agents/pi1/devices/lamp/cmd", 1); code < 0x80 {
		t.Fatalf("a viewer may subscribe to cmd through the front: SUBACK %#x", code)
	}
	ws, err := dialWS("wss://"+fr.https+"/mqtt", a.tlsConfig())
	if err != nil {
		t.Fatalf("WSS through the front: %v", err)
	}
	if _, ca, err := a.v5over(ws, "user:ws", a.mint("user:ws", "h1=viewer")); err != nil {
		t.Fatalf("MQTT over WSS through the front: %v (%+v)", err, ca)
	}

	h, err := fr.home(t, a, "front") // before the agent: retained messages do not cross nodes yet
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, clusterAgentConfig(t, a, "mqtts://"+fr.mqtts), agent.Options{})
	h.waitOnline(15 * time.Second)
	commandWorks(t, h, "on", 15*time.Second)

	if err := a.Revoked.Add(auth.Revocation{Sub: "user:viewer", Until: time.Now().Add(time.Hour).Unix()}); err != nil {
		t.Fatal(err)
	}
	d := viewer.disconnected(t, 5*time.Second, "a revocation (client through the front)")
	if d.ReasonCode != 0x87 {
		t.Fatalf("the viewer was disconnected with %#x, want 0x87", d.ReasonCode)
	}

	// drain the agent's node
	var x *testBroker
	for _, n := range nodes {
		if connectedTo(n) {
			x = n
		}
	}
	if x == nil {
		t.Fatal("the agent is connected to no node")
	}
	var onX []*v5client
	for i := range 4 {
		id := fmt.Sprintf("user:u%d", i)
		c := fr.mustV5(a, id, a.mint(id, "h1=viewer"))
		if cl, ok := x.Server.Clients.Get(id); ok && !cl.Closed() {
			onX = append(onX, c)
		}
	}
	if len(onX) == 0 {
		t.Fatal("round robin placed none of 4 clients on the agent's node")
	}
	out, err := exec.Command(homemqBinary(t), "drain", "--data", x.Data, "--server", x.Addrs()["https"]).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "draining") {
		t.Fatalf("homemq drain: %v\n%s", err, out)
	}
	if code, body := healthzAt(t, x, x.Addrs()["https"]); code != 503 || !strings.Contains(body, `"status":"draining"`) {
		t.Fatalf("/healthz of the drained node: %d %q, want 503 draining", code, body)
	}
	for _, c := range onX {
		d := c.disconnected(t, 10*time.Second, "draining the node")
		if d.ReasonCode != 0x8B || d.Properties == nil || !strings.Contains(d.Properties.ReasonString, "draining") {
			t.Fatalf("a client of the drained node was disconnected with %#x %+v, want 0x8B saying the node drains", d.ReasonCode, d.Properties)
		}
	}
	if conn, err := tls.Dial("tcp", x.Addrs()["mqtts"], x.tlsConfig()); err == nil {
		_, ca, err := x.v5over(conn, "user:late", x.mint("user:late", "h1=viewer"))
		if err == nil || ca == nil || ca.ReasonCode != 0x88 || ca.Properties == nil || !strings.Contains(ca.Properties.ReasonString, "draining") {
			t.Fatalf("a CONNECT to the drained node: %v %+v, want 0x88 saying the node drains", err, ca)
		}
	}
	eventually(t, 20*time.Second, "the agent reconnects to another node through the front", func() bool {
		return !connectedTo(x) && (connectedTo(nodes[0]) || connectedTo(nodes[1]) || connectedTo(nodes[2]))
	})
	eventually(t, 10*time.Second, "the drained node has no connection left", func() bool {
		for _, cl := range x.Server.Clients.GetAll() {
			if cl.Net.Conn != nil && !cl.Closed() { // not the inline client, nor an offline session
				return false
			}
		}
		return true
	})
	var h2 *home
	eventually(t, 10*time.Second, "a home user connects through the front", func() bool {
		h2, err = fr.home(t, a, "after")
		return err == nil
	})
	commandWorks(t, h2, "off", 20*time.Second)
}
