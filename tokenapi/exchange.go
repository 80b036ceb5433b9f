package tokenapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"homemq/auth"
)

// maxSubjectToken bounds subject_token (an ID token with many claims fits).
const maxSubjectToken = 16 << 10

// Config configures POST /api/token (YAML key token_api).
type Config struct {
	IdentityProviders []IdentityProvider `yaml:"identity_providers"`
	RateLimit         RateLimitConfig    `yaml:"rate_limit"`
}

// Validate names the first bad setting by its YAML key.
func (c Config) Validate() error {
	names, issuers := map[string]bool{}, map[string]bool{}
	for i, p := range c.IdentityProviders {
		key := fmt.Sprintf("token_api.identity_providers[%d]", i)
		if err := p.validate(key); err != nil {
			return err
		}
		if names[p.Name] || issuers[p.Issuer] {
			return fmt.Errorf("%s: name %q or issuer %q is listed twice", key, p.Name, p.Issuer)
		}
		names[p.Name], issuers[p.Issuer] = true, true
	}
	return c.RateLimit.WithDefaults().Validate()
}

// ExchangeEvent tells an observer (audit log, metrics) of one exchange. It
// never holds a token or credential.
type ExchangeEvent struct {
	Time    time.Time
	Remote  string            // rate-limit key of the source address
	Type    string            // subject_token_type
	Subject string            // the issued token's sub, or the one asked for
	JTI     string            // of the issued token
	Homes   map[string]string // of the issued token
	OK      bool
	Error   string // RFC 6749 error code when refused
	Detail  string // why it was refused
}

// ExchangeOptions assemble an Exchange.
type ExchangeOptions struct {
	Issuer    *auth.Issuer
	Verifier  *auth.Verifier // checks homemq tokens given back for a fresh one
	Directory Directory
	// MsgKey derives a token's command-envelope key from its jti.
	MsgKey  func(jti string) []byte
	Config  Config
	Logger  *slog.Logger
	Observe func(ExchangeEvent) // optional
}

// Exchange serves POST /api/token: an agent credential, an external ID
// token or a still-valid homemq token in, a fresh short-lived homemq token
// out, with rights read from the registry at that moment.
//
// Failed attempts are rate-limited per source address only: a name in a
// request (an agent id, an unsigned token's sub) proves nothing, so a
// bucket keyed on it would let anyone lock its owner out. A correct agent
// credential is accepted even from a limited address (its check is cheap
// and constant-time, and a 256-bit secret cannot be guessed), so the agent
// can always renew its token; every other attempt from a limited address
// is answered 429 before any signature is checked.
type Exchange struct {
	opt       ExchangeOptions
	log       *slog.Logger
	providers map[string]*externalIssuer // by issuer
	byAddr    *FailureLimiter
	cancel    context.CancelFunc
	now       func() time.Time
}

// NewExchange checks the configuration and starts fetching the identity
// providers' keys in the background; Close stops that.
func NewExchange(opt ExchangeOptions) (*Exchange, error) {
	if opt.Issuer == nil || opt.Verifier == nil || opt.Directory == nil || opt.MsgKey == nil {
		return nil, errors.New("tokenapi: NewExchange needs an Issuer, a Verifier, a Directory and MsgKey")
	}
	if err := opt.Config.Validate(); err != nil {
		return nil, err
	}
	rl := opt.Config.RateLimit.WithDefaults()
	x := &Exchange{
		opt:       opt,
		log:       opt.Logger,
		providers: map[string]*externalIssuer{},
		byAddr:    NewFailureLimiter(rl.AddressPerMinute, rl.AddressBurst, rl.MaxTracked),
		now:       time.Now,
	}
	if x.log == nil {
		x.log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	x.cancel = cancel
	for i, p := range opt.Config.IdentityProviders {
		e, err := newExternalIssuer(ctx, p, opt.Verifier.Config().Leeway, x.log)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("token_api.identity_providers[%d].%w", i, err)
		}
		x.providers[p.Issuer] = e
	}
	return x, nil
}

// Close stops the background refresh of the providers' keys.
func (x *Exchange) Close() { x.cancel() }

// refusal is a refused exchange: HTTP status, RFC 6749 code, description,
// and whether it spends the rate-limit budget.
type refusal struct {
	status int
	code   string
	desc   string
	count  bool
}

func refuse(status int, code string, count bool, format string, args ...any) *refusal {
	return &refusal{status: status, code: code, desc: fmt.Sprintf(format, args...), count: count}
}

// ServeHTTP answers one exchange.
func (x *Exchange) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := x.now()
	ev := ExchangeEvent{Time: now, Remote: AddressKey(r.RemoteAddr)}
	wait, blocked := x.byAddr.Blocked(ev.Remote, now)
	const tooManyFromHere = "too many failed attempts from this address"
	req, rf := readExchangeRequest(w, r)
	if rf == nil {
		ev.Type = req.SubjectTokenType
		if blocked && req.SubjectTokenType != auth.TokenTypeAgentCredential {
			x.tooMany(w, &ev, wait, tooManyFromHere)
			return
		}
		var spec auth.Spec
		spec, rf = x.grant(r.Context(), req, &ev)
		if rf == nil {
			x.issue(w, spec, &ev)
			return
		}
	}
	if blocked {
		x.tooMany(w, &ev, wait, tooManyFromHere)
		return
	}
	if rf.count {
		x.byAddr.Fail(ev.Remote, now)
	}
	ev.Error, ev.Detail = rf.code, rf.desc
	if rf.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="homemq", error="`+rf.code+`"`)
	}
	x.finish(&ev)
	writeOAuthError(w, rf.status, rf.code, rf.desc)
}

func readExchangeRequest(w http.ResponseWriter, r *http.Request) (auth.ExchangeRequest, *refusal) {
	var req auth.ExchangeRequest
	r.Body = http.MaxBytesReader(w, r.Body, maxSubjectToken+4096)
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/json", "":
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			return req, refuse(http.StatusBadRequest, "invalid_request", true, "body must be a JSON object with grant_type, subject_token and subject_token_type")
		}
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return req, refuse(http.StatusBadRequest, "invalid_request", true, "form body could not be read")
		}
		req = auth.ExchangeRequest{GrantType: r.PostForm.Get("grant_type"), SubjectToken: r.PostForm.Get("subject_token"), SubjectTokenType: r.PostForm.Get("subject_token_type")}
	default:
		return req, refuse(http.StatusBadRequest, "invalid_request", true, "Content-Type must be application/json or application/x-www-form-urlencoded")
	}
	switch {
	case req.GrantType != auth.GrantTokenExchange:
		return req, refuse(http.StatusBadRequest, "unsupported_grant_type", true, "grant_type must be %s", auth.GrantTokenExchange)
	case req.SubjectToken == "":
		return req, refuse(http.StatusBadRequest, "invalid_request", true, "subject_token is missing")
	case len(req.SubjectToken) > maxSubjectToken:
		return req, refuse(http.StatusBadRequest, "invalid_request", true, "subject_token is longer than %d bytes", maxSubjectToken)
	}
	return req, nil
}

// grant checks the subject token and says what to mint.
func (x *Exchange) grant(ctx context.Context, req auth.ExchangeRequest, ev *ExchangeEvent) (auth.Spec, *refusal) {
	switch req.SubjectTokenType {
	case auth.TokenTypeAgentCredential:
		c, err := auth.ParseAgentCredential(req.SubjectToken)
		if err != nil {
			return auth.Spec{}, refuse(http.StatusUnauthorized, "invalid_client", true, "%s", strings.TrimPrefix(err.Error(), "auth: "))
		}
		ev.Subject = auth.KindAgent + ":" + c.Agent
		g, err := x.opt.Directory.CheckAgentCredential(c)
		if err != nil {
			if errors.Is(err, auth.ErrNotRegistered) {
				return auth.Spec{}, refuse(http.StatusUnauthorized, "invalid_client", true, "agent credential for %s/%s is not accepted (wrong, rotated or removed)", c.Home, c.Agent)
			}
			return auth.Spec{}, x.serverError(err)
		}
		return agentSpec(g), nil

	case auth.TokenTypeIDToken:
		iss, sub, err := unverifiedIssuer(req.SubjectToken)
		if err != nil {
			return auth.Spec{}, refuse(http.StatusBadRequest, "invalid_grant", true, "%v", err)
		}
		p, ok := x.providers[iss]
		if !ok {
			return auth.Spec{}, refuse(http.StatusBadRequest, "invalid_grant", true, "issuer %q is not a trusted identity provider (see token_api.identity_providers)", auth.Clip(iss))
		}
		ev.Subject = "idp:" + auth.Clip(iss) + "|" + auth.Clip(sub) // as claimed, for the log
		user, err := p.verify(ctx, req.SubjectToken)
		if err != nil {
			return auth.Spec{}, refuse(http.StatusBadRequest, "invalid_grant", true, "%s", err.(*auth.Error).Detail)
		}
		ev.Subject = user
		return x.userSpec(user)

	case auth.TokenTypeJWT:
		_, sub, err := unverifiedIssuer(req.SubjectToken)
		if err != nil {
			return auth.Spec{}, refuse(http.StatusBadRequest, "invalid_grant", true, "%v", err)
		}
		ev.Subject = auth.Clip(sub) // as claimed, for the log
		c, err := x.opt.Verifier.Verify(req.SubjectToken)
		if err != nil {
			return auth.Spec{}, refuse(http.StatusBadRequest, "invalid_grant", true, "%s", strings.TrimPrefix(err.Error(), "token refused: "))
		}
		if c.Operator {
			return auth.Spec{}, refuse(http.StatusBadRequest, "invalid_grant", false, "operator tokens are not refreshed here; mint one with homemq token mint --operator")
		}
		// The new token joins the old one's refresh family, so revoking
		// either revokes both (Revocation.Matches).
		root := c.Family()
		if !auth.CanStartFamily(root) {
			return auth.Spec{}, refuse(http.StatusBadRequest, "invalid_grant", false, "a token whose jti holds a dot or is longer than %d characters is not refreshed here; sign in again", auth.MaxFamilyID)
		}
		kind, id, _ := strings.Cut(c.Subject, ":")
		switch kind {
		case auth.KindAgent:
			g, err := x.opt.Directory.AgentGrant(id)
			if errors.Is(err, auth.ErrNotRegistered) {
				return auth.Spec{}, refuse(http.StatusBadRequest, "invalid_grant", true, "agent %q is no longer registered", id)
			} else if err != nil {
				return auth.Spec{}, x.serverError(err)
			}
			spec := agentSpec(g)
			spec.Root = root
			return spec, nil
		case auth.KindUser:
			spec, rf := x.userSpec(c.Subject)
			spec.Root = root
			return spec, rf
		}
		return auth.Spec{}, refuse(http.StatusBadRequest, "invalid_grant", false, "%s tokens are not refreshed here; mint them with homemq token mint", kind)

	case "":
		return auth.Spec{}, refuse(http.StatusBadRequest, "invalid_request", true, "subject_token_type is missing")
	}
	ev.Type = "other"
	return auth.Spec{}, refuse(http.StatusBadRequest, "invalid_request", true, "subject_token_type must be one of %s, %s, %s", auth.TokenTypeAgentCredential, auth.TokenTypeIDToken, auth.TokenTypeJWT)
}

func agentSpec(g auth.AgentGrant) auth.Spec {
	return auth.Spec{Sub: auth.KindAgent + ":" + g.Agent, Homes: map[string]string{g.Home: "agent"}, Devices: g.Devices}
}

// userSpec reads the user's memberships now. A user with none gets no
// token (and learns the id to ask a home's admin to add).
func (x *Exchange) userSpec(user string) (auth.Spec, *refusal) {
	homes, err := x.opt.Directory.Memberships(user)
	if err != nil {
		return auth.Spec{}, x.serverError(err)
	}
	if len(homes) == 0 {
		return auth.Spec{}, refuse(http.StatusBadRequest, "invalid_grant", false, "%s is not a member of any home; a home's admin can add you with: homemq member add --home HOME --user '%s' --role member", user, user)
	}
	return auth.Spec{Sub: user, Homes: homes}, nil
}

func (x *Exchange) serverError(err error) *refusal {
	x.log.Error("token exchange: registry failed", "error", err)
	return refuse(http.StatusInternalServerError, "server_error", false, "the registry could not be read; try again")
}

// issue mints the token and answers. A token minted in the same second as
// a revocation of its sub would be born revoked (revocations have second
// resolution), so it is minted again a second later.
func (x *Exchange) issue(w http.ResponseWriter, spec auth.Spec, ev *ExchangeEvent) {
	var tok string
	var c *auth.Claims
	for attempt := 0; ; attempt++ {
		var err error
		if tok, c, err = x.opt.Issuer.Mint(spec); err == nil {
			_, err = x.opt.Verifier.Verify(tok)
		}
		if err == nil {
			break
		}
		if auth.ReasonOf(err) == auth.ReasonRevoked && attempt == 0 {
			now := x.now()
			time.Sleep(now.Truncate(time.Second).Add(time.Second + 10*time.Millisecond).Sub(now))
			continue
		}
		x.log.Error("token exchange: minting failed", "sub", spec.Sub, "error", err)
		ev.Error, ev.Detail = "server_error", "minting failed"
		x.finish(ev)
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "the token could not be minted; try again")
		return
	}
	ev.OK, ev.Subject, ev.JTI, ev.Homes = true, c.Subject, c.ID, c.Homes
	x.finish(ev)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	_ = json.NewEncoder(w).Encode(auth.ExchangeResponse{
		AccessToken:     tok,
		IssuedTokenType: auth.TokenTypeJWT,
		TokenType:       "Bearer",
		ExpiresIn:       int64(time.Until(c.ExpiresAtTime()).Round(time.Second) / time.Second),
		MsgKey:          base64.RawURLEncoding.EncodeToString(x.opt.MsgKey(c.ID)),
	})
}

func (x *Exchange) tooMany(w http.ResponseWriter, ev *ExchangeEvent, wait time.Duration, desc string) {
	secs := int64(wait/time.Second) + 1
	ev.Error, ev.Detail = "slow_down", desc
	x.finish(ev)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	writeOAuthError(w, http.StatusTooManyRequests, "slow_down", fmt.Sprintf("%s; try again in %d s", desc, secs))
}

// finish logs and reports an exchange; never a token or credential.
func (x *Exchange) finish(ev *ExchangeEvent) {
	if ev.OK {
		x.log.Info("token exchanged", "remote", ev.Remote, "type", ev.Type, "sub", ev.Subject, "jti", ev.JTI)
	} else {
		x.log.Info("token exchange refused", "remote", ev.Remote, "type", ev.Type, "sub", ev.Subject, "error", ev.Error, "detail", ev.Detail)
	}
	if x.opt.Observe != nil {
		x.opt.Observe(*ev)
	}
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
