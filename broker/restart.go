package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"homemq/hooks"
)

// The replay cache lives in memory, so a restarted broker does not know
// which commands the run before it accepted. A cleanly stopped run saves
// in IssuedFile what the next run must refuse (hooks.IssuedRecord): every
// command issued at or before the newest iat it accepted, except fresh ones
// issued in that very second, which the next run tells apart by their
// nonce. After a crash, with no record, the next run refuses every command
// issued up to its start plus the envelope skew (an earlier run accepted an
// iat up to its own clock plus the skew), so honest commands are refused for
// the first seconds. A new master secret needs nothing: no earlier envelope
// verifies under it.

// IssuedFile holds, in the data folder, the hooks.IssuedRecord of a cleanly
// stopped broker. It is removed at start, so a crash leaves none.
const IssuedFile = "issued.json"

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}

// loadIssued sets b.issued for this run and removes the record of the last.
func (b *Broker) loadIssued(freshSecret bool) error {
	p := filepath.Join(b.cfg.Data, IssuedFile)
	raw, readErr := os.ReadFile(p)
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("broker: %s: %w; remove it by hand", p, err)
	}
	if err := syncDir(b.cfg.Data); err != nil {
		return fmt.Errorf("broker: data folder: %w", err)
	}
	var rec hooks.IssuedRecord
	switch {
	case freshSecret:
	case readErr == nil && json.Unmarshal(raw, &rec) == nil && rec.Floor >= 0:
	default: // nothing known of the last run
		skew := int64((max(b.cfg.Envelope.Skew, 0) + time.Second - 1) / time.Second)
		rec = hooks.IssuedRecord{Floor: time.Now().Unix() + skew}
	}
	b.issued = rec
	return nil
}

// saveIssued records, at a clean shutdown, what the next run must refuse.
// A failure only costs the next run a few seconds of refused commands, so
// it is logged, not returned.
func (b *Broker) saveIssued() {
	if b.Guard == nil {
		return
	}
	raw, err := json.Marshal(b.Guard.IssuedRecord())
	if err == nil {
		err = writeFileSync(filepath.Join(b.cfg.Data, IssuedFile), raw)
	}
	if err != nil {
		b.log.Warn("could not record the commands this run accepted; after the restart, commands are refused for the envelope skew", "error", err)
	}
}

// writeFileSync replaces path with data durably: a temporary file, fsync,
// rename, fsync of the folder.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
