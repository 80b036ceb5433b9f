package registry

import (
	"errors"
	"strings"
	"testing"
)

func TestIntegrationCredentials(t *testing.T) {
	r, _ := openTest(t)
	if _, err := r.AddHome("h1"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		home, id, role string
		want           error
	}{
		{"h1", "ha", "admin", ErrInvalid},
		{"h1", "ha", "agent", ErrInvalid},
		{"h1", "HA", "service", ErrInvalid},
		{"nope", "ha", "service", ErrNotFound},
	} {
		if _, _, err := r.AddIntegration(tt.home, tt.id, tt.role); !errors.Is(err, tt.want) {
			t.Errorf("AddIntegration(%q, %q, %q) = %v, want %v", tt.home, tt.id, tt.role, err, tt.want)
		}
	}
	in, cred, err := r.AddIntegration("h1", "ha", "service")
	if err != nil || in.Role != "service" || !strings.HasPrefix(cred, IntegrationCredentialPrefix+"ha.") {
		t.Fatalf("AddIntegration = %+v, %q, %v", in, cred, err)
	}
	if _, _, err := r.AddIntegration("h1", "ha", "viewer"); !errors.Is(err, ErrExists) {
		t.Fatalf("second add: %v, want ErrExists", err)
	}
	if got, err := r.CheckIntegration("ha", cred); err != nil || got.Home != "h1" || got.Role != "service" {
		t.Fatalf("CheckIntegration(right) = %+v, %v", got, err)
	}
	for name, c := range map[string][2]string{
		"other id":     {"nr", cred},
		"wrong secret": {"ha", otherSecret(cred)},
		"no prefix":    {"ha", strings.TrimPrefix(cred, IntegrationCredentialPrefix)},
		"short":        {"ha", IntegrationCredentialPrefix + "ha.abc"},
		"a JWT":        {"ha", "eyJ.eyJ.sig"},
	} {
		if _, err := r.CheckIntegration(c[0], c[1]); !errors.Is(err, ErrDenied) {
			t.Errorf("%s: %v, want ErrDenied", name, err)
		}
	}
	in, fresh, err := r.RotateIntegration("h1", "ha", "viewer")
	if err != nil || in.Role != "viewer" || in.Rotated.IsZero() {
		t.Fatalf("RotateIntegration = %+v, %v", in, err)
	}
	if _, err := r.CheckIntegration("ha", cred); !errors.Is(err, ErrDenied) {
		t.Errorf("old credential after rotate: %v, want ErrDenied", err)
	}
	if got, err := r.CheckIntegration("ha", fresh); err != nil || got.Role != "viewer" {
		t.Errorf("new credential: %+v, %v", got, err)
	}
	if list, err := r.Integrations("h1"); err != nil || len(list) != 1 || list[0].ID != "ha" {
		t.Errorf("Integrations = %+v, %v", list, err)
	}
	if err := r.RemoveHome("h1"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "integration") {
		t.Errorf("RemoveHome with an integration: %v, want ErrInvalid naming it", err)
	}
	if err := r.RemoveIntegration("h1", "ha"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CheckIntegration("ha", fresh); !errors.Is(err, ErrDenied) {
		t.Errorf("after remove: %v, want ErrDenied", err)
	}
	if err := r.RemoveIntegration("h1", "ha"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second remove: %v, want ErrNotFound", err)
	}
}

// otherSecret returns cred with one character of its secret changed, so it
// always decodes to different bytes (a fixed replacement could equal the
// original by chance).
func otherSecret(cred string) string {
	b := []byte(cred)
	i := len(b) - 5
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestDoorGrants(t *testing.T) {
	r, _ := openTest(t)
	if _, err := r.AddHome("h1"); err != nil {
		t.Fatal(err)
	}
	if r.DoorGranted("h1", "pi1", "door") {
		t.Fatal("a door is granted by default")
	}
	if err := r.SetDoorGrant("h1", "pi1", "door", true); err != nil {
		t.Fatal(err)
	}
	if !r.DoorGranted("h1", "pi1", "door") || r.DoorGranted("h1", "pi1", "gate") || r.DoorGranted("h2", "pi1", "door") {
		t.Fatal("the grant is not exactly for h1/pi1/door")
	}
	if list, _ := r.Integrations(""); len(list) != 0 {
		t.Errorf("a door grant is listed as an integration: %+v", list)
	}
	if g, err := r.DoorGrants("h1"); err != nil || len(g) != 1 || g[0].Device != "door" {
		t.Errorf("DoorGrants = %+v, %v", g, err)
	}
	if err := r.SetDoorGrant("h1", "pi1", "door", false); err != nil || r.DoorGranted("h1", "pi1", "door") {
		t.Fatalf("deny: %v, still granted %v", err, r.DoorGranted("h1", "pi1", "door"))
	}
	if err := r.SetDoorGrant("h1", "Pi1", "door", true); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad agent id: %v, want ErrInvalid", err)
	}
	// a removed home takes its door grants with it
	if err := r.SetDoorGrant("h1", "pi1", "door", true); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveHome("h1"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddHome("h1"); err != nil {
		t.Fatal(err)
	}
	if r.DoorGranted("h1", "pi1", "door") {
		t.Error("a door grant outlived its home")
	}
}
