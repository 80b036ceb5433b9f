package e2e

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"strings"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"homemq/auth"
	"homemq/registry"
	"homemq/signin"
)

// TestClusterSharesTheRegistry: three nodes hold one registry. What the
// admin API (as the CLI uses it) changes on one node is in force on every
// node: an agent added on A exchanges its set-up credential for a token on
// C, and that token connects on B; an integration added on B connects on
// C at once, and once removed on B its live connection on A is cut and C
// refuses it; a member added on C gets her rights from A's token exchange;
// an invite made on A and redeemed on B and C at once is redeemed once,
// and the sign-in works on A; a home added on two nodes one after the
// other exists once.
func TestClusterSharesTheRegistry(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	a.mustAdmin(registry.Request{Op: registry.OpHomeAdd, Home: "h1"})

	t.Run("agent added on A exchanges on C and connects on B", func(t *testing.T) {
		resp, err := a.registryAdmin().Do(context.Background(), registry.Request{Op: registry.OpAgentAdd, Home: "h1", Agent: "pi", Devices: []string{"lamp"}})
		if err != nil {
			t.Fatalf("agent add on A: %v", err)
		}
		// at once: a credential C does not know is checked again against
		// the shared log's end
		ans := tokExchange(t, c, auth.TokenTypeAgentCredential, resp.Credential)
		claims := tokClaims(t, c, ans)
		if claims.Subject != "agent:pi" || claims.Homes["h1"] != "agent" {
			t.Fatalf("C's token: sub %q homes %v, want agent:pi with h1=agent", claims.Subject, claims.Homes)
		}
		pi := b.mustV5(overTLS, "agent:pi", ans.token())
		if code := pi.subscribe(t, "homes/h1/agents/pi/devices/lamp/cmd", 1); code != 1 {
			t.Fatalf("the agent's SUBACK on B: %#x, want 1", code)
		}
	})

	t.Run("integration removed on B is cut on A and refused on C", func(t *testing.T) {
		pw := b.addIntegration("h1", "ha", "viewer")
		probe, err := c.integrationV3("ha-probe", "ha", pw)
		if err != nil {
			t.Fatalf("the integration added on B, on C: %v", err)
		}
		probe.Disconnect(0)
		lost := make(chan error, 1)
		live, err := a.integrationV3("ha-live", "ha", pw, func(o *pahov3.ClientOptions) {
			o.SetConnectionLostHandler(func(_ pahov3.Client, err error) { lost <- err })
		})
		if err != nil {
			t.Fatalf("the integration on A: %v", err)
		}
		defer live.Disconnect(0)
		if _, err := b.registryAdmin().Do(context.Background(), registry.Request{Op: registry.OpIntegrationRemove, Home: "h1", Integration: "ha"}); err != nil {
			t.Fatalf("integration remove on B: %v", err)
		}
		select {
		case <-lost:
		case <-time.After(5 * time.Second):
			t.Fatal("the removed integration's connection on A is still open 5 s after its removal on B")
		}
		eventually(t, 5*time.Second, "C refuses the removed integration", func() bool {
			cl, err := c.integrationV3("ha-again", "ha", pw)
			if err == nil {
				cl.Disconnect(0)
				return false
			}
			return strings.Contains(err.Error(), "bad user name or password")
		})
	})

	t.Run("member added on C has rights on A", func(t *testing.T) {
		c.mustAdmin(registry.Request{Op: registry.OpMemberAdd, Home: "h1", User: "mia", Role: "member"})
		// memberships are read locally: A has C's write within a JetStream
		// round trip
		eventually(t, 5*time.Second, "A has the membership C added", func() bool {
			m, _ := a.Registry.Memberships("user:mia")
			return m["h1"] == "member"
		})
		ans := tokExchange(t, a, auth.TokenTypeJWT, a.mint("user:mia")) // her sign-in token names no home
		if claims := tokClaims(t, a, ans); claims.Homes["h1"] != "member" {
			t.Fatalf("A's token for mia names homes %v, want h1=member", claims.Homes)
		}
		mia := a.mustV5(overTLS, "user:mia", ans.token())
		if code := mia.subscribe(t, "homes/h1/agents/+/devices/+/state", 1); code != 1 {
			t.Fatalf("mia's SUBACK on A: %#x, want 1", code)
		}
	})

	t.Run("an invite made on A is redeemed once across B and C", func(t *testing.T) {
		jar, _ := cookiejar.New(nil) // one browser: the nodes share the host 127.0.0.1
		clients := map[*testBroker]*http.Client{}
		for _, n := range nodes {
			clients[n] = &http.Client{Transport: &http.Transport{TLSClientConfig: n.tlsConfig()}, Jar: jar, Timeout: 15 * time.Second}
		}
		post := func(n *testBroker, what, body string) int {
			res, err := clients[n].Post("https://"+n.Addrs()["https"]+signin.Path+what, "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return 0
			}
			res.Body.Close()
			return res.StatusCode
		}
		post(b, "refresh", `{}`) // connections ready, so both redemptions go at once
		post(c, "refresh", `{}`)
		for range 5 {
			resp, err := a.registryAdmin().Do(context.Background(), registry.Request{Op: registry.OpInviteAdd, Home: "h1", Role: "viewer", User: "vic"})
			if err != nil {
				t.Fatalf("invite add on A: %v", err)
			}
			eventually(t, 5*time.Second, "B and C have the invite", func() bool {
				return b.Registry.Applied() == a.Registry.Applied() && c.Registry.Applied() == a.Registry.Applied()
			})
			redeem := `{"invite":"` + resp.Credential + `","device":"phone"}`
			codes := make(chan int, 2)
			for _, n := range []*testBroker{b, c} {
				go func() { codes <- post(n, "invite", redeem) }()
			}
			got := []int{<-codes, <-codes}
			slices.Sort(got)
			if got[0] != http.StatusOK || got[1] != http.StatusUnauthorized {
				t.Fatalf("an invite redeemed on B and C at once answered %v, want one 200 and one 401", got)
			}
		}
		// the device's sign-in, made on B or C, works on A
		if code := post(a, "refresh", `{}`); code != http.StatusOK {
			t.Fatalf("refresh on A with the sign-in made on another node: %d", code)
		}
	})

	t.Run("a home added on two nodes exists once", func(t *testing.T) {
		a.mustAdmin(registry.Request{Op: registry.OpHomeAdd, Home: "h2"})
		// B may not have applied A's write yet: its own write conflicts,
		// catches up and is refused, as on one node
		_, err := b.registryAdmin().Do(context.Background(), registry.Request{Op: registry.OpHomeAdd, Home: "h2"})
		if err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("home add h2 on B after A: %v, want already exists", err)
		}
		eventually(t, 5*time.Second, "every node has h1 and h2", func() bool {
			for _, n := range nodes {
				if homes, err := n.Registry.Homes(); err != nil || len(homes) != 2 {
					return false
				}
			}
			return true
		})
		// one log: each node knows it by the same identity, so a restart
		// resumes it rather than resetting the copy
		first, _, _ := a.Registry.LogPosition()
		for _, n := range nodes {
			if stream, _, err := n.Registry.LogPosition(); err != nil || stream == "" || stream != first {
				t.Fatalf("a node follows log %q (%v), another %q", stream, err, first)
			}
		}
	})
}
