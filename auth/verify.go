package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults for Config.
const (
	DefaultIssuer       = "homemq"
	DefaultAudience     = "homemq"
	DefaultLeeway       = 2 * time.Second
	DefaultMaxTokenSize = 8 << 10
	DefaultUserTTL      = 15 * time.Minute
	DefaultAgentTTL     = time.Hour
)

// Config is how tokens are minted and checked.
type Config struct {
	Issuer       string        `yaml:"issuer"`
	Audience     string        `yaml:"audience"`
	Algorithms   []string      `yaml:"algorithms"` // allowed "alg" values; default [EdDSA]
	Leeway       time.Duration `yaml:"leeway"`     // clock skew allowed on exp, nbf and iat
	MaxTokenSize int           `yaml:"max_token_size"`
	UserTTL      time.Duration `yaml:"user_ttl"`
	AgentTTL     time.Duration `yaml:"agent_ttl"`
	// ExtraKeys are verification keys for tokens not signed by the broker's
	// own Ed25519 keys (HS256/RS256/ES256 when listed in Algorithms).
	ExtraKeys []VerifyKey `yaml:"-"`
}

// VerifyKey is a configured verification key: a kid, the one algorithm it
// may be used with, and the key ([]byte for HS256, *rsa.PublicKey,
// *ecdsa.PublicKey or ed25519.PublicKey).
type VerifyKey struct {
	Kid string
	Alg string
	Key crypto.PublicKey
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Issuer == "" {
		c.Issuer = DefaultIssuer
	}
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = []string{"EdDSA"}
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.MaxTokenSize == 0 {
		c.MaxTokenSize = DefaultMaxTokenSize
	}
	if c.UserTTL == 0 {
		c.UserTTL = DefaultUserTTL
	}
	if c.AgentTTL == 0 {
		c.AgentTTL = DefaultAgentTTL
	}
	return c
}

// Validate reports a configuration that must not run.
func (c Config) Validate() error {
	for _, a := range c.Algorithms {
		switch a {
		case "EdDSA", "HS256", "RS256", "ES256":
		case "none":
			return errors.New("tokens.algorithms: \"none\" is never allowed")
		default:
			return fmt.Errorf("tokens.algorithms: %q is not supported (use EdDSA, HS256, RS256 or ES256)", a)
		}
	}
	if c.Leeway < 0 || c.Leeway > 5*time.Minute {
		return fmt.Errorf("tokens.leeway: %v is out of range (0 to 5m)", c.Leeway)
	}
	if c.MaxTokenSize < 256 || c.MaxTokenSize > 64<<10 {
		return fmt.Errorf("tokens.max_token_size: %d is out of range (256 to 65536)", c.MaxTokenSize)
	}
	return nil
}

// Verifier checks tokens: size, algorithm allow-list, signature by a known
// key used with its own algorithm, iss, aud, exp, nbf, iat, required claims
// and revocation. A token it has verified before skips the signature
// check (see Verify). It is safe for concurrent use.
type Verifier struct {
	cfg       Config
	keys      *KeySet
	revoked   *Revocations
	parser    *jwt.Parser
	validator *jwt.Validator // the parser's time, iss and aud checks, for cache hits
	cache     *verifiedCache
	now       func() time.Time
	// fullChecks counts the tokens checked in full (signature included),
	// so that tests can tell a cache hit from a miss.
	fullChecks atomic.Int64
}

// NewVerifier returns a Verifier for cfg (defaults applied) over keys. A nil
// revocation list revokes nothing.
func NewVerifier(cfg Config, keys *KeySet, revoked *Revocations) *Verifier {
	cfg = cfg.WithDefaults()
	v := &Verifier{cfg: cfg, keys: keys, revoked: revoked, now: time.Now, cache: newVerifiedCache(verifiedCacheSize)}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(cfg.Algorithms),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	}
	v.parser = jwt.NewParser(opts...)
	v.validator = jwt.NewValidator(opts...)
	return v
}

// Config returns the verifier's configuration, defaults applied.
func (v *Verifier) Config() Config { return v.cfg }

// Verify checks a token and returns its claims, or an *Error that says why
// not. The claims are the caller's own: changing them changes nothing
// else.
//
// A token verified before (the same bytes, by SHA-256) is found in a
// bounded cache and skips the signature check; every check whose answer
// can change since is made again on every hit: exp, nbf and iat against
// the clock with the leeway, the revocation list, and whether the signing
// key is still known. A refusal is never cached.
func (v *Verifier) Verify(token string) (*Claims, error) {
	c, shared, err := v.verify(token)
	if shared {
		c = c.clone()
	}
	return c, err
}

// VerifyShared is Verify for a caller that never changes the claims it
// gets: they may be the verified-token cache's own, shared with every
// other caller of the same token, so a hit copies nothing and a miss
// keeps one copy of the claims, not two. The Guard holds such claims for
// the whole life of a connection.
func (v *Verifier) VerifyShared(token string) (*Claims, error) {
	c, _, err := v.verify(token)
	return c, err
}

// verify checks token and reports whether the claims it returns are the
// cache's (shared) rather than the caller's own.
func (v *Verifier) verify(token string) (c *Claims, shared bool, err error) {
	switch {
	case token == "":
		return nil, false, &Error{Reason: ReasonEmpty, Detail: "no token given (put the JWT in the password)"}
	case len(token) > v.cfg.MaxTokenSize:
		return nil, false, &Error{Reason: ReasonTooLarge, Detail: fmt.Sprintf("token is %d bytes, the limit is %d", len(token), v.cfg.MaxTokenSize)}
	}
	if i := strings.IndexFunc(token, notCompact); i >= 0 {
		return nil, false, &Error{Reason: ReasonMalformed, Detail: fmt.Sprintf("token holds %q at byte %d; a JWT is only base64url and dots (a trailing newline or space?)", token[i:i+1], i)}
	}
	h := sha256.Sum256([]byte(token))
	if e := v.cache.get(h); e != nil {
		if c, checked, err := v.verifyKnown(h, e); checked {
			return c, err == nil, err
		}
	}
	v.fullChecks.Add(1)
	c = new(Claims)
	t, err := v.parser.ParseWithClaims(token, c, v.key)
	if err != nil {
		if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			if alg := v.headerAlg(token); alg != "" && !slices.Contains(v.cfg.Algorithms, alg) {
				return nil, false, &Error{Reason: ReasonAlgorithm, Detail: fmt.Sprintf("token algorithm %q is not allowed (allowed: %s)", alg, strings.Join(v.cfg.Algorithms, ", "))}
			}
		}
		return nil, false, Classify(err)
	}
	if err := c.validate(); err != nil {
		return nil, false, err
	}
	if err := v.revoked.Check(c); err != nil {
		return nil, false, err
	}
	kid, _ := t.Header["kid"].(string)
	v.cache.put(h, &verifiedEntry{claims: c, kid: kid, alg: t.Method.Alg()})
	return c, true, nil
}

// verifyKnown makes again, for a cached token, the checks whose answer can
// change after verification, and returns its (shared) claims or the
// refusal. checked is false when the token must be checked in full instead: its
// key is gone (rotated out), so the full check gives the precise reason.
// An expired or revoked token is dropped from the cache.
func (v *Verifier) verifyKnown(h [sha256.Size]byte, e *verifiedEntry) (c *Claims, checked bool, err error) {
	if !v.keyKnown(e.kid, e.alg) {
		v.cache.drop(h, e)
		return nil, false, nil
	}
	if err := v.validator.Validate(e.claims); err != nil {
		ce := Classify(err)
		if ce.Reason == ReasonExpired {
			v.cache.drop(h, e)
		}
		return nil, true, ce
	}
	if err := v.revoked.Check(e.claims); err != nil {
		v.cache.drop(h, e)
		return nil, true, err
	}
	return e.claims, true, nil
}

// keyKnown reports whether the key a cached token was verified with is
// still one the verifier would use for it, with the same algorithm.
func (v *Verifier) keyKnown(kid, alg string) bool {
	if _, ok := v.keys.Lookup(kid); ok {
		return alg == "EdDSA"
	}
	for _, k := range v.cfg.ExtraKeys {
		if k.Kid == kid {
			return k.Alg == alg
		}
	}
	return false
}

// notCompact reports a character that cannot be part of a compact JWS.
// golang-jwt decodes segments with encoding/base64, which skips CR and LF
// even in strict mode, so "token\n" would otherwise pass.
func notCompact(r rune) bool {
	return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
}

// CompactJWS reports whether token holds only base64url characters and
// dots, as a compact JWS does.
func CompactJWS(token string) bool { return strings.IndexFunc(token, notCompact) < 0 }

// headerAlg reads the alg of a token's header without verifying anything.
func (v *Verifier) headerAlg(token string) string {
	t, _, err := jwt.NewParser().ParseUnverified(token, &jwt.RegisteredClaims{})
	if err != nil {
		return ""
	}
	alg, _ := t.Header["alg"].(string)
	return alg
}

// key finds the verification key named by the token's kid and refuses a
// key used with any algorithm but its own.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, &Error{Reason: ReasonUnknownKey, Detail: "token header has no kid"}
	}
	alg := t.Method.Alg()
	if k, ok := v.keys.Lookup(kid); ok {
		if alg != "EdDSA" {
			return nil, &Error{Reason: ReasonAlgorithm, Detail: fmt.Sprintf("key %q is an EdDSA key, token says %s", kid, alg)}
		}
		return ed25519.PublicKey(k.Public()), nil
	}
	for _, k := range v.cfg.ExtraKeys {
		if k.Kid == kid {
			if k.Alg != alg {
				return nil, &Error{Reason: ReasonAlgorithm, Detail: fmt.Sprintf("key %q is for %s, token says %s", kid, k.Alg, alg)}
			}
			return k.Key, nil
		}
	}
	return nil, &Error{Reason: ReasonUnknownKey, Detail: fmt.Sprintf("no key with kid %q (signed by another issuer, or a key retired long ago)", kid)}
}

// Classify turns an error of golang-jwt's parser into an *Error with the
// Reason and a sentence for the user; an *Error in err's chain is returned
// as it is.
func Classify(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return &Error{Reason: ReasonExpired, Detail: "token expired; fetch a fresh one"}
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return &Error{Reason: ReasonNotYetValid, Detail: "token is not valid yet (check the clocks)"}
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return &Error{Reason: ReasonIssuer, Detail: "token has the wrong issuer (iss)"}
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return &Error{Reason: ReasonAudience, Detail: "token has the wrong audience (aud)"}
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return &Error{Reason: ReasonMissingClaim, Detail: "token lacks a required claim (exp)"}
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return &Error{Reason: ReasonSignature, Detail: "token signature is invalid"}
	case errors.Is(err, jwt.ErrTokenMalformed):
		return &Error{Reason: ReasonMalformed, Detail: "token is not a well-formed JWT"}
	case errors.Is(err, jwt.ErrTokenUnverifiable), errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return &Error{Reason: ReasonAlgorithm, Detail: "token algorithm is not allowed here"}
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return &Error{Reason: ReasonBadClaim, Detail: "token claims are invalid"}
	}
	return &Error{Reason: ReasonMalformed, Detail: "token could not be read"}
}
