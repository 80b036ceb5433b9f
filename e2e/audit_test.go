package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"homemq/audit"
	"homemq/auth"
	"homemq/broker"
	"homemq/envelope"
)

// auditLines reads the audit log of b back, one map per JSON line.
func auditLines(t *testing.T, b *testBroker) []map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(b.Data, broker.AuditDir, audit.FileName))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var m map[string]string
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line %q is not a flat JSON object: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// findAudit returns the first line with all the given fields.
func findAudit(lines []map[string]string, want map[string]string) map[string]string {
	for _, l := range lines {
		ok := true
		for k, v := range want {
			ok = ok && l[k] == v
		}
		if ok {
			return l
		}
	}
	return nil
}

// TestAuditLogOfARun: an end-to-end run — an agent connects, a forged
// token is refused, a command is accepted and its replay refused, a
// credential exchange fails, a token is revoked — is in the audit log with
// who, what, where and when, and no token, credential, key or command in it.
func TestAuditLogOfARun(t *testing.T) {
	b := startBroker(t)
	agentTok, agentClaims := b.mintSpec(auth.Spec{Sub: "agent:pi", Homes: map[string]string{"h1": "agent"}})
	agent := b.mustV5(overTLS, "agent:pi", agentTok)
	agent.subscribe(t, "homes/h1/agents/pi/devices/+/cmd", 1)

	forged := tampered(agentTok)
	if _, _, err := b.v5(overTLS, "agent:pi", forged); err == nil {
		t.Fatal("a forged token connected")
	}

	owner := newSealer(b, "user:owner")
	c := b.mustV5(overWSS, "user:owner", owner.token)
	lock := "homes/h1/agents/pi/devices/lock/cmd"
	const command = `{"action":"unlock-the-front-door"}`
	env := owner.seal(t, lock, command, time.Now(), 30*time.Second)
	var e struct{ Nonce, Sig string }
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	if pr := c.publish(t, lock, env, 1, false); pr.ReasonCode != 0 {
		t.Fatalf("command refused: 0x%02X", pr.ReasonCode)
	}
	if pr := c.publish(t, lock, env, 1, false); pr.ReasonCode == 0 {
		t.Fatal("replay accepted")
	}

	credential := "hmq1.h1.pi." + strings.Repeat("Q", 43)
	if a := tokExchange(t, b, auth.TokenTypeAgentCredential, credential); a.status == 200 {
		t.Fatal("a made-up credential was exchanged")
	}
	if _, err := b.Revoke(broker.RevokeRequest{JTI: owner.claims.ID}); err != nil {
		t.Fatal(err)
	}

	want := []map[string]string{
		{"event": "connect", "outcome": "allowed", "sub": "agent:pi", "jti": agentClaims.ID, "client": "agent:pi", "listener": "mqtts"},
		{"event": "connect", "outcome": "refused", "reason": "bad_signature", "client": "agent:pi", "listener": "mqtts"},
		{"event": "connect", "outcome": "allowed", "sub": "user:owner", "jti": owner.claims.ID, "listener": "wss"},
		{"event": "command", "outcome": "allowed", "sub": "user:owner", "jti": owner.claims.ID, "topic": lock,
			"home": "h1", "agent": "pi", "device": "lock", "nonce": e.Nonce, "listener": "wss"},
		{"event": "command", "outcome": "refused", "reason": "replay", "sub": "user:owner", "jti": owner.claims.ID, "topic": lock, "device": "lock"},
		{"event": "token_exchange", "outcome": "refused"},
		{"event": "revocation", "outcome": "allowed", "jti": owner.claims.ID},
		{"event": "revoke", "outcome": "refused", "reason": "revoked", "sub": "user:owner", "jti": owner.claims.ID},
	}
	var lines []map[string]string
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines = auditLines(t, b)
		var missing []map[string]string
		for _, w := range want {
			if findAudit(lines, w) == nil {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not in the audit log: %v\nthe log: %v", missing, lines)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if testing.Verbose() {
		for _, l := range lines {
			t.Log(l)
		}
	}
	for _, l := range lines {
		if ts, err := time.Parse(time.RFC3339Nano, l["time"]); err != nil || time.Since(ts) > time.Minute || time.Since(ts) < -time.Second {
			t.Errorf("line %v: time %q is not the time of the run", l, l["time"])
		}
	}
	for _, ev := range []string{"connect", "command"} {
		l := findAudit(lines, map[string]string{"event": ev, "outcome": "allowed"})
		if !strings.HasPrefix(l["remote"], "127.0.0.1:") {
			t.Errorf("%s line %v: remote %q is not the client's address", ev, l, l["remote"])
		}
	}

	raw, err := os.ReadFile(filepath.Join(b.Data, broker.AuditDir, audit.FileName))
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"agent token": agentTok, "forged token": forged, "owner token": owner.token, "credential": credential,
		"message key": envelope.EncodeKey(owner.key), "command": "unlock-the-front-door", "signature": e.Sig,
	}
	for what, s := range secrets {
		if strings.Contains(string(raw), s) {
			t.Errorf("the audit log contains the %s", what)
		}
	}
	for _, p := range []struct {
		path string
		mode os.FileMode
	}{{filepath.Join(b.Data, broker.AuditDir), 0o700}, {filepath.Join(b.Data, broker.AuditDir, audit.FileName), 0o600}} {
		st, err := os.Stat(p.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != p.mode {
			t.Errorf("%s has mode %v, want %v", p.path, st.Mode().Perm(), p.mode)
		}
	}
}
