package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"homemq/agent"
	"homemq/auth"
	"homemq/envelope"
)

// ownerStep is what e2e/node/webapp-owner.test.mjs saw on one screen size.
type ownerStep struct {
	DoorState        string // the door's badge before anything is pressed
	DoorWho          string
	ArmedText        string // the Unlock button after the first tap
	DoorPinsAfterTap int    // door pin changes between the first and the second tap
	DoorResult       string // after the second tap
	DoorResultFaded  bool   // the result gave way ...
	DoorAfter        string // ... to the door's real state
	LampResult       string
	LampAfter        string
	OfflineStatus    string
	OfflineDisabled  int // lamp and door buttons disabled while the agent is down
	OfflineWhy       string
	OfflineStale     string
	OfflineAge       string
	OnlineEnabled    int // buttons enabled again after it is back
	OnlineStale      string
	Overflow         bool // the page scrolls sideways
	DevicesPerRow    int  // device cards side by side
}

// ownerResult is the script's one JSON line.
type ownerResult struct {
	Phone, Desktop ownerStep
	Manifest       struct {
		Name, Display, StartURL string
		Icons                   int
	}
	Worker        string // the active service worker's script URL
	Cached        []string
	CacheHasToken bool
	Storage       int
	ConsoleErrors []string
	Screenshots   []string
	Error         string
}

// TestWebAppHomeOwner drives the page as a home owner would, in Chromium on
// a phone (390×844) and a desktop: the door shows locked and unlocks only on
// a second tap (the pin does not move on the first); a command's result
// shows with its time and then gives way to the device's real state; when
// the agent dies its devices turn stale and their buttons are disabled with a
// line saying why, and they come back with it; the app is installable
// (manifest, icons, service worker) and no token is kept in Cache Storage.
func TestWebAppHomeOwner(t *testing.T) {
	chromium := needTool(t, "chromium")
	b := startBroker(t)
	pi := startAgent(t, agentConfig(t, b), agent.Options{}) // h1/pi1: lamp, door, button, fan
	if _, err := b.Registry.AddMember(agentHome, "user:olive", "admin"); err != nil {
		t.Fatal(err)
	}
	tok, claims := b.mintSpec(auth.Spec{Sub: "user:olive", Homes: map[string]string{agentHome: "admin"}, TTL: 10 * time.Minute})
	signin, _ := json.Marshal(map[string]any{"token": tok, "msg_key": envelope.EncodeKey(b.MessageKey(claims.ID))})

	// the script kills and revives the agent, and counts pin changes, here
	ctl := http.NewServeMux()
	ctl.HandleFunc("POST /kill", func(w http.ResponseWriter, _ *http.Request) { pi.net.cut() })
	ctl.HandleFunc("POST /revive", func(w http.ResponseWriter, _ *http.Request) { pi.net.restore() })
	ctl.HandleFunc("GET /pins", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]int{"door": len(pi.pin(doorPin).History()), "lamp": len(pi.pin(lampPin).History())})
	})
	control := httptest.NewServer(ctl)
	t.Cleanup(control.Close)

	artifacts := filepath.Join(repoRoot(), "e2e", "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	p := startNode(t, "webapp-owner.test.mjs", map[string]string{
		"CHROMIUM":  chromium,
		"BASE_URL":  "https://" + b.Addrs()["https"] + "/",
		"SPKI":      spkiHash(t, b),
		"ARTIFACTS": artifacts,
		"SIGNIN":    string(signin),
		"CONTROL":   control.URL,
		"AGENT":     agentHome + "/" + agentID,
	})
	var res ownerResult
	p.wait(150*time.Second, &res)
	t.Logf("screenshots: %v", res.Screenshots)
	if len(res.ConsoleErrors) > 0 {
		t.Errorf("the page logged errors (CSP violations?): %q", res.ConsoleErrors)
	}
	for name, s := range map[string]ownerStep{"phone": res.Phone, "desktop": res.Desktop} {
		if s.DoorState != "Locked" || !strings.Contains(s.DoorWho, "Admins and members") {
			t.Errorf("%s: the door shows %q, who may: %q", name, s.DoorState, s.DoorWho)
		}
		if s.ArmedText != "Tap again to unlock" || s.DoorPinsAfterTap != 0 {
			t.Errorf("%s: after one tap the button says %q and the door pin changed %d times; want a request to confirm and no change", name, s.ArmedText, s.DoorPinsAfterTap)
		}
		if !strings.HasPrefix(s.DoorResult, "Unlocked at ") || !s.DoorResultFaded || s.DoorAfter != "Locked" {
			t.Errorf("%s: door result %q (faded %v), then %q; want Unlocked at …, then Locked", name, s.DoorResult, s.DoorResultFaded, s.DoorAfter)
		}
		if !strings.HasPrefix(s.LampResult, "Turned on at ") || s.LampAfter != "On" {
			t.Errorf("%s: lamp result %q, then %q", name, s.LampResult, s.LampAfter)
		}
		if s.OfflineStatus != "offline" || s.OfflineDisabled != 4 || !strings.Contains(s.OfflineWhy, "offline") || s.OfflineStale != "true" || !strings.Contains(s.OfflineAge, "Last known state") {
			t.Errorf("%s: with the agent dead: status %q, %d of 4 buttons disabled, why %q, stale %q, age %q",
				name, s.OfflineStatus, s.OfflineDisabled, s.OfflineWhy, s.OfflineStale, s.OfflineAge)
		}
		if s.OnlineEnabled != 4 || s.OnlineStale != "false" {
			t.Errorf("%s: with the agent back: %d of 4 buttons enabled, stale %q", name, s.OnlineEnabled, s.OnlineStale)
		}
		if s.Overflow {
			t.Errorf("%s: the page scrolls sideways", name)
		}
	}
	if res.Desktop.DevicesPerRow < 2 {
		t.Errorf("on a desktop the devices sit %d to a row; want a grid", res.Desktop.DevicesPerRow)
	}
	if res.Manifest.Name != "homemq" || res.Manifest.Display != "standalone" || res.Manifest.StartURL != "/" || res.Manifest.Icons < 2 {
		t.Errorf("manifest: %+v", res.Manifest)
	}
	if !strings.HasSuffix(res.Worker, "/sw.js") {
		t.Errorf("service worker %q, want /sw.js active", res.Worker)
	}
	if len(res.Cached) == 0 {
		t.Error("the service worker cached nothing")
	}
	for _, u := range res.Cached {
		if pu, err := url.Parse(u); err != nil || strings.HasPrefix(pu.Path, "/api/") || pu.Path == "/mqtt" || pu.RawQuery != "" {
			t.Errorf("Cache Storage holds %s: only the app shell may be cached", u)
		}
	}
	if res.CacheHasToken {
		t.Error("a token is in Cache Storage")
	}
	if res.Storage != 0 {
		t.Errorf("the page stored %d items in web storage or cookies", res.Storage)
	}
}

// TestWebAppInstallable: the manifest the page links is valid JSON naming
// the app, a standalone display and PNG icons of the sizes it claims.
func TestWebAppInstallable(t *testing.T) {
	b := startBroker(t)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}, Timeout: 10 * time.Second}
	base := "https://" + b.Addrs()["https"]
	get := func(path string) ([]byte, string) {
		t.Helper()
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		return body, resp.Header.Get("Content-Type")
	}
	page, _ := get("/")
	if !bytes.Contains(page, []byte(`rel="manifest" href="/manifest.webmanifest"`)) {
		t.Fatal("the page links no manifest")
	}
	body, ctype := get("/manifest.webmanifest")
	if ctype != "application/manifest+json" {
		t.Errorf("manifest Content-Type %q", ctype)
	}
	var m struct {
		Name     string `json:"name"`
		StartURL string `json:"start_url"`
		Display  string `json:"display"`
		Icons    []struct{ Src, Sizes, Type, Purpose string }
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("manifest is not JSON: %v", err)
	}
	if m.Name == "" || m.Display != "standalone" || m.StartURL != "/" {
		t.Errorf("manifest %+v", m)
	}
	sizes := map[string]bool{}
	for _, ic := range m.Icons {
		if ic.Type != "image/png" {
			continue
		}
		data, ctype := get(ic.Src)
		cfg, err := png.DecodeConfig(bytes.NewReader(data))
		if err != nil || ctype != "image/png" {
			t.Errorf("icon %s: %v (%s)", ic.Src, err, ctype)
			continue
		}
		if got := fmt.Sprintf("%dx%d", cfg.Width, cfg.Height); got != ic.Sizes {
			t.Errorf("icon %s is %s, the manifest says %s", ic.Src, got, ic.Sizes)
		}
		sizes[ic.Sizes] = true
	}
	if !sizes["192x192"] || !sizes["512x512"] {
		t.Errorf("PNG icon sizes %v; an installable app needs 192x192 and 512x512", sizes)
	}
	if _, ctype := get("/sw.js"); !strings.HasPrefix(ctype, "text/javascript") {
		t.Errorf("sw.js served as %q", ctype)
	}
}
