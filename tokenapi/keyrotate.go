package tokenapi

import (
	"encoding/json"
	"net/http"
	"time"

	"homemq/auth"
)

// RotateKeysHandler serves auth.KeysRotatePath over the running broker's key
// set: new tokens carry the new kid at once, and tokens signed by the old
// keys keep verifying until they expire. Mount it behind an operator check.
func RotateKeysHandler(ks *auth.KeySet, keep time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := auth.RotateKeys(ks, keep)
		if err != nil {
			writeOAuthError(w, http.StatusInternalServerError, "server_error", err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(resp)
	})
}
