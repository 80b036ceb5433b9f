package auth

import "errors"

// Reason is a stable, machine-readable cause of a refused token, used in
// reason strings, the audit log and metrics.
type Reason string

// Why a token is refused.
const (
	ReasonMalformed    Reason = "malformed"
	ReasonTooLarge     Reason = "too_large"
	ReasonEmpty        Reason = "empty"
	ReasonAlgorithm    Reason = "bad_algorithm"
	ReasonUnknownKey   Reason = "unknown_key"
	ReasonSignature    Reason = "bad_signature"
	ReasonExpired      Reason = "expired"
	ReasonNotYetValid  Reason = "not_yet_valid"
	ReasonIssuer       Reason = "wrong_issuer"
	ReasonAudience     Reason = "wrong_audience"
	ReasonMissingClaim Reason = "missing_claim"
	ReasonBadClaim     Reason = "bad_claim"
	ReasonRevoked      Reason = "revoked"
)

// Error is a refused token: a Reason and a sentence for the user.
type Error struct {
	Reason Reason
	Detail string
}

func (e *Error) Error() string { return "token refused: " + e.Detail }

// ReasonOf returns the Reason of an *Error in err's chain, or "".
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// Clip bounds an attacker-chosen string that goes into a key, a log line or
// a message to 128 bytes.
func Clip(s string) string {
	if len(s) > 128 {
		return s[:128] + "…"
	}
	return s
}
