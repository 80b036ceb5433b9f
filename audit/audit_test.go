package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"homemq/decision"
)

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestObserveWritesOneJSONLinePerDecision(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	l.Observe(decision.Event{Time: at, Kind: decision.EventConnect, Allowed: true, Sub: "agent:pi", JTI: "j1", ClientID: "agent:pi", Remote: "127.0.0.1:5000", Listener: "mqtts"})
	l.Observe(decision.Event{Time: at, Kind: decision.EventCommand, Allowed: false, Reason: "replay", Detail: "command refused: replay", Sub: "user:ann", JTI: "j2",
		Topic: "homes/h1/agents/pi/devices/door/cmd", Nonce: "n1"})
	l.Observe(decision.Event{Time: at, Kind: decision.EventSubscribe, Allowed: false, Reason: "acl", Topic: "homes/h2/#"})
	l.Observe(decision.Event{Time: at, Kind: decision.EventSubscribe, Allowed: true, Topic: "homes/h1/#"})               // not audited
	l.Observe(decision.Event{Time: at, Kind: decision.EventDelivery, Allowed: true, Topic: "homes/h1/agents/pi/status"}) // not audited
	l.Record(Entry{Event: "revocation", Sub: "user:bob", Actor: "service:ops"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, filepath.Join(dir, FileName))
	want := []map[string]any{
		{"time": "2025-03-01T12:00:00Z", "event": "connect", "outcome": "allowed", "sub": "agent:pi", "jti": "j1", "client": "agent:pi", "remote": "127.0.0.1:5000", "listener": "mqtts"},
		{"time": "2025-03-01T12:00:00Z", "event": "command", "outcome": "refused", "reason": "replay", "detail": "command refused: replay", "sub": "user:ann", "jti": "j2",
			"topic": "homes/h1/agents/pi/devices/door/cmd", "home": "h1", "agent": "pi", "device": "door", "nonce": "n1"},
		{"time": "2025-03-01T12:00:00Z", "event": "subscribe", "outcome": "refused", "reason": "acl", "topic": "homes/h2/#", "home": "h2"},
	}
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want 4: %v", len(lines), lines)
	}
	for i, w := range want {
		if fmt.Sprint(lines[i]) != fmt.Sprint(w) {
			t.Errorf("line %d:\n got %v\nwant %v", i, lines[i], w)
		}
	}
	if got := lines[3]; got["event"] != "revocation" || got["outcome"] != "allowed" || got["actor"] != "service:ops" || got["time"] == "" {
		t.Errorf("Record line = %v", got)
	}
}

func TestFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := Open(dir, Options{MaxSize: 300, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		l.Record(Entry{Event: "connect", Sub: "user:ann"})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, FileName+"*"))
	if len(files) < 2 {
		t.Fatalf("no rotation happened: %v", files)
	}
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
}

func TestRotationKeepsNFilesUnderTheSizeLimit(t *testing.T) {
	dir := t.TempDir()
	const maxSize, keep, n = 1000, 3, 200
	l, err := Open(dir, Options{MaxSize: maxSize, Keep: keep})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		l.Record(Entry{Event: "command", Sub: "user:ann", Nonce: fmt.Sprintf("nonce-%04d", i)})
		if i%16 == 0 {
			time.Sleep(time.Millisecond) // let batches of different sizes form
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	wantNames := []string{FileName, FileName + ".1", FileName + ".2", FileName + ".3"}
	if len(names) != len(wantNames) {
		t.Fatalf("files %v, want %v", names, wantNames)
	}
	for _, w := range wantNames {
		st, err := os.Stat(filepath.Join(dir, w))
		if err != nil {
			t.Fatalf("missing %s: %v", w, err)
		}
		if st.Size() > maxSize {
			t.Errorf("%s is %d bytes, over the %d limit", w, st.Size(), maxSize)
		}
	}
	// The newest entries are in audit.log, older ones in .1, .2, .3, in
	// order and without gaps; the oldest ones were rotated away.
	var nonces []string
	for _, w := range []string{FileName + ".3", FileName + ".2", FileName + ".1", FileName} {
		for _, m := range readLines(t, filepath.Join(dir, w)) {
			nonces = append(nonces, m["nonce"].(string))
		}
	}
	if nonces[len(nonces)-1] != fmt.Sprintf("nonce-%04d", n-1) {
		t.Fatalf("last entry %s, want nonce-%04d", nonces[len(nonces)-1], n-1)
	}
	for i := 1; i < len(nonces); i++ {
		if nonces[i] <= nonces[i-1] {
			t.Fatalf("entries out of order or repeated: %s after %s", nonces[i], nonces[i-1])
		}
	}
	var first int
	fmt.Sscanf(nonces[0], "nonce-%d", &first)
	if first+len(nonces) != n || first == 0 {
		t.Fatalf("kept %d entries starting at %d; want the last ones up to %d, with the oldest rotated away", len(nonces), first, n-1)
	}
}

func TestReopenAppends(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 2; i++ {
		l, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		l.Record(Entry{Event: "connect"})
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(readLines(t, filepath.Join(dir, FileName))); got != 2 {
		t.Fatalf("%d lines after two runs, want 2", got)
	}
}

func TestSecretsAreMasked(t *testing.T) {
	jwt := "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiJ1c2VyOmFubiJ9.c2lnbmF0dXJlLWJ5dGVz"
	cred := "hmq1.h1.pi.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	cases := []struct {
		name string
		in   Entry
	}{
		{"jwt in detail", Entry{Detail: "token " + jwt + " is expired"}},
		{"jwt as client id", Entry{ClientID: jwt}},
		{"credential in detail", Entry{Detail: `bad credential "` + cred + `"`}},
		{"credential in topic", Entry{Topic: "homes/h1/" + cred}},
		{"jwt in actor", Entry{Actor: "Bearer " + jwt}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			l.Record(c.in)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(filepath.Join(dir, FileName))
			if strings.Contains(string(b), jwt) || strings.Contains(string(b), "AAAAAAAAAAAAAAAA") || strings.Contains(string(b), "c2lnbmF0dXJl") {
				t.Fatalf("secret in the log: %s", b)
			}
			if !strings.Contains(string(b), Masked) {
				t.Fatalf("no %s marker in %s", Masked, b)
			}
		})
	}
	if got := mask("homes/h1/agents/pi/devices/door/cmd"); got != "homes/h1/agents/pi/devices/door/cmd" {
		t.Errorf("an ordinary topic was changed to %q", got)
	}
}

func TestFullQueueDropsAndSaysSo(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{queueLen: 1})
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	for i := 0; i < n; i++ {
		l.Record(Entry{Event: "connect"})
	}
	dropped := l.Dropped()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if dropped == 0 {
		t.Skip("the writer kept up with a queue of 1; nothing to check") // the machine was idle enough
	}
	lines := readLines(t, filepath.Join(dir, FileName))
	var kept int
	var reportedDrops int
	for _, m := range lines {
		if m["event"] == EventDropped {
			var d int
			fmt.Sscanf(m["detail"].(string), "%d", &d)
			reportedDrops += d
			continue
		}
		kept++
	}
	if uint64(kept)+l.Dropped() != n || uint64(reportedDrops) != l.Dropped() {
		t.Fatalf("kept %d + dropped %d != %d recorded, or reported drops %d != %d", kept, l.Dropped(), n, reportedDrops, l.Dropped())
	}
	l.Record(Entry{Event: "connect"})
	if l.Dropped() != dropped+1 {
		t.Errorf("Record after Close was not counted as dropped")
	}
}
