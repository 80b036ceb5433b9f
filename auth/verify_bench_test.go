package auth

import (
	"crypto/ed25519"
	"testing"
	"time"
)

// BenchmarkVerify is the whole check of a token at CONNECT: header, the
// Ed25519 signature, the claims' JSON, times, issuer, audience and the
// revocation list. BenchmarkEd25519 is the signature alone, so that the
// docs can say what a verified-token cache could save and what it cannot.
func BenchmarkVerify(b *testing.B) {
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
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
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
