package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"homemq/auth"
	"homemq/envelope"
)

// TestClusterKeepsTheRulesOfOneNode: on one three-node cluster, with the
// sender and the receiver on different nodes, every rule a single node
// enforces still holds: ACL refusals (with a single node's reason string),
// envelope refusals, the cut-off at a token's expiry, re-authentication
// with fewer rights or another sub, and the SignalR bridge's sessions.
func TestClusterKeepsTheRulesOfOneNode(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, shortLeeway)
	a, b, c := nodes[0], nodes[1], nodes[2]
	const (
		lock     = "homes/h1/agents/pi/devices/lock/cmd"
		lamp     = "homes/h1/agents/pi/devices/lamp/cmd"
		h1State  = "homes/h1/agents/pi/devices/lamp/state"
		h2State  = "homes/h2/agents/p2/devices/door/state"
		h1States = "homes/h1/agents/+/devices/+/state"
		h2States = "homes/h2/agents/+/devices/+/state"
	)
	agent := a.mustV5(overTLS, "agent:pi", a.mint("agent:pi", "h1=agent"))
	if code := agent.subscribe(t, "homes/h1/agents/pi/devices/+/cmd", 1); code != 1 {
		t.Fatalf("agent on A: SUBACK %#x", code)
	}
	h2agent := a.mustV5(overPlain, "agent:p2", a.mint("agent:p2", "h2=agent"))
	h2viewer := c.mustV5(overTLS, "user:h2v", c.mint("user:h2v", "h2=viewer"))
	if code := h2viewer.subscribe(t, h2States, 1); code != 1 {
		t.Fatalf("viewer of h2 on C: SUBACK %#x", code)
	}
	h1viewer := c.mustV5(overTLS, "user:h1v", c.mint("user:h1v", "h1=viewer"))
	if code := h1viewer.subscribe(t, h1States, 1); code != 1 {
		t.Fatalf("viewer of h1 on C: SUBACK %#x", code)
	}
	// payloads returns what c received on topics under prefix.
	payloads := func(c *v5client, prefix string) []string {
		var out []string
		for _, p := range c.received() {
			if strings.HasPrefix(p.Topic, prefix) {
				out = append(out, string(p.Payload))
			}
		}
		return out
	}

	t.Run("ACL refusals", func(t *testing.T) {
		// A viewer on C commanding the agent on A is refused as on one node.
		one := startBroker(t)
		want := one.mustV5(overTLS, "user:vic", one.mint("user:vic", "h1=viewer")).publish(t, lock, []byte(`{"v":1}`), 1, false)
		viewer := c.mustV5(overPlain, "user:vic", c.mint("user:vic", "h1=viewer"))
		got := viewer.publish(t, lock, []byte(`{"v":1}`), 1, false)
		if got.ReasonCode != 0x87 || got.Properties == nil || want.Properties == nil || got.Properties.ReasonString != want.Properties.ReasonString {
			t.Fatalf("viewer on C commanding the agent on A: PUBACK %#x %+v, want 0x87 with a single node's reason %q", got.ReasonCode, got.Properties, want.Properties.ReasonString)
		}

		// A member of h1 on B may not read h2.
		member := b.mustV5(overTLS, "user:mem", b.mint("user:mem", "h1=member"))
		for _, f := range []string{h2States, "homes/+/agents/+/devices/+/state", "homes/#", "$share/g/" + h2States} {
			if code := member.subscribe(t, f, 1); code != 0x87 {
				t.Errorf("member of h1 on B subscribing %q: SUBACK %#x, want 0x87", f, code)
			}
		}
		if code := member.subscribe(t, h1States, 1); code != 1 {
			t.Fatalf("member of h1 on B, its own home: SUBACK %#x", code)
		}

		// h2's agent on A publishes: the viewer of h2 on C gets it (so it
		// reached C), the viewer of h1 beside it on C and the member of h1
		// on B never do; h1's state after it reaches both.
		if pr := h2agent.publish(t, h2State, []byte("open"), 1, false); pr.ReasonCode != 0 {
			t.Fatalf("h2 state on A: PUBACK %#x", pr.ReasonCode)
		}
		if pr := agent.publish(t, h1State, []byte("acl-fence"), 1, false); pr.ReasonCode != 0 {
			t.Fatalf("h1 state on A: PUBACK %#x", pr.ReasonCode)
		}
		eventually(t, 10*time.Second, "h2's state reaches the viewer of h2 on C", func() bool { return slices.Contains(payloads(h2viewer, "homes/h2/"), "open") })
		eventually(t, 10*time.Second, "h1's state reaches the member on B and the viewer on C", func() bool {
			return slices.Contains(payloads(member, h1State), "acl-fence") && slices.Contains(payloads(h1viewer, h1State), "acl-fence")
		})
		never(t, 300*time.Millisecond, "a message of h2 reached a client of h1", func() bool {
			return len(payloads(member, "homes/h2/"))+len(payloads(h1viewer, "homes/h2/")) > 0
		})
		if n := len(publishes(agent, lock)); n != 0 {
			t.Fatalf("the agent on A got %d refused commands", n)
		}
	})

	t.Run("envelope refusals", func(t *testing.T) {
		s := newSealer(b, "user:owner")
		commander := b.mustV5(overTLS, "user:owner", s.token)
		now := time.Now()
		altered := bytes.Replace(s.seal(t, lock, `{"action":"unlock"}`, now, 30*time.Second), []byte("unlock"), []byte("lock!!"), 1)
		unknownKid, err := envelope.SealNonce(s.key, lock, "no-such-kid", `{"action":"unlock"}`, freshNonce(t), now.Unix(), now.Add(30*time.Second).Unix())
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name    string
			payload []byte
			reason  string
		}{
			{"bad signature", altered, "signature"},
			{"expired", s.seal(t, lock, `{"action":"unlock"}`, now.Add(-40*time.Second), 30*time.Second), "expired"},
			{"moved to another device", s.seal(t, lamp, `{"action":"unlock"}`, now, 30*time.Second), "signature"},
			{"unknown kid", unknownKid, "key id"},
		} {
			pr := commander.publish(t, lock, tc.payload, 1, false)
			if pr.ReasonCode != 0x87 || pr.Properties == nil || !strings.Contains(pr.Properties.ReasonString, tc.reason) {
				t.Errorf("%s, on B: PUBACK %#x %+v, want 0x87 saying %q", tc.name, pr.ReasonCode, pr.Properties, tc.reason)
			}
		}
		good := s.seal(t, lock, `{"action":"unlock"}`, time.Now(), 30*time.Second)
		if pr := commander.publish(t, lock, good, 1, false); pr.ReasonCode != 0 {
			t.Fatalf("a good command on B: PUBACK %#x %+v", pr.ReasonCode, pr.Properties)
		}
		eventually(t, 10*time.Second, "the good command reaches the agent on A", func() bool { return len(publishes(agent, lock)) > 0 })
		never(t, 300*time.Millisecond, "a refused command reached the agent on A", func() bool { return len(publishes(agent, lock)) > 1 })
		if got := publishes(agent, lock)[0].Payload; !bytes.Equal(got, good) {
			t.Fatalf("the agent on A got %s, want the good command %s", got, good)
		}
	})

	t.Run("expiry cut-off", func(t *testing.T) {
		tok, claims := c.mintSpec(auth.Spec{Sub: "user:short", Homes: map[string]string{"h1": "viewer"}, TTL: 4 * time.Second})
		exp := claims.ExpiresAtTime()
		short := c.mustV5(overTLS, "user:short", tok)
		if code := short.subscribe(t, h1State, 1); code != 1 {
			t.Fatalf("short-lived viewer on C: SUBACK %#x", code)
		}
		// The agent on A publishes its send time every 20 ms until the
		// viewer on C is cut off.
		var d *paho.Disconnect
		for d == nil && time.Now().Before(exp.Add(10*time.Second)) {
			agent.publish(t, h1State, binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano())), 1, false)
			select {
			case d = <-short.disconnect:
			case <-time.After(20 * time.Millisecond):
			}
		}
		if d == nil {
			t.Fatal("the viewer on C was not disconnected within 10 s of its token's exp")
		}
		if time.Now().Before(exp) {
			t.Fatal("the viewer on C was disconnected before its token's exp")
		}
		if d.ReasonCode != 0xA0 || d.Properties == nil || !strings.Contains(d.Properties.ReasonString, "token expired") {
			t.Fatalf("DISCONNECT %#x %+v, want 0xA0 'token expired' as on one node", d.ReasonCode, d.Properties)
		}
		n := 0
		for _, p := range publishes(short, h1State) {
			if len(p.Payload) != 8 {
				continue
			}
			n++
			if sent := time.Unix(0, int64(binary.BigEndian.Uint64(p.Payload))); sent.After(exp.Add(10 * time.Millisecond)) {
				t.Fatalf("a message published on A %v after exp reached the viewer on C", sent.Sub(exp))
			}
		}
		if n == 0 {
			t.Fatal("nothing published on A reached the viewer on C before exp either; the test proves nothing")
		}
	})

	t.Run("re-authentication", func(t *testing.T) {
		both := c.mint("user:ra", "h1=viewer", "h2=viewer")
		ra := c.mustV5(overWSS, "user:ra", both, func(cp *paho.Connect) {
			cp.Properties = &paho.ConnectProperties{AuthMethod: auth.MQTTMethod, AuthData: []byte(both)}
		})
		for _, f := range []string{h1States, h2States} {
			if code := ra.subscribe(t, f, 1); code != 1 {
				t.Fatalf("viewer of h1 and h2 on C subscribing %s: SUBACK %#x", f, code)
			}
		}
		h2agent.publish(t, h2State, []byte("before"), 1, false)
		eventually(t, 10*time.Second, "h2's state on A reaches the viewer of h1 and h2 on C", func() bool { return slices.Contains(payloads(ra, "homes/h2/"), "before") })

		reauth := func(tok string) *paho.AuthResponse {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ar, _ := ra.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19, Properties: &paho.AuthProperties{AuthMethod: auth.MQTTMethod, AuthData: []byte(tok)}})
			return ar
		}
		if ar := reauth(c.mint("user:ra", "h1=viewer")); ar == nil || !ar.Success || ar.ReasonCode != 0 {
			t.Fatalf("re-auth with a token for h1 only: %+v", ar)
		}
		h2agent.publish(t, h2State, []byte("after"), 1, false)
		agent.publish(t, h1State, []byte("reauth-fence"), 1, false)
		eventually(t, 10*time.Second, "h2's state after the re-auth reaches C", func() bool { return slices.Contains(payloads(h2viewer, "homes/h2/"), "after") })
		eventually(t, 10*time.Second, "h1's state reaches the re-authenticated viewer on C", func() bool { return slices.Contains(payloads(ra, h1State), "reauth-fence") })
		never(t, 300*time.Millisecond, "h2's state reached a viewer whose new token dropped h2", func() bool { return slices.Contains(payloads(ra, "homes/h2/"), "after") })

		ar := reauth(c.mint("user:intruder", "h1=viewer"))
		if ar == nil || ar.Success || ar.ReasonCode != 0x87 || ar.Properties == nil || !strings.Contains(ar.Properties.ReasonString, "user:intruder") {
			t.Fatalf("re-auth with another sub's token: %+v, want 0x87 naming user:intruder as on one node", ar)
		}
	})

	t.Run("SignalR bridge on B", func(t *testing.T) {
		acks := mqttAgent(t, a, "h1", "br", "lamp")
		s := newSealer(b, "user:ann")
		sr := openLongPoll(t, b, s.token)
		sr.send(`{"type":1,"invocationId":"1","target":"Subscribe","arguments":["h1"]}`)
		sr.completion("1")
		env := s.seal(t, "homes/h1/agents/br/devices/lamp/cmd", `{"action":"on"}`, time.Now(), 30*time.Second)
		arg, _ := json.Marshal(string(env))
		sr.send(`{"type":1,"invocationId":"2","target":"SendCommand","arguments":["h1","br","lamp",` + string(arg) + `]}`)
		if res := sr.completion("2"); !strings.Contains(res, `"ok":true`) {
			t.Fatalf("SendCommand on B completed with %s, want the agent's ack from A", res)
		}
		if n := acks.Load(); n != 1 {
			t.Fatalf("the agent on A got the command %d times, want once", n)
		}
		eventually(t, 10*time.Second, "a state published by the agent on A reaches the SignalR client on B", func() bool {
			return slices.ContainsFunc(sr.records(), func(r srRecord) bool {
				return r.Type == 1 && r.Target == "State" && len(r.Arguments) == 4 && strings.Contains(string(r.Arguments[3]), "live-")
			})
		})
		never(t, 300*time.Millisecond, "the command reached the agent on A twice", func() bool { return acks.Load() > 1 })
	})
}

// srRecord is a hub protocol message received by a long polling client.
type srRecord struct {
	Type         int
	Target       string
	Arguments    []json.RawMessage
	InvocationID string
	Result       json.RawMessage
	Error        string
}

// longPoll is a SignalR JSON hub client over long polling, as the official
// clients speak it, that keeps what it receives.
type longPoll struct {
	t     *testing.T
	hc    *http.Client
	u     string
	token string
	mu    sync.Mutex
	got   []srRecord
}

// openLongPoll negotiates with b's /signalr/home, shakes hands and polls
// in the background until the test ends.
func openLongPoll(t *testing.T, b *testBroker, token string) *longPoll {
	t.Helper()
	hub := "https://" + b.Addrs()["https"] + "/signalr/home"
	lp := &longPoll{t: t, hc: &http.Client{Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}, Timeout: 120 * time.Second}, token: token}
	st, body := lp.do("POST", hub+"/negotiate?negotiateVersion=1", "")
	var n struct{ ConnectionToken string }
	if st != 200 || json.Unmarshal([]byte(body), &n) != nil {
		t.Fatalf("negotiate: %d %s", st, body)
	}
	lp.u = hub + "?id=" + url.QueryEscape(n.ConnectionToken)
	if st, _ := lp.do("GET", lp.u, ""); st != 200 {
		t.Fatalf("first poll: %d", st)
	}
	lp.send(`{"protocol":"json","version":1}`)
	if st, body := lp.do("GET", lp.u, ""); st != 200 || body != "{}\x1e" {
		t.Fatalf("handshake response: %d %q", st, body)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			st, body := lp.do("GET", lp.u, "")
			if st != 200 {
				return
			}
			lp.mu.Lock()
			for rec := range strings.SplitSeq(strings.TrimSuffix(body, "\x1e"), "\x1e") {
				var r srRecord
				if json.Unmarshal([]byte(rec), &r) == nil {
					lp.got = append(lp.got, r)
				}
			}
			lp.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		lp.do("DELETE", lp.u, "")
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("the long poll did not end within 5 s of DELETE")
		}
	})
	return lp
}

// do sends one request with the client's token; a transport error is
// status 0.
func (lp *longPoll) do(method, u, body string) (int, string) {
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+lp.token)
	resp, err := lp.hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// send posts one hub message.
func (lp *longPoll) send(msg string) {
	lp.t.Helper()
	if st, body := lp.do("POST", lp.u, msg+"\x1e"); st != 200 {
		lp.t.Fatalf("send %s: %d %s", msg, st, body)
	}
}

// records returns what the client has received.
func (lp *longPoll) records() []srRecord {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return slices.Clone(lp.got)
}

// completion waits for invocation id's completion and returns its result;
// an error completion fails the test.
func (lp *longPoll) completion(id string) string {
	lp.t.Helper()
	var done srRecord
	eventually(lp.t, 15*time.Second, "the completion of invocation "+id, func() bool {
		i := slices.IndexFunc(lp.records(), func(r srRecord) bool { return r.Type == 3 && r.InvocationID == id })
		if i >= 0 {
			done = lp.records()[i]
		}
		return i >= 0
	})
	if done.Error != "" {
		lp.t.Fatalf("invocation %s failed: %s", id, done.Error)
	}
	return string(done.Result)
}
