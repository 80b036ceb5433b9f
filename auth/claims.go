package auth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"homemq/topics"
)

// Claims are a homemq token's claims. Iss, aud, sub, iat, exp and jti are
// required; nbf is optional.
type Claims struct {
	jwt.RegisteredClaims
	// Homes maps a home id to the role held there, e.g. {"h1":"admin"}.
	Homes map[string]string `json:"homes,omitempty"`
	// Operator marks a token minted with the broker's own key for operators:
	// any topic, $SYS included.
	Operator bool `json:"operator,omitempty"`
	// Devices lists the devices an agent token's agent owns (informational).
	Devices []string `json:"devices,omitempty"`
	// Root is set on a token minted by refreshing another one: the jti of
	// the first token of the chain (its refresh family). Such a token's
	// jti is Root + "." + a random part, so the family of any jti can be
	// read from the jti alone (see Family).
	Root string `json:"root,omitempty"`
}

// MaxFamilyID bounds a jti that can start a refresh family.
const MaxFamilyID = 64

// Family returns the refresh family a jti belongs to: the part before its
// first dot. A token that was not refreshed is its own family.
func Family(jti string) string {
	f, _, _ := strings.Cut(jti, ".")
	return f
}

// Family returns the refresh family of these claims: Root, or for a token
// that was not refreshed its own jti.
func (c *Claims) Family() string {
	if c.Root != "" {
		return c.Root
	}
	return c.ID
}

// CanStartFamily reports whether a token's jti can be the Root of tokens
// refreshed from it: at most 64 characters and no dot.
func CanStartFamily(jti string) bool {
	return jti != "" && len(jti) <= MaxFamilyID && !strings.Contains(jti, ".")
}

// Subject kinds, the part of sub before the colon.
const (
	KindUser    = "user"
	KindAgent   = "agent"
	KindService = "service"
)

// Identity returns what the topic rules need to know of these claims.
func (c *Claims) Identity() *topics.Identity {
	id := &topics.Identity{Sub: c.Subject, Operator: c.Operator, Homes: make(map[string]topics.Role, len(c.Homes))}
	for h, r := range c.Homes {
		id.Homes[h] = topics.Role(r)
	}
	return id
}

// UnmarshalJSON reads claims, refusing exp, iat and nbf that are not JSON
// numbers: golang-jwt's NumericDate also accepts a string such as "123",
// which RFC 7519 does not allow.
//
// The claims are decoded in one pass: the three dates are read as raw JSON
// by fields that hide RegisteredClaims' own (a shallower field wins in
// encoding/json), checked, then decoded by NumericDate. This runs at every
// CONNECT with a token not verified before.
func (c *Claims) UnmarshalJSON(b []byte) error {
	type plain Claims // the same fields without this method
	w := struct {
		*plain
		Exp json.RawMessage `json:"exp"`
		Iat json.RawMessage `json:"iat"`
		Nbf json.RawMessage `json:"nbf"`
	}{plain: (*plain)(c)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		raw  json.RawMessage
		dst  **jwt.NumericDate
	}{{"exp", w.Exp, &c.ExpiresAt}, {"iat", w.Iat, &c.IssuedAt}, {"nbf", w.Nbf, &c.NotBefore}} {
		if d.raw == nil {
			continue
		}
		if !isJSONNumber(d.raw) {
			return &Error{Reason: ReasonMalformed, Detail: fmt.Sprintf("token claim %s must be a number of seconds, not %s", d.name, Clip(string(d.raw)))}
		}
		*d.dst = new(jwt.NumericDate)
		if err := (*d.dst).UnmarshalJSON(d.raw); err != nil {
			return err
		}
	}
	return nil
}

// isJSONNumber reports whether v is a JSON number (not a string, not null).
func isJSONNumber(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9')
}

// ExpiresAt returns the token's exp (zero time if absent).
func (c *Claims) ExpiresAtTime() time.Time {
	if c.ExpiresAt == nil {
		return time.Time{}
	}
	return c.ExpiresAt.Time
}

// IssuedAtTime returns the token's iat (zero time if absent).
func (c *Claims) IssuedAtTime() time.Time {
	if c.IssuedAt == nil {
		return time.Time{}
	}
	return c.IssuedAt.Time
}

// validate checks what golang-jwt does not: required claims and the shape
// of sub and homes.
func (c *Claims) validate() error {
	switch {
	case c.ID == "":
		return &Error{Reason: ReasonMissingClaim, Detail: "token has no jti"}
	case c.IssuedAt == nil:
		return &Error{Reason: ReasonMissingClaim, Detail: "token has no iat"}
	case c.Subject == "":
		return &Error{Reason: ReasonMissingClaim, Detail: "token has no sub"}
	}
	if err := ValidSubject(c.Subject); err != nil {
		return &Error{Reason: ReasonBadClaim, Detail: err.Error()}
	}
	if c.Root != "" {
		rest, ok := strings.CutPrefix(c.ID, c.Root+".")
		if !ok || !CanStartFamily(c.Root) || rest == "" || strings.Contains(rest, ".") {
			return &Error{Reason: ReasonBadClaim, Detail: fmt.Sprintf("token's jti %q does not belong to its root %q", Clip(c.ID), Clip(c.Root))}
		}
	}
	for h, r := range c.Homes {
		if !topics.ValidID(h) {
			return &Error{Reason: ReasonBadClaim, Detail: fmt.Sprintf("homes claim names an invalid home id %q", h)}
		}
		if !ValidRole(r) {
			return &Error{Reason: ReasonBadClaim, Detail: fmt.Sprintf("homes claim gives an unknown role %q in home %q", r, h)}
		}
	}
	return nil
}

// ValidRole reports whether r is one of the roles of docs/architecture.md.
func ValidRole(r string) bool {
	switch topics.Role(r) {
	case topics.Admin, topics.Member, topics.Viewer, topics.Agent, topics.Service:
		return true
	}
	return false
}

// ValidSubject checks that sub is user:{id}, agent:{id} or service:{id},
// where id is 1–128 of [A-Za-z0-9._@|-] (agent ids follow the topic rules).
func ValidSubject(sub string) error {
	kind, id, ok := topics.SplitSubject(sub)
	if !ok {
		return fmt.Errorf("sub %q must look like user:{id}, agent:{id} or service:{id}", sub)
	}
	switch kind {
	case KindAgent:
		if !topics.ValidID(id) {
			return fmt.Errorf("agent id %q must be 1-64 of [a-z0-9_-]", id)
		}
		return nil
	case KindUser, KindService:
	default:
		return fmt.Errorf("sub %q has unknown kind %q (want user, agent or service)", sub, kind)
	}
	if len(id) == 0 || len(id) > 128 {
		return fmt.Errorf("sub %q: id must be 1-128 characters", sub)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._@|-", r)) {
			return fmt.Errorf("sub %q: id may only hold letters, digits and . _ @ | -", sub)
		}
	}
	return nil
}
