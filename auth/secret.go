package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"homemq/atomicfile"
)

// MasterSecretFile holds the message-key master secret inside the data folder.
const MasterSecretFile = "msg-master.key"

// LoadOrCreateMasterSecret returns the 32-byte secret from which every
// token's message key is derived, making it on first use (0600).
func LoadOrCreateMasterSecret(dir string) ([]byte, error) {
	p := filepath.Join(dir, MasterSecretFile)
	b, err := os.ReadFile(p)
	if err == nil {
		if len(b) != 32 {
			return nil, fmt.Errorf("auth: %s must hold 32 bytes, it holds %d; restore it from a backup", p, len(b))
		}
		return b, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("auth: read master secret: %w", err)
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(p, b, 0o600); err != nil {
		return nil, fmt.Errorf("auth: save master secret: %w", err)
	}
	return b, nil
}
