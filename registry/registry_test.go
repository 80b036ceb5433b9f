package registry

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"homemq/auth"
)

func openTest(t *testing.T) (*Registry, string) {
	t.Helper()
	dir := t.TempDir()
	r, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, dir
}

// want checks err against a kind (nil: no error) and a phrase of its text.
func want(t *testing.T, what string, err, kind error, phrase string) {
	t.Helper()
	switch {
	case kind == nil && err != nil:
		t.Fatalf("%s: unexpected error %v", what, err)
	case kind != nil && !errors.Is(err, kind):
		t.Fatalf("%s: error %v, want %v", what, err, kind)
	case phrase != "" && (err == nil || !strings.Contains(err.Error(), phrase)):
		t.Fatalf("%s: error %v, want it to say %q", what, err, phrase)
	}
}

func TestRegistryOperations(t *testing.T) {
	r, _ := openTest(t)
	steps := []struct {
		req    Request
		kind   error
		phrase string
	}{
		{Request{Op: OpHomeAdd, Home: "h1"}, nil, ""},
		{Request{Op: OpHomeAdd, Home: "h2"}, nil, ""},
		{Request{Op: OpHomeAdd, Home: "h1"}, ErrExists, `home "h1" already exists`},
		{Request{Op: OpHomeAdd, Home: "Bad Home"}, ErrInvalid, "a-z 0-9"},
		{Request{Op: OpHomeAdd, Home: ""}, ErrInvalid, "invalid"},
		{Request{Op: OpAgentAdd, Home: "nope", Agent: "pi"}, ErrNotFound, "homemq home add nope"},
		{Request{Op: OpAgentAdd, Home: "h1", Agent: "pi/1"}, ErrInvalid, `agent id "pi/1"`},
		{Request{Op: OpAgentAdd, Home: "h1", Agent: "pi", Devices: []string{"door", "Lamp"}}, ErrInvalid, `device id "Lamp"`},
		{Request{Op: OpAgentAdd, Home: "h1", Agent: "pi", Devices: []string{"lamp", "door", "lamp"}}, nil, ""},
		{Request{Op: OpAgentAdd, Home: "h1", Agent: "pi"}, ErrExists, "already exists"},
		{Request{Op: OpAgentAdd, Home: "h2", Agent: "pi"}, ErrExists, "unique across homes"},
		{Request{Op: OpAgentRotate, Home: "h2", Agent: "pi"}, ErrNotFound, `belongs to home "h1"`},
		{Request{Op: OpAgentRemove, Home: "h1", Agent: "ghost"}, ErrNotFound, `agent "ghost" does not exist`},
		{Request{Op: OpMemberAdd, Home: "h1", User: "alice", Role: "admin"}, nil, ""},
		{Request{Op: OpMemberAdd, Home: "h2", User: "user:alice", Role: "viewer"}, nil, ""},
		{Request{Op: OpMemberAdd, Home: "h1", User: "user:alice", Role: "member"}, ErrExists, "already admin"},
		{Request{Op: OpMemberAdd, Home: "h1", User: "bob", Role: "owner"}, ErrInvalid, `role "owner"`},
		{Request{Op: OpMemberAdd, Home: "h1", User: "bob", Role: "agent"}, ErrInvalid, `role "agent"`},
		{Request{Op: OpMemberAdd, Home: "h1", User: "agent:pi", Role: "admin"}, ErrInvalid, "homemq agent add"},
		{Request{Op: OpMemberAdd, Home: "h1", User: "bob smith", Role: "admin"}, ErrInvalid, "letters, digits"},
		{Request{Op: OpMemberAdd, Home: "h9", User: "bob", Role: "admin"}, ErrNotFound, `home "h9" does not exist`},
		{Request{Op: OpMemberRemove, Home: "h1", User: "bob"}, ErrNotFound, "not a member"},
		{Request{Op: OpHomeRemove, Home: "h1"}, ErrInvalid, "1 agent(s) and 1 member(s)"},
		{Request{Op: OpHomeRemove, Home: "h3"}, ErrNotFound, ""},
		{Request{Op: "home.rename"}, ErrInvalid, "unknown operation"},
	}
	for _, s := range steps {
		_, err := r.Do(context.Background(), s.req)
		want(t, s.req.Op+" "+s.req.Home+" "+s.req.Agent+s.req.User, err, s.kind, s.phrase)
	}
	a, err := r.Agent("pi")
	if err != nil || a.Home != "h1" || !reflect.DeepEqual(a.Devices, []string{"door", "lamp"}) {
		t.Fatalf("agent pi = %+v, %v; want home h1, devices [door lamp]", a, err)
	}
	m, err := r.Memberships("user:alice")
	if err != nil || !reflect.DeepEqual(m, map[string]string{"h1": "admin", "h2": "viewer"}) {
		t.Fatalf("alice's memberships = %v, %v", m, err)
	}
	if m, _ := r.Memberships("user:alic"); len(m) != 0 {
		t.Fatalf("a prefix of alice's id has memberships %v", m)
	}
	if err := r.RemoveMember("h2", "alice"); err != nil {
		t.Fatal(err)
	}
	if m, _ := r.Memberships("alice"); !reflect.DeepEqual(m, map[string]string{"h1": "admin"}) {
		t.Fatalf("after removing h2, alice has %v", m)
	}
}

func TestAgentCredentials(t *testing.T) {
	r, _ := openTest(t)
	if _, err := r.AddHome("h1"); err != nil {
		t.Fatal(err)
	}
	_, first, err := r.AddAgent("h1", "pi", []string{"door"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := r.CheckAgentCredential(first)
	if err != nil || !reflect.DeepEqual(g, auth.AgentGrant{Agent: "pi", Home: "h1", Devices: []string{"door"}}) {
		t.Fatalf("fresh credential: %+v, %v", g, err)
	}
	wrong := first
	wrong.Secret = bytes.Repeat([]byte{1}, 32)
	_, second, err := r.RotateAgent("h1", "pi")
	if err != nil {
		t.Fatal(err)
	}
	otherHome := second
	otherHome.Home = "h2"
	tests := []struct {
		name string
		cred auth.AgentCredential
		ok   bool
	}{
		{"rotated credential", second, true},
		{"credential before rotation", first, false},
		{"wrong secret", wrong, false},
		{"unknown agent", auth.AgentCredential{Home: "h1", Agent: "ghost", Secret: second.Secret}, false},
		{"right secret, other home", otherHome, false},
	}
	for _, tc := range tests {
		_, err := r.CheckAgentCredential(tc.cred)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && (!errors.Is(err, ErrDenied) || !errors.Is(err, auth.ErrNotRegistered)) {
			t.Errorf("%s: error %v, want ErrDenied and auth.ErrNotRegistered", tc.name, err)
		}
	}
	if err := r.RemoveAgent("h1", "pi"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CheckAgentCredential(second); !errors.Is(err, ErrDenied) {
		t.Fatalf("removed agent's credential: %v", err)
	}
	if _, err := r.AgentGrant("pi"); !errors.Is(err, auth.ErrNotRegistered) {
		t.Fatalf("removed agent's grant: %v", err)
	}
}

// TestFileHoldsNoSecret: the database keeps hashes only, never the secret in
// any spelling, and is readable by its owner only.
func TestFileHoldsNoSecret(t *testing.T) {
	r, dir := openTest(t)
	_, _ = r.AddHome("h1")
	var creds []auth.AgentCredential
	for _, id := range []string{"a1", "a2"} {
		_, c, err := r.AddAgent("h1", id, nil)
		if err != nil {
			t.Fatal(err)
		}
		creds = append(creds, c)
	}
	_, c, _ := r.RotateAgent("h1", "a2")
	creds = append(creds, c)
	r.Close()
	db, err := os.ReadFile(filepath.Join(dir, File))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range creds {
		for name, form := range map[string]string{
			"raw": string(c.Secret), "base64url": base64.RawURLEncoding.EncodeToString(c.Secret),
			"base64": base64.StdEncoding.EncodeToString(c.Secret), "hex": hex.EncodeToString(c.Secret),
			"credential": c.Encode(),
		} {
			if bytes.Contains(db, []byte(form)) {
				t.Errorf("registry.db holds the secret of %s as %s", c, name)
			}
		}
	}
	st, _ := os.Stat(filepath.Join(dir, File))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("registry.db has mode %v, want 0600", st.Mode().Perm())
	}
}

func TestOpenIsExclusiveAndPersistent(t *testing.T) {
	r, dir := openTest(t)
	if _, err := r.AddHome("h1"); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, &Options{Timeout: 50 * time.Millisecond})
	want(t, "second open", err, ErrLocked, "in use by another process")
	r.Close()
	r2, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if hs, _ := r2.Homes(); len(hs) != 1 || hs[0].ID != "h1" {
		t.Fatalf("after reopening, homes = %+v", hs)
	}
	if _, err := Open(filepath.Join(dir, "missing"), nil); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("open in a missing folder: %v", err)
	}
}
