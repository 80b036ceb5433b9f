package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"homemq/atomicfile"
)

// KeysFile is the signing-key file inside the data folder.
const KeysFile = "signing-keys.json"

// SigningKey is one Ed25519 key of the key set.
type SigningKey struct {
	Kid     string             `json:"kid"`
	Seed    []byte             `json:"seed"`
	Created int64              `json:"created"`
	Retired int64              `json:"retired,omitempty"` // when a newer key took over signing
	private ed25519.PrivateKey `json:"-"`
}

// Public returns the key's public half.
func (k *SigningKey) Public() ed25519.PublicKey { return k.private.Public().(ed25519.PublicKey) }

// KeySet is the broker's signing keys: the newest signs, every key not yet
// past its verification window verifies. It is safe for concurrent use.
// The zero KeySet is an empty set that is never saved: Adopt fills it.
type KeySet struct {
	mu   sync.RWMutex
	path string
	keys []*SigningKey // oldest first
}

// LoadOrCreateKeys reads dir/signing-keys.json, making a first key if the
// file does not exist.
func LoadOrCreateKeys(dir string) (*KeySet, error) {
	ks := &KeySet{path: filepath.Join(dir, KeysFile)}
	b, err := os.ReadFile(ks.path)
	if errors.Is(err, os.ErrNotExist) {
		if _, err := ks.Rotate(0); err != nil {
			return nil, err
		}
		return ks, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth: read signing keys: %w", err)
	}
	var f struct{ Keys []*SigningKey }
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("auth: %s is not a key file: %w", ks.path, err)
	}
	for _, k := range f.Keys {
		if len(k.Seed) != ed25519.SeedSize || k.Kid == "" {
			return nil, fmt.Errorf("auth: %s holds a broken key %q", ks.path, k.Kid)
		}
		k.private = ed25519.NewKeyFromSeed(k.Seed)
	}
	if len(f.Keys) == 0 {
		return nil, fmt.Errorf("auth: %s holds no key; delete it to make a new one", ks.path)
	}
	sort.SliceStable(f.Keys, func(i, j int) bool { return f.Keys[i].Created < f.Keys[j].Created })
	ks.keys = f.Keys
	return ks, nil
}

// NewMemoryKeys returns a key set with one fresh key that is never saved
// (for tests and for bare benchmarks).
func NewMemoryKeys() *KeySet {
	ks := &KeySet{}
	if _, err := ks.Rotate(0); err != nil {
		panic(err)
	}
	return ks
}

// Current returns the key that signs new tokens.
func (ks *KeySet) Current() *SigningKey {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.keys[len(ks.keys)-1]
}

// Lookup returns the key with the given kid.
func (ks *KeySet) Lookup(kid string) (*SigningKey, bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	for _, k := range ks.keys {
		if k.Kid == kid {
			return k, true
		}
	}
	return nil, false
}

// All returns every key still kept, oldest first.
func (ks *KeySet) All() []*SigningKey {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return append([]*SigningKey(nil), ks.keys...)
}

// Rotate adds a new signing key, retires the current one and drops keys
// retired longer ago than keep (the longest token lifetime, so that every
// token an old key signed has expired). It saves the set and returns the new key.
func (ks *KeySet) Rotate(keep time.Duration) (*SigningKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	kidb := make([]byte, 9)
	if _, err := rand.Read(kidb); err != nil {
		return nil, err
	}
	now := time.Now()
	k := &SigningKey{Kid: base64.RawURLEncoding.EncodeToString(kidb), Seed: seed, Created: now.UnixNano(), private: ed25519.NewKeyFromSeed(seed)}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	kept := ks.keys[:0:0]
	for _, old := range ks.keys {
		if old.Retired == 0 {
			old.Retired = now.Unix()
		}
		if now.Sub(time.Unix(old.Retired, 0)) <= keep {
			kept = append(kept, old)
		}
	}
	ks.keys = append(kept, k)
	return k, ks.saveLocked()
}

// Adopt makes keys the whole set (a set made on another node, or rotated
// there), replacing the one held in a single step: Sign, Lookup and JWKS
// see the old set or the new, never a mix. It copies the keys, checks each
// (a kid and an Ed25519 seed), and saves the set to its file, so the data
// folder holds what the broker signs with. A set that fails the checks is
// refused and the set held is unchanged; when only saving fails, the new
// set is held and the error says the file is behind.
func (ks *KeySet) Adopt(keys []*SigningKey) error {
	if len(keys) == 0 {
		return errors.New("auth: adopt signing keys: the set is empty")
	}
	set := make([]*SigningKey, len(keys))
	for i, k := range keys {
		if len(k.Seed) != ed25519.SeedSize || k.Kid == "" {
			return fmt.Errorf("auth: adopt signing keys: key %q is broken (a kid and a %d-byte seed are needed)", k.Kid, ed25519.SeedSize)
		}
		set[i] = &SigningKey{Kid: k.Kid, Seed: append([]byte(nil), k.Seed...), Created: k.Created, Retired: k.Retired, private: ed25519.NewKeyFromSeed(k.Seed)}
	}
	sort.SliceStable(set, func(i, j int) bool { return set[i].Created < set[j].Created })
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.keys = set
	return ks.saveLocked()
}

func (ks *KeySet) saveLocked() error {
	if ks.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(struct{ Keys []*SigningKey }{ks.keys}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(ks.path, b, 0o600); err != nil {
		return fmt.Errorf("auth: save signing keys: %w", err)
	}
	return nil
}

// JWKS returns the public keys as a JSON Web Key Set (RFC 8037 OKP keys).
func (ks *KeySet) JWKS() []byte {
	type jwk struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		Use string `json:"use"`
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	set.Keys = []jwk{}
	for _, k := range ks.All() {
		set.Keys = append(set.Keys, jwk{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(k.Public()), Kid: k.Kid, Alg: "EdDSA", Use: "sig"})
	}
	b, _ := json.Marshal(set)
	return b
}

// Sign signs claims with the current key, naming it in the kid header.
func (ks *KeySet) Sign(claims jwt.Claims) (string, error) {
	k := ks.Current()
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = k.Kid
	return t.SignedString(k.private)
}
