// Package audit writes homemq's audit log: one JSON object per line in
// {data}/audit/audit.log (0600), rotated by size, recording who did what,
// where and when — every security decision, never a token, key or payload.
package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"homemq/decision"
	"homemq/topics"
)

// FileName is the name of the current log file in the audit folder; rotated
// files are FileName.1 (the newest) to FileName.{Keep}.
const FileName = "audit.log"

// Entry is one line of the audit log. Only the fields that apply are set.
// Text fields are clipped to MaxField bytes (Detail to MaxDetail), marked
// with ClipMark where cut. A summary line (of a flood of refusals, or of
// entries dropped from a full queue) has Count and Since: Count entries
// between Since and Time.
type Entry struct {
	Time     time.Time `json:"time"`
	Since    time.Time `json:"since,omitzero"`     // a summary's first entry
	Event    string    `json:"event"`              // connect, command, reauth, revoke, expire, token_exchange, revocation, …
	Outcome  string    `json:"outcome"`            // OutcomeAllowed or OutcomeRefused
	Reason   string    `json:"reason,omitempty"`   // a stable reason id when refused, e.g. "replay"
	Count    int       `json:"count,omitempty"`    // how many entries a summary stands for
	Detail   string    `json:"detail,omitempty"`   // the sentence the client was told
	Sub      string    `json:"sub,omitempty"`      // the token's subject
	JTI      string    `json:"jti,omitempty"`      // the token's id (not a secret)
	ClientID string    `json:"client,omitempty"`   // the MQTT client id
	Remote   string    `json:"remote,omitempty"`   // the peer's address
	Listener string    `json:"listener,omitempty"` // mqtts, wss, mqtt, internal, https
	Topic    string    `json:"topic,omitempty"`    // the topic or filter
	Home     string    `json:"home,omitempty"`     // parsed from Topic
	Agent    string    `json:"agent,omitempty"`
	Device   string    `json:"device,omitempty"`
	Nonce    string    `json:"nonce,omitempty"` // a command's nonce, to match the agent's ack
	Actor    string    `json:"actor,omitempty"` // who asked for an administrative action
}

// Outcomes of an Entry.
const (
	OutcomeAllowed = "allowed"
	OutcomeRefused = "refused"
)

// EventDropped is the Event of the line the log writes when entries were
// lost because the queue was full.
const EventDropped = "audit_dropped"

// Options tune a Log. Zero values take the defaults.
type Options struct {
	MaxSize int64 // rotate when the file would grow past this many bytes (default 10 MiB)
	Keep    int   // rotated files kept (default 5)
	// Set by tests only:
	queueLen    int             // entries buffered between callers and the writer (default 4096)
	floodWindow time.Duration   // how long refusals of one run (flood.go) are counted before a summary (default 10 s)
	stall       <-chan struct{} // the writer waits for this before each batch
}

// Defaults for Options.
const (
	DefaultMaxSize = 10 << 20
	DefaultKeep    = 5
)

// Defaults of what only tests change.
const (
	defaultQueue       = 4096
	defaultFloodWindow = 10 * time.Second
)

// Log is an open audit log. Observe and Record never block: entries go
// through a buffered queue to one writer goroutine, and when the queue is
// full they are dropped and counted (Dropped), and a summary line says how
// many were lost and when.
type Log struct {
	dir     string
	opt     Options
	queue   chan Entry
	floods  *floods
	dropped atomic.Uint64
	written atomic.Uint64
	// firstDrop and lastDrop (unix nanoseconds) bound the drops not yet
	// reported; firstDrop is 0 when there are none.
	firstDrop, lastDrop atomic.Int64
	done                chan struct{}
	mu                  sync.RWMutex // guards closed against sends racing Close
	closed              bool

	f    *os.File // owned by the writer goroutine
	size int64
	err  error // the last write error, reported once on Close
}

// Open opens (or creates) the audit log in dir, making dir 0700 and the
// file 0600, and starts its writer.
func Open(dir string, opt Options) (*Log, error) {
	if opt.MaxSize <= 0 {
		opt.MaxSize = DefaultMaxSize
	}
	if opt.Keep <= 0 {
		opt.Keep = DefaultKeep
	}
	if opt.queueLen <= 0 {
		opt.queueLen = defaultQueue
	}
	if opt.floodWindow <= 0 {
		opt.floodWindow = defaultFloodWindow
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	l := &Log{dir: dir, opt: opt, queue: make(chan Entry, opt.queueLen), floods: newFloods(opt.floodWindow), done: make(chan struct{})}
	if err := l.openFile(); err != nil {
		return nil, err
	}
	go l.run()
	return l, nil
}

// Path returns the current log file's path.
func (l *Log) Path() string { return filepath.Join(l.dir, FileName) }

// Dropped returns how many entries were lost because the queue was full.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// Written returns how many entries have been written.
func (l *Log) Written() uint64 { return l.written.Load() }

// Record queues e for writing; Time defaults to now and Outcome to
// allowed. Its text fields are clipped (MaxField), a refusal that belongs
// to a flood is counted instead of queued (flood.go), and secrets that
// slipped into a free-text field are masked.
func (l *Log) Record(e Entry) {
	now := time.Now()
	if e.Time.IsZero() {
		e.Time = now
	}
	if e.Outcome == "" {
		e.Outcome = OutcomeAllowed
	}
	e = clipEntry(e)
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.drop(now)
		return
	}
	if !l.floods.admit(e, now) {
		return
	}
	select {
	case l.queue <- e:
	default:
		l.drop(now)
	}
}

// drop counts an entry lost and when.
func (l *Log) drop(now time.Time) {
	l.dropped.Add(1)
	t := now.UnixNano()
	l.firstDrop.CompareAndSwap(0, t)
	l.lastDrop.Store(t)
}

// Observe records a Guard or token-service decision; it implements
// decision.Observer. Deliveries and allowed publishes and subscriptions are
// not audited (they are counted in the metrics).
func (l *Log) Observe(e decision.Event) {
	switch e.Kind {
	case decision.EventDelivery:
		return
	case decision.EventPublish, decision.EventSubscribe:
		if e.Allowed {
			return
		}
	}
	l.Record(fromEvent(e))
}

// fromEvent turns a decision.Event into an Entry, with the home, agent and
// device parsed from its topic.
func fromEvent(e decision.Event) Entry {
	en := Entry{Time: e.Time, Event: e.Kind, Outcome: OutcomeAllowed, Reason: e.Reason, Detail: e.Detail,
		Sub: e.Sub, JTI: e.JTI, ClientID: e.ClientID, Remote: e.Remote, Listener: e.Listener, Topic: e.Topic, Nonce: e.Nonce}
	if !e.Allowed {
		en.Outcome = OutcomeRefused
	}
	en.Home, en.Agent, en.Device = topics.Place(e.Topic)
	return en
}

// Close writes what is queued, syncs and closes the file. It returns the
// first write error the log met, if any.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.done
		return nil
	}
	l.closed = true
	close(l.queue)
	l.mu.Unlock()
	<-l.done
	return l.err
}

// run is the writer: it drains the queue in batches, one write per batch,
// syncs the file once a second while lines arrive, writes the summaries of
// floods whose window ended, and reports drops once the queue is drained.
func (l *Log) run() {
	defer close(l.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var (
		buf      []byte
		dirty    bool
		reported uint64
	)
	for {
		select {
		case e, ok := <-l.queue:
			if !ok {
				l.writeSummaries(time.Now(), true)
				l.reportDrops(&reported)
				if l.f != nil {
					l.setErr(l.f.Sync())
					l.setErr(l.f.Close())
				}
				return
			}
			if l.opt.stall != nil {
				<-l.opt.stall
			}
			buf = l.appendLine(buf[:0], e)
			for n := len(l.queue); n > 0; n-- {
				e, ok = <-l.queue
				if !ok {
					break
				}
				buf = l.appendLine(buf, e)
			}
			l.write(buf)
			dirty = true
			if len(l.queue) == 0 {
				l.reportDrops(&reported)
			}
		case <-tick.C:
			l.writeSummaries(time.Now(), false)
			l.reportDrops(&reported)
			if dirty && l.f != nil {
				l.setErr(l.f.Sync())
				dirty = false
			}
		}
	}
}

// reportDrops writes one line saying how many entries were lost since the
// last report, and between which times.
func (l *Log) reportDrops(reported *uint64) {
	d := l.dropped.Load()
	if d == *reported {
		return
	}
	first := l.firstDrop.Swap(0)
	last := l.lastDrop.Load()
	if first == 0 || last < first {
		first = last
	}
	t1, t2 := time.Unix(0, first), time.Unix(0, last)
	e := Entry{Time: t2, Since: t1, Count: int(d - *reported), Event: EventDropped, Outcome: OutcomeRefused, Reason: "queue_full",
		Detail: fmt.Sprintf("%d audit entries dropped between %s and %s: the audit queue was full", d-*reported,
			t1.UTC().Format(time.RFC3339Nano), t2.UTC().Format(time.RFC3339Nano))}
	*reported = d
	l.write(l.appendLine(nil, e))
}

// writeSummaries writes the summaries of the floods whose window ended at
// now (of every open one when all is set).
func (l *Log) writeSummaries(now time.Time, all bool) {
	var buf []byte
	for _, e := range l.floods.due(now, all) {
		buf = l.appendLine(buf, e)
	}
	l.write(buf)
}

// appendLine appends e as one JSON line, rotating first when the file would
// pass MaxSize.
func (l *Log) appendLine(buf []byte, e Entry) []byte {
	line, err := json.Marshal(scrub(e))
	if err != nil { // cannot happen: every field is a string or a time
		return buf
	}
	line = append(line, '\n')
	if l.size+int64(len(buf))+int64(len(line)) > l.opt.MaxSize && l.size+int64(len(buf)) > 0 {
		l.write(buf)
		buf = buf[:0]
		l.rotate()
	}
	l.written.Add(1)
	return append(buf, line...)
}

func (l *Log) write(b []byte) {
	if len(b) == 0 || l.f == nil {
		return
	}
	n, err := l.f.Write(b)
	l.size += int64(n)
	l.setErr(err)
}

func (l *Log) setErr(err error) {
	if err != nil && l.err == nil {
		l.err = fmt.Errorf("audit: %s: %w", l.Path(), err)
	}
}

// openFile opens the current file for appending, 0600 even if it existed
// with looser permissions.
func (l *Log) openFile() error {
	f, err := os.OpenFile(l.Path(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// rotate renames audit.log to audit.log.1, shifting older files up and
// removing the one past Keep, then opens a fresh audit.log.
func (l *Log) rotate() {
	if l.f != nil {
		l.setErr(l.f.Sync())
		l.setErr(l.f.Close())
		l.f = nil
	}
	base := l.Path()
	if err := os.Remove(fmt.Sprintf("%s.%d", base, l.opt.Keep)); err != nil && !errors.Is(err, os.ErrNotExist) {
		l.setErr(err)
	}
	for i := l.opt.Keep - 1; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", base, i), fmt.Sprintf("%s.%d", base, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.setErr(err)
		}
	}
	l.setErr(os.Rename(base, base+".1"))
	if err := l.openFile(); err != nil {
		l.setErr(err)
	}
}
