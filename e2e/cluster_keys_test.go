package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"homemq/auth"
)

// jwksOf fetches the node's /.well-known/jwks.json over HTTPS.
func jwksOf(t *testing.T, b *testBroker) []byte {
	t.Helper()
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}}
	res, err := cl.Get("https://" + b.Addrs()["https"] + "/.well-known/jwks.json")
	if err != nil {
		t.Fatalf("GET jwks.json: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET jwks.json: %s %v", res.Status, err)
	}
	return body
}

// kidsIn lists the kids of a JWKS.
func kidsIn(t *testing.T, jwks []byte) []string {
	t.Helper()
	var set struct{ Keys []struct{ Kid string } }
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatalf("jwks %s: %v", jwks, err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

// TestClusterSharesSigningKeys: three nodes, each of which made its own
// signing keys and master secret, serve one JWKS and take each other's
// tokens; a message key derived on A is C's, and a command sealed with it
// is accepted on every node; `homemq keys rotate` on B
// (through B's admin API, as an operator does) signs B's next tokens with
// a new kid that C accepts and A and C list within 5 s.
func TestClusterSharesSigningKeys(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]

	first := jwksOf(t, a)
	for _, n := range nodes[1:] {
		if got := jwksOf(t, n); !bytes.Equal(got, first) {
			t.Fatalf("the nodes serve different JWKS:\n%s\n%s", first, got)
		}
	}
	c.mustV5(overTLS, "user:alice", a.mint("user:alice", "h1=viewer"))

	// a command sealed with the message key A derives is accepted on every
	// node: each Guard derives it from the cluster's master secret
	s := newSealer(a, "user:owner")
	if !bytes.Equal(s.key, c.MessageKey(s.claims.ID)) {
		t.Fatal("the message key of a token differs between A and C")
	}
	const cmd = "homes/h1/agents/a1/devices/d1/cmd"
	for i, n := range nodes {
		cl := n.mustV5(overTLS, "user:owner/"+string(rune('a'+i)), s.token)
		if pr := cl.publish(t, cmd, s.seal(t, cmd, "on", time.Now(), time.Minute), 1, false); pr.ReasonCode != 0 {
			t.Fatalf("a command sealed with A's message key, on node %c: PUBACK %#x %q", 'a'+i, pr.ReasonCode, pr.Properties.ReasonString)
		}
	}
	// each data folder holds the cluster's, so a node restarts alone with them
	for _, f := range []string{auth.MasterSecretFile, auth.KeysFile} {
		want, err := os.ReadFile(filepath.Join(a.Data, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes[1:] {
			if got, _ := os.ReadFile(filepath.Join(n.Data, f)); !bytes.Equal(got, want) {
				t.Fatalf("%s differs between A and another node", f)
			}
		}
	}

	out := mustCLI(t, b.Data, b.Addrs()["https"], "keys", "rotate")
	m := regexp.MustCompile(`new signing key (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keys rotate on B printed %q", out)
	}
	newKid := m[1]
	tok := b.mint("user:bob", "h1=viewer")
	if got := kidOf(t, tok); got != newKid {
		t.Fatalf("B signs with kid %s after the rotation, want %s", got, newKid)
	}
	eventually(t, 5*time.Second, "C accepts a token of B's new key", func() bool {
		_, _, err := c.v5(overTLS, "user:bob", tok)
		return err == nil
	})
	eventually(t, 5*time.Second, "the JWKS of A and C list the new kid", func() bool {
		return slices.Contains(kidsIn(t, jwksOf(t, a)), newKid) && slices.Contains(kidsIn(t, jwksOf(t, c)), newKid)
	})
	want := jwksOf(t, b)
	for _, n := range []*testBroker{a, c} {
		if got := jwksOf(t, n); !bytes.Equal(got, want) {
			t.Fatalf("after the rotation the nodes serve different JWKS:\n%s\n%s", want, got)
		}
	}
}
