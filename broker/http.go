package broker

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"homemq/auth"
)

// securityHeaders sets the headers every response of the HTTPS server carries.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Strict-Transport-Security", "max-age=31536000")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if h.Get("Content-Security-Policy") == "" {
			h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
		}
		next.ServeHTTP(w, r)
	})
}

// BearerToken returns the token of an "Authorization: Bearer" header.
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// requireOperator admits requests carrying a valid operator token.
func (b *Broker) requireOperator(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := b.Verifier.Verify(BearerToken(r))
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeJSONError(w, http.StatusUnauthorized, "invalid_token", err.Error())
			return
		}
		if !c.Operator {
			writeJSONError(w, http.StatusForbidden, "insufficient_scope", "an operator token is required")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// RevokeRequest is the body of POST /api/admin/revoke.
type RevokeRequest struct {
	JTI string `json:"jti,omitempty"`
	Sub string `json:"sub,omitempty"`
	// Until is when the entry may be dropped (Unix seconds): the token's exp.
	// Default: now plus the longest lifetime a token can have.
	Until int64 `json:"until,omitempty"`
}

func (b *Broker) handleRevoke(w http.ResponseWriter, r *http.Request) {
	var req RevokeRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSONError(w, http.StatusBadRequest, "invalid_request", "body must be {\"jti\":…} or {\"sub\":…}: "+err.Error())
		return
	}
	e, err := b.Revoke(req)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(e)
}

// Revoke adds a revocation and closes the matching connections at once.
func (b *Broker) Revoke(req RevokeRequest) (auth.Revocation, error) {
	now := time.Now()
	longest := auth.MaxTTL + b.Verifier.Config().Leeway
	e := auth.Revocation{JTI: req.JTI, Sub: req.Sub, At: now.Unix(), Until: req.Until}
	if e.Until == 0 {
		e.Until = now.Add(longest).Unix()
	}
	return e, b.Revoked.Add(e)
}

func writeJSONError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
