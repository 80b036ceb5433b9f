package auth

import (
	"encoding/json"
	"net/http"
	"time"
)

// KeysRotatePath is where the broker rotates its signing key (POST,
// operator token).
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

// RotateKeysHandler serves KeysRotatePath over the running broker's key
// set: new tokens carry the new kid at once, and tokens signed by the old
// keys keep verifying until they expire. Mount it behind an operator check.
func RotateKeysHandler(ks *KeySet, keep time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := RotateKeys(ks, keep)
		if err != nil {
			writeOAuthError(w, http.StatusInternalServerError, "server_error", err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(resp)
	})
}
