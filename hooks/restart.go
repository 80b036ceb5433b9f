package hooks

import (
	"sync"
	"time"

	"homemq/envelope"
)

// The restart rule. The replay cache lives in memory, so a restarted broker
// must refuse every command the run before it may have accepted. A cleanly
// stopped run leaves an IssuedRecord: the newest iat it accepted (every
// command it accepted was issued at or before it) and, so that honest
// commands issued in that same second still pass, the commands it accepted
// with that iat, which the next run puts in its replay cache at start.

// maxRecent bounds IssuedRecord.Recent; past it the record keeps only Floor.
const maxRecent = 4096

// IssuedRecord tells a run which commands earlier runs may have accepted:
// every one with iat <= Floor, and the Recent ones with iat Floor+1.
type IssuedRecord struct {
	Floor  int64           `json:"floor"`  // unix seconds
	Recent []IssuedCommand `json:"recent"` // all accepted with iat Floor+1
}

// IssuedCommand is an accepted command as the replay cache knows it.
type IssuedCommand struct {
	Kid   string `json:"kid"`
	Nonce string `json:"nonce"`
	Exp   int64  `json:"exp"`
}

// issuedState tracks, for the record this run will leave, the newest iat
// accepted and the commands accepted with it.
type issuedState struct {
	mu      sync.Mutex
	started bool  // begun from Config.Issued
	newest  int64 // every command accepted so far has iat <= newest
	exact   bool  // recent lists every accepted command with iat == newest
	recent  []IssuedCommand
	preload sync.Once
}

// begin sets the state from what the earlier runs left; call with mu held.
func (st *issuedState) begin(r IssuedRecord) {
	st.started = true
	st.newest, st.exact, st.recent = r.Floor, false, nil
	if len(r.Recent) > 0 {
		st.newest, st.exact, st.recent = r.Floor+1, true, append([]IssuedCommand(nil), r.Recent...)
	}
}

// issuedEarlier reports whether a command issued at iat may have been
// accepted by an earlier run without being in this run's replay cache. It
// puts the earlier run's Recent commands in the replay cache first, once.
func (g *Guard) issuedEarlier(iat int64) bool {
	r := g.cfg.Issued
	g.issued.preload.Do(func() {
		now := g.now()
		for _, c := range r.Recent {
			_ = g.replay.Record(c.Kid, c.Nonce, time.Unix(c.Exp, 0), now) // an expired one needs no entry
		}
	})
	return iat <= r.Floor // iat Floor+1: the replay cache knows those accepted
}

// noteIssued records an accepted command for IssuedRecord.
func (g *Guard) noteIssued(env envelope.Envelope) {
	st := &g.issued
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.started {
		st.begin(g.cfg.Issued)
	}
	switch {
	case env.Iat > st.newest:
		st.newest, st.exact, st.recent = env.Iat, true, st.recent[:0]
	case env.Iat < st.newest || !st.exact:
		return
	}
	if len(st.recent) >= maxRecent {
		st.exact, st.recent = false, nil
		return
	}
	st.recent = append(st.recent, IssuedCommand{Kid: env.Kid, Nonce: env.Nonce, Exp: env.Exp})
}

// IssuedRecord returns the record the next run on the same data needs:
// what this run and the earlier ones may have accepted. Save it at a clean
// shutdown, after the server stopped, and give it to the next run as
// Config.Issued.
func (g *Guard) IssuedRecord() IssuedRecord {
	st := &g.issued
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.started {
		// nothing accepted yet: what the earlier runs left still holds
		return IssuedRecord{Floor: g.cfg.Issued.Floor, Recent: append([]IssuedCommand(nil), g.cfg.Issued.Recent...)}
	}
	if st.exact {
		return IssuedRecord{Floor: st.newest - 1, Recent: append([]IssuedCommand(nil), st.recent...)}
	}
	return IssuedRecord{Floor: st.newest}
}
