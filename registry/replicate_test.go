package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"homemq/auth"
	"homemq/internal/eventually"
)

// fakeLog is an in-memory shared log: what JetStream is to the cluster.
type fakeLog struct {
	mu        sync.Mutex
	entries   [][]Change
	grew      chan struct{}
	conflicts int
	down      error // Commit fails with it
}

func newFakeLog() *fakeLog { return &fakeLog{grew: make(chan struct{})} }

func (l *fakeLog) Commit(_ context.Context, after uint64, changes []Change) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down != nil {
		return 0, l.down
	}
	if after != uint64(len(l.entries)) {
		l.conflicts++
		return 0, &ConflictError{Last: uint64(len(l.entries))}
	}
	l.entries = append(l.entries, changes)
	close(l.grew)
	l.grew = make(chan struct{})
	return uint64(len(l.entries)), nil
}

func (l *fakeLog) Last(context.Context) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return uint64(len(l.entries)), nil
}

// follow applies the log's entries to r as they come, like a node's
// consumer, until the test ends or stop is called.
func (l *fakeLog) follow(t *testing.T, r *Registry) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			l.mu.Lock()
			from := r.Applied()
			pending := append([][]Change(nil), l.entries[min(from, uint64(len(l.entries))):]...)
			grew := l.grew
			l.mu.Unlock()
			for i, cs := range pending {
				if err := r.Apply(from+uint64(i)+1, cs); err != nil {
					t.Errorf("apply: %v", err)
					return
				}
			}
			select {
			case <-grew:
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(done); <-stopped }) }
	t.Cleanup(stop)
	return stop
}

// node opens a registry that writes through l and follows it.
func (l *fakeLog) node(t *testing.T) *Registry {
	t.Helper()
	r := l.joined(t)
	l.follow(t, r)
	return r
}

// joined is a copy that writes through the log but does not follow it:
// it sees other copies' writes only when a test lets it catch up.
func (l *fakeLog) joined(t *testing.T) *Registry {
	t.Helper()
	r, _ := openTest(t)
	if err := r.Seed(context.Background(), l, "test-log"); err != nil {
		t.Fatal(err)
	}
	r.Replicate(l)
	return r
}

// dump is the shared buckets' content, one line per record.
func dump(t *testing.T, r *Registry) string {
	t.Helper()
	var sb strings.Builder
	err := r.db.View(func(tx *bolt.Tx) error {
		for _, name := range replicated {
			if b := tx.Bucket(name); b != nil {
				_ = b.ForEach(func(k, v []byte) error {
					fmt.Fprintf(&sb, "%s %q %q\n", name, k, v)
					return nil
				})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

// TestChangeLogApply: every write of every kind made on one copy reaches
// the other through the log, record for record, so no write bypasses it.
func TestChangeLogApply(t *testing.T) {
	l := newFakeLog()
	a, b := l.node(t), l.node(t)
	ctx := context.Background()
	steps := []Request{
		{Op: OpHomeAdd, Home: "h1"},
		{Op: OpHomeAdd, Home: "h2"},
		{Op: OpAgentAdd, Home: "h1", Agent: "pi", Devices: []string{"lamp", "door"}},
		{Op: OpAgentRotate, Home: "h1", Agent: "pi"},
		{Op: OpMemberAdd, Home: "h1", User: "alice", Role: "admin"},
		{Op: OpIntegrationAdd, Home: "h1", Integration: "ha", Role: "member"},
		{Op: OpIntegrationRotate, Home: "h1", Integration: "ha", Role: "viewer"},
		{Op: OpDoorAllow, Home: "h1", Agent: "pi", Devices: []string{"door"}},
		{Op: OpIntegrationAdd, Home: "h2", Integration: "nodered", Role: "service"},
		{Op: OpDoorAllow, Home: "h2", Agent: "pi", Devices: []string{"door"}},
		{Op: OpIntegrationRemove, Home: "h2", Integration: "nodered"},
		{Op: OpHomeRemove, Home: "h2"}, // drops its door grant
		{Op: OpInviteAdd, Home: "h1", Role: "viewer", User: "bob"},
		{Op: OpDoorDeny, Home: "h1", Agent: "pi", Devices: []string{"door"}},
	}
	var invite string
	for _, req := range steps {
		resp, err := a.Do(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", req.Op, err)
		}
		if req.Op == OpInviteAdd {
			invite = resp.Credential
		}
	}
	// the invite is redeemed on the other copy, the sign-in used and removed there
	signin := ""
	eventually.That(t, 5*time.Second, "b redeems an invite made on a", func() bool {
		_, s, err := b.RedeemInvite(invite, "phone")
		signin = s
		return err == nil
	})
	eventually.That(t, 5*time.Second, "a sign-in made on b works on a", func() bool { _, err := a.CheckSignIn(signin); return err == nil })
	for _, req := range []Request{
		{Op: OpMemberRemove, Home: "h1", User: "alice"},
		{Op: OpAgentRemove, Home: "h1", Agent: "pi"},
	} {
		if _, err := b.Do(ctx, req); err != nil {
			t.Fatalf("%s on b: %v", req.Op, err)
		}
	}
	if _, err := b.RemoveSignInsOf("user:bob"); err != nil {
		t.Fatal(err)
	}
	eventually.That(t, 5*time.Second, "both copies hold the same records", func() bool { return a.Applied() == b.Applied() && dump(t, a) == dump(t, b) })
	if got := dump(t, a); !strings.Contains(got, "integrations \"ha\"") || strings.Contains(got, "signins") || strings.Contains(got, "alice") {
		t.Fatalf("unexpected records after the steps:\n%s", got)
	}
}

// TestWriteAfterConflict: a copy that has not seen another node's writes
// yet writes on top of them, not beside them: its append is refused, it
// catches up and runs the write again, against the current records. An
// invite is redeemed once across copies.
func TestWriteAfterConflict(t *testing.T) {
	l := newFakeLog()
	a := l.node(t)
	b := l.joined(t)
	// lagging runs write on a while b's consumer is stopped, then b writes
	// with its consumer coming back a moment later
	back := make(chan func(), 1)
	back <- func() {}
	lagging := func(write func()) {
		t.Helper()
		(<-back)()
		stop := l.follow(t, b)
		eventually.That(t, 5*time.Second, "b catches up", func() bool { return b.Applied() == uint64(len(l.entries)) })
		stop()
		write()
		go func() {
			time.Sleep(50 * time.Millisecond)
			back <- l.follow(t, b)
		}()
	}

	if _, err := a.AddHome("h1"); err != nil {
		t.Fatal(err)
	}
	_, code, err := a.AddInvite("h1", "member", "carol", 0)
	if err != nil {
		t.Fatal(err)
	}
	lagging(func() {
		if _, err := a.AddMember("h1", "dave", "viewer"); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := b.AddMember("h1", "frank", "viewer"); err != nil {
		t.Fatalf("a write on a copy behind the log: %v", err)
	}
	if l.conflicts != 1 {
		t.Fatalf("%d conflicts, want 1", l.conflicts)
	}
	// once: the invite is redeemed on a; b, which still holds it, is refused
	lagging(func() {
		if _, _, err := a.RedeemInvite(code, "laptop"); err != nil {
			t.Fatal(err)
		}
	})
	if _, _, err := b.RedeemInvite(code, "phone"); !errors.Is(err, ErrDenied) {
		t.Fatalf("second redemption on another copy: %v, want ErrDenied", err)
	}
	if l.conflicts != 2 {
		t.Fatalf("%d conflicts, want 2", l.conflicts)
	}
	eventually.That(t, 5*time.Second, "the copies agree", func() bool { return dump(t, a) == dump(t, b) })
	d := dump(t, a)
	if !strings.Contains(d, `members "user:dave\x00h1" "viewer"`) || !strings.Contains(d, `members "user:frank\x00h1" "viewer"`) {
		t.Fatalf("a membership is missing:\n%s", d)
	}
	if len(l.entries) != 5 { // home, invite, dave, frank, redemption; nothing for the refusal
		t.Fatalf("%d log entries, want 5", len(l.entries))
	}
}

// TestRefusalCheckedAgainstTheLog: a write refused on what this copy holds
// (no such home) is decided again once the copy has the log's last entry.
func TestRefusalCheckedAgainstTheLog(t *testing.T) {
	l := newFakeLog()
	a := l.node(t)
	b := l.joined(t)
	stop := l.follow(t, b)
	stop() // b lags until it must catch up
	if _, err := a.AddHome("h1"); err != nil {
		t.Fatal(err)
	}
	go func() { // b's consumer comes back a moment later
		time.Sleep(50 * time.Millisecond)
		l.follow(t, b)
	}()
	if _, err := b.AddMember("h1", "erin", "member"); err != nil {
		t.Fatalf("member of a home another node added: %v", err)
	}
	if _, err := b.AddMember("nope", "erin", "member"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("member of a home nobody added: %v, want ErrNotFound", err)
	}
}

// TestCredentialCheckedAgainstTheLog: a credential issued on another node
// a moment ago is accepted on a copy that lags, once it has caught up; a
// wrong one is still refused.
func TestCredentialCheckedAgainstTheLog(t *testing.T) {
	l := newFakeLog()
	a := l.node(t)
	b := l.joined(t)
	if _, err := a.AddHome("h1"); err != nil {
		t.Fatal(err)
	}
	_, cred, err := a.AddAgent("h1", "pi", []string{"lamp"})
	if err != nil {
		t.Fatal(err)
	}
	_, pw, err := a.AddIntegration("h1", "ha", "viewer")
	if err != nil {
		t.Fatal(err)
	}
	go func() { // b's consumer comes a moment later
		time.Sleep(50 * time.Millisecond)
		l.follow(t, b)
	}()
	if g, err := b.CheckAgentCredential(cred); err != nil || g.Agent != "pi" {
		t.Fatalf("agent credential issued on a, checked on b: %v %v", g, err)
	}
	if in, err := b.CheckIntegration("ha", pw); err != nil || in.Role != "viewer" {
		t.Fatalf("integration credential issued on a, checked on b: %v %v", in, err)
	}
	wrong, _ := auth.ParseAgentCredential(cred.Encode())
	wrong.Agent = "other"
	if _, err := b.CheckAgentCredential(wrong); !errors.Is(err, ErrDenied) {
		t.Fatalf("a wrong credential: %v, want ErrDenied", err)
	}
}

// TestApplyNeverSkipsAnEntry: an entry after one the copy lacks is
// refused, and the copy stays where it was.
func TestApplyNeverSkipsAnEntry(t *testing.T) {
	r, _ := openTest(t)
	home := []Change{{Bucket: "homes", Key: []byte("h1"), Value: []byte(`{"id":"h1"}`)}}
	if err := r.Apply(2, home); err == nil || !strings.Contains(err.Error(), "entry 1") {
		t.Fatalf("entry 2 on a copy without entry 1: %v, want a refusal naming entry 1", err)
	}
	if err := r.Apply(1, home); err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(1, nil); err != nil || r.Applied() != 1 {
		t.Fatalf("entry 1 again: %v, applied %d", err, r.Applied())
	}
	if hs, _ := r.Homes(); len(hs) != 1 {
		t.Fatalf("homes %v, want h1", hs)
	}
	if err := r.Apply(2, []Change{{Bucket: "meta", Key: []byte("log.applied"), Value: []byte("x")}}); err == nil {
		t.Fatal("an entry that changes the local meta bucket was applied")
	}
}

// TestWriteFailsClosed: when the log cannot be written, nothing changes
// and the error says why and what to do.
func TestWriteFailsClosed(t *testing.T) {
	l := newFakeLog()
	a := l.node(t)
	l.down = errors.New("no quorum")
	_, err := a.AddHome("h1")
	if err == nil || !strings.Contains(err.Error(), "no quorum") || !strings.Contains(err.Error(), "not made") {
		t.Fatalf("write without the log: %v", err)
	}
	if hs, _ := a.Homes(); len(hs) != 0 {
		t.Fatalf("homes after a failed write: %v", hs)
	}
}

// TestSeedAndReset: the first copy to seed an empty log puts its records
// in it; another seeding later is a conflict, and that copy, reset, keeps
// its records in a file beside the database and follows the log.
func TestSeedAndReset(t *testing.T) {
	l := newFakeLog()
	ctx := context.Background()
	a, _ := openTest(t)
	if _, err := a.AddHome("old-a"); err != nil {
		t.Fatal(err)
	}
	b, dir := openTest(t)
	if _, err := b.AddHome("old-b"); err != nil {
		t.Fatal(err)
	}
	if err := a.Seed(ctx, l, "log-1"); err != nil {
		t.Fatal(err)
	}
	var conflict *ConflictError
	if err := b.Seed(ctx, l, "log-1"); !errors.As(err, &conflict) {
		t.Fatalf("second seed: %v, want a conflict", err)
	}
	saved, err := b.Reset("log-1")
	if err != nil || saved == "" || filepath.Dir(saved) != dir {
		t.Fatalf("reset: %q, %v", saved, err)
	}
	if _, err := os.Stat(saved); err != nil {
		t.Fatal(err)
	}
	l.follow(t, b)
	eventually.That(t, 5*time.Second, "b holds the log's records", func() bool { return dump(t, a) == dump(t, b) })
	if hs, _ := b.Homes(); len(hs) != 1 || hs[0].ID != "old-a" {
		t.Fatalf("b's homes: %v", hs)
	}
	if stream, applied, _ := b.LogPosition(); stream != "log-1" || applied != 1 {
		t.Fatalf("b's position: %q %d", stream, applied)
	}
}

// TestCopyOfAClusterRefusesOfflineWrites: once a registry follows a log,
// opening it without the cluster (the CLI, broker stopped) reads but does
// not write: the change would never reach the other nodes.
func TestCopyOfAClusterRefusesOfflineWrites(t *testing.T) {
	l := newFakeLog()
	r, dir := openTest(t)
	if err := r.Seed(context.Background(), l, "log-1"); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r2, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	_, err = r2.AddHome("h1")
	want(t, "offline write", err, ErrNotReplicated, "admin API")
	if _, err := r2.Homes(); err != nil {
		t.Fatal(err)
	}
	if was, err := r2.Detach(); !was || err != nil {
		t.Fatalf("detach: %v %v", was, err)
	}
	if _, err := r2.AddHome("h1"); err != nil {
		t.Fatalf("write after detach: %v", err)
	}
}
