package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"homemq/auth"
)

// Token is an access token for the broker and the instant it stops working
// by the agent's clock.
type Token struct {
	Access string
	Expiry time.Time
	// Skew is the broker's clock minus the agent's, as measured from the
	// token API's Date header (0 when unknown).
	Skew time.Duration
}

// TokenSource gets a token: a fresh one on every call where it can.
type TokenSource interface {
	Token(ctx context.Context) (Token, error)
}

// Exchanger gets tokens from the broker's POST /api/token with the agent's
// credential. The credential file is read again on every exchange, so a
// rotated credential needs no restart.
type Exchanger struct {
	URL string // https://…/api/token
	// Others are more token URLs (the other nodes of a cluster): an
	// exchange that gets no answer or a 5xx tries the next, and the next
	// exchange starts at the URL that answered last.
	Others         []string
	Credential     string // the credential itself, or
	CredentialFile string // a file holding it
	Client         *http.Client

	last atomic.Int32 // the index in urls() that answered last
}

// ExchangeError is a refused token exchange: the HTTP status and the RFC
// 6749 error the broker answered with.
type ExchangeError struct {
	Status      int
	Code        string // invalid_client, invalid_grant, slow_down, …
	Description string
	RetryAfter  time.Duration // from Retry-After, when given
}

func (e *ExchangeError) Error() string {
	s := fmt.Sprintf("token exchange refused (%d %s)", e.Status, e.Code)
	if e.Description != "" {
		s += ": " + e.Description
	}
	if e.Status == http.StatusUnauthorized {
		s += "; check the agent credential (homemq agent rotate makes a new one)"
	}
	return s
}

// maxTokenAnswer bounds the token API's answer.
const maxTokenAnswer = 64 << 10

// urls returns URL and Others.
func (x *Exchanger) urls() []string { return append([]string{x.URL}, x.Others...) }

// Token exchanges the credential for a token, at the URL that answered
// last, or at the next ones in turn when it gets no answer or a 5xx. A
// refusal (4xx) is the answer: the other nodes would give the same.
func (x *Exchanger) Token(ctx context.Context) (Token, error) {
	cred := x.Credential
	if cred == "" {
		b, err := os.ReadFile(x.CredentialFile)
		if err != nil {
			return Token{}, fmt.Errorf("credential_file: %w", err)
		}
		cred = strings.TrimSpace(string(b))
	}
	urls := x.urls()
	start := int(x.last.Load())
	var errs []error
	for i := range urls {
		n := (start + i) % len(urls)
		t, err := x.exchange(ctx, urls[n], cred)
		var refused *ExchangeError
		if err == nil || (errors.As(err, &refused) && refused.Status < 500) || ctx.Err() != nil {
			if err == nil {
				x.last.Store(int32(n))
			}
			return t, err
		}
		errs = append(errs, err)
	}
	return Token{}, errors.Join(errs...)
}

// exchange does one exchange of cred at u.
func (x *Exchanger) exchange(ctx context.Context, u, cred string) (Token, error) {
	body, _ := json.Marshal(auth.ExchangeRequest{GrantType: auth.GrantTokenExchange, SubjectToken: cred, SubjectTokenType: auth.TokenTypeAgentCredential})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return Token{}, fmt.Errorf("token_url: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	res, err := x.Client.Do(req)
	if err != nil {
		return Token{}, fmt.Errorf("token exchange at %s: %w", u, err)
	}
	defer res.Body.Close()
	var skew time.Duration
	if d, err := http.ParseTime(res.Header.Get("Date")); err == nil {
		// Date has whole seconds: the server's clock read d + [0, 1s).
		mid := start.Add(time.Since(start) / 2)
		skew = d.Add(500 * time.Millisecond).Sub(mid)
	}
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxTokenAnswer))
	if err != nil {
		return Token{}, fmt.Errorf("token exchange at %s: reading the answer: %w", u, err)
	}
	if res.StatusCode != http.StatusOK {
		e := &ExchangeError{Status: res.StatusCode}
		var o struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(raw, &o) == nil {
			e.Code, e.Description = o.Error, o.Description
		}
		if e.Code == "" {
			e.Code = http.StatusText(res.StatusCode)
		}
		if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s > 0 {
			e.RetryAfter = time.Duration(s) * time.Second
		}
		return Token{}, e
	}
	var ans auth.ExchangeResponse
	if err := json.Unmarshal(raw, &ans); err != nil || ans.AccessToken == "" || ans.ExpiresIn <= 0 {
		return Token{}, fmt.Errorf("token exchange at %s: the answer is not a token (is token_url the broker's /api/token?)", u)
	}
	return Token{Access: ans.AccessToken, Expiry: start.Add(time.Duration(ans.ExpiresIn) * time.Second), Skew: skew}, nil
}

// FileToken reads a token (a JWT) from a file on every call; its expiry is
// the token's exp claim. Something else must keep the file fresh.
type FileToken struct {
	Path string
}

// Token reads the file.
func (f FileToken) Token(context.Context) (Token, error) {
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return Token{}, fmt.Errorf("token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	exp, err := TokenExpiry(tok)
	if err != nil {
		return Token{}, fmt.Errorf("token_file %s: %w", f.Path, err)
	}
	return Token{Access: tok, Expiry: exp}, nil
}

// TokenExpiry reads the exp claim of a JWT without verifying it (the
// broker does that); the agent only needs to know when to get a new one.
func TokenExpiry(tok string) (time.Time, error) {
	if tok == "" {
		return time.Time{}, errors.New("no token in it")
	}
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		return time.Time{}, fmt.Errorf("not a JWT: %w", err)
	}
	if c.ExpiresAt == nil {
		return time.Time{}, errors.New("the token has no exp claim")
	}
	return c.ExpiresAt.Time, nil
}

// keeper holds the agent's current token and renews it in the background
// at two thirds of its life; a renewal that brings a new token is reported
// on rotated so the connection can move to it before the broker closes the
// old one at its exp.
type keeper struct {
	src     TokenSource
	log     *slog.Logger
	backoff ReconnectConfig
	fetchMu sync.Mutex // one fetch at a time

	skew atomic.Int64 // the broker's clock minus ours, when it matters (ns)

	mu      sync.Mutex
	cur     Token
	got     time.Time     // when cur was fetched
	changed chan struct{} // closed and replaced when cur changes
	rotated chan struct{} // capacity 1: a background renewal brought a new token
}

func newKeeper(src TokenSource, backoff ReconnectConfig, log *slog.Logger) *keeper {
	return &keeper{src: src, log: log, backoff: backoff, changed: make(chan struct{}), rotated: make(chan struct{}, 1)}
}

// refreshAt is when a token fetched at got should be renewed: 2/3 of its life.
func refreshAt(t Token, got time.Time) time.Time {
	return got.Add(t.Expiry.Sub(got) * 2 / 3)
}

// usable reports whether a token fetched at got still has a sixth of its
// life left, enough to connect with.
func usable(t Token, got, now time.Time) bool {
	return t.Access != "" && now.Before(t.Expiry.Add(-t.Expiry.Sub(got)/6))
}

// invalidate forgets the current token (the broker refused it), so the
// next connection attempt fetches a new one.
func (k *keeper) invalidate() {
	k.mu.Lock()
	k.cur = Token{}
	close(k.changed)
	k.changed = make(chan struct{})
	k.mu.Unlock()
}

// password is the current token, for paho's credentials provider.
func (k *keeper) password() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cur.Access
}

func (k *keeper) snapshot() (Token, time.Time, <-chan struct{}) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cur, k.got, k.changed
}

// get returns a token good enough to connect with, fetching one if needed.
func (k *keeper) get(ctx context.Context) (Token, error) {
	if t, got, _ := k.snapshot(); usable(t, got, time.Now()) {
		return t, nil
	}
	return k.fetch(ctx, false)
}

// fetch asks the source; background says whether to report a new token on
// rotated.
func (k *keeper) fetch(ctx context.Context, background bool) (Token, error) {
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()
	if t, got, _ := k.snapshot(); !background && usable(t, got, time.Now()) {
		return t, nil // fetched by someone else meanwhile
	}
	now := time.Now()
	t, err := k.src.Token(ctx)
	if err != nil {
		return Token{}, err
	}
	if !t.Expiry.After(now) {
		return Token{}, fmt.Errorf("the token source gave a token that expired at %s", t.Expiry.Format(time.RFC3339))
	}
	k.noteSkew(t.Skew)
	k.mu.Lock()
	same := t.Access == k.cur.Access
	if !same {
		k.cur, k.got = t, now
		close(k.changed)
		k.changed = make(chan struct{})
	}
	k.mu.Unlock()
	if same {
		return t, errSameToken
	}
	msg := "token obtained"
	if background {
		msg = "token renewed"
	}
	k.log.Info(msg, "expires", t.Expiry.Format(time.RFC3339))
	if background {
		select {
		case k.rotated <- struct{}{}:
		default:
		}
	}
	return t, nil
}

// maxSkew is the clock difference the agent tolerates before it judges
// command expiry by the broker's clock: beyond the Date header's
// resolution and a round trip.
const maxSkew = 2 * time.Second

// noteSkew remembers how far the agent's clock is off the broker's. A Pi
// has no battery clock: booted without network time it may run hours
// behind, and would then take a long-expired command for a fresh one.
func (k *keeper) noteSkew(d time.Duration) {
	if d > -maxSkew && d < maxSkew {
		d = 0
	}
	if old := time.Duration(k.skew.Swap(int64(d))); d != 0 && (old-d > time.Second || d-old > time.Second) {
		k.log.Warn("the agent's clock is off the broker's; judging command expiry by the broker's clock (is NTP running?)", "offset", d.Round(time.Second).String())
	}
}

// clockSkew is what to add to the agent's clock to get the broker's.
func (k *keeper) clockSkew() time.Duration { return time.Duration(k.skew.Load()) }

var errSameToken = errors.New("the token source still gives the same token")

// run renews the token until ctx ends: at 2/3 of its life, then with
// backoff and jitter until a new one comes.
func (k *keeper) run(ctx context.Context) {
	failures := 0
	var retryAfter time.Duration
	for {
		t, got, changed := k.snapshot()
		var wait <-chan time.Time // nil (never) until there is a token
		var timer *time.Timer
		if t.Access != "" {
			d := time.Until(refreshAt(t, got))
			if failures > 0 {
				d = max(d, jitter(k.backoff, failures), retryAfter)
			}
			timer = time.NewTimer(d)
			wait = timer.C
		}
		fire := false
		select {
		case <-ctx.Done():
		case <-changed: // fetched by get(): plan again
			failures = 0
		case <-wait:
			fire = true
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
		if !fire {
			continue
		}
		_, err := k.fetch(ctx, true)
		retryAfter = 0
		switch {
		case err == nil:
			failures = 0
		case ctx.Err() != nil:
			return
		default:
			failures++
			var xe *ExchangeError
			if errors.As(err, &xe) {
				retryAfter = min(xe.RetryAfter, time.Minute)
			}
			lvl := slog.LevelWarn
			if errors.Is(err, errSameToken) {
				lvl = slog.LevelDebug
			}
			k.log.Log(ctx, lvl, "token renewal failed; retrying", "error", err, "expires", t.Expiry.Format(time.RFC3339))
		}
	}
}

// jitter returns the wait before retry number n (n >= 1): a random
// duration in [Min, min(Max, Min·2^(n-1))] ("equal jitter" above Min), so
// agents that lost the broker together do not return together.
func jitter(c ReconnectConfig, n int) time.Duration {
	hi := c.Min
	for i := 1; i < n && hi < c.Max; i++ {
		hi *= 2
	}
	hi = min(hi, c.Max)
	if hi <= c.Min {
		return c.Min
	}
	return c.Min + rand.N(hi-c.Min+1)
}
