package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"homemq/auth"
)

// tokenServer is a stand-in /api/token: it checks the request's form and
// answers with handler's status and body.
func tokenServer(t *testing.T, handler func(req auth.ExchangeRequest, w http.ResponseWriter)) *Exchanger {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req auth.ExchangeRequest
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		if req.GrantType != auth.GrantTokenExchange || req.SubjectTokenType != auth.TokenTypeAgentCredential {
			http.Error(w, `{"error":"unsupported_grant_type"}`, http.StatusBadRequest)
			return
		}
		handler(req, w)
	}))
	t.Cleanup(srv.Close)
	return &Exchanger{URL: srv.URL + "/api/token", Credential: goodCredential, Client: srv.Client()}
}

func TestExchanger(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		header  map[string]string
		body    string
		wantErr string
		retry   time.Duration
	}{
		{name: "token", status: 200, body: `{"access_token":"tok-1","issued_token_type":"urn:ietf:params:oauth:token-type:jwt","token_type":"Bearer","expires_in":3600,"msg_key":"k"}`},
		{name: "wrong credential", status: 401, body: `{"error":"invalid_client","error_description":"agent credential for h1/pi1 is not accepted"}`, wantErr: "401 invalid_client): agent credential for h1/pi1 is not accepted; check the agent credential"},
		{name: "rate limited", status: 429, header: map[string]string{"Retry-After": "7"}, body: `{"error":"slow_down"}`, wantErr: "429 slow_down", retry: 7 * time.Second},
		{name: "not json", status: 502, body: `<html>bad gateway</html>`, wantErr: "502 Bad Gateway"},
		{name: "200 without a token", status: 200, body: `{"expires_in":10}`, wantErr: "not a token"},
		{name: "200 without a lifetime", status: 200, body: `{"access_token":"x"}`, wantErr: "not a token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := tokenServer(t, func(req auth.ExchangeRequest, w http.ResponseWriter) {
				if req.SubjectToken != goodCredential {
					t.Errorf("subject_token %q, want the credential", req.SubjectToken)
				}
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			})
			before := time.Now()
			tok, err := x.Token(context.Background())
			if tt.wantErr == "" {
				if err != nil || tok.Access != "tok-1" {
					t.Fatalf("Token() = %+v, %v", tok, err)
				}
				if tok.Expiry.Before(before.Add(time.Hour)) || tok.Expiry.After(time.Now().Add(time.Hour)) {
					t.Fatalf("expiry %v is not an hour after the request", tok.Expiry)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			var xe *ExchangeError
			if errors.As(err, &xe) && xe.RetryAfter != tt.retry {
				t.Fatalf("RetryAfter %v, want %v", xe.RetryAfter, tt.retry)
			}
		})
	}
}

func TestExchangerReadsTheCredentialFileEachTime(t *testing.T) {
	var got []string
	var mu sync.Mutex
	x := tokenServer(t, func(req auth.ExchangeRequest, w http.ResponseWriter) {
		mu.Lock()
		got = append(got, req.SubjectToken)
		mu.Unlock()
		_, _ = w.Write([]byte(`{"access_token":"t","expires_in":60}`))
	})
	file := filepath.Join(t.TempDir(), "credential")
	x.Credential, x.CredentialFile = "", file
	if _, err := x.Token(context.Background()); err == nil || !strings.Contains(err.Error(), "credential_file") {
		t.Fatalf("a missing credential file: %v", err)
	}
	for _, c := range []string{"first\n", "  second  "} {
		if err := os.WriteFile(file, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := x.Token(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 || got[0] != "first" || got[1] != "second" {
		t.Fatalf("subject tokens %q, want the file's trimmed content each time", got)
	}
}

func jwtWithExp(t *testing.T, exp time.Time) string {
	t.Helper()
	claims := jwt.RegisteredClaims{Subject: "agent:pi1"}
	if !exp.IsZero() {
		claims.ExpiresAt = jwt.NewNumericDate(exp)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokenExpiry(t *testing.T) {
	exp := time.Unix(2_000_000_000, 0)
	tests := []struct {
		name, token, err string
		want             time.Time
	}{
		{name: "jwt", token: jwtWithExp(t, exp), want: exp},
		{name: "empty", token: "", err: "no token"},
		{name: "not a jwt", token: "hunter2", err: "not a JWT"},
		{name: "no exp", token: jwtWithExp(t, time.Time{}), err: "no exp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TokenExpiry(tt.token)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Fatalf("TokenExpiry = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func FuzzTokenExpiry(f *testing.F) {
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjJ9.sig")
	f.Add("a.b.c")
	f.Add("")
	f.Add("eyJhbGciOiJub25lIn0.eyJleHAiOiJ4In0.")
	f.Fuzz(func(t *testing.T, tok string) {
		exp, err := TokenExpiry(tok)
		if err == nil && exp.IsZero() {
			t.Fatalf("accepted %q without an expiry", tok)
		}
	})
}

func TestFileToken(t *testing.T) {
	file := filepath.Join(t.TempDir(), "agent.jwt")
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tok := jwtWithExp(t, exp)
	if err := os.WriteFile(file, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := FileToken{Path: file}.Token(context.Background())
	if err != nil || got.Access != tok || !got.Expiry.Equal(exp) {
		t.Fatalf("FileToken = %+v, %v", got, err)
	}
	if err := os.WriteFile(file, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (FileToken{Path: file}).Token(context.Background()); err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("a garbled token file: %v", err)
	}
}

// seqSource hands out tokens with the given lifetime, counting calls; fail
// makes calls fail.
type seqSource struct {
	life  time.Duration
	calls atomic.Int32
	fail  atomic.Bool
	same  atomic.Bool
}

func (s *seqSource) Token(context.Context) (Token, error) {
	n := s.calls.Add(1)
	if s.fail.Load() {
		return Token{}, errors.New("token service down")
	}
	if s.same.Load() {
		n = 1
	}
	return Token{Access: "tok-" + strconv.Itoa(int(n)), Expiry: time.Now().Add(s.life)}, nil
}

func TestUsableAndRefreshAt(t *testing.T) {
	got := time.Unix(1000, 0)
	tok := Token{Access: "t", Expiry: got.Add(60 * time.Second)}
	if want := got.Add(40 * time.Second); !refreshAt(tok, got).Equal(want) {
		t.Fatalf("refreshAt = %v, want 2/3 of the life (%v)", refreshAt(tok, got), want)
	}
	tests := []struct {
		at   time.Duration
		want bool
	}{{0, true}, {49 * time.Second, true}, {50 * time.Second, false}, {70 * time.Second, false}}
	for _, tt := range tests {
		if u := usable(tok, got, got.Add(tt.at)); u != tt.want {
			t.Errorf("usable at +%v = %v, want %v", tt.at, u, tt.want)
		}
	}
	if usable(Token{}, got, got) {
		t.Error("no token is usable")
	}
}

// The keeper tests run in a synctest bubble: the renewal timers and the
// token lifetimes run on the bubble's clock, so renewals and retries happen
// at exact instants and cost no wall time.

func TestKeeperRenewsInTheBackground(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &seqSource{life: 300 * time.Millisecond}
		k := newKeeper(src, ReconnectConfig{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}, quiet)
		start := time.Now()
		first, err := k.get(context.Background())
		if err != nil || k.password() != first.Access {
			t.Fatalf("get: %+v %v", first, err)
		}
		if again, _ := k.get(context.Background()); again.Access != first.Access || src.calls.Load() != 1 {
			t.Fatal("get fetched again while the token was fresh")
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go k.run(ctx)
		for i := 1; i <= 3; i++ {
			select {
			case <-k.rotated:
			case <-time.After(5 * time.Second):
				t.Fatalf("no renewal %d", i)
			}
			// Each token is renewed at two thirds of its life.
			if at, want := time.Since(start), time.Duration(i)*src.life*2/3; at != want {
				t.Fatalf("renewal %d at +%v, want +%v", i, at, want)
			}
		}
		if k.password() == first.Access {
			t.Fatal("the renewed token is not the current one")
		}
	})
}

func TestKeeperRetriesAndDoesNotRotateToTheSameToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &seqSource{life: 150 * time.Millisecond}
		k := newKeeper(src, ReconnectConfig{Min: 10 * time.Millisecond, Max: 20 * time.Millisecond}, quiet)
		if _, err := k.get(context.Background()); err != nil {
			t.Fatal(err)
		}
		src.same.Store(true)
		src.fail.Store(true)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go k.run(ctx)
		// The renewal is due at +100ms; by twice the token's life it has
		// failed and been retried (every 10 to 20 ms) several times.
		time.Sleep(2 * src.life)
		synctest.Wait()
		if n := src.calls.Load(); n < 4 {
			t.Fatalf("%d calls: a failing renewal must be retried", n)
		}
		src.fail.Store(false) // now it answers, but with the same token as before
		select {
		case <-k.rotated:
			t.Fatal("the same token was reported as a renewal")
		case <-time.After(200 * time.Millisecond):
		}
		src.same.Store(false)
		select {
		case <-k.rotated:
		case <-time.After(5 * time.Second):
			t.Fatal("a new token after the failures was not reported")
		}
		if _, err := newKeeper(&seqSource{life: -time.Second}, ReconnectConfig{Min: time.Millisecond, Max: time.Millisecond}, quiet).get(context.Background()); err == nil {
			t.Fatal("an already expired token was accepted")
		}
	})
}

func TestJitter(t *testing.T) {
	c := ReconnectConfig{Min: 100 * time.Millisecond, Max: time.Second}
	tests := []struct {
		n      int
		hi     time.Duration
		spread bool
	}{{1, 100 * time.Millisecond, false}, {2, 200 * time.Millisecond, true}, {4, 800 * time.Millisecond, true}, {10, time.Second, true}, {100, time.Second, true}}
	for _, tt := range tests {
		seen := map[time.Duration]bool{}
		for i := 0; i < 200; i++ {
			d := jitter(c, tt.n)
			if d < c.Min || d > tt.hi {
				t.Fatalf("jitter(%d) = %v, outside [%v, %v]", tt.n, d, c.Min, tt.hi)
			}
			seen[d] = true
		}
		if tt.spread && len(seen) < 10 {
			t.Fatalf("jitter(%d) gave only %d different waits: agents would return in step", tt.n, len(seen))
		}
	}
}

func TestExchangerMeasuresTheBrokersClock(t *testing.T) {
	for _, off := range []time.Duration{-10 * time.Minute, 0, 3 * time.Hour} {
		x := tokenServer(t, func(_ auth.ExchangeRequest, w http.ResponseWriter) {
			w.Header().Set("Date", time.Now().Add(off).UTC().Format(http.TimeFormat))
			_, _ = w.Write([]byte(`{"access_token":"t","expires_in":60}`))
		})
		tok, err := x.Token(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if d := tok.Skew - off; d < -1500*time.Millisecond || d > 1500*time.Millisecond {
			t.Fatalf("broker clock %v off: measured skew %v", off, tok.Skew)
		}
	}
}

func TestKeeperInvalidateFetchesAnew(t *testing.T) {
	src := &seqSource{life: time.Hour}
	k := newKeeper(src, ReconnectConfig{Min: time.Millisecond, Max: time.Millisecond}, quiet)
	first, _ := k.get(context.Background())
	k.invalidate() // the broker refused it
	if k.password() != "" {
		t.Fatal("a refused token is still offered")
	}
	second, err := k.get(context.Background())
	if err != nil || second.Access == first.Access || src.calls.Load() != 2 {
		t.Fatalf("after invalidate: %+v %v (%d calls)", second, err, src.calls.Load())
	}
}
