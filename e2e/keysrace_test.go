package e2e

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"homemq/auth"
	"homemq/broker"
	"homemq/registry"
)

// waitForLockWaiter reports once a goroutine of this process is inside
// registry.Open, waiting for registry.db's lock, or false after within.
func waitForLockWaiter(within time.Duration) bool {
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		n := runtime.Stack(buf, true)
		if bytes.Contains(buf[:n], []byte("homemq/registry.Open(")) {
			return true
		}
	}
	return false
}

// TestOfflineKeysRotateWhileTheBrokerStarts: an offline homemq keys rotate
// and homemq revoke hold the data folder's lock (registry.db) while they
// write. A broker started meanwhile waits for that lock before it reads
// the keys and the revocations, so it signs with the new key, accepts a
// token the operator mints from the data folder right after (as the CLI's
// next admin request does), and refuses the revoked subject. Before, it
// read signing-keys.json first and ran with the old key set.
func TestOfflineKeysRotateWhileTheBrokerStarts(t *testing.T) {
	data := t.TempDir()
	first := startBrokerIn(t, data)
	annTok := first.mint("user:ann", "h1=member")
	oldKid := first.Keys.Current().Kid
	keep := auth.RotationKeep(first.Config().Tokens)
	first.Close()

	// The CLI takes the lock as cmd/homemq's adminFlags.connect does, then
	// writes what keys rotate and revoke write when no broker runs.
	reg, err := registry.Open(data, &registry.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		kid string
		err error
	}
	cli := make(chan result, 1)
	go func() {
		defer reg.Close()
		if !waitForLockWaiter(10 * time.Second) {
			cli <- result{err: errors.New("the broker never waited for registry.db's lock")}
			return
		}
		keys, err := auth.LoadOrCreateKeys(data)
		if err != nil {
			cli <- result{err: err}
			return
		}
		resp, err := auth.RotateKeys(keys, keep)
		if err != nil {
			cli <- result{err: err}
			return
		}
		revs, err := auth.LoadRevocations(data)
		if err == nil {
			now := time.Now()
			err = revs.Add(auth.Revocation{Sub: "user:ann", At: now.Unix(), Until: now.Add(keep).Unix()})
		}
		cli <- result{kid: resp.Kid, err: err}
	}()

	b := startBrokerIn(t, data) // waits for the lock the CLI holds
	r := <-cli
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.kid == oldKid {
		t.Fatal("the rotation did not make a new key")
	}
	if got := b.Keys.Current().Kid; got != r.kid {
		t.Fatalf("the broker signs with key %s, the data folder's signing key is %s (the key rotated while it started)", got, r.kid)
	}

	// The operator's next token, minted from the data folder's keys.
	keys, err := auth.LoadOrCreateKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := auth.NewIssuer(b.Config().Tokens, keys).Mint(auth.Spec{Sub: "user:bob", Homes: map[string]string{"h1": "member"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ca, err := b.v5(overTLS, "user:bob", tok); err != nil {
		reason := ""
		if ca != nil && ca.Properties != nil {
			reason = ca.Properties.ReasonString
		}
		t.Fatalf("a token signed by the rotated key is refused: %v %s", err, reason)
	}
	_, ca, err := b.v5(overTLS, "user:ann", annTok)
	if err == nil {
		t.Fatal("user:ann, revoked while the broker started, still connects")
	}
	if ca == nil || ca.Properties == nil || !strings.Contains(ca.Properties.ReasonString, "revoked") {
		t.Fatalf("user:ann refused with %v, want a reason string saying revoked", err)
	}
}

// TestBrokerWithoutTheDataFolderLockWritesNothing: a broker that cannot
// take the data folder's lock (an offline command holds it) fails naming
// the lock, and has written nothing there: no signing key, no master
// secret, no certificate. Before, it made them first and failed after.
func TestBrokerWithoutTheDataFolderLockWritesNothing(t *testing.T) {
	data := t.TempDir()
	reg, err := registry.Open(data, &registry.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	cfg := broker.DefaultConfig()
	cfg.Data = data
	cfg.Listeners = broker.ListenersConfig{MQTT: "127.0.0.1:0", HTTPS: "127.0.0.1:0"}
	b, err := broker.New(cfg, broker.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err == nil {
		b.Close()
		t.Fatal("broker.New succeeded while registry.db was locked by another process")
	}
	if !errors.Is(err, registry.ErrLocked) || !strings.Contains(err.Error(), data) {
		t.Errorf("error %q should say registry.db in %s is locked", err, data)
	}
	entries, err := os.ReadDir(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != registry.File {
			t.Errorf("the broker wrote %s without the data folder's lock", e.Name())
		}
	}
}
