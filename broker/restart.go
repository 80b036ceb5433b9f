package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"homemq/atomicfile"
	"homemq/hooks"
)

// The replay cache lives in memory, so a restarted broker does not know
// which commands the run before it accepted. IssuedFile tells it. While a
// run is in progress the file says so ("running"); a cleanly stopped run
// replaces that with what the next run must refuse (hooks.IssuedRecord):
// every command issued at or before the newest iat it accepted, except fresh
// ones issued in that very second, which the next run tells apart by their
// nonce. A start that finds "running" follows a crash: it refuses every
// command issued up to its start plus the envelope skew (the crashed run
// accepted an iat up to its own clock plus the skew), so honest commands are
// refused for the first seconds. No file means no broker has run on this
// data folder, and a new master secret needs nothing either: no earlier
// envelope verifies under it.

// IssuedFile holds, in the data folder, the hooks.IssuedRecord of a cleanly
// stopped broker, or the mark of a running one.
const IssuedFile = "issued.json"

// issuedState is IssuedFile's content.
type issuedState struct {
	Running bool `json:"running,omitempty"`
	hooks.IssuedRecord
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}

// loadIssued sets b.issued for this run from what the last one left, and
// marks this run as running.
func (b *Broker) loadIssued(freshSecret bool) error {
	p := filepath.Join(b.cfg.Data, IssuedFile)
	raw, err := os.ReadFile(p)
	var last issuedState
	switch {
	case errors.Is(err, os.ErrNotExist), freshSecret:
		// no earlier run, or none whose envelopes verify now
	case err != nil:
		return fmt.Errorf("broker: %s: %w", p, err)
	case json.Unmarshal(raw, &last) != nil || last.Running || last.Floor < 0:
		// the last run crashed (or left a garbled record): refuse what it may have accepted
		skew := int64((max(b.cfg.Envelope.Skew, 0) + time.Second - 1) / time.Second)
		last = issuedState{IssuedRecord: hooks.IssuedRecord{Floor: time.Now().Unix() + skew}}
	}
	b.issued = last.IssuedRecord
	return b.writeIssued(issuedState{Running: true})
}

// saveIssued records, at a clean shutdown, what the next run must refuse.
// A failure only costs the next run a few seconds of refused commands (it
// finds the running mark), so it is logged, not returned.
func (b *Broker) saveIssued() {
	if b.Guard == nil {
		return
	}
	if err := b.writeIssued(issuedState{IssuedRecord: b.Guard.IssuedRecord()}); err != nil {
		b.log.Warn("could not record the commands this run accepted; after the restart, commands are refused for the envelope skew", "error", err)
	}
}

func (b *Broker) writeIssued(st issuedState) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(b.cfg.Data, IssuedFile), raw, 0o600)
}
