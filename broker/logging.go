package broker

import (
	"context"
	"log/slog"
)

// redactedKeys are log attributes under which mochi logs whole packets:
// CONNECT and AUTH packets carry tokens, PUBLISH packets carry commands.
var redactedKeys = map[string]bool{"pk": true, "packet": true, "will": true, "lwt": true, "cl": true}

// redactHandler drops packet contents from mochi's log lines, so a token or
// a command never reaches a log file.
type redactHandler struct{ slog.Handler }

// Redact wraps h so that packet attributes are logged as "[redacted]".
func Redact(h slog.Handler) slog.Handler { return redactHandler{h} }

func (h redactHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if redactedKeys[a.Key] {
			a = slog.String(a.Key, "[redacted]")
		}
		out.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	for i, a := range as {
		if redactedKeys[a.Key] {
			as[i] = slog.String(a.Key, "[redacted]")
		}
	}
	return redactHandler{h.Handler.WithAttrs(as)}
}

func (h redactHandler) WithGroup(name string) slog.Handler {
	return redactHandler{h.Handler.WithGroup(name)}
}
