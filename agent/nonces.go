package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The agent's seen nonces survive a crash. paho acknowledges a command
// (PUBACK) only after the handler returns, so an agent that dies after
// driving a pin and before the PUBACK leaves the command in the broker's
// session; the broker delivers it again on the next connection. The agent
// writes each command's nonce to a file in its state folder, and fsyncs
// it, before it acts; at start it loads the nonces that have not expired,
// so the redelivery is recognised and not executed again.

// nonceFileName is the file in the state folder holding the nonces of one
// agent: one line per command, "exp kid nonce", exp in Unix seconds.
func nonceFileName(home, agent string) string { return home + "." + agent + ".nonces" }

// compactAfter is how many lines are appended before the file is rewritten
// without its expired lines (it is also compacted at every start).
const compactAfter = 4096

// seenNonce is one line of the nonce file.
type seenNonce struct {
	kid, nonce string
	exp        time.Time
}

// nonceFile is the open nonce file. It is safe for concurrent use.
type nonceFile struct {
	path string
	now  func() time.Time

	mu       sync.Mutex
	f        *os.File
	appended int
}

// openNonces opens (creating the folder 0700 and the file 0600) the nonce
// file at path, drops its expired lines and returns the live ones.
func openNonces(path string, now func() time.Time) (*nonceFile, []seenNonce, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("state_dir: %w", err)
	}
	n := &nonceFile{path: path, now: now}
	live, err := n.compact()
	if err != nil {
		return nil, nil, err
	}
	return n, live, nil
}

// add appends one nonce and syncs the file: when it returns nil, a crash
// can no longer make the agent forget the command.
func (n *nonceFile) add(kid, nonce string, exp time.Time) error {
	line := strconv.FormatInt(exp.Unix(), 10) + " " + kid + " " + nonce + "\n"
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.f == nil {
		return errors.New("the nonce file is closed")
	}
	if _, err := n.f.WriteString(line); err != nil {
		return fmt.Errorf("writing %s: %w", n.path, err)
	}
	if err := n.f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", n.path, err)
	}
	n.appended++
	if n.appended >= compactAfter {
		if _, err := n.compactLocked(); err != nil {
			return err
		}
	}
	return nil
}

// close closes the file.
func (n *nonceFile) close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.f == nil {
		return nil
	}
	err := n.f.Close()
	n.f = nil
	return err
}

func (n *nonceFile) compact() ([]seenNonce, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.compactLocked()
}

// compactLocked rewrites the file with only its unexpired lines (through a
// synced temporary file renamed over it, so a crash leaves the old or the
// new file, never half of one) and reopens it for appending.
func (n *nonceFile) compactLocked() ([]seenNonce, error) {
	if n.f != nil {
		_ = n.f.Close()
		n.f = nil
	}
	old, err := os.ReadFile(n.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("state_dir: reading %s: %w", n.path, err)
	}
	live := parseNonces(old, n.now())
	var buf bytes.Buffer
	for _, s := range live {
		fmt.Fprintf(&buf, "%d %s %s\n", s.exp.Unix(), s.kid, s.nonce)
	}
	tmp := n.path + ".tmp"
	if err := writeSynced(tmp, buf.Bytes()); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	if err := os.Rename(tmp, n.path); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	if d, err := os.Open(filepath.Dir(n.path)); err == nil { // make the rename durable
		_ = d.Sync()
		_ = d.Close()
	}
	f, err := os.OpenFile(n.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	n.f, n.appended = f, 0
	return live, nil
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// parseNonces reads the lines of a nonce file whose exp is after now. A
// line that is not "exp kid nonce" (a write torn by a crash) is skipped;
// of a nonce listed twice the first line is kept.
func parseNonces(data []byte, now time.Time) []seenNonce {
	var out []seenNonce
	seen := map[string]bool{}
	for _, line := range bytes.Split(data, []byte{'\n'}) {
		f := strings.Fields(string(line))
		if len(f) != 3 {
			continue
		}
		exp, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || exp <= now.Unix() {
			continue
		}
		if k := f[1] + " " + f[2]; !seen[k] {
			seen[k] = true
			out = append(out, seenNonce{kid: f[1], nonce: f[2], exp: time.Unix(exp, 0)})
		}
	}
	return out
}
