package auth

import "time"

// KeysRotatePath is where the broker rotates its signing key (POST,
// operator token; served by tokenapi.RotateKeysHandler).
const KeysRotatePath = "/api/admin/keys/rotate"

// RotationKeep is how long a retired signing key stays for verification:
// the longest lifetime a token can have plus the leeway, so every token it
// signed has expired before it goes.
func RotationKeep(cfg Config) time.Duration { return MaxTTL + cfg.WithDefaults().Leeway }

// RotateResponse is the answer of a key rotation.
type RotateResponse struct {
	// Kid is the new signing key's id.
	Kid string `json:"kid"`
	// Keys lists every kid still kept for verification, oldest first.
	Keys []string `json:"keys"`
}

// RotateKeys adds a new signing key to ks, keeping retired keys for keep.
func RotateKeys(ks *KeySet, keep time.Duration) (RotateResponse, error) {
	k, err := ks.Rotate(keep)
	if err != nil {
		return RotateResponse{}, err
	}
	resp := RotateResponse{Kid: k.Kid}
	for _, old := range ks.All() {
		resp.Keys = append(resp.Keys, old.Kid)
	}
	return resp, nil
}
