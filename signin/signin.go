// Package signin lets a person sign in to the web app without pasting a
// token: the page redeems a one-time invite (registry.AddInvite) once and
// gets a sign-in bound to its device, kept in an HttpOnly cookie that no
// script (and no other origin) can read, which it trades for short-lived
// tokens as long as an admin does not remove it.
//
//	POST /api/signin/invite   {"invite":"…","device":"…"} → a token, and the cookie
//	POST /api/signin/refresh  (the cookie)                → a token (204: no cookie)
//	POST /api/signin/signout  (the cookie)                → the sign-in removed, the cookie cleared
//	POST /api/signin/create   {"home","role","ttl"} with an admin's Bearer token → a new invite
//	POST /api/signin/list     {"home"} with an admin's Bearer token → the members' signed-in devices
//	POST /api/signin/remove   {"home","id"} with an admin's Bearer token → that device signed out
//
// A token answer is the token API's: {"access_token","msg_key",
// "token_type":"Bearer","expires_in"} (docs/tokens.md).
package signin

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"rsc.io/qr"

	"homemq/auth"
	"homemq/envelope"
	"homemq/registry"
)

// Path is where the sign-in API is served.
const Path = "/api/signin/"

// Cookie is the name of the sign-in cookie.
const Cookie = "homemq_signin"

// cookieAge is how long a device stays signed in without using the app.
const cookieAge = 180 * 24 * time.Hour

// Registry is what the API needs of the registry.
type Registry interface {
	AddInvite(home, role, user string, ttl time.Duration) (registry.Invite, string, error)
	RedeemInvite(invite, device string) (registry.SignIn, string, error)
	CheckSignIn(token string) (registry.SignIn, error)
	RemoveSignIn(id string) error
	Memberships(user string) (map[string]string, error)
	Members(home string) ([]registry.Membership, error)
	SignIns(user string) ([]registry.SignIn, error)
}

// Options configure the Handler.
type Options struct {
	Registry Registry
	// Mint issues a token for a user with their homes.
	Mint func(sub string, homes map[string]string) (token string, claims *auth.Claims, err error)
	// MsgKey derives a token's message key from its jti.
	MsgKey func(jti string) []byte
	// Verify checks a Bearer token (signature, expiry, revocation).
	Verify func(token string) (*auth.Claims, error)
}

// Handler serves the sign-in API; the broker mounts it at Path.
func Handler(o Options) http.Handler {
	return &api{o}
}

type api struct{ Options }

// tokenAnswer is the JSON of a token, as POST /api/token answers.
type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	MsgKey      string `json:"msg_key"`
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		fail(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
		return
	}
	// The cookie is SameSite=Strict; on top, only JSON from this origin is
	// taken, which a form on another site cannot send.
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(ct) != "application/json" {
		fail(w, http.StatusUnsupportedMediaType, "invalid_request", "send Content-Type: application/json")
		return
	}
	if o := r.Header.Get("Origin"); o != "" {
		if u, err := url.Parse(o); err != nil || u.Host != r.Host {
			fail(w, http.StatusForbidden, "invalid_request", "this API answers only the web app of its own origin")
			return
		}
	}
	switch strings.TrimPrefix(r.URL.Path, Path) {
	case "invite":
		a.invite(w, r)
	case "refresh":
		a.refresh(w, r)
	case "signout":
		a.signout(w, r)
	case "create":
		a.create(w, r)
	case "list":
		a.list(w, r)
	case "remove":
		a.remove(w, r)
	default:
		fail(w, http.StatusNotFound, "invalid_request", "unknown sign-in endpoint; see docs/webapp.md")
	}
}

func (a *api) invite(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Invite string `json:"invite"`
		Device string `json:"device"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Invite == "" {
		fail(w, http.StatusBadRequest, "invalid_request", `body must be {"invite":"…","device":"…"}`)
		return
	}
	si, tok, err := a.Registry.RedeemInvite(req.Invite, req.Device)
	if err != nil {
		refuse(w, err)
		return
	}
	setCookie(w, tok, cookieAge)
	a.issue(w, si.User)
}

func (a *api) refresh(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(Cookie)
	if err != nil {
		// not signed in: the page asks on every start, so this is no error
		w.WriteHeader(http.StatusNoContent)
		return
	}
	si, err := a.Registry.CheckSignIn(c.Value)
	if err != nil {
		setCookie(w, "", -1)
		refuse(w, err)
		return
	}
	setCookie(w, c.Value, cookieAge) // used: another 180 days
	a.issue(w, si.User)
}

func (a *api) signout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(Cookie); err == nil {
		id, _, _ := strings.Cut(c.Value, ".")
		if _, err := a.Registry.CheckSignIn(c.Value); err == nil {
			_ = a.Registry.RemoveSignIn(id)
		}
	}
	setCookie(w, "", -1)
	w.WriteHeader(http.StatusNoContent)
}

// createAnswer is a new invite for the web app: the secret (the page makes
// the link on its own origin), who it is for, until when, and a QR code of
// the link as a PNG data: URL.
type createAnswer struct {
	Invite  string    `json:"invite"`
	User    string    `json:"user"`
	Home    string    `json:"home"`
	Role    string    `json:"role"`
	Expires time.Time `json:"expires"`
	QR      string    `json:"qr"`
}

// adminRequest is the body of create, list and remove.
type adminRequest struct {
	Home string `json:"home"`
	Role string `json:"role,omitempty"` // create
	TTL  int64  `json:"ttl,omitempty"`  // create: seconds; 0: the default
	ID   string `json:"id,omitempty"`   // remove
}

// admin reads an admin request and checks that its Bearer token's subject
// is an admin of its home now (the registry says so, not only the token).
// It answers the refusal itself and then returns ok == false.
func (a *api) admin(w http.ResponseWriter, r *http.Request) (req adminRequest, ok bool) {
	tok, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !found || a.Verify == nil {
		fail(w, http.StatusUnauthorized, "invalid_token", "send your token as Authorization: Bearer …")
		return req, false
	}
	claims, err := a.Verify(tok)
	if err != nil {
		fail(w, http.StatusUnauthorized, "invalid_token", err.Error())
		return req, false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "invalid_request", `body must be {"home":"…"} (and "role" to create, "id" to remove)`)
		return req, false
	}
	homes, err := a.Registry.Memberships(claims.Subject)
	if err != nil {
		fail(w, http.StatusInternalServerError, "server_error", err.Error())
		return req, false
	}
	if homes[req.Home] != "admin" {
		fail(w, http.StatusForbidden, "insufficient_scope", fmt.Sprintf("only an admin of home %q may manage who signs in to it", req.Home))
		return req, false
	}
	return req, true
}

// homeSignIns lists the sign-ins of the members of home.
func (a *api) homeSignIns(home string) ([]registry.SignIn, error) {
	members, err := a.Registry.Members(home)
	if err != nil {
		return nil, err
	}
	out := []registry.SignIn{}
	for _, m := range members {
		s, err := a.Registry.SignIns(m.User)
		if err != nil {
			return nil, err
		}
		out = append(out, s...)
	}
	return out, nil
}

// list answers an admin with the signed-in devices of the home's members.
func (a *api) list(w http.ResponseWriter, r *http.Request) {
	req, ok := a.admin(w, r)
	if !ok {
		return
	}
	list, err := a.homeSignIns(req.Home)
	if err != nil {
		fail(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"signins": list})
}

// remove signs out one device of a member of the home.
func (a *api) remove(w http.ResponseWriter, r *http.Request) {
	req, ok := a.admin(w, r)
	if !ok {
		return
	}
	list, err := a.homeSignIns(req.Home)
	if err != nil {
		fail(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	for _, s := range list {
		if s.ID == req.ID {
			if err := a.Registry.RemoveSignIn(s.ID); err != nil {
				refuse(w, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	fail(w, http.StatusNotFound, "invalid_request", fmt.Sprintf("no device %q is signed in to home %q", req.ID, req.Home))
}

// create makes an invite for an admin of the home.
func (a *api) create(w http.ResponseWriter, r *http.Request) {
	req, ok := a.admin(w, r)
	if !ok {
		return
	}
	inv, secret, err := a.Registry.AddInvite(req.Home, req.Role, "", time.Duration(req.TTL)*time.Second)
	if err != nil {
		if errors.Is(err, registry.ErrInvalid) || errors.Is(err, registry.ErrNotFound) {
			fail(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		fail(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	link := "https://" + r.Host + "/#invite=" + secret
	png, err := qrPNG(link)
	if err != nil {
		fail(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(createAnswer{Invite: secret, User: inv.User, Home: inv.Home, Role: inv.Role, Expires: inv.Expires, QR: png})
}

// qrPNG is a QR code of text as a PNG data: URL (the web app's CSP allows
// data: images).
func qrPNG(text string) (string, error) {
	code, err := qr.Encode(text, qr.M)
	if err != nil {
		return "", err
	}
	code.Scale = 6
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(code.PNG()), nil
}

// issue answers with a fresh token for user and their current homes.
func (a *api) issue(w http.ResponseWriter, user string) {
	homes, err := a.Registry.Memberships(user)
	if err != nil {
		fail(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	if len(homes) == 0 {
		fail(w, http.StatusForbidden, "invalid_grant", fmt.Sprintf("%s is no longer a member of any home; ask the home's admin", user))
		return
	}
	tok, claims, err := a.Mint(user, homes)
	if err != nil {
		fail(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(tokenAnswer{
		AccessToken: tok, TokenType: "Bearer", MsgKey: envelope.EncodeKey(a.MsgKey(claims.ID)),
		ExpiresIn: int64(time.Until(claims.ExpiresAtTime()).Round(time.Second) / time.Second),
	})
}

// setCookie sets (maxAge > 0) or clears (maxAge < 0) the sign-in cookie:
// HttpOnly (no script reads it), Secure, SameSite=Strict, sent only to
// this API.
func setCookie(w http.ResponseWriter, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: Cookie, Value: value, Path: Path, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode}
	if maxAge < 0 {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(maxAge / time.Second)
	}
	http.SetCookie(w, c)
}

func refuse(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, registry.ErrDenied), errors.Is(err, registry.ErrNotFound):
		fail(w, http.StatusUnauthorized, "invalid_grant", err.Error())
	default:
		fail(w, http.StatusInternalServerError, "server_error", err.Error())
	}
}

func fail(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
