// Package decision holds the record of one security decision (Event) and
// the interface of those that receive it (Observer). The Guard in package
// hooks reports every decision; the audit log and the metrics observe them.
// It is a leaf: it imports nothing of mochi, so observers do not either.
package decision

import "time"

// Event kinds: what an Event is a decision about.
const (
	EventConnect    = "connect"
	EventDisconnect = "disconnect"
	EventPublish    = "publish"
	EventSubscribe  = "subscribe"
	EventCommand    = "command"
	EventReauth     = "reauth"
	EventRevoke     = "revoke"
	EventExpire     = "expire"
	EventDelivery   = "delivery"
	// EventTokenExchange is a POST /api/token answer (Sub, JTI and Remote
	// set; Detail says why a refusal happened), reported by the broker.
	EventTokenExchange = "token_exchange"
)

// Event is one security decision. It never carries a token or a key.
type Event struct {
	Time     time.Time
	Kind     string // one of the Event… constants
	Allowed  bool
	Reason   string // a stable reason id when refused (e.g. "expired", "acl", "replay")
	Detail   string // the sentence sent to the client, if any
	Sub      string
	JTI      string
	ClientID string
	Remote   string
	Listener string
	Topic    string
	Nonce    string // a command's nonce
}

// Observer receives every Event. Observe must be fast and must not block:
// it runs on the connection's goroutine.
type Observer interface {
	Observe(Event)
}
