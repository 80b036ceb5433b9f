package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"homemq/atomicfile"
)

// RevocationsFile is the revocation list inside the data folder.
const RevocationsFile = "revocations.json"

// Revocation is one entry of the list: a token id or a subject. A token id
// revokes its whole refresh family (see Claims.Root): the token, the one it
// was refreshed from and every token refreshed from either.
type Revocation struct {
	JTI string `json:"jti,omitempty"`
	Sub string `json:"sub,omitempty"`
	// At is when it was revoked: a sub revocation refuses tokens issued at
	// or before At, so the owner can sign in again with a new token.
	At int64 `json:"at"`
	// Until is when the entry can be dropped: the revoked token's exp, or
	// At plus the longest token lifetime for a sub.
	Until int64 `json:"until"`
}

// Revocations is the persisted revocation list. Listeners learn of new
// entries so that matching connections are closed at once. It is safe for
// concurrent use; a nil *Revocations revokes nothing.
type Revocations struct {
	mu        sync.RWMutex
	path      string
	jtis      map[string]Revocation
	families  map[string]Revocation // jti entries by Family(jti)
	subs      map[string]Revocation
	listeners []func(Revocation)
	saves     int // how often the file was written (for tests)
}

// LoadRevocations reads dir/revocations.json (an empty list if absent).
// An empty dir gives a list that is never saved.
func LoadRevocations(dir string) (*Revocations, error) {
	r := &Revocations{jtis: map[string]Revocation{}, families: map[string]Revocation{}, subs: map[string]Revocation{}}
	if dir == "" {
		return r, nil
	}
	r.path = filepath.Join(dir, RevocationsFile)
	list, err := readRevocations(r.path)
	if err != nil {
		return nil, err
	}
	for _, e := range list {
		r.put(e)
	}
	_ = r.Prune(time.Now()) // a read-only caller can use the list; the broker prunes again every minute
	return r, nil
}

// readRevocations reads a revocation file (none if it does not exist).
func readRevocations(path string) ([]Revocation, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth: read revocations: %w", err)
	}
	var list []Revocation
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("auth: %s is broken: %w", path, err)
	}
	return list, nil
}

func (r *Revocations) put(e Revocation) {
	if e.JTI != "" {
		r.jtis[e.JTI] = e
		if old, ok := r.families[Family(e.JTI)]; !ok || old.Until < e.Until {
			r.families[Family(e.JTI)] = e
		}
	} else if e.Sub != "" {
		r.subs[e.Sub] = e
	}
}

// OnRevoke registers f to be called with every new entry.
func (r *Revocations) OnRevoke(f func(Revocation)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.listeners = append(r.listeners, f)
}

// familyKeep is how long after its revocation a jti entry must be kept:
// tokens of the family refreshed up to then live at most MaxTTL, plus the
// largest leeway a verifier may allow.
const familyKeep = MaxTTL + 5*time.Minute

// Add records e, saves the list and tells the listeners. A jti entry is
// kept at least familyKeep after At, whatever its Until says, so that it
// outlives every token refreshed from the revoked one.
func (r *Revocations) Add(e Revocation) error {
	if (e.JTI == "") == (e.Sub == "") {
		return errors.New("auth: a revocation names either a jti or a sub")
	}
	if e.At == 0 {
		e.At = time.Now().Unix()
	}
	if keep := time.Unix(e.At, 0).Add(familyKeep).Unix(); e.JTI != "" && e.Until < keep {
		e.Until = keep
	}
	r.mu.Lock()
	r.put(e)
	err := r.saveLocked()
	ls := append([]func(Revocation){}, r.listeners...)
	r.mu.Unlock()
	for _, f := range ls {
		f(e)
	}
	return err
}

// Matches reports whether e revokes a token with these claims: a jti entry
// matches that token and its whole refresh family.
func (e Revocation) Matches(c *Claims) bool {
	if e.JTI != "" {
		return e.JTI == c.ID || Family(e.JTI) == c.Family()
	}
	return e.Sub == c.Subject && !c.IssuedAtTime().After(time.Unix(e.At, 0))
}

// Check returns an *Error if c is revoked.
func (r *Revocations) Check(c *Claims) error {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e, ok := r.jtis[c.ID]; ok && e.Matches(c) {
		return &Error{Reason: ReasonRevoked, Detail: "token was revoked"}
	}
	if e, ok := r.families[c.Family()]; ok && e.Matches(c) {
		return &Error{Reason: ReasonRevoked, Detail: "token was revoked: it belongs to the refresh family of revoked token " + Clip(e.JTI)}
	}
	if e, ok := r.subs[c.Subject]; ok && e.Matches(c) {
		return &Error{Reason: ReasonRevoked, Detail: "every token of " + c.Subject + " issued before " + time.Unix(e.At, 0).UTC().Format(time.RFC3339) + " was revoked"}
	}
	return nil
}

// List returns the current entries.
func (r *Revocations) List() []Revocation {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Revocation, 0, len(r.jtis)+len(r.subs))
	for _, e := range r.jtis {
		out = append(out, e)
	}
	for _, e := range r.subs {
		out = append(out, e)
	}
	return out
}

// Prune drops entries whose Until has passed and, if it dropped any, saves
// the list. A Prune that drops nothing writes nothing.
func (r *Revocations) Prune(now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := now.Unix()
	dropped := 0
	for k, e := range r.jtis {
		if e.Until < n {
			delete(r.jtis, k)
			dropped++
		}
	}
	for k, e := range r.families {
		if e.Until < n {
			delete(r.families, k)
		}
	}
	for k, e := range r.subs {
		if e.Until < n {
			delete(r.subs, k)
			dropped++
		}
	}
	if dropped == 0 {
		return nil
	}
	return r.saveLocked()
}

func (r *Revocations) saveLocked() error {
	if r.path == "" {
		return nil
	}
	list := make([]Revocation, 0, len(r.jtis)+len(r.subs))
	for _, e := range r.jtis {
		list = append(list, e)
	}
	for _, e := range r.subs {
		list = append(list, e)
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	r.saves++
	if err := atomicfile.WriteFile(r.path, b, 0o600); err != nil {
		return fmt.Errorf("auth: save revocations: %w", err)
	}
	return nil
}
