package auth

import (
	"testing"
	"time"
)

// TestPruneWritesOnlyWhenSomethingExpired: the broker prunes every minute;
// a prune that drops nothing must not rewrite revocations.json (a rewrite
// from memory is how a revocation written beside a running broker got lost,
// and every write is a chance to lose the file in a crash).
func TestPruneWritesOnlyWhenSomethingExpired(t *testing.T) {
	dir := t.TempDir()
	revs, err := LoadRevocations(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, e := range []Revocation{
		{JTI: "short", At: now.Unix(), Until: now.Add(time.Hour).Unix()},
		{Sub: "user:bob", At: now.Unix(), Until: now.Add(2 * time.Hour).Unix()},
	} {
		if err := revs.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	before := revs.saves
	for _, tc := range []struct {
		name    string
		at      time.Time
		rewrite bool
		left    int
	}{
		{"nothing expired", now.Add(time.Minute), false, 2},
		{"nothing expired, later", now.Add(30 * time.Minute), false, 2},
		{"one expired", now.Add(90 * time.Minute), true, 1},
		{"nothing more expired", now.Add(100 * time.Minute), false, 1},
	} {
		if err := revs.Prune(tc.at); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		after := revs.saves
		if rewritten := after != before; rewritten != tc.rewrite {
			t.Errorf("%s: rewritten %v, want %v", tc.name, rewritten, tc.rewrite)
		}
		before = after
		again, err := LoadRevocations(dir)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(again.List()); n != tc.left {
			t.Errorf("%s: the file holds %d entries, want %d", tc.name, n, tc.left)
		}
	}
}
