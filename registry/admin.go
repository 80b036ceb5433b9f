package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"homemq/auth"
)

// Operations of Request.Op.
const (
	OpHomeAdd      = "home.add"
	OpHomeRemove   = "home.remove"
	OpHomeList     = "home.list"
	OpAgentAdd     = "agent.add"
	OpAgentRotate  = "agent.rotate"
	OpAgentRemove  = "agent.remove"
	OpAgentList    = "agent.list"
	OpMemberAdd    = "member.add"
	OpMemberRemove = "member.remove"
	OpMemberList   = "member.list"
	OpInviteAdd    = "invite.add"    // invites.go
	OpSignInList   = "signin.list"   // invites.go
	OpSignInRemove = "signin.remove" // invites.go
)

// AdminPath is where the broker serves the admin API (POST, operator token).
const AdminPath = "/api/admin/registry"

// Request is one registry operation, as the CLI sends it.
type Request struct {
	Op      string   `json:"op"`
	Home    string   `json:"home,omitempty"`
	Agent   string   `json:"agent,omitempty"`
	Devices []string `json:"devices,omitempty"`
	User    string   `json:"user,omitempty"`
	Role    string   `json:"role,omitempty"`
	// TTL is how long an invite lasts (invite.add; 0: 15 minutes).
	TTL time.Duration `json:"ttl,omitempty"`
	// ID names a sign-in (signin.remove).
	ID string `json:"id,omitempty"`
	// Integration is the id of the integration of integration.* operations.
	Integration string `json:"integration,omitempty"`
}

// Response is the result of a Request.
type Response struct {
	// Credential is the fresh agent credential of agent.add and
	// agent.rotate, in its text form: shown once, stored nowhere.
	Credential string       `json:"credential,omitempty"`
	Homes      []Home       `json:"homes,omitempty"`
	Agents     []Agent      `json:"agents,omitempty"`
	Members    []Membership `json:"members,omitempty"`
	// Invite is the invite of invite.add, whose secret is in Credential.
	Invite  *Invite  `json:"invite,omitempty"`
	SignIns []SignIn `json:"signins,omitempty"`
	// Integrations and Doors answer the integration.* operations.
	Integrations []Integration `json:"integrations,omitempty"`
	Doors        []DoorGrant   `json:"doors,omitempty"`
}

// Admin runs registry operations: an open *Registry (broker stopped) or a
// *Client of the running broker's admin API.
type Admin interface {
	Do(ctx context.Context, req Request) (Response, error)
}

// Do runs req on the open registry.
func (r *Registry) Do(_ context.Context, req Request) (Response, error) {
	var resp Response
	var err error
	switch req.Op {
	case OpHomeAdd:
		var h Home
		h, err = r.AddHome(req.Home)
		resp.Homes = []Home{h}
	case OpHomeRemove:
		err = r.RemoveHome(req.Home)
	case OpHomeList:
		resp.Homes, err = r.Homes()
	case OpAgentAdd, OpAgentRotate:
		var a Agent
		var c auth.AgentCredential
		if req.Op == OpAgentAdd {
			a, c, err = r.AddAgent(req.Home, req.Agent, req.Devices)
		} else {
			a, c, err = r.RotateAgent(req.Home, req.Agent)
		}
		if err == nil {
			resp.Agents, resp.Credential = []Agent{a}, c.Encode()
		}
	case OpAgentRemove:
		err = r.RemoveAgent(req.Home, req.Agent)
	case OpAgentList:
		resp.Agents, err = r.Agents(req.Home)
	case OpMemberAdd:
		var m Membership
		m, err = r.AddMember(req.Home, req.User, req.Role)
		resp.Members = []Membership{m}
	case OpMemberRemove:
		err = r.RemoveMember(req.Home, req.User)
	case OpMemberList:
		resp.Members, err = r.Members(req.Home)
	case OpInviteAdd, OpSignInList, OpSignInRemove:
		resp, err = r.doInvites(req)
	default:
		var ok bool
		if resp, ok, err = r.doIntegration(req); !ok {
			err = errorf(ErrInvalid, "unknown operation %q", req.Op)
		}
	}
	if err != nil {
		return Response{}, err
	}
	return resp, nil
}

// Handler serves the admin API over reg. Mount it behind an operator check.
// After agent.rotate and agent.remove it calls revoke("agent:{id}") so the
// agent's current tokens stop at once, and after member.remove
// revoke("user:{id}") so the member's access to the home ends at once: the
// live connections close, offline sessions stop queueing, and the user's
// next token from the exchange no longer names the home. That ends the
// user's current tokens for every home; the other homes come back with the
// next token (nil revoke: no revocation).
func Handler(reg *Registry, revoke func(sub string) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req Request
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "body must be a JSON registry request: "+err.Error())
			return
		}
		resp, err := reg.Do(r.Context(), req)
		if err == nil && revoke != nil && (req.Op == OpAgentRotate || req.Op == OpAgentRemove) {
			if rerr := revoke(auth.KindAgent + ":" + req.Agent); rerr != nil {
				err = fmt.Errorf("registry changed, but revoking the agent's current tokens failed: %w (run: homemq revoke --sub agent:%s)", rerr, req.Agent)
			}
		}
		if err == nil && revoke != nil && revokesIntegration(req) {
			if rerr := revoke("service:" + req.Integration); rerr != nil {
				err = fmt.Errorf("integration changed, but cutting its connections failed: %w (run: homemq revoke --sub service:%s)", rerr, req.Integration)
			}
		}
		if err == nil && revoke != nil && req.Op == OpMemberRemove {
			user, _ := UserID(req.User) // RemoveMember accepted it
			if rerr := revoke(user); rerr != nil {
				err = fmt.Errorf("membership removed, but revoking the user's current tokens failed: %w (run: homemq revoke --sub %s)", rerr, user)
			}
		}
		if err != nil {
			status, code := http.StatusInternalServerError, "server_error"
			switch {
			case errors.Is(err, ErrNotFound):
				status, code = http.StatusNotFound, "not_found"
			case errors.Is(err, ErrExists):
				status, code = http.StatusConflict, "conflict"
			case errors.Is(err, ErrInvalid):
				status, code = http.StatusBadRequest, "invalid_request"
			}
			writeError(w, status, code, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(resp)
	})
}

func writeError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// Client is the admin API of a running broker.
type Client struct {
	// BaseURL is the broker's HTTPS origin, e.g. https://127.0.0.1:8443.
	BaseURL string
	// Token is an operator token.
	Token string
	// HTTP is the client to use (it must trust the broker's CA).
	HTTP *http.Client
}

// UnreachableError is a Client error where the broker did not answer at all.
type UnreachableError struct{ Err error }

func (e *UnreachableError) Error() string { return "broker not reachable: " + e.Err.Error() }
func (e *UnreachableError) Unwrap() error { return e.Err }

// Do sends req to the broker. Errors keep their kind (errors.Is with
// ErrNotFound, ErrExists, ErrInvalid); a broker that does not answer gives
// an *UnreachableError.
func (c *Client) Do(ctx context.Context, req Request) (Response, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.BaseURL, "/")+AdminPath, bytes.NewReader(body))
	if err != nil {
		return Response{}, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(hreq)
	if err != nil {
		return Response{}, &UnreachableError{Err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return Response{}, fmt.Errorf("registry: reading the broker's answer: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(b, &e) != nil || e.Description == "" {
			return Response{}, fmt.Errorf("registry: broker answered %s: %s", res.Status, bytes.TrimSpace(b))
		}
		var kind error
		switch res.StatusCode {
		case http.StatusNotFound:
			kind = ErrNotFound
		case http.StatusConflict:
			kind = ErrExists
		case http.StatusBadRequest:
			kind = ErrInvalid
		default:
			return Response{}, fmt.Errorf("registry: broker answered %s: %s", res.Status, e.Description)
		}
		return Response{}, &regError{msg: e.Description, kinds: []error{kind}}
	}
	var resp Response
	if err := json.Unmarshal(b, &resp); err != nil {
		return Response{}, fmt.Errorf("registry: broker's answer is not a registry response: %w", err)
	}
	return resp, nil
}
