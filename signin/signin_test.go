package signin

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"homemq/auth"
	"homemq/registry"
)

// fakeRegistry knows one invite "good" for user:ann, member of h1, and
// that ann is admin of h1 and member of nothing else.
type fakeRegistry struct{ removed string }

func (f *fakeRegistry) AddInvite(home, role, user string, ttl time.Duration) (registry.Invite, string, error) {
	return registry.Invite{Home: home, Role: role, User: "user:guest-1", Expires: time.Now().Add(ttl)}, "secret", nil
}
func (f *fakeRegistry) RedeemInvite(invite, device string) (registry.SignIn, string, error) {
	if invite != "good" {
		return registry.SignIn{}, "", registry.ErrDenied
	}
	return registry.SignIn{ID: "s1", User: "user:ann"}, "s1.x", nil
}
func (f *fakeRegistry) CheckSignIn(token string) (registry.SignIn, error) {
	if token != "s1.x" || f.removed == "s1" {
		return registry.SignIn{}, registry.ErrDenied
	}
	return registry.SignIn{ID: "s1", User: "user:ann"}, nil
}
func (f *fakeRegistry) RemoveSignIn(id string) error { f.removed = id; return nil }
func (f *fakeRegistry) Members(home string) ([]registry.Membership, error) {
	return []registry.Membership{{User: "user:ann", Home: "h1", Role: "admin"}}, nil
}
func (f *fakeRegistry) SignIns(user string) ([]registry.SignIn, error) {
	if user != "user:ann" || f.removed == "s1" {
		return nil, nil
	}
	return []registry.SignIn{{ID: "s1", User: "user:ann", Device: "phone"}}, nil
}
func (f *fakeRegistry) Memberships(user string) (map[string]string, error) {
	if user == "user:ann" {
		return map[string]string{"h1": "admin"}, nil
	}
	return map[string]string{}, nil
}

func testAPI() (http.Handler, *fakeRegistry) {
	reg := &fakeRegistry{}
	return Handler(Options{
		Registry: reg,
		Mint: func(sub string, homes map[string]string) (string, *auth.Claims, error) {
			c := &auth.Claims{}
			c.ID, c.Subject = "j1", sub
			return "tok-" + sub, c, nil
		},
		MsgKey: func(string) []byte { return make([]byte, 32) },
		Verify: func(tok string) (*auth.Claims, error) {
			if !strings.HasPrefix(tok, "tok-") {
				return nil, errors.New("token refused")
			}
			c := &auth.Claims{}
			c.Subject = strings.TrimPrefix(tok, "tok-")
			return c, nil
		},
	}), reg
}

func TestSignInAPI(t *testing.T) {
	h, _ := testAPI()
	tests := []struct {
		name, path, body, ctype, origin, auth, cookie string
		method                                        string
		status                                        int
		contains                                      string
	}{
		{"redeem", "invite", `{"invite":"good","device":"phone"}`, "application/json", "", "", "", "POST", 200, `"access_token":"tok-user:ann"`},
		{"redeem a bad invite", "invite", `{"invite":"bad"}`, "application/json", "", "", "", "POST", 401, "invalid_grant"},
		{"a form from another site", "invite", `invite=good`, "application/x-www-form-urlencoded", "", "", "", "POST", 415, "application/json"},
		{"another origin", "invite", `{"invite":"good"}`, "application/json", "https://evil.example", "", "", "POST", 403, "own origin"},
		{"GET", "refresh", ``, "application/json", "", "", "", "GET", 405, "POST"},
		{"refresh without cookie", "refresh", `{}`, "application/json", "", "", "", "POST", 204, ""},
		{"refresh", "refresh", `{}`, "application/json", "", "", "s1.x", "POST", 200, `"msg_key"`},
		{"refresh with a bad cookie", "refresh", `{}`, "application/json", "", "", "s1.y", "POST", 401, "invalid_grant"},
		{"create without a token", "create", `{"home":"h1","role":"member"}`, "application/json", "", "", "", "POST", 401, "Bearer"},
		{"create with a bad token", "create", `{"home":"h1","role":"member"}`, "application/json", "", "Bearer forged", "", "POST", 401, "refused"},
		{"create by a non-admin", "create", `{"home":"h1","role":"member"}`, "application/json", "", "Bearer tok-user:bob", "", "POST", 403, "only an admin"},
		{"list by a non-admin", "list", `{"home":"h1"}`, "application/json", "", "Bearer tok-user:bob", "", "POST", 403, "only an admin"},
		{"list", "list", `{"home":"h1"}`, "application/json", "", "Bearer tok-user:ann", "", "POST", 200, `"device":"phone"`},
		{"remove another home's device", "remove", `{"home":"h1","id":"s9"}`, "application/json", "", "Bearer tok-user:ann", "", "POST", 404, "no device"},
		{"remove by a non-admin", "remove", `{"home":"h1","id":"s1"}`, "application/json", "", "Bearer tok-user:bob", "", "POST", 403, "only an admin"},
		{"create", "create", `{"home":"h1","role":"member"}`, "application/json", "", "Bearer tok-user:ann", "", "POST", 200, `"qr":"data:image/png;base64,`},
		{"unknown endpoint", "nope", `{}`, "application/json", "", "", "", "POST", 404, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "https://hub.example"+Path+tt.path, strings.NewReader(tt.body))
			r.Header.Set("Content-Type", tt.ctype)
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			if tt.cookie != "" {
				r.AddCookie(&http.Cookie{Name: Cookie, Value: tt.cookie})
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.status || !strings.Contains(w.Body.String(), tt.contains) {
				t.Fatalf("%d %s, want %d with %q", w.Code, w.Body, tt.status, tt.contains)
			}
			if w.Header().Get("Cache-Control") != "no-store" {
				t.Error("no Cache-Control: no-store")
			}
		})
	}
}

// TestSignInCookie: the sign-in cookie is HttpOnly, Secure, SameSite=Strict
// and scoped to the API; signing out clears it and removes the sign-in.
func TestSignInCookie(t *testing.T) {
	h, reg := testAPI()
	r := httptest.NewRequest("POST", "https://hub.example"+Path+"invite", strings.NewReader(`{"invite":"good"}`))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	c := w.Result().Cookies()
	if len(c) != 1 || c[0].Name != Cookie || c[0].Value != "s1.x" || !c[0].HttpOnly || !c[0].Secure || c[0].SameSite != http.SameSiteStrictMode || c[0].Path != Path || c[0].MaxAge <= 0 {
		t.Fatalf("cookie %+v", c)
	}
	r = httptest.NewRequest("POST", "https://hub.example"+Path+"signout", strings.NewReader(`{}`))
	r.Header.Set("Content-Type", "application/json")
	r.AddCookie(&http.Cookie{Name: Cookie, Value: "s1.x"})
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if c := w.Result().Cookies(); w.Code != 204 || len(c) != 1 || c[0].MaxAge >= 0 || reg.removed != "s1" {
		t.Fatalf("signout: %d, cookies %+v, removed %q", w.Code, c, reg.removed)
	}
}
