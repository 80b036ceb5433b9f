package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"homemq/topics"
)

func TestNonceFileSurvivesReopenAndDropsExpired(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	path := filepath.Join(t.TempDir(), "state", nonceFileName("h1", "pi1"))
	n, live, err := openNonces(path, clock)
	if err != nil || len(live) != 0 {
		t.Fatalf("open fresh: %v %v", live, err)
	}
	for _, s := range []seenNonce{{"k1", "aaaa", now.Add(time.Minute)}, {"k1", "bbbb", now.Add(2 * time.Second)}, {"k2", "cccc", now.Add(time.Hour)}} {
		if err := n.add(s.kid, s.nonce, s.exp); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.close(); err != nil {
		t.Fatal(err)
	}
	// A crash tore the last write, and the file holds a duplicate.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	_, _ = f.WriteString("1800003600 k2 cccc\n18000")
	_ = f.Close()

	now = now.Add(5 * time.Second) // bbbb has expired
	n, live, err = openNonces(path, clock)
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
	var got []string
	for _, s := range live {
		got = append(got, s.kid+"/"+s.nonce)
	}
	if strings.Join(got, ",") != "k1/aaaa,k2/cccc" {
		t.Fatalf("live nonces after reopen %v, want k1/aaaa,k2/cccc", got)
	}
	b, _ := os.ReadFile(path)
	if lines := strings.Count(string(b), "\n"); lines != 2 {
		t.Errorf("the compacted file has %d lines, want 2:\n%s", lines, b)
	}
	for _, p := range []string{path, filepath.Dir(path)} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]os.FileMode{false: 0o600, true: 0o700}[st.IsDir()]; st.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, st.Mode().Perm(), want)
		}
	}
}

func TestNonceFileCompactsWhileRunning(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	path := filepath.Join(t.TempDir(), "n")
	n, _, err := openNonces(path, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
	for i := 0; i < compactAfter+10; i++ {
		if err := n.add("k", strings.Repeat("x", 8)+string(rune('a'+i%26))+time.Duration(i).String(), now.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if i == compactAfter/2 {
			now = now.Add(time.Minute) // everything so far expires
		}
	}
	b, _ := os.ReadFile(path)
	if lines := strings.Count(string(b), "\n"); lines > compactAfter {
		t.Fatalf("the file holds %d lines after %d adds; expired ones were not compacted away", lines, compactAfter+10)
	}
}

// TestCommandTakenOnBeforeARestartIsNotExecutedAgain: a commander that
// acted on a command and "crashed" before acking leaves the nonce in its
// file; a new commander on the same file does not act on the redelivery
// and acks it as restarted.
func TestCommandTakenOnBeforeARestartIsNotExecutedAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), nonceFileName("h1", "pi1"))
	first := newTestCommander(t)
	n, live, err := openNonces(path, first.commander.now)
	if err != nil {
		t.Fatal(err)
	}
	first.useNonces(n, live)
	p := first.seal(t, "lamp", `{"action":"toggle"}`, first.now, 30*time.Second)
	topic := topics.CommandTopic("h1", "pi1", "lamp")
	if _, ack, ok := first.handle(topic, p); !ok || !ack.OK {
		t.Fatalf("first delivery: ok %v ack %+v", ok, ack)
	}
	_ = n.close() // the crash

	second := newTestCommander(t)
	n2, live, err := openNonces(path, second.commander.now)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.close()
	second.useNonces(n2, live)
	_, ack, ok := second.handle(topic, p)
	if !ok || ack.OK || ack.Error != ErrRestarted || ack.Nonce != nonceOf(p) || ack.State != "off" {
		t.Fatalf("redelivery after the restart: ok %v ack %+v, want an ack with error %s and state off", ok, ack, ErrRestarted)
	}
	if h := second.pins.Get("L").History(); len(h) > 1 {
		t.Fatalf("the lamp pin moved after the restart: %v", h)
	}
	if _, _, ok := second.handle(topic, p); ok {
		t.Fatal("a third delivery was answered again")
	}
}
