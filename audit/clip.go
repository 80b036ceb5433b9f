package audit

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of an entry's text fields. Most of them carry what a client chose
// (its client id, topic, address, the token's claims, a sentence quoting
// them), and a client id alone may be 64 KiB: unclipped, a thousand refused
// CONNECTs would rotate every earlier entry out of the log. Record clips
// every text field to MaxField bytes (Detail to MaxDetail) before the entry
// is queued, at a UTF-8 boundary, and marks the cut: the value ends in
// "…[+N bytes]", N being how many bytes were cut.
const (
	MaxField  = 256
	MaxDetail = 1024
)

// ClipMark starts the mark that ends a clipped value.
const ClipMark = "…[+"

// secretWindow is how far past a field's limit Record looks for a secret
// before it clips, so that a token straddling the limit is masked whole
// rather than cut into a piece the mask no longer recognises. It is far
// longer than any token or credential homemq accepts.
const secretWindow = 16 << 10

// clipEntry clips every text field of e to its limit.
func clipEntry(e Entry) Entry {
	for _, p := range []*string{&e.Event, &e.Outcome, &e.Reason, &e.Sub, &e.JTI, &e.ClientID,
		&e.Remote, &e.Listener, &e.Topic, &e.Home, &e.Agent, &e.Device, &e.Nonce, &e.Actor} {
		*p = clip(*p, MaxField)
	}
	e.Detail = clip(e.Detail, MaxDetail)
	return e
}

// clip returns s if it fits in max bytes; else a copy of its masked first
// max bytes (never splitting a character) and the mark. The copy lets the
// caller's long string be collected while the entry waits in the queue.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	rest := len(s) - min(len(s), max+secretWindow)
	w := mask(s[:len(s)-rest])
	cut := min(max, len(w))
	for cut > 0 && cut < len(w) && !utf8.RuneStart(w[cut]) {
		cut--
	}
	if cut == len(w) && rest == 0 { // the masks made it fit
		return w
	}
	return strings.Clone(w[:cut]) + ClipMark + strconv.Itoa(len(w)-cut+rest) + " bytes]"
}
