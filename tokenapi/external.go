package tokenapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"homemq/topics"

	"homemq/auth"
)

// IdentityProvider is an external OpenID Connect issuer (the apps' login)
// whose ID tokens POST /api/token exchanges for homemq user tokens. Its
// keys come from JWKS URL (github.com/MicahParks/keyfunc/v3), refreshed in
// the background and when a token names an unknown kid.
type IdentityProvider struct {
	// Name is a short id (1-32 of a-z 0-9 _ -) that prefixes the user ids of
	// this provider: user:{name}|{sub}.
	Name string `yaml:"name"`
	// Issuer is the exact "iss" of the provider's ID tokens.
	Issuer string `yaml:"issuer"`
	// JWKSURL is where the provider publishes its public keys: https, or
	// http on a loopback address only.
	JWKSURL string `yaml:"jwks_url"`
	// Audiences are the accepted "aud" values (the app's client ids); at
	// least one is required.
	Audiences []string `yaml:"audiences"`
	// Algorithms are the accepted "alg" values; default RS256 and ES256.
	// Only asymmetric algorithms may be listed.
	Algorithms []string `yaml:"algorithms"`
	// UserClaim is the claim that names the user; default "sub". With
	// "email", the token must also carry email_verified: true.
	UserClaim string `yaml:"user_claim"`
	// CAFile is an optional PEM bundle to trust for JWKSURL (a private CA).
	CAFile string `yaml:"ca_file"`
	// RefreshInterval is how often the keys are fetched again; default 1h.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
}

var asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// validate checks p; key names the YAML list entry for messages.
func (p IdentityProvider) validate(key string) error {
	if !topics.ValidID(p.Name) || len(p.Name) > 32 {
		return fmt.Errorf("%s.name: %q must be 1-32 of a-z 0-9 _ -", key, p.Name)
	}
	if p.Issuer == "" {
		return fmt.Errorf("%s.issuer: the provider's iss is required", key)
	}
	u, err := url.Parse(p.JWKSURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%s.jwks_url: %q is not a URL", key, p.JWKSURL)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
		return fmt.Errorf("%s.jwks_url: %q must be https (plain http only on a loopback address)", key, p.JWKSURL)
	}
	if len(p.Audiences) == 0 || slices.Contains(p.Audiences, "") {
		return fmt.Errorf("%s.audiences: list the client ids the provider's ID tokens are issued to", key)
	}
	for _, a := range p.Algorithms {
		if !slices.Contains(asymmetricAlgs, a) {
			return fmt.Errorf("%s.algorithms: %q is not allowed (use %s)", key, a, strings.Join(asymmetricAlgs, ", "))
		}
	}
	if p.RefreshInterval < 0 || (p.RefreshInterval > 0 && p.RefreshInterval < time.Minute) {
		return fmt.Errorf("%s.refresh_interval: %v is too short (at least 1m)", key, p.RefreshInterval)
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// externalIssuer verifies one provider's ID tokens.
type externalIssuer struct {
	cfg    IdentityProvider
	kf     keyfunc.Keyfunc
	parser *jwt.Parser
	algs   []string
}

// newExternalIssuer starts fetching p's keys; ctx ends the background refresh.
func newExternalIssuer(ctx context.Context, p IdentityProvider, leeway time.Duration, log *slog.Logger) (*externalIssuer, error) {
	algs := p.Algorithms
	if len(algs) == 0 {
		algs = []string{"RS256", "ES256"}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if p.CAFile != "" {
		pem, err := os.ReadFile(p.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: %s holds no PEM certificate", p.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	refresh := p.RefreshInterval
	if refresh == 0 {
		refresh = time.Hour
	}
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{p.JWKSURL}, keyfunc.Override{
		Client:      &http.Client{Transport: limitedBody{tr}, Timeout: 10 * time.Second},
		HTTPTimeout: 5 * time.Second,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				log.Warn("identity provider keys could not be fetched", "provider", p.Name, "url", u, "error", err)
			}
		},
		RefreshInterval: refresh,
		// An unknown kid fetches the keys again at most once a minute, and
		// a request never waits long for that.
		RefreshUnknownKID: rate.NewLimiter(rate.Every(time.Minute), 1),
		RateLimitWaitMax:  time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("jwks_url: %w", err)
	}
	e := &externalIssuer{cfg: p, kf: kf, algs: algs}
	e.parser = jwt.NewParser(
		jwt.WithValidMethods(algs),
		jwt.WithIssuer(p.Issuer),
		jwt.WithAudience(p.Audiences...),
		jwt.WithLeeway(leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)
	return e, nil
}

// limitedBody caps what a JWKS endpoint may send.
type limitedBody struct{ rt http.RoundTripper }

func (l limitedBody) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := l.rt.RoundTrip(r)
	if err == nil {
		res.Body = struct {
			io.Reader
			io.Closer
		}{io.LimitReader(res.Body, 1<<20), res.Body}
	}
	return res, err
}

// verify checks an ID token and returns the homemq user id it stands for.
func (e *externalIssuer) verify(ctx context.Context, token string) (string, error) {
	if !auth.CompactJWS(token) {
		return "", &auth.Error{Reason: auth.ReasonMalformed, Detail: "ID token refused: a JWT is only base64url and dots (a trailing newline or space?)"}
	}
	if t, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{}); err == nil && !slices.Contains(e.algs, t.Method.Alg()) {
		return "", &auth.Error{Reason: auth.ReasonAlgorithm, Detail: fmt.Sprintf("ID token refused: algorithm %s is not allowed for %s (allowed: %s)", t.Method.Alg(), e.cfg.Name, strings.Join(e.algs, ", "))}
	}
	claims := jwt.MapClaims{}
	keyf := e.kf.KeyfuncCtx(ctx)
	_, err := e.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		k, err := keyf(t)
		if err != nil {
			return nil, &auth.Error{Reason: auth.ReasonUnknownKey, Detail: fmt.Sprintf("no key of %s for this ID token (kid %v)", e.cfg.Name, t.Header["kid"])}
		}
		if !keyFitsAlg(k, t.Method.Alg()) {
			return nil, &auth.Error{Reason: auth.ReasonAlgorithm, Detail: fmt.Sprintf("ID token says %s, the key is of another type", t.Method.Alg())}
		}
		return k, nil
	})
	if err != nil {
		ce := auth.Classify(err)
		return "", &auth.Error{Reason: ce.Reason, Detail: "ID token refused: " + ce.Detail}
	}
	return e.userID(claims)
}

// keyFitsAlg refuses a key used with an algorithm of another family; the
// VerificationKeySet of a kid-less token is passed through (golang-jwt
// checks each key's type).
func keyFitsAlg(k any, alg string) bool {
	switch k.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return strings.HasPrefix(alg, "ES")
	case ed25519.PublicKey:
		return alg == "EdDSA"
	case jwt.VerificationKeySet:
		return true
	}
	return false
}

// userID maps verified claims to user:{name}|{value}, value being the
// configured claim (sub by default). A value outside the characters a sub
// may hold, or too long, becomes "h." and a hash of issuer and value, so
// the id stays stable and unique.
func (e *externalIssuer) userID(claims jwt.MapClaims) (string, error) {
	claim := e.cfg.UserClaim
	if claim == "" {
		claim = "sub"
	}
	v, _ := claims[claim].(string)
	if v == "" {
		return "", &auth.Error{Reason: auth.ReasonMissingClaim, Detail: fmt.Sprintf("ID token has no %q claim to name the user", claim)}
	}
	if claim == "email" {
		if ok, _ := claims["email_verified"].(bool); !ok {
			return "", &auth.Error{Reason: auth.ReasonBadClaim, Detail: "ID token's email is not verified (email_verified is not true)"}
		}
	}
	id := auth.KindUser + ":" + e.cfg.Name + "|" + v
	if auth.ValidSubject(id) != nil {
		sum := sha256.Sum256([]byte(e.cfg.Issuer + "\x00" + v))
		id = auth.KindUser + ":" + e.cfg.Name + "|h." + base64.RawURLEncoding.EncodeToString(sum[:18])
	}
	return id, nil
}

// unverifiedIssuer reads iss and sub of a JWT without checking it, to pick
// the provider and the rate-limit key.
func unverifiedIssuer(token string) (iss, sub string, err error) {
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil {
		return "", "", errors.New("subject_token is not a JWT")
	}
	return c.Issuer, c.Subject, nil
}
