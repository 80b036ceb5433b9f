package audit

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	jwt := "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiJ1c2VyOmFubiJ9.c2lnbmF0dXJlLWJ5dGVz"
	cases := []struct {
		name, in string
		max      int
		want     string // "" when checked by the rules below only
	}{
		{"short", "agent:pi", MaxField, "agent:pi"},
		{"exact", strings.Repeat("a", MaxField), MaxField, strings.Repeat("a", MaxField)},
		{"one over", strings.Repeat("a", MaxField+1), MaxField, strings.Repeat("a", MaxField) + ClipMark + "1 bytes]"},
		{"64 KiB", strings.Repeat("x", 64<<10), MaxField, strings.Repeat("x", MaxField) + ClipMark + fmt.Sprint(64<<10-MaxField) + " bytes]"},
		{"multi-byte at the cut", strings.Repeat("a", MaxField-1) + "é" + "zz", MaxField, strings.Repeat("a", MaxField-1) + ClipMark + "4 bytes]"},
		{"token straddling the cut", strings.Repeat("a", MaxField-10) + jwt + " " + strings.Repeat("b", 100), MaxField, ""},
		{"token far past the cut", strings.Repeat("a", 2*MaxField) + jwt, MaxField, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := clip(c.in, c.max)
			if c.want != "" && got != c.want {
				t.Fatalf("clip = %q, want %q", got, c.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("clip gave invalid UTF-8: %q", got)
			}
			if strings.Contains(got, "eyJhbGci") || strings.Contains(got, "c2lnbmF0") {
				t.Errorf("a piece of the token survived: %q", got)
			}
			if len(c.in) > c.max && (!strings.Contains(got, ClipMark) || len(got) > c.max+len(ClipMark)+16) {
				t.Errorf("clipped value %q is unmarked or too long (%d bytes)", got, len(got))
			}
		})
	}
}

// TestFloodIsSummarised: a thousand refused CONNECTs from one address with
// one reason are one full entry and one summary with the count; another
// address or reason is its own run; a run that ends opens a new one.
func TestFloodIsSummarised(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		l, err := Open(dir, Options{floodWindow: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		l.Record(Entry{Event: "connect", Sub: "agent:first", ClientID: "agent:first", Remote: "10.0.0.9:1"})
		start := time.Now()
		for i := 0; i < 1000; i++ {
			l.Record(Entry{Event: "connect", Outcome: OutcomeRefused, Reason: "bad_signature", ClientID: strings.Repeat("c", 60<<10), Remote: fmt.Sprintf("10.0.0.1:%d", 1000+i), Listener: "mqtt"})
		}
		for i := 0; i < 5; i++ {
			l.Record(Entry{Event: "connect", Outcome: OutcomeRefused, Reason: "bad_signature", Remote: "10.0.0.2:7"})
			l.Record(Entry{Event: "connect", Outcome: OutcomeRefused, Reason: "expired", Remote: "10.0.0.1:7"})
		}
		l.Record(Entry{Event: "command", Outcome: OutcomeRefused, Reason: "replay", Remote: "10.0.0.1:7"}) // not aggregated
		l.Record(Entry{Event: "command", Outcome: OutcomeRefused, Reason: "replay", Remote: "10.0.0.1:7"})
		time.Sleep(11 * time.Second) // the window ends; the writer's tick writes the summaries
		synctest.Wait()
		l.Record(Entry{Event: "connect", Outcome: OutcomeRefused, Reason: "bad_signature", Remote: "10.0.0.1:9"}) // a new run
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		lines := readLines(t, filepath.Join(dir, FileName))
		type key struct{ remote, reason string }
		full, summed := map[key]int{}, map[key]float64{}
		for _, m := range lines {
			if m["event"] != "connect" || m["outcome"] != OutcomeRefused {
				continue
			}
			k := key{m["remote"].(string), m["reason"].(string)}
			if c, ok := m["count"]; ok {
				summed[k] += c.(float64)
				since, _ := time.Parse(time.RFC3339Nano, m["since"].(string))
				at, _ := time.Parse(time.RFC3339Nano, m["time"].(string))
				if since.Before(start) || at.Before(since) || !strings.HasPrefix(m["detail"].(string), fmt.Sprintf("%v more refused connect attempts from %s", c, k.remote)) {
					t.Errorf("summary %v: times or detail wrong", m)
				}
				continue
			}
			full[k]++
			if c, _ := m["client"].(string); c != "" && !strings.Contains(c, ClipMark) {
				t.Errorf("a 60 KiB client id was not clipped: %d bytes", len(c))
			}
		}
		want := map[key][2]float64{ // full entries, summed counts
			{"10.0.0.1:1000", "bad_signature"}: {1, 0},
			{"10.0.0.1", "bad_signature"}:      {0, 999},
			{"10.0.0.2:7", "bad_signature"}:    {1, 0},
			{"10.0.0.2", "bad_signature"}:      {0, 4},
			{"10.0.0.1:7", "expired"}:          {1, 0},
			{"10.0.0.1", "expired"}:            {0, 4},
			{"10.0.0.1:9", "bad_signature"}:    {1, 0},
		}
		for k, w := range want {
			if float64(full[k]) != w[0] || summed[k] != w[1] {
				t.Errorf("%v: %d full entries and a count of %v, want %v and %v", k, full[k], summed[k], w[0], w[1])
			}
		}
		if len(lines) != 1+7+2 { // the allowed connect, 4 full refusals + 3 summaries, 2 commands
			t.Errorf("%d lines, want 10:\n%v", len(lines), lines)
		}
	})
}

// TestBlockedWriterCountsAndReportsDrops: while the writer cannot write,
// entries past the queue are dropped, each counted (Dropped, read by the
// homemq_audit_dropped_total metric), and once the writer drains the
// queue one line says how many were lost between which times.
func TestBlockedWriterCountsAndReportsDrops(t *testing.T) {
	dir := t.TempDir()
	stall := make(chan struct{})
	l, err := Open(dir, Options{queueLen: 4, stall: stall})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	before := time.Now()
	for i := 0; i < n; i++ {
		l.Record(Entry{Event: "command", Outcome: OutcomeRefused, Reason: "replay", Nonce: fmt.Sprint(i)})
	}
	after := time.Now()
	if d := l.Dropped(); d < n-5 {
		t.Fatalf("Dropped() = %d with a blocked writer and a queue of 4; want at least %d", d, n-5)
	}
	close(stall)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var kept, reported int
	for _, m := range readLines(t, filepath.Join(dir, FileName)) {
		if m["event"] != EventDropped {
			kept++
			continue
		}
		reported += int(m["count"].(float64))
		since, _ := time.Parse(time.RFC3339Nano, m["since"].(string))
		at, _ := time.Parse(time.RFC3339Nano, m["time"].(string))
		if since.Before(before.Add(-time.Millisecond)) || at.After(after.Add(time.Millisecond)) || at.Before(since) {
			t.Errorf("drop summary %v: times outside the recording", m)
		}
		if !strings.Contains(m["detail"].(string), "audit entries dropped between") {
			t.Errorf("drop summary detail %q", m["detail"])
		}
	}
	if uint64(reported) != l.Dropped() || kept+reported != n {
		t.Fatalf("kept %d, reported dropped %d, Dropped() %d: want kept+dropped = %d and every drop reported", kept, reported, l.Dropped(), n)
	}
}

// TestFloodRuns: the run table by itself — what is aggregated, when a run
// ends, and the shared run past maxFloodRuns addresses.
func TestFloodRuns(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	refused := func(event, remote, reason string) Entry {
		return Entry{Time: t0, Event: event, Outcome: OutcomeRefused, Remote: remote, Reason: reason}
	}
	tests := []struct {
		name string
		e    Entry
		want bool // written
	}{
		{"allowed connect", Entry{Event: "connect", Outcome: OutcomeAllowed, Remote: "10.0.0.1:1"}, true},
		{"refused command", refused("command", "10.0.0.1:1", "replay"), true},
		{"first refused connect", refused("connect", "10.0.0.1:1", "malformed"), true},
		{"same address, other port", refused("connect", "10.0.0.1:2", "malformed"), false},
		{"same address, other reason", refused("connect", "10.0.0.1:2", "expired"), true},
		{"same address, token exchange", refused("token_exchange", "10.0.0.1:2", "malformed"), true},
		{"other address", refused("connect", "[2001:db8::1]:2", "malformed"), true},
		{"other address again", refused("connect", "[2001:db8::1]:3", "malformed"), false},
	}
	f := newFloods(10 * time.Second)
	for _, tt := range tests {
		if got := f.admit(tt.e, t0); got != tt.want {
			t.Errorf("%s: admit = %v, want %v", tt.name, got, tt.want)
		}
	}
	if s := f.due(t0.Add(9*time.Second), false); len(s) != 0 {
		t.Fatalf("summaries before the window ended: %v", s)
	}
	s := f.due(t0.Add(10*time.Second), false)
	if len(s) != 2 || s[0].Count != 1 || s[1].Count != 1 {
		t.Fatalf("summaries %v, want two with count 1", s)
	}
	if f.admit(refused("connect", "10.0.0.1:5", "malformed"), t0.Add(11*time.Second)) != true {
		t.Error("a refusal after the run ended did not open a new run")
	}

	f = newFloods(10 * time.Second)
	for i := 0; i < maxFloodRuns; i++ {
		f.admit(refused("connect", fmt.Sprintf("10.%d.%d.1:1", i/256, i%256), "malformed"), t0)
	}
	if !f.admit(refused("connect", "192.0.2.1:1", "malformed"), t0) || f.admit(refused("connect", "192.0.2.2:1", "malformed"), t0) {
		t.Error("past maxFloodRuns, the first new address must open the shared run and the next be counted in it")
	}
	s = f.due(t0, true)
	if len(s) != 1 || s[0].Remote != "*" || s[0].Count != 1 {
		t.Fatalf("summaries %v, want one for the shared run", s)
	}
}
