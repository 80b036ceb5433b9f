package cluster

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
)

// SecretSize is the number of random bytes in a cluster secret.
const SecretSize = 32

// Secret is the cluster secret: random bytes every node of one cluster
// holds (cluster.secret_file), from which each shared protection is
// derived under its own label (Key), so no two uses share a key.
type Secret struct{ b []byte }

// NewSecret makes a fresh cluster secret.
func NewSecret() Secret {
	b := make([]byte, SecretSize)
	rand.Read(b) // never fails (crypto/rand)
	return Secret{b: b}
}

// String is the secret's file form: unpadded base64url and a newline.
func (s Secret) String() string { return base64.RawURLEncoding.EncodeToString(s.b) + "\n" }

// ParseSecret reads a secret in its file form.
func ParseSecret(text string) (Secret, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil || len(b) != SecretSize {
		return Secret{}, fmt.Errorf("not a cluster secret (%d bytes of unpadded base64url); make one with 'homemq cluster secret'", SecretSize)
	}
	return Secret{b: b}, nil
}

// LoadSecret reads the secret file at path.
func LoadSecret(path string) (Secret, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return Secret{}, fmt.Errorf("cluster.secret_file: %w (every node needs the same secret: make it once with 'homemq cluster secret > %s' and copy it to each node, mode 0600)", err, path)
	}
	s, err := ParseSecret(string(text))
	if err != nil {
		return Secret{}, fmt.Errorf("cluster.secret_file %s: %w", path, err)
	}
	return s, nil
}

// Key derives n bytes for the use label names (HKDF-SHA256). Every node
// derives the same key from the same secret and label.
func (s Secret) Key(label string, n int) []byte {
	k, err := hkdf.Key(sha256.New, s.b, nil, "homemq cluster "+label, n)
	if err != nil {
		panic("cluster: derive key: " + err.Error()) // only for n > 255*32
	}
	return k
}
