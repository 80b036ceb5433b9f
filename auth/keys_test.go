package auth

import (
	"strings"
	"testing"
	"time"
)

func TestKeySetAdopt(t *testing.T) {
	other := NewMemoryKeys()
	if _, err := other.Rotate(time.Hour); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		keys    []*SigningKey
		wantErr string
	}{
		{"another node's set", other.All(), ""},
		{"empty", nil, "empty"},
		{"short seed", []*SigningKey{{Kid: "k1", Seed: []byte("short")}}, `key "k1" is broken`},
		{"no kid", []*SigningKey{{Seed: make([]byte, 32)}}, `key "" is broken`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ks, err := LoadOrCreateKeys(dir)
			if err != nil {
				t.Fatal(err)
			}
			before := ks.Current().Kid
			err = ks.Adopt(tt.keys)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Adopt = %v, want an error saying %q", err, tt.wantErr)
				}
				if ks.Current().Kid != before {
					t.Fatal("a refused set replaced the keys")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := ks.Current().Kid, other.Current().Kid; got != want {
				t.Fatalf("current kid %s, want the adopted set's %s", got, want)
			}
			if _, ok := ks.Lookup(before); ok {
				t.Fatal("the replaced set's key still verifies")
			}
			if string(ks.JWKS()) != string(other.JWKS()) {
				t.Fatalf("JWKS differ:\n%s\n%s", ks.JWKS(), other.JWKS())
			}
			tok, err := ks.Sign(&Claims{})
			if err != nil || !strings.Contains(tok, ".") {
				t.Fatalf("sign with the adopted key: %v", err)
			}
			reread, err := LoadOrCreateKeys(dir)
			if err != nil {
				t.Fatal(err)
			}
			if string(reread.JWKS()) != string(other.JWKS()) {
				t.Fatal("the file does not hold the adopted set")
			}
			// the adopted set is a copy: rotating it leaves the original alone
			if _, err := ks.Rotate(time.Hour); err != nil {
				t.Fatal(err)
			}
			for _, k := range other.All() {
				if k.Kid == other.Current().Kid && k.Retired != 0 {
					t.Fatal("rotating the adopted set retired the original's key")
				}
			}
		})
	}
}

func TestZeroKeySetAdoptsAndRotates(t *testing.T) {
	var ks KeySet // never saved
	if err := ks.Adopt(NewMemoryKeys().All()); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Rotate(time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := len(ks.All()); n != 2 {
		t.Fatalf("%d keys after a rotation, want 2", n)
	}
}
