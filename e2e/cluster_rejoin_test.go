package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"homemq/auth"
	"homemq/cluster"
)

// kill9 kills the node's process with SIGKILL: no shutdown code runs, as
// when a machine loses power.
func (p *processNode) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
}

// relaunch starts the node's process again as an operator (or systemd)
// would: the same binary, data folder and config file, on the same client
// addresses, so a client that kept the address reconnects to it.
func (p *processNode) relaunch(t *testing.T) {
	t.Helper()
	args := p.cmd.Args
	i := slices.Index(args, "--config")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("node %s was started without --config: %q", p.name, args)
	}
	s, err := launchServe(t, homemqBinary(t), p.data, 2*time.Minute, "--config", args[i+1],
		"--mqtt", p.addrs["mqtts"], "--https", p.addrs["https"], "--mqtt-plain", p.addrs["mqtt"])
	if err != nil {
		t.Fatalf("relaunch node %s: %v", p.name, err)
	}
	if s.addrs["mqtts"] != p.addrs["mqtts"] {
		t.Fatalf("node %s came back on %s, want %s", p.name, s.addrs["mqtts"], p.addrs["mqtts"])
	}
	p.servedBinary = s
}

// mintJSON mints a token on the node's data folder and returns it with
// its jti.
func (p *processNode) mintJSON(t *testing.T, sub, home string) minted {
	t.Helper()
	out, err := exec.Command(homemqBinary(t), "token", "mint", "--data", p.data, "--sub", sub, "--home", home, "--json").Output()
	var m minted
	if err != nil || json.Unmarshal(out, &m) != nil || m.JTI == "" {
		t.Fatalf("token mint --json on node %s: %v %s", p.name, err, out)
	}
	return m
}

// admin runs a registry or operator command of the CLI against the node's
// admin API and returns its standard output.
func (p *processNode) admin(t *testing.T, args ...string) string {
	t.Helper()
	return mustCLI(t, p.data, p.addrs["https"], args...)
}

// again runs a CLI command on the node until it succeeds, as an operator
// does when the command fails closed because the shared streams are
// electing new leaders (the seconds after a node died), and returns its
// standard output.
func (p *processNode) again(t *testing.T, args ...string) string {
	t.Helper()
	var out string
	var err error
	eventually(t, 30*time.Second, "homemq "+strings.Join(args, " ")+" on node "+p.name, func() bool {
		out, err = tokCLI(t, p.data, p.addrs["https"], args...)
		return err == nil
	})
	return out
}

// retain publishes a retained state until the cluster takes it: an MQTT 5
// publisher is told 0x80 "publish it again" while the retained bucket has
// no leader.
func retain(t *testing.T, c *v5client, topic string, payload []byte) {
	t.Helper()
	eventually(t, 30*time.Second, "the cluster retains "+topic, func() bool {
		return c.publish(t, topic, payload, 1, true).ReasonCode == 0
	})
}

// get GETs path on the node's HTTPS listener.
func (p *processNode) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: p.tb.tlsConfig()}}
	defer cl.CloseIdleConnections()
	res, err := cl.Get("https://" + p.addrs["https"] + path)
	if err != nil {
		t.Fatalf("GET %s on node %s: %v", path, p.name, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, body
}

// exchange posts an agent credential to the node's POST /api/token and
// returns the status and the access token.
func (p *processNode) exchange(t *testing.T, credential string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"grant_type": auth.GrantTokenExchange, "subject_token": credential, "subject_token_type": auth.TokenTypeAgentCredential})
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: p.tb.tlsConfig()}}
	defer cl.CloseIdleConnections()
	res, err := cl.Post("https://"+p.addrs["https"]+"/api/token", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /api/token on node %s: %v", p.name, err)
	}
	defer res.Body.Close()
	var ans struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(res.Body).Decode(&ans)
	return res.StatusCode, ans.AccessToken
}

// refusal is a CONNECT's outcome: 0 when the broker accepted it, else the
// CONNACK's reason code and string.
func (p *processNode) refusal(t *testing.T, clientID, token string) (byte, string) {
	t.Helper()
	c, ca, err := p.connect(t, clientID, token)
	if err == nil {
		_ = c.Disconnect(&paho.Disconnect{})
		return 0, ""
	}
	if ca == nil {
		return 0xFF, err.Error()
	}
	reason := ""
	if ca.Properties != nil {
		reason = ca.Properties.ReasonString
	}
	return ca.ReasonCode, reason
}

// retainedStates subscribes a fresh client on the node to filter and
// returns the retained messages it is sent, by topic.
func (p *processNode) retainedStates(t *testing.T, clientID, token, filter string) map[string]string {
	t.Helper()
	c := p.mustConnect(t, clientID, token)
	defer c.Disconnect(&paho.Disconnect{})
	if code := c.subscribe(t, filter, 1); code != 1 {
		t.Fatalf("SUBACK %#x on node %s for %s", code, p.name, filter)
	}
	time.Sleep(100 * time.Millisecond) // retained messages follow the SUBACK at once
	got := map[string]string{}
	for _, m := range c.received() {
		if m.Retain {
			got[m.Topic] = string(m.Payload)
		}
	}
	return got
}

// byLeader orders the nodes so that the first leads stream: killing it
// leaves the stream without a leader until the others elect one.
func byLeader(t *testing.T, nodes []*processNode, stream string) (leader, b, c *processNode) {
	t.Helper()
	var name string
	eventually(t, 20*time.Second, stream+" has a leader", func() bool {
		out, err := tokCLI(t, nodes[0].data, nodes[0].addrs["https"], "cluster", "status", "--json")
		var s cluster.Status
		if err != nil || json.Unmarshal([]byte(out), &s) != nil {
			return false
		}
		for _, sh := range s.Shared {
			if sh.Name == stream {
				name = sh.Leader
			}
		}
		return name != ""
	})
	var others []*processNode
	for _, n := range nodes {
		if n.name == name {
			leader = n
		} else {
			others = append(others, n)
		}
	}
	if leader == nil || len(others) != 2 {
		t.Fatalf("%s's leader %q is none of the nodes", stream, name)
	}
	return leader, others[0], others[1]
}

// revocationsIn reads how many entries HOMEMQ_REVOKED holds from
// `homemq cluster status` on p; false when p cannot tell.
func revocationsIn(t *testing.T, p *processNode) (uint64, bool) {
	t.Helper()
	out, err := tokCLI(t, p.data, p.addrs["https"], "cluster", "status", "--json")
	var s cluster.Status
	if err != nil || json.Unmarshal([]byte(out), &s) != nil {
		return 0, false
	}
	for _, sh := range s.Shared {
		if sh.Name == cluster.RevocationsStream && sh.Leader != "" {
			return sh.Messages, true
		}
	}
	return 0, false
}

// catchUp bounds how long a node takes to catch up with the cluster.
const catchUp = 30 * time.Second

// TestClusterNodeRejoinsAfterKill9: node A of three `homemq serve`
// processes, the one leading the revocations stream, is killed with
// SIGKILL. While it is dead, B and C revoke a user and a token, change one
// retained state and clear another, add an agent and remove another, and
// rotate the signing keys; within 10 s of the shared stream taking the
// revocations B and C both refuse the revoked user and token. A is then
// started again on its data folder and config, and nothing else is done:
// within 30 s A refuses the revoked user (also its client that kept
// reconnecting, never let back in) and token with 0x87, serves the new
// retained state and not the cleared one, exchanges the new agent's
// credential and refuses the removed one's, lists the agents as B does,
// accepts a token of the new key and serves B's JWKS; its /healthz is ok,
// `homemq cluster status` shows three peers, and messages cross between A
// and B both ways.
func TestClusterNodeRejoinsAfterKill9(t *testing.T) {
	t.Parallel()
	nodes := startClusterProcesses(t, 3)
	a, b, c := byLeader(t, nodes, cluster.RevocationsStream)
	const (
		lamp   = "homes/h1/agents/pi/devices/lamp/state"
		door   = "homes/h1/agents/pi/devices/door/state"
		states = "homes/h1/agents/pi/devices/+/state"
	)
	reader := a.mint(t, "user:rita", "h1=viewer")

	// Before: A knows every piece of state that will change while it is dead.
	b.admin(t, "home", "add", "h1")
	oldCred := strings.TrimSpace(b.admin(t, "agent", "add", "--home", "h1", "--id", "oldpi", "--device", "lamp"))
	pi := b.mustConnect(t, "pi", b.mint(t, "agent:pi", "h1=agent"))
	for topic, v := range map[string]string{lamp: "on", door: "closed"} {
		if pr := pi.publish(t, topic, []byte(v), 1, true); pr.ReasonCode != 0 {
			t.Fatalf("retain %s on B: PUBACK %#x", topic, pr.ReasonCode)
		}
	}
	eventually(t, 10*time.Second, "A serves both retained states", func() bool {
		got := a.retainedStates(t, "rita-before", reader, states)
		return got[lamp] == "on" && got[door] == "closed"
	})
	var oldTok string
	eventually(t, 10*time.Second, "A exchanges oldpi's credential", func() bool {
		code, tok := a.exchange(t, oldCred)
		oldTok = tok
		return code == http.StatusOK
	})
	if code, reason := a.refusal(t, "oldpi", oldTok); code != 0 {
		t.Fatalf("oldpi's token on A: %#x %q", code, reason)
	}
	ann := a.mintJSON(t, "user:ann", "h1=member")
	vicTok := a.mint(t, "user:vic", "h1=viewer")
	vic := keepConnected(t, a, "vic-phone", vicTok)
	jwksBefore := func() []byte { _, j := a.get(t, "/.well-known/jwks.json"); return j }()

	revokedBefore, ok := revocationsIn(t, b)
	if !ok {
		t.Fatal("homemq cluster status on B does not list HOMEMQ_REVOKED")
	}
	a.kill9(t)

	// While A is dead, B and C change everything A must catch up on, right
	// away: the streams whose leader was A are still electing a new one.
	b.admin(t, "revoke", "--sub", "user:vic")
	c.admin(t, "revoke", "--jti", ann.JTI)
	retain(t, pi, lamp, []byte("off"))
	piC := c.mustConnect(t, "pi/c", c.mint(t, "agent:pi", "h1=agent"))
	retain(t, piC, door, nil)
	newCred := strings.TrimSpace(b.again(t, "agent", "add", "--home", "h1", "--id", "newpi", "--device", "fan"))
	b.again(t, "agent", "remove", "--home", "h1", "--id", "oldpi")
	if out := b.again(t, "keys", "rotate"); !strings.Contains(out, "new signing key") {
		t.Fatalf("keys rotate on B: %s", out)
	}
	// The three revocations (vic, ann, and oldpi by its removal) are in
	// the stream, once it had a leader again: a node started from now on
	// must refuse them from its first moment.
	eventually(t, catchUp, "HOMEMQ_REVOKED holds the three revocations made while A was dead", func() bool {
		n, ok := revocationsIn(t, b)
		return ok && n >= revokedBefore+3
	})
	// Each survivor has them too, though the one reader of the stream a
	// node keeps may have lived on A: it gets a new one within seconds.
	vicOnC, annOnB := false, false
	eventually(t, 10*time.Second, "C refuses user:vic, revoked on B, and B ann's token, revoked on C", func() bool {
		if !vicOnC {
			code, _ := c.refusal(t, "vic-c", vicTok)
			vicOnC = code == 0x87
		}
		if !annOnB {
			code, _ := b.refusal(t, "ann-b", ann.Token)
			annOnB = code == 0x87
		}
		return vicOnC && annOnB
	})
	rotated := b.mint(t, "user:kim", "h1=member")
	if kid := kidOf(t, rotated); slices.Contains(kidsIn(t, jwksBefore), kid) {
		t.Fatalf("B still signs with %s, a kid A knew before it died", kid)
	}

	a.relaunch(t)

	t.Run("revocations", func(t *testing.T) {
		var code byte
		var reason string
		eventually(t, catchUp, "A refuses the token revoked by jti on C", func() bool {
			code, reason = a.refusal(t, "ann", ann.Token)
			return code == 0x87
		})
		if !strings.Contains(reason, "revoked") {
			t.Errorf("ann's token on A: reason %q does not say it was revoked", reason)
		}
		eventually(t, catchUp, "A refuses user:vic, revoked on B", func() bool {
			code, reason = a.refusal(t, "vic-laptop", vicTok)
			return code == 0x87 && strings.Contains(reason, "every token of user:vic")
		})
		eventually(t, catchUp, "vic's phone, reconnecting to A, is refused 0x87", func() bool {
			r := vic.lastRefusal()
			return r != nil && r.ReasonCode == 0x87 && strings.Contains(r.Reason, "revoked")
		})
		if n := vic.connections(); n != 1 {
			t.Fatalf("vic's phone connected %d times, want once (before the revocation): A let it back in", n)
		}
	})

	t.Run("retained states", func(t *testing.T) {
		var got map[string]string
		eventually(t, catchUp, "a fresh subscriber on A gets lamp off and no door", func() bool {
			got = a.retainedStates(t, "rita-after", reader, states)
			return got[lamp] == "off"
		})
		if v, ok := got[door]; ok {
			t.Fatalf("A serves the door state %q cleared on C while it was dead", v)
		}
	})

	t.Run("registry", func(t *testing.T) {
		eventually(t, catchUp, "A lists the agents as B does", func() bool {
			return a.admin(t, "agent", "list") == b.admin(t, "agent", "list")
		})
		if list := a.admin(t, "agent", "list"); !strings.Contains(list, "newpi") || strings.Contains(list, "oldpi") {
			t.Fatalf("agent list on A:\n%s\nwant newpi and no oldpi", list)
		}
		code, tok := a.exchange(t, newCred)
		if code != http.StatusOK {
			t.Fatalf("newpi's credential on A: %d", code)
		}
		if code, reason := a.refusal(t, "newpi", tok); code != 0 {
			t.Fatalf("newpi's token from A, on A: %#x %q", code, reason)
		}
		if code, _ := a.exchange(t, oldCred); code != http.StatusUnauthorized {
			t.Fatalf("removed oldpi's credential on A: %d, want 401", code)
		}
		if code, reason := a.refusal(t, "oldpi", oldTok); code != 0x87 {
			t.Fatalf("removed oldpi's token on A: %#x %q, want 0x87", code, reason)
		}
	})

	t.Run("signing keys", func(t *testing.T) {
		eventually(t, catchUp, "A accepts a token of the key rotated on B", func() bool {
			code, _ := a.refusal(t, "kim", rotated)
			return code == 0
		})
		_, ja := a.get(t, "/.well-known/jwks.json")
		_, jb := b.get(t, "/.well-known/jwks.json")
		if !bytes.Equal(ja, jb) {
			t.Fatalf("A's JWKS %s differs from B's %s", ja, jb)
		}
	})

	t.Run("health, peers and messages", func(t *testing.T) {
		var h clusterHealth
		if code, body := a.get(t, "/healthz"); code != http.StatusOK || json.Unmarshal(body, &h) != nil || h.Status != "ok" ||
			h.Cluster == nil || h.Cluster.Node != a.name || h.Cluster.Peers != 3 {
			t.Fatalf("/healthz on A: %d %q, want 200 ok from node %s seeing 3 peers", code, body, a.name)
		}
		var s cluster.Status
		var out string
		var err error
		defer func() {
			if t.Failed() {
				t.Logf("the last homemq cluster status on A: %v\n%s", err, out)
			}
		}()
		// A follower of JetStream's meta group sees another follower as
		// lagging (it has no news of it): online is what a rejoined node can
		// tell of its peers.
		eventually(t, catchUp, "cluster status on A shows three peers online", func() bool {
			out, err = tokCLI(t, a.data, a.addrs["https"], "cluster", "status", "--json")
			s = cluster.Status{}
			if err != nil || json.Unmarshal([]byte(out), &s) != nil || s.Health != cluster.HealthOK || len(s.Peers) != 3 {
				return false
			}
			for _, p := range s.Peers {
				if p.State == cluster.PeerOffline {
					return false
				}
			}
			return true
		})
		const fan = "homes/h1/agents/pi/devices/fan/state"
		onA := a.mustConnect(t, "rita-a", reader)
		onB := b.mustConnect(t, "rita-b", b.mint(t, "user:rita", "h1=viewer"))
		for _, v := range []*v5client{onA, onB} {
			if code := v.subscribe(t, fan, 1); code != 1 {
				t.Fatalf("SUBACK %#x", code)
			}
		}
		piA := a.mustConnect(t, "pi/a", a.mint(t, "agent:pi", "h1=agent"))
		piA.publish(t, fan, []byte("from A"), 1, false)
		pi.publish(t, fan, []byte("from B"), 1, false)
		for _, w := range []struct {
			v    *v5client
			on   string
			want string
		}{{onB, "B", "from A"}, {onA, "A", "from B"}} {
			eventually(t, 10*time.Second, w.want+" reaches a subscriber on "+w.on, func() bool {
				for _, p := range publishes(w.v, fan) {
					if string(p.Payload) == w.want {
						return true
					}
				}
				return false
			})
		}
	})
}
