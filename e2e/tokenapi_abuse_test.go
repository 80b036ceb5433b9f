package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"homemq/auth"
)

// exchangeFrom posts to /api/token from the local address src (any of
// 127.0.0.0/8 on Linux), so a test can play an attacker at another address.
func exchangeFrom(t *testing.T, b *testBroker, src, typ, subject string) tokAnswer {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: b.tlsConfig(), DialContext: d.DialContext}}
	defer cl.CloseIdleConnections()
	body, _ := json.Marshal(map[string]string{"grant_type": auth.GrantTokenExchange, "subject_token": subject, "subject_token_type": typ})
	res, err := cl.Post("https://"+b.Addrs()["https"]+"/api/token", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /api/token from %s: %v", src, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	a := tokAnswer{status: res.StatusCode, header: res.Header}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		t.Fatalf("POST /api/token answered %d with no JSON: %q", res.StatusCode, raw)
	}
	return a
}

// unsignedJWT is a token that claims sub and proves nothing.
func unsignedJWT(sub string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"EdDSA","kid":"x"}`)) + "." + enc([]byte(`{"iss":"homemq","sub":"`+sub+`"}`)) + "." + enc([]byte("not a signature"))
}

// TestTokenAPIFailuresByOthersDoNotLockAnAgentOut: an attacker who names
// agent pi in wrong credentials and unsigned tokens, from another address
// or from the agent's own, spends only the budget of the address it sends
// from; the agent's right credential always gets its token, and so does
// the agent's token refresh from its own address.
func TestTokenAPIFailuresByOthersDoNotLockAnAgentOut(t *testing.T) {
	b := startBroker(t)
	srv := b.Addrs()["https"]
	mustCLI(t, b.Data, srv, "home", "add", "h1")
	cred := strings.TrimSpace(mustCLI(t, b.Data, srv, "agent", "add", "--home", "h1", "--id", "pi"))
	p, err := auth.ParseAgentCredential(cred)
	if err != nil {
		t.Fatal(err)
	}
	wrong := auth.AgentCredential{Home: p.Home, Agent: p.Agent, Secret: bytes.Repeat([]byte{7}, auth.CredentialSecretSize)}.Encode()
	const attacker, agent = "127.0.0.2", "127.0.0.1"

	limited := false
	for i := 0; i < 15; i++ {
		a := exchangeFrom(t, b, attacker, auth.TokenTypeAgentCredential, wrong)
		limited = limited || a.status == 429
		if a.status != 401 && a.status != 429 {
			t.Fatalf("wrong credential %d: %d %v", i+1, a.status, a.body)
		}
		exchangeFrom(t, b, attacker, auth.TokenTypeJWT, unsignedJWT("agent:pi"))
	}
	if !limited {
		t.Fatal("the attacker's address is never rate-limited")
	}
	a := exchangeFrom(t, b, agent, auth.TokenTypeAgentCredential, cred)
	tokClaims(t, b, a)
	tokClaims(t, b, exchangeFrom(t, b, agent, auth.TokenTypeJWT, a.token()))

	// The attacker behind the agent's own address (one NAT): the address
	// is limited, the right credential still passes.
	for i := 0; i < 15; i++ {
		exchangeFrom(t, b, agent, auth.TokenTypeAgentCredential, wrong)
	}
	if a := exchangeFrom(t, b, agent, auth.TokenTypeJWT, unsignedJWT("agent:pi")); a.status != 429 {
		t.Fatalf("an unsigned token from an address that failed 15 times: %d %v", a.status, a.body)
	}
	tokClaims(t, b, exchangeFrom(t, b, agent, auth.TokenTypeAgentCredential, cred))
}
