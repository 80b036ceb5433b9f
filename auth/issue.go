package auth

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"homemq/topics"
)

// MaxTTL is the longest lifetime a token may be minted with.
const MaxTTL = 24 * time.Hour

// Spec describes a token to mint.
type Spec struct {
	Sub      string
	Homes    map[string]string
	Operator bool
	Devices  []string
	TTL      time.Duration // default: the configured user or agent TTL
	NotAfter time.Time     // optional cap on exp
	// Root makes the token part of a refresh family (see Claims.Root): the
	// family of the token it is refreshed from.
	Root string
}

// Issuer mints tokens signed by the key set's current key.
type Issuer struct {
	cfg  Config
	keys *KeySet
	now  func() time.Time
}

// NewIssuer returns an Issuer for cfg (defaults applied).
func NewIssuer(cfg Config, keys *KeySet) *Issuer {
	return &Issuer{cfg: cfg.WithDefaults(), keys: keys, now: time.Now}
}

// Mint signs a token for s and returns it with its claims.
func (is *Issuer) Mint(s Spec) (string, *Claims, error) {
	if err := ValidSubject(s.Sub); err != nil {
		return "", nil, fmt.Errorf("auth: %w", err)
	}
	for h, r := range s.Homes {
		c := Claims{RegisteredClaims: jwt.RegisteredClaims{ID: "x", Subject: s.Sub, IssuedAt: jwt.NewNumericDate(time.Now())}, Homes: map[string]string{h: r}}
		if err := c.validate(); err != nil {
			return "", nil, fmt.Errorf("auth: %s", err.(*Error).Detail)
		}
	}
	ttl := s.TTL
	if ttl > MaxTTL {
		return "", nil, fmt.Errorf("auth: a token lives at most %v; ask for less (got %v)", MaxTTL, ttl)
	}
	if ttl <= 0 {
		ttl = is.cfg.UserTTL
		if agent, ok := topics.AgentOfSubject(s.Sub); ok && agent != "" {
			ttl = is.cfg.AgentTTL
		}
	}
	now := is.now().Truncate(time.Second)
	exp := now.Add(ttl)
	if !s.NotAfter.IsZero() && exp.After(s.NotAfter) {
		exp = s.NotAfter
	}
	if s.Root != "" && !CanStartFamily(s.Root) {
		return "", nil, fmt.Errorf("auth: root %q cannot name a refresh family (at most %d characters, no dot)", Clip(s.Root), MaxFamilyID)
	}
	rnd := make([]byte, 16)
	if _, err := rand.Read(rnd); err != nil {
		return "", nil, err
	}
	jti := base64.RawURLEncoding.EncodeToString(rnd)
	if s.Root != "" {
		jti = s.Root + "." + jti
	}
	c := &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    is.cfg.Issuer,
			Audience:  jwt.ClaimStrings{is.cfg.Audience},
			Subject:   s.Sub,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        jti,
		},
		Root:     s.Root,
		Homes:    s.Homes,
		Operator: s.Operator,
		Devices:  s.Devices,
	}
	signed, err := is.keys.Sign(c)
	if err != nil {
		return "", nil, fmt.Errorf("auth: sign token: %w", err)
	}
	return signed, c, nil
}
