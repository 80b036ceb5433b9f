package auth

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// cacheFixture is a verifier with a revocation list, an issuer over the
// same keys and a clock the test moves.
type cacheFixture struct {
	keys *KeySet
	revs *Revocations
	is   *Issuer
	v    *Verifier
	now  time.Time
}

func newCacheFixture(t testing.TB) *cacheFixture {
	t.Helper()
	f := &cacheFixture{keys: NewMemoryKeys(), now: time.Now()}
	var err error
	if f.revs, err = LoadRevocations(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	f.is = NewIssuer(Config{}, f.keys)
	f.v = NewVerifier(Config{}, f.keys, f.revs)
	f.v.now = func() time.Time { return f.now }
	return f
}

func (f *cacheFixture) mint(t testing.TB, s Spec) (string, *Claims) {
	t.Helper()
	if s.Sub == "" {
		s.Sub = "user:alice"
	}
	if s.Homes == nil {
		s.Homes = map[string]string{"h1": "viewer"}
	}
	tok, c, err := f.is.Mint(s)
	if err != nil {
		t.Fatal(err)
	}
	return tok, c
}

func TestVerifyCacheHitSkipsSignature(t *testing.T) {
	f := newCacheFixture(t)
	tok, _ := f.mint(t, Spec{TTL: time.Hour})
	for i := range 3 {
		c, err := f.v.Verify(tok)
		if err != nil {
			t.Fatalf("verify %d: %v", i, err)
		}
		// A caller that changes its claims must not change the cached ones.
		c.Homes["h1"] = "admin"
		c.Homes["h2"] = "admin"
		c.Subject = "user:mallory"
		c.Audience[0] = "x"
		c.ExpiresAt.Time = c.ExpiresAt.Add(24 * time.Hour)
	}
	if n := f.v.fullChecks.Load(); n != 1 {
		t.Fatalf("%d full checks for 3 verifications of one token, want 1", n)
	}
	c, err := f.v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "user:alice" || len(c.Homes) != 1 || c.Homes["h1"] != "viewer" || c.Audience[0] != DefaultAudience {
		t.Fatalf("a caller changed the cached claims: %+v", c)
	}
}

// TestVerifyCacheRechecksOnHit: whatever can change after a token was
// verified is checked again on a cache hit, at once, without the
// signature check (except a key gone, which is checked in full).
func TestVerifyCacheRechecksOnHit(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		// change happens after the token was verified and cached.
		change func(t *testing.T, f *cacheFixture, c *Claims)
		want   Reason
		full   bool // the second verification is a full check
	}{
		{name: "unchanged", change: func(*testing.T, *cacheFixture, *Claims) {}},
		{name: "past exp within leeway", change: func(_ *testing.T, f *cacheFixture, c *Claims) {
			f.now = c.ExpiresAtTime().Add(DefaultLeeway - time.Second)
		}},
		{name: "expired", want: ReasonExpired, change: func(_ *testing.T, f *cacheFixture, c *Claims) {
			f.now = c.ExpiresAtTime().Add(DefaultLeeway)
		}},
		{name: "clock back before iat", want: ReasonNotYetValid, change: func(_ *testing.T, f *cacheFixture, c *Claims) {
			f.now = c.IssuedAtTime().Add(-time.Hour)
		}},
		{name: "jti revoked", want: ReasonRevoked, change: func(t *testing.T, f *cacheFixture, c *Claims) {
			mustRevoke(t, f, Revocation{JTI: c.ID})
		}},
		{name: "sub revoked", want: ReasonRevoked, change: func(t *testing.T, f *cacheFixture, c *Claims) {
			mustRevoke(t, f, Revocation{Sub: c.Subject, At: c.IssuedAtTime().Unix()})
		}},
		{name: "other sub revoked", change: func(t *testing.T, f *cacheFixture, c *Claims) {
			mustRevoke(t, f, Revocation{Sub: "user:bob", At: c.IssuedAtTime().Unix()})
		}},
		{name: "refresh family revoked", spec: Spec{Root: "fam1"}, want: ReasonRevoked, change: func(t *testing.T, f *cacheFixture, c *Claims) {
			mustRevoke(t, f, Revocation{JTI: "fam1"})
		}},
		{name: "key rotated out", want: ReasonUnknownKey, full: true, change: func(t *testing.T, f *cacheFixture, c *Claims) {
			if _, err := f.keys.Rotate(-1); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "key rotated, kept", change: func(t *testing.T, f *cacheFixture, c *Claims) {
			if _, err := f.keys.Rotate(time.Hour); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		for _, shared := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/shared=%v", tc.name, shared), func(t *testing.T) {
				f := newCacheFixture(t)
				verify := f.v.Verify
				if shared {
					verify = f.v.VerifyShared
				}
				tok, c := f.mint(t, tc.spec)
				if _, err := verify(tok); err != nil {
					t.Fatalf("first verification: %v", err)
				}
				tc.change(t, f, c)
				before := f.v.fullChecks.Load()
				got, err := verify(tok)
				if r := ReasonOf(err); r != tc.want {
					t.Fatalf("reason %q (%v), want %q", r, err, tc.want)
				}
				if tc.want == "" && (got == nil || got.ID != c.ID) {
					t.Fatalf("claims %+v, want jti %q", got, c.ID)
				}
				if full := f.v.fullChecks.Load() != before; full != tc.full {
					t.Fatalf("full check %v, want %v", full, tc.full)
				}
				if tc.want != "" {
					// Refused once, refused again, from the cache or not.
					if _, err := verify(tok); ReasonOf(err) != tc.want {
						t.Fatalf("second refusal: %v, want %q", err, tc.want)
					}
				}
			})
		}
	}
}

// TestVerifySharedCopiesNothing: VerifyShared hands every caller of one
// token the cached claims themselves (nothing copied on a hit, one copy
// kept on a miss), while Verify still hands out copies of its own.
func TestVerifySharedCopiesNothing(t *testing.T) {
	f := newCacheFixture(t)
	tok, _ := f.mint(t, Spec{TTL: time.Hour})
	first, err := f.v.VerifyShared(tok)
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.v.VerifyShared(tok)
	if err != nil {
		t.Fatal(err)
	}
	if first != again {
		t.Error("a cache hit of VerifyShared copied the claims")
	}
	own, err := f.v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if own == first {
		t.Error("Verify handed out the shared claims")
	}
	if n := f.v.fullChecks.Load(); n != 1 {
		t.Fatalf("%d full checks, want 1", n)
	}
}

func mustRevoke(t *testing.T, f *cacheFixture, r Revocation) {
	t.Helper()
	if err := f.revs.Add(r); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyCacheTamperedTokenMisses: a token one byte away from a cached
// one misses the cache and is refused; refusals are not cached.
func TestVerifyCacheTamperedTokenMisses(t *testing.T) {
	f := newCacheFixture(t)
	tok, _ := f.mint(t, Spec{})
	if _, err := f.v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	sig := strings.LastIndexByte(tok, '.') // header, payload and signature
	for _, at := range []int{10, sig - 5, len(tok) - 10} {
		t.Run(fmt.Sprintf("byte %d", at), func(t *testing.T) {
			b := []byte(tok)
			if b[at] == 'A' {
				b[at] = 'B'
			} else {
				b[at] = 'A'
			}
			bad := string(b)
			for i := range 2 {
				before := f.v.fullChecks.Load()
				if _, err := f.v.Verify(bad); err == nil {
					t.Fatalf("verification %d: tampered token accepted", i)
				}
				if f.v.fullChecks.Load() == before {
					t.Fatalf("verification %d: tampered token was not checked in full", i)
				}
			}
		})
	}
	if n := f.v.cache.len(); n != 1 {
		t.Fatalf("cache holds %d entries, want 1 (refusals are never cached)", n)
	}
}

func TestVerifyCacheBound(t *testing.T) {
	f := newCacheFixture(t)
	const bound = 8
	f.v.cache = newVerifiedCache(bound)
	var toks []string
	for range 3 * bound {
		tok, _ := f.mint(t, Spec{})
		toks = append(toks, tok)
		if _, err := f.v.Verify(tok); err != nil {
			t.Fatal(err)
		}
		if n := f.v.cache.len(); n > bound {
			t.Fatalf("cache holds %d entries, bound %d", n, bound)
		}
	}
	// Every token still verifies, evicted or not.
	for _, tok := range toks {
		if _, err := f.v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.v.cache.len(); n != bound {
		t.Fatalf("cache holds %d entries, want %d", n, bound)
	}
}

// TestVerifyCacheConcurrent is for the race detector: hits, misses,
// evictions and revocations at once.
func TestVerifyCacheConcurrent(t *testing.T) {
	f := newCacheFixture(t)
	f.v.cache = newVerifiedCache(4)
	var toks []string
	for range 8 {
		tok, _ := f.mint(t, Spec{})
		toks = append(toks, tok)
	}
	_, revoked := f.mint(t, Spec{Sub: "user:bob"})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				if _, err := f.v.Verify(toks[(g+i)%len(toks)]); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		if err := f.revs.Add(Revocation{JTI: revoked.ID}); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
}
