package auth

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
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
		{Sub: "user:ann", At: now.Unix(), Until: now.Add(time.Hour).Unix()},
		{JTI: "long", At: now.Unix(), Until: now.Add(2 * time.Hour).Unix()},
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

// TestRevokingATokenRevokesItsRefreshFamily: a jti revocation matches the
// token, the one it was refreshed from and every token refreshed from
// either, and nothing else.
func TestRevokingATokenRevokesItsRefreshFamily(t *testing.T) {
	keys := NewMemoryKeys()
	is := NewIssuer(Config{}, keys)
	mint := func(root string) (string, *Claims) {
		t.Helper()
		tok, c, err := is.Mint(Spec{Sub: "agent:pi", Homes: map[string]string{"h1": "agent"}, Root: root})
		if err != nil {
			t.Fatal(err)
		}
		return tok, c
	}
	rootTok, root := mint("")
	childTok, child := mint(root.ID)        // refreshed from root
	grandTok, grand := mint(child.Family()) // refreshed from child: same family
	otherTok, other := mint("")
	if grand.Root != root.ID || Family(grand.ID) != root.ID {
		t.Fatalf("grandchild root %q jti %q, want the family %q", grand.Root, grand.ID, root.ID)
	}
	tokens := map[string]string{"root": rootTok, "child": childTok, "grandchild": grandTok, "other": otherTok}
	for _, tc := range []struct {
		revoke  string
		revoked map[string]bool
	}{
		{root.ID, map[string]bool{"root": true, "child": true, "grandchild": true}},
		{child.ID, map[string]bool{"root": true, "child": true, "grandchild": true}},
		{grand.ID, map[string]bool{"root": true, "child": true, "grandchild": true}},
		{other.ID, map[string]bool{"other": true}},
		{"unknown", map[string]bool{}},
	} {
		revs, _ := LoadRevocations("")
		if err := revs.Add(Revocation{JTI: tc.revoke}); err != nil {
			t.Fatal(err)
		}
		v := NewVerifier(Config{}, keys, revs)
		for name, tok := range tokens {
			c, err := v.Verify(tok)
			if got := ReasonOf(err) == ReasonRevoked; got != tc.revoked[name] {
				t.Errorf("revoke %s: %s revoked %v (%v), want %v", tc.revoke, name, got, err, tc.revoked[name])
			}
			claims := map[string]*Claims{"root": root, "child": child, "grandchild": grand, "other": other}[name]
			if got := (Revocation{JTI: tc.revoke}).Matches(claims); got != tc.revoked[name] {
				t.Errorf("revoke %s: Matches(%s) = %v, want %v (%v)", tc.revoke, name, got, tc.revoked[name], c)
			}
		}
	}
	// A jti with a dot but no root claim (another issuer's) is only itself.
	foreign := &Claims{RegisteredClaims: jwt.RegisteredClaims{ID: "a.b"}}
	if (Revocation{JTI: "a.c"}).Matches(foreign) || !(Revocation{JTI: "a.b"}).Matches(foreign) {
		t.Error("a foreign jti with a dot is matched by family")
	}
}

func TestRootMustOwnTheJTI(t *testing.T) {
	for _, tc := range []struct {
		id, root string
		ok       bool
	}{
		{"r.x", "r", true},
		{"r", "", true},
		{"s.x", "r", false},
		{"r.x.y", "r", false},
		{"r.", "r", false},
		{"r.x", "r.x", false},
	} {
		err := testClaims(func(c *Claims) { c.ID, c.Root = tc.id, tc.root }).validate()
		if (err == nil) != tc.ok {
			t.Errorf("jti %q root %q: %v, want ok %v", tc.id, tc.root, err, tc.ok)
		}
	}
}
