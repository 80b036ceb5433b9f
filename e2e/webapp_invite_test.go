package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"homemq/agent"
	"homemq/auth"
	"homemq/envelope"
	"homemq/signin"
)

// inviteResult is what e2e/node/webapp-invite.test.mjs reports.
type inviteResult struct {
	AddressBar, Sub, AfterReload, Result string
	ScriptCookies                        string
	Storage                              int
	Cookies                              []struct {
		Name, Path, SameSite string
		HttpOnly, Secure     bool
	}
	AfterRemove, SecondUse string
	AppInviteText          string
	AppInviteQR            bool
	AppInviteOverflow      bool
	AppInviteRole          string
	AppInviteButtons       int
	AppInviteUser          string
	PhoneListed            string
	AppRemoved             string
	URLs                   []string
	ConsoleErrors          []string
	Screenshots            []string
	Error                  string
}

// TestWebAppInvite: an invite link signs a phone in without pasting
// anything; the sign-in survives a reload in an HttpOnly, Secure,
// SameSite=Strict cookie no script can read, and no token is stored; a
// command works; when the admin removes the device's sign-in the page is
// back at the sign-in form; the invite does not work a second time.
func TestWebAppInvite(t *testing.T) {
	chromium := needTool(t, "chromium")
	b := startBroker(t)
	startAgent(t, agentConfig(t, b), agent.Options{}) // h1/pi1: lamp, door, button, fan
	inv, secret, err := b.Registry.AddInvite(agentHome, "member", "user:nina", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctl := http.NewServeMux()
	ctl.HandleFunc("POST /remove", func(w http.ResponseWriter, _ *http.Request) {
		list, _ := b.Registry.SignIns(inv.User)
		for _, s := range list {
			_ = b.Registry.RemoveSignIn(s.ID)
		}
	})
	control := httptest.NewServer(ctl)
	t.Cleanup(control.Close)
	artifacts := filepath.Join(repoRoot(), "e2e", "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	base := "https://" + b.Addrs()["https"] + "/"
	if _, err := b.Registry.AddMember(agentHome, "user:ada", "admin"); err != nil {
		t.Fatal(err)
	}
	adminTok, admin := b.mintSpec(auth.Spec{Sub: "user:ada", Homes: map[string]string{agentHome: "admin"}, TTL: 10 * time.Minute})
	adminJSON, _ := json.Marshal(map[string]any{"token": adminTok, "msg_key": envelope.EncodeKey(b.MessageKey(admin.ID))})
	p := startNode(t, "webapp-invite.test.mjs", map[string]string{
		"ADMIN_JSON": string(adminJSON),
		"CHROMIUM":   chromium, "BASE_URL": base, "SPKI": spkiHash(t, b), "ARTIFACTS": artifacts,
		"INVITE": base + "#invite=" + secret, "CONTROL": control.URL, "DEVICE": agentHome + "/" + agentID + "/lamp",
	})
	var res inviteResult
	p.wait(90*time.Second, &res)
	t.Logf("screenshots: %v", res.Screenshots)
	if res.Sub != "user:nina" || res.AfterReload != "user:nina" || !strings.HasPrefix(res.Result, "Turned on at") {
		t.Errorf("signed in as %q, after a reload %q, command %q", res.Sub, res.AfterReload, res.Result)
	}
	if strings.Contains(res.AddressBar, "invite=") {
		t.Errorf("the invite stayed in the address bar: %s", res.AddressBar)
	}
	for _, u := range res.URLs {
		if strings.Contains(u, secret) {
			t.Errorf("the invite went to a server in a URL: %s", u)
		}
	}
	if res.ScriptCookies != "" || res.Storage != 0 {
		t.Errorf("script-readable cookies %q, web storage %d", res.ScriptCookies, res.Storage)
	}
	if len(res.Cookies) != 1 || res.Cookies[0].Name != signin.Cookie || res.Cookies[0].Path != signin.Path ||
		!res.Cookies[0].HttpOnly || !res.Cookies[0].Secure || res.Cookies[0].SameSite != "Strict" {
		t.Errorf("cookies %+v, want one HttpOnly Secure SameSite=Strict %s for %s", res.Cookies, signin.Cookie, signin.Path)
	}
	if !strings.Contains(res.AfterRemove, "sign in again") {
		t.Errorf("after the admin removed the sign-in the page says %q", res.AfterRemove)
	}
	if !strings.Contains(res.SecondUse, "does not work any more") {
		t.Errorf("the invite a second time: %q", res.SecondUse)
	}
	if !strings.Contains(res.AppInviteText, "as viewer, works once until") || !res.AppInviteQR {
		t.Errorf("the admin's invite in the app: %q, QR code shown %v", res.AppInviteText, res.AppInviteQR)
	}
	if res.AppInviteOverflow {
		t.Error("with the invite box open the page scrolls sideways on a phone")
	}
	if res.AppInviteRole != "viewer" || res.AppInviteButtons != 0 {
		t.Errorf("signed in by the app's invite: role %q, %d buttons", res.AppInviteRole, res.AppInviteButtons)
	}
	if !strings.HasPrefix(res.AppInviteUser, "user:guest-") || !strings.Contains(res.PhoneListed, "Chrom") {
		t.Errorf("the admin's list of phones shows %q for %q", res.PhoneListed, res.AppInviteUser)
	}
	if !strings.Contains(res.AppRemoved, "no longer signed in") {
		t.Errorf("after the admin signed the phone out in the app, it shows %q", res.AppRemoved)
	}
	if len(res.ConsoleErrors) > 0 {
		t.Errorf("console errors: %q", res.ConsoleErrors)
	}
}

// TestMemberInviteCLI: homemq member invite against the running broker
// prints a one-time link for the URL given; redeeming it yields a token
// and a sign-in cookie; member signins lists the device, member signout
// removes it, and the device's next refresh is refused; homemq revoke
// --sub ends a user's device sign-ins too.
func TestMemberInviteCLI(t *testing.T) {
	b := startBroker(t)
	srv := b.Addrs()["https"]
	mustCLI(t, b.Data, srv, "home", "add", "h1")
	out := mustCLI(t, b.Data, srv, "member", "invite", "--home", "h1", "--role", "viewer", "--user", "vic", "--url", "https://hub.example:8443", "--ttl", "10m")
	m := regexp.MustCompile(`https://hub\.example:8443/#invite=([A-Za-z0-9_-]{43})`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "user:vic") || strings.Contains(out, "\x1b[") {
		t.Fatalf("member invite printed (no QR code when not on a terminal):\n%s", out)
	}
	if _, err := tokCLI(t, b.Data, srv, "member", "invite", "--home", "h1", "--role", "owner"); err == nil || !strings.Contains(err.Error(), "owner") {
		t.Fatalf("an invite with a bad role: %v", err)
	}

	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}, Jar: jar, Timeout: 10 * time.Second}
	post := func(what, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", "https://"+srv+signin.Path+what, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ans map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&ans)
		return resp.StatusCode, ans
	}
	if code, ans := post("invite", `{"invite":"`+m[1]+`","device":"a test phone"}`); code != 200 || ans["access_token"] == nil || ans["msg_key"] == nil {
		t.Fatalf("redeem: %d %v", code, ans)
	}
	if code, ans := post("refresh", `{}`); code != 200 || ans["access_token"] == nil {
		t.Fatalf("refresh: %d %v", code, ans)
	}
	list := mustCLI(t, b.Data, srv, "member", "signins", "--user", "vic")
	id := regexp.MustCompile(`(?m)^([0-9a-f]{16})\s+user:vic\s+a test phone`).FindStringSubmatch(list)
	if id == nil {
		t.Fatalf("member signins:\n%s", list)
	}
	mustCLI(t, b.Data, srv, "member", "signout", "--id", id[1])
	if code, ans := post("refresh", `{}`); code != 401 || !strings.Contains(fmt.Sprint(ans["error_description"]), "sign in again") {
		t.Fatalf("refresh after signout: %d %v", code, ans)
	}
	if code, _ := post("invite", `{"invite":"`+m[1]+`"}`); code != 401 {
		t.Fatalf("the invite a second time: %d", code)
	}

	// revoking the user ends the sign-ins of all their devices too
	out = mustCLI(t, b.Data, srv, "member", "invite", "--home", "h1", "--role", "viewer", "--user", "vic")
	m = regexp.MustCompile(`#invite=([A-Za-z0-9_-]{43})`).FindStringSubmatch(out)
	if code, _ := post("invite", `{"invite":"`+m[1]+`"}`); code != 200 {
		t.Fatalf("redeem the second invite: %d", code)
	}
	mustCLI(t, b.Data, srv, "revoke", "--sub", "user:vic")
	if code, ans := post("refresh", `{}`); code != 401 {
		t.Fatalf("refresh after homemq revoke --sub user:vic: %d %v", code, ans)
	}
}
