package audit

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"time"
)

// Floods of refusals are aggregated. A peer that is refused before it is
// authenticated (a CONNECT, a token exchange) can repeat the attempt as
// fast as it can send it; one line each would rotate every earlier entry
// out of the log. So the first refusal of a run, same event, same address
// (without its port) and same reason, is written in full; the ones that
// follow within the flood window are only counted, and when the window
// ends one summary line says how many there were, when, from where and
// why (Count, Since, Time).

// aggregated lists the events whose refusals are aggregated: those of
// peers that have not authenticated.
var aggregated = map[string]bool{"connect": true, "token_exchange": true}

// maxFloodRuns bounds the runs open at once. When it is reached, a new
// address shares one run per event and reason with every other address
// over the bound, marked Remote "*".
const maxFloodRuns = 4096

type floodKey struct{ event, host, reason string }

// floodRun is an open run: its first entry (written) and the refusals
// counted since.
type floodRun struct {
	start       time.Time // when the first entry was recorded; the window runs from here
	first, last time.Time // of the counted ones
	count       int
	sample      Entry
}

// floods holds the open runs.
type floods struct {
	window time.Duration
	mu     sync.Mutex
	runs   map[floodKey]*floodRun
	ended  []Entry // summaries of runs replaced before the writer took them
}

func newFloods(window time.Duration) *floods {
	return &floods{window: window, runs: map[floodKey]*floodRun{}}
}

// admit reports whether e is to be written; if not, it was counted in the
// open run it belongs to.
func (f *floods) admit(e Entry, now time.Time) bool {
	if e.Outcome != OutcomeRefused || !aggregated[e.Event] {
		return true
	}
	k := floodKey{e.Event, hostOf(e.Remote), e.Reason}
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.runs[k]
	if !ok && len(f.runs) >= maxFloodRuns {
		k.host = "*"
		r, ok = f.runs[k]
	}
	if ok && now.Sub(r.start) < f.window {
		if r.count == 0 {
			r.first = e.Time
		}
		r.count++
		r.last = e.Time
		return false
	}
	if ok {
		f.ended = appendSummary(f.ended, k, r)
	}
	f.runs[k] = &floodRun{start: now, sample: e}
	return true
}

// due removes the runs whose window has ended at now (every run when all
// is set) and returns their summaries, oldest first.
func (f *floods) due(now time.Time, all bool) []Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.ended
	f.ended = nil
	for k, r := range f.runs {
		if all || now.Sub(r.start) >= f.window {
			out = appendSummary(out, k, r)
			delete(f.runs, k)
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return a.Since.Compare(b.Since) })
	return out
}

// appendSummary appends the summary of run r, if it counted anything.
func appendSummary(out []Entry, k floodKey, r *floodRun) []Entry {
	if r.count == 0 {
		return out
	}
	return append(out, Entry{Time: r.last, Since: r.first, Count: r.count, Event: k.event, Outcome: OutcomeRefused,
		Reason: k.reason, Remote: k.host, Listener: r.sample.Listener,
		Detail: fmt.Sprintf("%d more refused %s attempts from %s with reason %q between %s and %s; only the first was logged in full",
			r.count, k.event, k.host, k.reason, r.first.UTC().Format(time.RFC3339Nano), r.last.UTC().Format(time.RFC3339Nano))})
}

// hostOf is the address without its port.
func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}
