package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"homemq/auth"
	"homemq/broker"
	"homemq/certs"
	"homemq/cluster"
)

// clusterLayout is what the nodes of a test cluster are given: a data
// folder each holding one shared dev CA (each node issues its own server
// certificate from it, so one CA file trusts every node), a free route
// address each, and the cluster secret file they share.
type clusterLayout struct {
	dirs, routes []string
	secret       string
}

func newClusterLayout(t *testing.T, n int) clusterLayout {
	t.Helper()
	l := clusterLayout{dirs: make([]string, n), routes: make([]string, n)}
	ca, err := certs.NewAuthority("homemq cluster dev CA")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		l.dirs[i], l.routes[i] = t.TempDir(), freeAddr(t)
		if err := ca.Save(filepath.Join(l.dirs[i], "certs")); err != nil {
			t.Fatal(err)
		}
	}
	l.secret = filepath.Join(t.TempDir(), "cluster.secret")
	if err := os.WriteFile(l.secret, []byte(cluster.NewSecret().String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

// peers are the route URLs node i dials: every other node's.
func (l clusterLayout) peers(i int) []string {
	var out []string
	for j, r := range l.routes {
		if j != i {
			out = append(out, "nats-route://"+r)
		}
	}
	return out
}

// clusterSlots bounds the clusters the tests run at once. Each is three
// brokers with JetStream, Raft timers and, for some, their own processes;
// with more than two at once on the two cores of CI (and the other tests
// beside them), elections and starts ran past the bounds the tests
// promise and failed on load, not on the code.
var clusterSlots = make(chan struct{}, 2)

// holdClusterSlot waits for a free cluster slot and gives it back when
// the test and its cleanups (the cluster's nodes closing) are done.
func holdClusterSlot(t *testing.T) {
	clusterSlots <- struct{}{}
	t.Cleanup(func() { <-clusterSlots })
}

// startCluster runs n homemq nodes side by side in this process, each
// with its own data folder and an embedded NATS server on loopback, routed
// to each other. Each node makes its own signing keys and message master
// secret; the cluster's keys bucket makes them one (docs/cluster.md). The
// nodes share one dev CA (each issues its own server certificate from
// it), so a client trusts every node, and a front before them, with one
// CA file. The nodes start at once: each waits for enough peers to hold
// JetStream's replicas. edit may change each node's config.
//
// The cluster tests run in parallel with each other (t.Parallel): a
// cluster spends most of its time waiting on elections and timeouts, and
// every cluster has its own secret, so none can join another. At most
// clusterSlots of them run at once (holdClusterSlot).
func startCluster(t *testing.T, n int, edit ...func(*broker.Config)) []*testBroker {
	t.Helper()
	holdClusterSlot(t)
	l := newClusterLayout(t, n)
	nodes := make([]*testBroker, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range nodes {
		cfg := broker.DefaultConfig()
		cfg.Data = l.dirs[i]
		cfg.Listeners = broker.ListenersConfig{MQTT: "127.0.0.1:0", HTTPS: "127.0.0.1:0", MQTTPlain: "127.0.0.1:0"}
		cfg.Log.Level = "warn"
		cfg.Limits.ConnectRate = 0
		cfg.Cluster = &cluster.Config{Embedded: &cluster.Embedded{
			Name: string(rune('a' + i)), Listen: freeAddr(t), ClusterListen: l.routes[i], Routes: l.peers(i),
		}, SecretFile: l.secret}
		for _, f := range edit {
			f(&cfg)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := broker.New(cfg)
			if err != nil {
				errs[i] = err
				return
			}
			t.Cleanup(b.Close)
			if err := b.Start(); err != nil {
				errs[i] = err
				return
			}
			nodes[i] = &testBroker{Broker: b, t: t, Data: l.dirs[i]}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("start the cluster: %v", err)
	}
	for _, b := range nodes {
		var err error
		if b.pool, err = certs.CertPool(b.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// publishes returns the received publishes on topic.
func publishes(c *v5client, topic string) []*paho.Publish {
	var out []*paho.Publish
	for _, p := range c.received() {
		if p.Topic == topic {
			out = append(out, p)
		}
	}
	return out
}

// TestClusterOfThreeNodes: three homemq nodes on an embedded NATS cluster
// are one broker. State published on A reaches a viewer on C with its
// properties; a command published on A reaches the agent on B once; the
// same envelope replayed on C is refused 0x87 replay; a viewer on C never
// gets the command (the ACL runs on the receiving node); a revocation made
// on A cuts a connection on C within a bound; a command A accepted just
// before it died is still refused on B.
func TestClusterOfThreeNodes(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	const (
		state = "homes/h1/agents/a1/devices/d1/state"
		cmd   = "homes/h1/agents/a1/devices/d1/cmd"
	)

	viewer := c.mustV5(overTLS, "user:viewer", c.mint("user:viewer", "h1=viewer"))
	if code := viewer.subscribe(t, "homes/h1/agents/a1/devices/+/state", 1); code != 1 {
		t.Fatalf("viewer SUBACK %#x, want 1", code)
	}
	if code := viewer.subscribe(t, cmd, 1); code < 0x80 {
		t.Fatalf("viewer may subscribe to cmd: SUBACK %#x", code)
	}
	admin := c.mustV5(overPlain, "user:admin", c.mint("user:admin", "h1=admin"))
	if code := admin.subscribe(t, cmd, 1); code != 1 {
		t.Fatalf("admin SUBACK %#x, want 1", code)
	}
	agentB := b.mustV5(overTLS, "agent:a1", b.mint("agent:a1", "h1=agent"))
	if code := agentB.subscribe(t, cmd, 1); code != 1 {
		t.Fatalf("agent SUBACK %#x, want 1", code)
	}

	// state: agent on A, viewer on C, properties intact
	agentA := a.mustV5(overPlain, "agent:a1/state", a.mint("agent:a1", "h1=agent"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := agentA.Publish(ctx, &paho.Publish{Topic: state, QoS: 1, Payload: []byte(`{"on":true}`), Properties: &paho.PublishProperties{
		ContentType: "application/json", User: paho.UserProperties{{Key: "k", Value: "v"}},
	}})
	if err != nil {
		t.Fatalf("publish state on A: %v", err)
	}
	eventually(t, 10*time.Second, "the viewer on C gets the state published on A", func() bool { return len(publishes(viewer, state)) > 0 })
	got := publishes(viewer, state)[0]
	if string(got.Payload) != `{"on":true}` || got.Properties == nil || got.Properties.ContentType != "application/json" || got.Properties.User.Get("k") != "v" {
		t.Fatalf("state on C = %q %+v, want the payload, content type and user property published on A", got.Payload, got.Properties)
	}

	// the retain flag crosses too (for a retain-as-published subscriber)
	const retained = "homes/h1/agents/a1/devices/d2/state"
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if _, err := viewer.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: retained, QoS: 1, RetainAsPublished: true}}}); err != nil {
		t.Fatalf("viewer subscribe %s: %v", retained, err)
	}
	if pr := agentA.publish(t, retained, []byte("off"), 1, true); pr.ReasonCode != 0 {
		t.Fatalf("retained state on A: PUBACK %#x", pr.ReasonCode)
	}
	eventually(t, 10*time.Second, "the viewer on C gets the retained state published on A", func() bool { return len(publishes(viewer, retained)) > 0 })
	if p := publishes(viewer, retained)[0]; !p.Retain {
		t.Fatal("the retained state lost its retain flag on its way to C")
	}

	// command: commander on A, agent on B; replay on C
	s := newSealer(a, "user:owner")
	commander := a.mustV5(overTLS, "user:owner", s.token)
	env := s.seal(t, cmd, "on", time.Now(), time.Minute)
	if pr := commander.publish(t, cmd, env, 1, false); pr.ReasonCode != 0 {
		t.Fatalf("command on A: PUBACK %#x %q", pr.ReasonCode, pr.Properties.ReasonString)
	}
	eventually(t, 10*time.Second, "the agent on B gets the command published on A", func() bool { return len(publishes(agentB, cmd)) > 0 })
	eventually(t, 10*time.Second, "the admin on C gets the command published on A", func() bool { return len(publishes(admin, cmd)) > 0 })
	if p := publishes(agentB, cmd)[0]; p.Properties == nil || p.Properties.MessageExpiry == nil || *p.Properties.MessageExpiry > 61 {
		t.Fatalf("the command on B carries no message expiry from its envelope: %+v", p.Properties)
	}
	replayer := c.mustV5(overTLS, "user:owner/c", s.token)
	pr := replayer.publish(t, cmd, env, 1, false)
	if pr.ReasonCode != 0x87 || pr.Properties == nil {
		t.Fatalf("replay on C: PUBACK %#x, want 0x87", pr.ReasonCode)
	}
	if r := pr.Properties.ReasonString; !strings.Contains(r, "already used") {
		t.Fatalf("replay on C: reason %q does not say the nonce was used", r)
	}
	never(t, 300*time.Millisecond, "the command is delivered twice", func() bool { return len(publishes(agentB, cmd)) > 1 })
	if n := len(publishes(viewer, cmd)); n != 0 {
		t.Fatalf("the viewer on C got %d commands", n)
	}

	// revocation on A cuts the viewer on C
	if err := a.Revoked.Add(auth.Revocation{Sub: "user:viewer", Until: time.Now().Add(time.Hour).Unix()}); err != nil {
		t.Fatal(err)
	}
	d := viewer.disconnected(t, 5*time.Second, "a revocation on A")
	if d.ReasonCode != 0x87 {
		t.Fatalf("the viewer on C was disconnected with %#x, want 0x87", d.ReasonCode)
	}

	// A accepts a command and dies: its replay on B is still refused, and
	// B still accepts new commands (two of three replicas are left).
	env2 := s.seal(t, cmd, "off", time.Now(), time.Minute)
	if pr := commander.publish(t, cmd, env2, 1, false); pr.ReasonCode != 0 {
		t.Fatalf("second command on A: PUBACK %#x", pr.ReasonCode)
	}
	a.Close()
	attempt := 0
	publishOnB := func(env []byte) *paho.PublishResponse {
		attempt++
		cl := b.mustV5(overTLS, "user:owner/b"+string(rune('0'+attempt%10)), s.token)
		defer cl.Disconnect(&paho.Disconnect{})
		return cl.publish(t, cmd, env, 1, false)
	}
	eventually(t, 30*time.Second, "B refuses the replay of a command A accepted before it died", func() bool {
		pr := publishOnB(env2)
		return pr.ReasonCode == 0x87 && pr.Properties != nil && strings.Contains(pr.Properties.ReasonString, "already used")
	})
	eventually(t, 30*time.Second, "B accepts a new command after A died", func() bool {
		return publishOnB(s.seal(t, cmd, "on", time.Now(), time.Minute)).ReasonCode == 0
	})
}
