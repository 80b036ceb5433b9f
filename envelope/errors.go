package envelope

import "errors"

// Reason is a stable, machine-readable cause of a refused envelope, used to
// pick MQTT reason codes, in the audit log and as a metric label.
type Reason string

// Why an envelope is refused.
const (
	ReasonMalformed Reason = "malformed"         // bad JSON, missing or unknown member, bad base64, too large, not UTF-8
	ReasonVersion   Reason = "unknown_version"   // v is a number other than Version
	ReasonKid       Reason = "wrong_kid"         // kid is not the jti of the sender's token
	ReasonFuture    Reason = "issued_in_future"  // iat is later than now + skew
	ReasonExpired   Reason = "expired"           // now >= exp
	ReasonLifetime  Reason = "lifetime_too_long" // exp - iat is not in (0, MaxLifetime]
	ReasonSignature Reason = "bad_signature"     // sig does not match (wrong key, topic or content)
	ReasonReplay    Reason = "replay"            // (kid, nonce) was already accepted
	ReasonCacheFull Reason = "replay_cache_full" // the replay cache is at its cap
	ReasonQuota     Reason = "replay_quota"      // the sender holds its share of the replay cache
)

// Error is a refused envelope: a stable Reason and a sentence for the user.
type Error struct {
	Reason Reason
	Detail string
}

// Error returns the human-readable sentence, e.g. "envelope expired 12s ago …".
func (e *Error) Error() string {
	if e.Detail == "" {
		return "envelope refused: " + string(e.Reason)
	}
	return e.Detail
}

// ReasonOf returns the Reason of an *Error in err's chain, or "" when err is
// nil or not an envelope refusal.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func refuse(r Reason, detail string) *Error { return &Error{Reason: r, Detail: detail} }
