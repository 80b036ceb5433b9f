package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats-server/v2/server"

	"homemq/auth"
	"homemq/broker"
	"homemq/cluster"
)

// startNATSCluster starts n nats-server servers in this process, routed
// to each other on loopback, each with JetStream and a store folder of its
// own, as an operator's separate NATS cluster; it returns their client
// URLs.
func startNATSCluster(t *testing.T, n int) []string {
	t.Helper()
	clients, routes := make([]string, n), make([]string, n)
	for i := range n {
		clients[i], routes[i] = freeAddr(t), freeAddr(t)
	}
	servers := make([]*server.Server, n)
	for i := range n {
		var peers []string
		for j, r := range routes {
			if j != i {
				peers = append(peers, "nats-route://"+r)
			}
		}
		o := &server.Options{
			ServerName: fmt.Sprintf("nats-%d", i+1),
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			Routes:     server.RoutesFromStr(strings.Join(peers, ",")),
		}
		o.Host, o.Port = splitAddr(t, clients[i])
		o.Cluster.Name = "external"
		o.Cluster.Host, o.Cluster.Port = splitAddr(t, routes[i])
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatalf("nats-server %d: %v", i+1, err)
		}
		go s.Start()
		servers[i] = s
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	}
	for i, s := range servers {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("nats-server %d did not accept connections within 30s", i+1)
		}
		clients[i] = "nats://" + clients[i]
	}
	return clients
}

func splitAddr(t *testing.T, addr string) (string, int) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	var port int
	if _, err := fmt.Sscan(addr[i+1:], &port); err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return addr[:i], port
}

// onExternalNATS makes node i (named 'a'+i by startCluster) a client of
// urls[i] instead of an embedded NATS server.
func onExternalNATS(urls []string) func(*broker.Config) {
	return func(cfg *broker.Config) {
		c := cfg.Cluster
		i := int(c.Embedded.Name[0] - 'a')
		c.NATS = &cluster.External{Name: c.Embedded.Name, URL: urls[i]}
		c.Embedded, c.Replicas = nil, 3
	}
}

// operatorStatus reads b's cluster status from its admin endpoint.
func operatorStatus(t *testing.T, b *testBroker) cluster.Status {
	t.Helper()
	op, _ := b.mintSpec(auth.Spec{Sub: "user:ops", Operator: true})
	req, _ := http.NewRequest("GET", "https://"+b.Addrs()["https"]+broker.ClusterStatusPath, nil)
	req.Header.Set("Authorization", "Bearer "+op)
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}}
	defer cl.CloseIdleConnections() // polled: each call's connection must not outlive it (limits.https_conns_per_addr)
	res, err := cl.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", broker.ClusterStatusPath, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var s cluster.Status
	if res.StatusCode != 200 || json.Unmarshal(body, &s) != nil {
		t.Fatalf("GET %s: %d %s", broker.ClusterStatusPath, res.StatusCode, body)
	}
	return s
}

// TestClusterOnExternalNATS: three homemq nodes, each a client of a
// different server of a separate three-server NATS cluster
// (cluster.nats.url), are one broker: state published on A reaches C, a
// retained state is read by a later subscriber on C, an envelope accepted
// on A and replayed on B is refused, and a revocation made on A cuts a
// connection on C within 5 s. Their status shows the external servers
// holding the shared streams.
func TestClusterOnExternalNATS(t *testing.T) {
	t.Parallel()
	urls := startNATSCluster(t, 3)
	nodes := startCluster(t, 3, onExternalNATS(urls))
	a, b, c := nodes[0], nodes[1], nodes[2]
	const (
		state    = "homes/h1/agents/a1/devices/d1/state"
		retained = "homes/h1/agents/a1/devices/d2/state"
		cmd      = "homes/h1/agents/a1/devices/d1/cmd"
	)

	t.Run("status", func(t *testing.T) {
		s := operatorStatus(t, c)
		if s.NATS != "external" || !s.Connected || s.Server != "nats-3" || s.Health != cluster.HealthOK {
			t.Fatalf("status of c = %+v, want external, connected to nats-3, ok", s)
		}
		if len(s.Peers) != 3 {
			t.Errorf("c sees peers %+v, want the three NATS servers", s.Peers)
		}
	})

	viewer := c.mustV5(overTLS, "user:viewer", c.mint("user:viewer", "h1=viewer"))
	if code := viewer.subscribe(t, "homes/h1/agents/a1/devices/+/state", 1); code != 1 {
		t.Fatalf("viewer SUBACK %#x, want 1", code)
	}
	agent := a.mustV5(overPlain, "agent:a1", a.mint("agent:a1", "h1=agent"))

	t.Run("state crosses", func(t *testing.T) {
		if pr := agent.publish(t, state, []byte("on"), 1, false); pr.ReasonCode != 0 {
			t.Fatalf("state on A: PUBACK %#x", pr.ReasonCode)
		}
		eventually(t, 10*time.Second, "the viewer on C gets the state published on A", func() bool { return len(publishes(viewer, state)) > 0 })
	})

	t.Run("retained read on another node", func(t *testing.T) {
		if pr := agent.publish(t, retained, []byte("off"), 1, true); pr.ReasonCode != 0 {
			t.Fatalf("retained state on A: PUBACK %#x", pr.ReasonCode)
		}
		eventually(t, 10*time.Second, "the retained state reaches C", func() bool { return len(publishes(viewer, retained)) > 0 })
		later := c.mustV5(overTLS, "user:viewer/later", c.mint("user:viewer", "h1=viewer"))
		later.subscribe(t, retained, 1)
		eventually(t, 5*time.Second, "a later subscriber on C reads the retained state", func() bool {
			p := publishes(later, retained)
			return len(p) > 0 && p[0].Retain && string(p[0].Payload) == "off"
		})
	})

	t.Run("replay refused on another node", func(t *testing.T) {
		s := newSealer(a, "user:owner")
		env := s.seal(t, cmd, "on", time.Now(), time.Minute)
		if pr := a.mustV5(overTLS, "user:owner", s.token).publish(t, cmd, env, 1, false); pr.ReasonCode != 0 {
			t.Fatalf("command on A: PUBACK %#x", pr.ReasonCode)
		}
		pr := b.mustV5(overTLS, "user:owner/b", s.token).publish(t, cmd, env, 1, false)
		if pr.ReasonCode != 0x87 || pr.Properties == nil || !strings.Contains(pr.Properties.ReasonString, "already used") {
			t.Fatalf("replay on B: PUBACK %#x %+v, want 0x87 nonce already used", pr.ReasonCode, pr.Properties)
		}
	})

	t.Run("revocation on A cuts C", func(t *testing.T) {
		if _, err := a.Revoke(broker.RevokeRequest{Sub: "user:viewer"}); err != nil {
			t.Fatal(err)
		}
		var d *paho.Disconnect
		eventually(t, 5*time.Second, "the viewer on C is disconnected after the revocation on A", func() bool {
			select {
			case d = <-viewer.disconnect:
				return true
			default:
				return false
			}
		})
		if d.ReasonCode != 0x87 {
			t.Fatalf("the viewer on C was disconnected with %#x, want 0x87", d.ReasonCode)
		}
	})
}
