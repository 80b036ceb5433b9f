// Package registry owns homemq's registry: the homes, the agents with the
// devices they own and the hashes of their credentials, and users'
// memberships (user → home → role), kept in registry.db (go.etcd.io/bbolt)
// in the data folder and served to operators through an admin API. On a
// node of a cluster every write also goes through a Replicator, a log all
// nodes apply (replicate.go).
package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"homemq/auth"
	"homemq/topics"
)

// File is the registry's database inside the data folder.
const File = "registry.db"

// DefaultTimeout is how long Open waits for another process's lock.
const DefaultTimeout = time.Second

// What went wrong, for errors.Is. The error text says which name and what to do.
var (
	ErrNotFound = errors.New("registry: not found")
	ErrExists   = errors.New("registry: already exists")
	ErrInvalid  = errors.New("registry: invalid request")
	ErrDenied   = errors.New("registry: credential not accepted")
	// ErrLocked is returned by Open when another process (normally the
	// running broker) holds registry.db.
	ErrLocked = errors.New("registry: database is locked by another process")
)

// regError is an error with a sentence for the user and its kinds for errors.Is.
type regError struct {
	msg   string
	kinds []error
}

func (e *regError) Error() string   { return e.msg }
func (e *regError) Unwrap() []error { return e.kinds }

func errorf(kind error, format string, args ...any) error {
	kinds := []error{kind}
	if kind == ErrNotFound || kind == ErrDenied {
		kinds = append(kinds, auth.ErrNotRegistered)
	}
	return &regError{msg: fmt.Sprintf(format, args...), kinds: kinds}
}

var (
	bucketHomes   = []byte("homes")
	bucketAgents  = []byte("agents")
	bucketMembers = []byte("members") // key: user \x00 home, value: role
	bucketMeta    = []byte("meta")
)

// Registry is the open registry database. It is safe for concurrent use.
type Registry struct {
	db   *bolt.DB
	path string
	now  func() time.Time
	log  logState // replicate.go
}

// Options tune Open.
type Options struct {
	// Timeout is how long to wait for another process's lock; 0 means
	// DefaultTimeout. After it, Open fails with ErrLocked.
	Timeout time.Duration
	// ReadOnly opens the database for reading only (a shared lock).
	ReadOnly bool
}

// Open opens (or makes, 0600) dir/registry.db. bbolt locks the file: while
// one process has it open for writing, Open in another fails with ErrLocked
// after opts.Timeout.
func Open(dir string, opts *Options) (*Registry, error) {
	if opts == nil {
		opts = &Options{}
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("registry: data folder %q does not exist (start the broker once, or pass the right --data)", dir)
	}
	p := filepath.Join(dir, File)
	db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: opts.ReadOnly})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, &regError{msg: fmt.Sprintf("registry: %s is in use by another process (a running broker?)", p), kinds: []error{ErrLocked}}
	}
	if err != nil {
		return nil, fmt.Errorf("registry: open %s: %w", p, err)
	}
	r := &Registry{db: db, path: p, now: time.Now}
	if !opts.ReadOnly {
		err = db.Update(func(tx *bolt.Tx) error {
			for _, b := range append([][]byte{bucketMeta}, replicated...) {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put([]byte("schema"), []byte("1"))
		})
		if err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("registry: prepare %s: %w", p, err)
		}
	}
	if err := r.loadLog(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("registry: read %s: %w", p, err)
	}
	return r, nil
}

// Close releases the database and its lock.
func (r *Registry) Close() error { return r.db.Close() }

// Path is the database file.
func (r *Registry) Path() string { return r.path }

// Home is a registered home.
type Home struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
}

// AddHome registers a new home.
func (r *Registry) AddHome(id string) (Home, error) {
	if !topics.ValidID(id) {
		return Home{}, errorf(ErrInvalid, "home id %q is invalid: use 1-64 of a-z 0-9 _ -", id)
	}
	h := Home{ID: id, Created: r.now().UTC().Truncate(time.Second)}
	err := r.update(func(tx *wtx) error {
		b := tx.Bucket(bucketHomes)
		if b.Get([]byte(id)) != nil {
			return errorf(ErrExists, "home %q already exists", id)
		}
		return tx.putJSON(bucketHomes, id, h)
	})
	return h, err
}

// RemoveHome deletes an empty home. A home with agents or members is
// refused, so nothing is left pointing at it.
func (r *Registry) RemoveHome(id string) error {
	return r.update(func(tx *wtx) error {
		if err := homeExists(tx.Tx, id); err != nil {
			return err
		}
		n := 0
		_ = tx.Bucket(bucketAgents).ForEach(func(_, v []byte) error {
			var a agentRecord
			if json.Unmarshal(v, &a) == nil && a.Home == id {
				n++
			}
			return nil
		})
		m := 0
		_ = tx.Bucket(bucketMembers).ForEach(func(k, _ []byte) error {
			if _, home := splitMemberKey(k); home == id {
				m++
			}
			return nil
		})
		if n > 0 || m > 0 {
			return errorf(ErrInvalid, "home %q still has %d agent(s) and %d member(s); remove them first", id, n, m)
		}
		if err := dropHomeIntegrations(tx, id); err != nil {
			return err
		}
		return tx.del(bucketHomes, []byte(id))
	})
}

// Homes lists the homes, sorted by id.
func (r *Registry) Homes() ([]Home, error) {
	var out []Home
	err := r.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHomes).ForEach(func(_, v []byte) error {
			var h Home
			if err := json.Unmarshal(v, &h); err != nil {
				return fmt.Errorf("registry: broken home record: %w", err)
			}
			out = append(out, h)
			return nil
		})
	})
	return out, err
}

// homeExists returns ErrNotFound with a hint when home is not registered.
func homeExists(tx *bolt.Tx, home string) error {
	if !topics.ValidID(home) {
		return errorf(ErrInvalid, "home id %q is invalid: use 1-64 of a-z 0-9 _ -", home)
	}
	if tx.Bucket(bucketHomes).Get([]byte(home)) == nil {
		return errorf(ErrNotFound, "home %q does not exist; add it first with: homemq home add %s", home, home)
	}
	return nil
}

// putJSON sets key of bucket to v in JSON.
func (t *wtx) putJSON(bucket []byte, key string, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return t.put(bucket, []byte(key), buf)
}

// sortedUnique validates, de-duplicates and sorts device ids.
func sortedUnique(devices []string) ([]string, error) {
	seen := map[string]bool{}
	out := []string{}
	for _, d := range devices {
		if !topics.ValidID(d) {
			return nil, errorf(ErrInvalid, "device id %q is invalid: use 1-64 of a-z 0-9 _ -", d)
		}
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out, nil
}
