package cluster

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecret(t *testing.T) {
	s := NewSecret()
	back, err := ParseSecret(s.String())
	if err != nil || !bytes.Equal(back.Key("a", 32), s.Key("a", 32)) {
		t.Fatalf("ParseSecret(String()) = %v, %v: want the same secret", back, err)
	}
	if bytes.Equal(s.Key("a", 32), s.Key("b", 32)) {
		t.Error("two labels gave the same key")
	}
	if bytes.Equal(s.Key("a", 32), NewSecret().Key("a", 32)) {
		t.Error("two secrets gave the same key")
	}
	for _, bad := range []string{"", "short", strings.Repeat("A", 44), "!!" + s.String()[2:]} {
		if _, err := ParseSecret(bad); err == nil || !strings.Contains(err.Error(), "homemq cluster secret") {
			t.Errorf("ParseSecret(%q) = %v, want an error saying how to make one", bad, err)
		}
	}
	p := filepath.Join(t.TempDir(), "cluster.secret")
	if _, err := LoadSecret(p); err == nil || !strings.Contains(err.Error(), "copy it to each node") {
		t.Errorf("LoadSecret(missing) = %v, want how to make and share it", err)
	}
	if err := os.WriteFile(p, []byte(s.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadSecret(p); err != nil || !bytes.Equal(got.Key("x", 16), s.Key("x", 16)) {
		t.Errorf("LoadSecret = %v, want the secret written", err)
	}
}
