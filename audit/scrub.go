package audit

import (
	"regexp"
	"strings"

	"homemq/auth"
)

// Masked replaces a secret found in a free-text field.
const Masked = "[masked]"

// secretPattern matches what must never reach the log even by accident: a
// JWT (three base64url parts, the first a JSON header "eyJ…") and an agent
// credential (hmq1.{home}.{agent}.{secret}).
var secretPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*|` + regexp.QuoteMeta(auth.CredentialPrefix) + `[^\s"',;]+`)

// scrub masks secrets in every string field of e. Well-behaved callers
// never pass one; this catches a client that put its token in its client
// id, or an error message that quoted one.
func scrub(e Entry) Entry {
	for _, p := range []*string{&e.Event, &e.Outcome, &e.Reason, &e.Detail, &e.Sub, &e.JTI, &e.ClientID,
		&e.Remote, &e.Listener, &e.Topic, &e.Home, &e.Agent, &e.Device, &e.Nonce, &e.Actor} {
		*p = mask(*p)
	}
	return e
}

func mask(s string) string {
	if !strings.Contains(s, "eyJ") && !strings.Contains(s, auth.CredentialPrefix) {
		return s
	}
	return secretPattern.ReplaceAllString(s, Masked)
}
