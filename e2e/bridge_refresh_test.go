package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"homemq/auth"
)

// TestBridgeTokenRefresh: a long polling client that presents a fresh token
// of the same identity on a later request (as the official clients do when
// their token factory gives a new one) keeps its connection past the first
// token's expiry: the bridge re-authenticates its MQTT session with it.
// Without the fresh token, the same connection is closed at expiry.
//
// The test waits for that Close, which a long poll returns as soon as the
// broker cuts the MQTT session off at exp, and then uses the refreshed
// connection past the expiry.
func TestBridgeTokenRefresh(t *testing.T) {
	b := startBroker(t, shortLeeway)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}, Timeout: 120 * time.Second}
	hub := "https://" + b.Addrs()["https"] + "/signalr/home"
	do := func(method, u, tok string, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, u, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// open negotiates, polls once and shakes hands with tok.
	open := func(tok string) string {
		t.Helper()
		st, body := do("POST", hub+"/negotiate?negotiateVersion=1", tok, "")
		var n struct{ ConnectionToken string }
		if st != 200 || json.Unmarshal([]byte(body), &n) != nil {
			t.Fatalf("negotiate: %d %s", st, body)
		}
		u := hub + "?id=" + url.QueryEscape(n.ConnectionToken)
		if st, _ := do("GET", u, tok, ""); st != 200 {
			t.Fatalf("first poll: %d", st)
		}
		if st, _ := do("POST", u, tok, `{"protocol":"json","version":1}`+"\x1e"); st != 200 {
			t.Fatalf("handshake: %d", st)
		}
		if st, body := do("GET", u, tok, ""); st != 200 || body != "{}\x1e" {
			t.Fatalf("handshake response: %d %q", st, body)
		}
		return u
	}
	short, sc := b.mintSpec(auth.Spec{Sub: "user:lee", Homes: map[string]string{"h1": "admin"}, TTL: 3 * time.Second})
	fresh := b.mint("user:lee", "h1=admin")
	kept := open(short)
	lost := open(short)

	// The fresh token arrives with a send on one connection only.
	if st, _ := do("POST", kept, fresh, `{"type":6}`+"\x1e"); st != 200 {
		t.Fatalf("ping with the fresh token: %d", st)
	}
	// Polled with the short token while it is still valid, the connection
	// without a fresh token answers when it closes at exp.
	var st int
	var body string
	eventually(t, 15*time.Second, "the Close of the connection without a fresh token", func() bool {
		st, body = do("GET", lost, short, "")
		return st != 200 || strings.Contains(body, `"type":7`)
	})
	if st != 200 || !strings.Contains(body, "token expired") {
		t.Fatalf("the connection without a fresh token: %d %q, want a Close saying the token expired", st, body)
	}
	if time.Now().Before(sc.ExpiresAtTime()) {
		t.Fatalf("the connection without a fresh token was closed before its exp %v", sc.ExpiresAtTime())
	}
	invoke := `{"type":1,"invocationId":"1","target":"Subscribe","arguments":["h1"]}` + "\x1e"
	if st, body := do("POST", kept, fresh, invoke); st != 200 {
		t.Fatalf("invocation after the first token's expiry: %d %s", st, body)
	}
	st, body = do("GET", kept, fresh, "")
	if st != 200 {
		t.Fatalf("poll: %d", st)
	}
	for rec := range bytes.SplitSeq([]byte(strings.TrimSuffix(body, "\x1e")), []byte{0x1e}) {
		var m struct {
			Type         int
			InvocationID string
			Error        string
		}
		_ = json.Unmarshal(rec, &m)
		if m.Type == 7 || m.Error != "" {
			t.Fatalf("the refreshed connection got %s", rec)
		}
		if m.Type == 3 && m.InvocationID == "1" {
			return
		}
	}
	t.Fatalf("no completion in %q", body)
}
