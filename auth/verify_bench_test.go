package auth

import (
	"crypto/ed25519"
	"testing"
	"time"
)

// BenchmarkVerify is the whole check of a token at CONNECT, as on a miss
// of the verified-token cache: header, the Ed25519 signature, the claims'
// JSON, times, issuer, audience and the revocation list.
// BenchmarkVerifyKnownToken is a cache hit, BenchmarkEd25519 the
// signature alone, so that the docs can say what the cache saves.
func BenchmarkVerify(b *testing.B) {
	v, tok := benchVerifier(b)
	v.cache = newVerifiedCache(0) // every Verify a miss
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyKnownToken is a reconnect with a token verified before:
// a cache hit, which still checks the clock, the revocation list and the
// key, and copies the claims.
func BenchmarkVerifyKnownToken(b *testing.B) {
	v, tok := benchVerifier(b)
	if _, err := v.Verify(tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
	if n := v.fullChecks.Load(); n != 1 {
		b.Fatalf("%d full checks, want 1", n)
	}
}

// benchVerifier returns a verifier and a valid token for it.
func benchVerifier(b *testing.B) (*Verifier, string) {
	b.Helper()
	keys := NewMemoryKeys()
	revoked, err := LoadRevocations("")
	if err != nil {
		b.Fatal(err)
	}
	v := NewVerifier(Config{}.WithDefaults(), keys, revoked)
	tok, _, err := NewIssuer(Config{}.WithDefaults(), keys).Mint(Spec{Sub: "user:alice", Homes: map[string]string{"h1": "viewer"}, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	return v, tok
}

func BenchmarkEd25519(b *testing.B) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 300) // about a homemq token's signed part
	sig := ed25519.Sign(priv, msg)
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("bad signature")
		}
	}
}

// BenchmarkVerifySharedKnownToken is BenchmarkVerifyKnownToken as the
// Guard calls it: the cached claims are handed out, not copied.
func BenchmarkVerifySharedKnownToken(b *testing.B) {
	v, tok := benchVerifier(b)
	if _, err := v.VerifyShared(tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyShared(tok); err != nil {
			b.Fatal(err)
		}
	}
}
