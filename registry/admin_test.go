package registry

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"homemq/auth"
)

// TestClientOverHandler: the admin API gives the CLI the same answers and
// error kinds as the open database, and revokes an agent's tokens when its
// credential is rotated or it is removed, and a user's when a membership
// is removed (not when removing it fails).
func TestClientOverHandler(t *testing.T) {
	r, _ := openTest(t)
	var revoked []string
	srv := httptest.NewServer(Handler(r, func(sub string) error { revoked = append(revoked, sub); return nil }))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL, Token: "t", HTTP: srv.Client()}
	ctx := context.Background()
	steps := []struct {
		req    Request
		kind   error
		phrase string
	}{
		{Request{Op: OpHomeAdd, Home: "h1"}, nil, ""},
		{Request{Op: OpHomeAdd, Home: "h1"}, ErrExists, `home "h1" already exists`},
		{Request{Op: OpAgentAdd, Home: "h2", Agent: "pi"}, ErrNotFound, "homemq home add h2"},
		{Request{Op: OpAgentAdd, Home: "h1", Agent: "PI"}, ErrInvalid, "a-z 0-9"},
		{Request{Op: OpAgentAdd, Home: "h1", Agent: "pi", Devices: []string{"door"}}, nil, ""},
		{Request{Op: OpAgentRotate, Home: "h1", Agent: "pi"}, nil, ""},
		{Request{Op: OpAgentRemove, Home: "h1", Agent: "pi"}, nil, ""},
		{Request{Op: OpAgentRemove, Home: "h1", Agent: "pi"}, ErrNotFound, "does not exist"},
		{Request{Op: OpMemberAdd, Home: "h1", User: "alice", Role: "admin"}, nil, ""},
		{Request{Op: OpMemberRemove, Home: "h1", User: "alice"}, nil, ""},
		{Request{Op: OpMemberRemove, Home: "h1", User: "agent:pi"}, ErrInvalid, "memberships are for users"},
	}
	var creds []string
	for _, s := range steps {
		resp, err := c.Do(ctx, s.req)
		want(t, s.req.Op, err, s.kind, s.phrase)
		if resp.Credential != "" {
			creds = append(creds, resp.Credential)
		}
	}
	if len(creds) != 2 || creds[0] == creds[1] {
		t.Fatalf("agent.add and agent.rotate gave credentials %d, want 2 different ones", len(creds))
	}
	for _, cr := range creds {
		if _, err := auth.ParseAgentCredential(cr); err != nil {
			t.Fatalf("credential from the API does not parse: %v", err)
		}
	}
	if strings.Join(revoked, ",") != "agent:pi,agent:pi,user:alice" {
		t.Fatalf("revoked %v, want agent:pi after rotate and after remove, user:alice after member remove", revoked)
	}
	resp, err := c.Do(ctx, Request{Op: OpHomeList})
	if err != nil || len(resp.Homes) != 1 || resp.Homes[0].ID != "h1" {
		t.Fatalf("home.list: %+v %v", resp, err)
	}
}

func TestClientReportsAnUnreachableBroker(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := (&Client{BaseURL: url}).Do(context.Background(), Request{Op: OpHomeList})
	var ue *UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v, want an *UnreachableError", err)
	}
}

func TestHandlerRefusesUnknownFields(t *testing.T) {
	r, _ := openTest(t)
	srv := httptest.NewServer(Handler(r, nil))
	defer srv.Close()
	res, err := srv.Client().Post(srv.URL, "application/json", strings.NewReader(`{"op":"home.add","home":"h1","owner":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", res.StatusCode)
	}
	if hs, _ := r.Homes(); len(hs) != 0 {
		t.Fatalf("a refused request added %+v", hs)
	}
}
