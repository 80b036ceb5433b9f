package broker

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLoadIssued: the floor a run starts with, from what the last run left.
func TestLoadIssued(t *testing.T) {
	now := time.Now().Unix()
	tests := []struct {
		name        string
		record      string // "" = no file
		freshSecret bool
		min, max    int64
	}{
		{"a clean stop recorded its newest iat", `{"floor":1700000000}`, false, 1700000000, 1700000000},
		{"and the commands of its last second", `{"floor":1700000000,"recent":[{"kid":"k","nonce":"n","exp":1700000030}]}`, false, 1700000000, 1700000000},
		{"nothing accepted, ever", `{"floor":0}`, false, 0, 0},
		{"no file: no broker ran on this data", "", false, 0, 0},
		{"a running mark: after a crash", `{"running":true}`, false, now + 5, now + 7},
		{"a garbled record counts as a crash", "x", false, now + 5, now + 7},
		{"a new master secret needs no floor", `{"running":true}`, true, 0, 0},
		{"a new master secret ignores an old record", `{"floor":1700000000}`, true, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Data = t.TempDir()
			b := &Broker{cfg: cfg}
			p := filepath.Join(cfg.Data, IssuedFile)
			if tc.record != "" {
				if err := os.WriteFile(p, []byte(tc.record), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.loadIssued(tc.freshSecret); err != nil {
				t.Fatal(err)
			}
			if b.issued.Floor < tc.min || b.issued.Floor > tc.max {
				t.Fatalf("floor %d, want %d to %d", b.issued.Floor, tc.min, tc.max)
			}
			if raw, err := os.ReadFile(p); err != nil || string(raw) != `{"running":true,"floor":0,"recent":null}` {
				t.Fatalf("%s is %q (%v), want the running mark: a crash of this run would reuse the last record", IssuedFile, raw, err)
			}
		})
	}
}
