package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"

	"homemq/topics"
)

// Agent credentials: what a Pi agent is set up with once and exchanges at
// POST /api/token for short-lived agent tokens. The text form is
//
//	hmq1.{home}.{agent}.{secret}
//
// where secret is 32 random bytes in unpadded base64url (43 characters).
// Home and agent are topic ids ([a-z0-9_-], no dot), so the form splits
// unambiguously and the server finds the agent without a scan. Only
// CredentialHash of a credential is ever stored.
const (
	// CredentialPrefix starts every agent credential (format version 1).
	CredentialPrefix = "hmq1."
	// CredentialSecretSize is the number of random bytes in a credential.
	CredentialSecretSize = 32
	// MaxCredentialLen bounds the text form: prefix, two 64-byte ids, two
	// dots and 43 characters of secret.
	MaxCredentialLen = len(CredentialPrefix) + 64 + 1 + 64 + 1 + 43
)

var secretEncoding = base64.RawURLEncoding.Strict()

// AgentCredential is an agent's set-up credential. Its String and LogValue
// hide the secret; Encode gives the text to hand to the agent's owner.
type AgentCredential struct {
	Home   string
	Agent  string
	Secret []byte
}

// NewAgentCredential makes a fresh credential for agent in home.
func NewAgentCredential(home, agent string) (AgentCredential, error) {
	if !topics.ValidID(home) {
		return AgentCredential{}, fmt.Errorf("auth: home id %q must be 1-64 of [a-z0-9_-]", home)
	}
	if !topics.ValidID(agent) {
		return AgentCredential{}, fmt.Errorf("auth: agent id %q must be 1-64 of [a-z0-9_-]", agent)
	}
	c := AgentCredential{Home: home, Agent: agent, Secret: make([]byte, CredentialSecretSize)}
	if _, err := rand.Read(c.Secret); err != nil {
		return AgentCredential{}, err
	}
	return c, nil
}

// ParseAgentCredential reads the text form of a credential. It checks the
// shape only; whether the secret is right is the registry's question.
func ParseAgentCredential(s string) (AgentCredential, error) {
	if len(s) > MaxCredentialLen {
		return AgentCredential{}, fmt.Errorf("auth: agent credential is %d bytes, longer than any credential (%d)", len(s), MaxCredentialLen)
	}
	rest, ok := strings.CutPrefix(s, CredentialPrefix)
	if !ok {
		return AgentCredential{}, fmt.Errorf("auth: an agent credential starts with %q (copy it whole from 'homemq agent add')", CredentialPrefix)
	}
	home, rest, ok1 := strings.Cut(rest, ".")
	agent, secret, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return AgentCredential{}, fmt.Errorf("auth: an agent credential looks like %s{home}.{agent}.{secret}", CredentialPrefix)
	}
	if !topics.ValidID(home) || !topics.ValidID(agent) {
		return AgentCredential{}, fmt.Errorf("auth: agent credential names an invalid home or agent id")
	}
	// base64 decoders skip \r and \n: check the alphabet first, so one
	// credential has exactly one spelling.
	raw, err := secretEncoding.DecodeString(secret)
	if len(secret) != secretEncoding.EncodedLen(CredentialSecretSize) || !isBase64URL(secret) || err != nil || len(raw) != CredentialSecretSize {
		return AgentCredential{}, fmt.Errorf("auth: agent credential secret must be %d bytes of unpadded base64url", CredentialSecretSize)
	}
	return AgentCredential{Home: home, Agent: agent, Secret: raw}, nil
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Encode returns the credential's text form, secret included. Show it once
// to the agent's owner; never log or store it.
func (c AgentCredential) Encode() string {
	return CredentialPrefix + c.Home + "." + c.Agent + "." + secretEncoding.EncodeToString(c.Secret)
}

// String names the credential without its secret.
func (c AgentCredential) String() string {
	return CredentialPrefix + c.Home + "." + c.Agent + ".<secret>"
}

// GoString keeps the secret out of %#v.
func (c AgentCredential) GoString() string { return "auth.AgentCredential(" + c.String() + ")" }

// LogValue keeps the secret out of structured logs.
func (c AgentCredential) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Hash returns what is stored in place of the credential: SHA-256 over a
// domain label, the home, the agent and the secret, so a stored hash is
// useless for any other agent. The secret is 256 random bits, so a fast
// hash is enough: there is nothing to guess.
func (c AgentCredential) Hash() []byte {
	h := sha256.New()
	h.Write([]byte("homemq agent credential v1\x00"))
	h.Write([]byte(c.Home))
	h.Write([]byte{0})
	h.Write([]byte(c.Agent))
	h.Write([]byte{0})
	h.Write(c.Secret)
	return h.Sum(nil)
}

// Matches reports, in constant time, whether stored is this credential's Hash.
func (c AgentCredential) Matches(stored []byte) bool {
	return len(stored) == sha256.Size && subtle.ConstantTimeCompare(c.Hash(), stored) == 1
}
