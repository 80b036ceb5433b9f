package envelope

import (
	"crypto/hmac"
	"fmt"
	"time"
)

// Verify checks e against the receiver's expectations, in this order:
//
//  1. the members are well-formed (as Parse checks them) and topic is not
//     empty and has no newline;
//  2. e.Kid == wantKid (the jti of the sender's token), else ReasonKid;
//  3. iat <= now + Skew, else ReasonFuture;
//  4. now < exp, else ReasonExpired: the envelope is expired from the second
//     exp on, with no skew (Skew only forgives a sender's clock running ahead);
//  5. 0 < exp - iat <= MaxLifetime, else ReasonLifetime;
//  6. sig == HMAC-SHA256(key, SigningInput(topic, …)) compared in constant
//     time, else ReasonSignature.
//
// The time checks come before the signature because they are cheaper; their
// refusals therefore speak about unauthenticated data. Verify does not record
// the nonce: call ReplayCache.Record after it succeeds.
func (e Envelope) Verify(key []byte, topic, wantKid string, now time.Time, p Policy) error {
	if err := e.check(); err != nil {
		return err
	}
	return e.verify(key, topic, wantKid, now, p.capped())
}

// verify is Verify for an envelope whose members are known to be well-formed.
func (e *Envelope) verify(key []byte, topic, wantKid string, now time.Time, p Policy) error {
	if err := checkTopic(topic); err != nil {
		return err
	}
	if e.Kid != wantKid {
		return refuse(ReasonKid, fmt.Sprintf("envelope is signed for key id %q but the sender's token has jti %q; seal with the msg_key that came with the token you connected with", clip(e.Kid), clip(wantKid)))
	}
	if latest := now.Add(p.Skew).Unix(); e.Iat > latest {
		return refuse(ReasonFuture, fmt.Sprintf("envelope issued %s in the future (iat %d, now %d, allowed skew %s); check the sender's clock", secs(e.Iat-now.Unix()), e.Iat, now.Unix(), p.Skew))
	}
	if n := now.Unix(); n >= e.Exp {
		ago := "just now"
		if n > e.Exp {
			ago = secs(n-e.Exp) + " ago"
		}
		return refuse(ReasonExpired, fmt.Sprintf("envelope expired %s (exp %d, now %d); seal commands just before sending them", ago, e.Exp, n))
	}
	if life := e.Exp - e.Iat; life <= 0 {
		return refuse(ReasonLifetime, fmt.Sprintf("envelope exp %d is not after its iat %d", e.Exp, e.Iat))
	} else if life > int64(p.MaxLifetime/time.Second) {
		return refuse(ReasonLifetime, fmt.Sprintf("envelope lifetime exp-iat is %s, more than the allowed %s; seal with a shorter ttl", secs(life), p.MaxLifetime))
	}
	if len(key) < minKeyLen {
		return refuse(ReasonSignature, "no message key to check the envelope's signature with (want at least 16 bytes)")
	}
	var got, want [SigSize]byte
	decodeB64(got[:], e.Sig, sigLen) // checked well-formed above
	sign(&want, key, topic, e.Kid, e.Iat, e.Exp, e.Nonce, e.Msg)
	if !hmac.Equal(got[:], want[:]) {
		return refuse(ReasonSignature, "envelope signature does not match: wrong message key, another topic, or altered content")
	}
	return nil
}

// Open parses payload and verifies it: Parse then Verify. It does not record
// the nonce; the caller does, with ReplayCache.Record, after Open succeeds.
func Open(key []byte, topic, wantKid string, payload []byte, now time.Time, p Policy) (Envelope, error) {
	e, err := Parse(payload, p)
	if err != nil {
		return Envelope{}, err
	}
	if err := e.verify(key, topic, wantKid, now, p.capped()); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

func secs(n int64) string { return (time.Duration(n) * time.Second).String() }

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
