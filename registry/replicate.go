package registry

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Replication. On a node of a cluster every write transaction is also an
// entry of a change log the nodes share (package cluster keeps it in
// JetStream): the transaction records its changes (Change) instead of
// calling bbolt's Put and Delete directly, and before it commits, the
// change-set goes to the log through a Replicator, on the condition that
// the log ends where this copy ends. If another node wrote in between, the
// transaction is rolled back, the missing entries are applied (Apply, fed
// by the cluster) and it runs again. Reads stay local. Without a
// Replicator (a single node) the transaction just commits.

// Change is one write of a registry transaction: Key of Bucket set to
// Value, or deleted.
type Change struct {
	Bucket string `json:"b"`
	Key    []byte `json:"k"`
	Value  []byte `json:"v,omitempty"`
	Delete bool   `json:"d,omitempty"`
}

// Replicator appends the registry's change-sets to the log every node
// follows.
type Replicator interface {
	// Commit appends changes to the log if its last entry is after (0: the
	// log is empty) and returns the new entry's sequence. If the log has
	// moved on it returns a *ConflictError; any other error means the
	// change-set may not be in the log and the write must fail.
	Commit(ctx context.Context, after uint64, changes []Change) (seq uint64, err error)
	// Last returns the log's last sequence.
	Last(ctx context.Context) (uint64, error)
}

// ConflictError is a Replicator's answer when the log has entries this
// copy has not applied yet.
type ConflictError struct {
	// Last is the log's last sequence, if known (0 if not).
	Last uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("registry: the shared log moved on (last entry %d): another node wrote first", e.Last)
}

// Limits of one replicated write.
const (
	// WriteTimeout bounds one write: the appends, the waits for entries
	// of other nodes, the retries.
	WriteTimeout = 10 * time.Second
	// writeAttempts is how often a write runs again after a conflict.
	writeAttempts = 8
	// recheckTimeout bounds the wait of a refused credential for the
	// log's last entry (recheck).
	recheckTimeout = 5 * time.Second
)

// replicated are the buckets every node shares; bucketMeta is local.
var replicated = [][]byte{bucketHomes, bucketAgents, bucketMembers, bucketIntegrations, bucketInvites, bucketSignIns}

// Keys of bucketMeta that follow the log.
var (
	metaLog     = []byte("log.stream")  // the identity of the log this copy follows
	metaApplied = []byte("log.applied") // the last entry applied, 8 bytes big-endian
)

// ErrNotReplicated is returned by a write to a cluster node's copy while no
// Replicator is attached: the change would never reach the other nodes.
var ErrNotReplicated = errors.New("registry: this copy belongs to a cluster")

// wtx is a write transaction that records what it changes.
type wtx struct {
	*bolt.Tx
	changes []Change
}

// put sets key in bucket to value.
func (t *wtx) put(bucket, key, value []byte) error {
	if err := t.Bucket(bucket).Put(key, value); err != nil {
		return err
	}
	t.changes = append(t.changes, Change{Bucket: string(bucket), Key: bytes.Clone(key), Value: bytes.Clone(value)})
	return nil
}

// del deletes key from bucket.
func (t *wtx) del(bucket, key []byte) error {
	if err := t.Bucket(bucket).Delete(key); err != nil {
		return err
	}
	t.changes = append(t.changes, Change{Bucket: string(bucket), Key: bytes.Clone(key), Delete: true})
	return nil
}

// logState is where this copy stands in the shared log.
type logState struct {
	mu       sync.Mutex
	rep      Replicator    // nil: writes commit locally
	bound    bool          // the file follows a log (metaLog is set)
	applied  uint64        // the last entry applied
	advanced chan struct{} // closed (and replaced) when applied grows
}

// update runs fn in a write transaction. On a node of a cluster the
// change-set fn made is appended to the shared log before the transaction
// commits; fn runs again (a bounded number of times) when another node
// wrote first, after this copy has caught up.
func (r *Registry) update(fn func(t *wtx) error) error {
	r.log.mu.Lock()
	rep, bound := r.log.rep, r.log.bound
	r.log.mu.Unlock()
	if rep == nil {
		if bound {
			return &regError{msg: fmt.Sprintf("registry: %s is a cluster node's copy: change it through a running node's admin API (homemq … with the broker running), a change made here would never reach the other nodes", r.path), kinds: []error{ErrNotReplicated}}
		}
		return r.db.Update(func(tx *bolt.Tx) error { return fn(&wtx{Tx: tx}) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), WriteTimeout)
	defer cancel()
	synced := false // a refusal was checked against the log's end
	for attempt := 1; ; attempt++ {
		var seq uint64
		var commitErr error
		err := r.db.Update(func(tx *bolt.Tx) error {
			t := &wtx{Tx: tx}
			if err := fn(t); err != nil || len(t.changes) == 0 {
				return err
			}
			if seq, commitErr = rep.Commit(ctx, appliedSeq(tx), t.changes); commitErr != nil {
				return commitErr
			}
			return setApplied(tx, seq)
		})
		var conflict *ConflictError
		switch {
		case err == nil:
			if seq > 0 {
				r.advance(seq)
			}
			return nil
		case commitErr == nil && !synced && errors.As(err, new(*regError)):
			// the request's own error (not found, exists…), decided on
			// this copy: decide it again if the log has more
			synced = true
			if last, lerr := rep.Last(ctx); lerr == nil && last > r.Applied() && r.WaitApplied(ctx, last) == nil {
				continue
			}
			return err
		case commitErr == nil:
			return err
		case !errors.As(commitErr, &conflict):
			return fmt.Errorf("registry: the change was not made: the cluster's shared registry cannot be written (%w); try again when most nodes are up", commitErr)
		case attempt == writeAttempts:
			return fmt.Errorf("registry: the change was not made: other nodes kept writing first (%d attempts); try again", attempt)
		}
		if err := r.WaitApplied(ctx, max(conflict.Last, r.Applied()+1)); err != nil {
			return fmt.Errorf("registry: the change was not made: this node could not catch up with the cluster's registry (%w); try again", err)
		}
	}
}

// recheck runs check, and on a node of a cluster runs it again when it
// refused (ErrDenied) on a copy that had not applied the log's last entry
// yet, once it has: a credential issued on another node is accepted here
// as soon as that node's write returned. A single node runs check once.
func (r *Registry) recheck(check func() error) error {
	err := check()
	if err == nil || !errors.Is(err, ErrDenied) {
		return err
	}
	r.log.mu.Lock()
	rep := r.log.rep
	r.log.mu.Unlock()
	if rep == nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), recheckTimeout)
	defer cancel()
	last, lerr := rep.Last(ctx)
	if lerr != nil || last <= r.Applied() || r.WaitApplied(ctx, last) != nil {
		return err
	}
	return check()
}

// Replicate sends every later write through rep, on top of the entries
// this copy has applied. The cluster calls it once this copy is current.
func (r *Registry) Replicate(rep Replicator) {
	r.log.mu.Lock()
	r.log.rep = rep
	r.log.mu.Unlock()
}

// LogPosition returns the identity of the log this copy follows ("" if
// none) and the last entry of it applied.
func (r *Registry) LogPosition() (stream string, applied uint64, err error) {
	err = r.db.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			stream = string(m.Get(metaLog))
		}
		applied = appliedSeq(tx)
		return nil
	})
	return stream, applied, err
}

// Applied is the last entry of the shared log this copy has applied.
func (r *Registry) Applied() uint64 {
	r.log.mu.Lock()
	defer r.log.mu.Unlock()
	return r.log.applied
}

// Apply applies the change-set of entry seq of the shared log, made by
// any node. An entry this copy has (its own writes) is skipped; an entry
// after one this copy lacks is refused, so a copy never skips a write: it
// stops following instead, and its writes fail.
func (r *Registry) Apply(seq uint64, changes []Change) error {
	done := false
	err := r.db.Update(func(tx *bolt.Tx) error {
		applied := appliedSeq(tx)
		switch {
		case seq <= applied:
			return nil
		case seq > applied+1:
			return fmt.Errorf("registry: entry %d of the shared log comes after entry %d, which this copy has not applied", seq, applied+1)
		}
		for _, c := range changes {
			if !isReplicated(c.Bucket) {
				return fmt.Errorf("registry: entry %d of the shared log changes bucket %q, which is not shared", seq, c.Bucket)
			}
			b, err := tx.CreateBucketIfNotExists([]byte(c.Bucket))
			if err != nil {
				return err
			}
			if c.Delete {
				err = b.Delete(c.Key)
			} else {
				err = b.Put(c.Key, c.Value)
			}
			if err != nil {
				return fmt.Errorf("registry: apply entry %d of the shared log: %w", seq, err)
			}
		}
		done = true
		return setApplied(tx, seq)
	})
	if err == nil && done {
		r.advance(seq)
	}
	return err
}

// Seed starts the empty shared log stream with this copy: all its records
// as one change-set, appended only if the log is still empty (the first
// node wins). An empty copy appends nothing. Either way the copy then
// follows stream. It returns a *ConflictError if another node seeded first.
func (r *Registry) Seed(ctx context.Context, rep Replicator, stream string) error {
	var seq uint64
	err := r.db.Update(func(tx *bolt.Tx) error {
		var all []Change
		for _, name := range replicated {
			b := tx.Bucket(name)
			if b == nil {
				continue
			}
			_ = b.ForEach(func(k, v []byte) error {
				all = append(all, Change{Bucket: string(name), Key: bytes.Clone(k), Value: bytes.Clone(v)})
				return nil
			})
		}
		if len(all) > 0 {
			var err error
			if seq, err = rep.Commit(ctx, 0, all); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Put(metaLog, []byte(stream)); err != nil {
			return err
		}
		return setApplied(tx, seq)
	})
	if err == nil {
		r.bind(seq)
	}
	return err
}

// Reset empties the shared buckets so that this copy can follow the log
// stream from its start. A copy with records is first saved beside the
// database (registry.db.pre-cluster-{unix time}); Reset returns that file
// ("" if nothing was saved).
func (r *Registry) Reset(stream string) (saved string, err error) {
	err = r.db.Update(func(tx *bolt.Tx) error {
		if !isEmpty(tx) {
			saved = filepath.Join(filepath.Dir(r.path), fmt.Sprintf("%s.pre-cluster-%d", File, r.now().Unix()))
			if err := tx.CopyFile(saved, 0o600); err != nil {
				return fmt.Errorf("registry: save %s before following the cluster: %w", saved, err)
			}
		}
		for _, name := range replicated {
			if tx.Bucket(name) != nil {
				if err := tx.DeleteBucket(name); err != nil {
					return err
				}
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Put(metaLog, []byte(stream)); err != nil {
			return err
		}
		return setApplied(tx, 0)
	})
	if err == nil {
		r.bind(0)
	}
	return saved, err
}

// Detach makes the file a single node's registry again: writes commit
// locally and no longer follow a log. It reports whether it followed one.
func (r *Registry) Detach() (bool, error) {
	was := false
	err := r.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		was = m.Get(metaLog) != nil
		if err := m.Delete(metaLog); err != nil {
			return err
		}
		return m.Delete(metaApplied)
	})
	if err == nil {
		r.log.mu.Lock()
		r.log.bound, r.log.rep, r.log.applied = false, nil, 0
		r.log.mu.Unlock()
	}
	return was, err
}

// loadLog reads where the file stands in the shared log (Open).
func (r *Registry) loadLog() error {
	stream, applied, err := r.LogPosition()
	r.log.bound, r.log.applied = stream != "", applied
	r.log.advanced = make(chan struct{})
	return err
}

// bind notes that the file follows a log, at seq.
func (r *Registry) bind(seq uint64) {
	r.log.mu.Lock()
	r.log.bound = true
	r.log.applied = seq
	close(r.log.advanced)
	r.log.advanced = make(chan struct{})
	r.log.mu.Unlock()
}

// advance notes that entry seq is applied.
func (r *Registry) advance(seq uint64) {
	r.log.mu.Lock()
	if seq > r.log.applied {
		r.log.applied = seq
		close(r.log.advanced)
		r.log.advanced = make(chan struct{})
	}
	r.log.mu.Unlock()
}

// WaitApplied waits until entry seq of the shared log is applied here, or
// ctx ends.
func (r *Registry) WaitApplied(ctx context.Context, seq uint64) error {
	for {
		r.log.mu.Lock()
		applied, ch := r.log.applied, r.log.advanced
		r.log.mu.Unlock()
		if applied >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("entry %d of the shared log not applied (at %d): %w", seq, applied, ctx.Err())
		}
	}
}

func appliedSeq(tx *bolt.Tx) uint64 {
	m := tx.Bucket(bucketMeta)
	if m == nil {
		return 0
	}
	v := m.Get(metaApplied)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func setApplied(tx *bolt.Tx, seq uint64) error {
	return tx.Bucket(bucketMeta).Put(metaApplied, binary.BigEndian.AppendUint64(nil, seq))
}

func isReplicated(bucket string) bool {
	for _, b := range replicated {
		if string(b) == bucket {
			return true
		}
	}
	return false
}

// isEmpty reports whether the shared buckets hold no record.
func isEmpty(tx *bolt.Tx) bool {
	for _, name := range replicated {
		if b := tx.Bucket(name); b != nil {
			if k, _ := b.Cursor().First(); k != nil {
				return false
			}
		}
	}
	return true
}
