package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// natsLog passes the embedded NATS server's errors to the node's log, so
// an operator sees why a peer is refused (a route whose certificate is not
// from the cluster's CA, a client with a wrong password). Notices,
// warnings (JetStream's routine snapshots), debug and trace lines are
// dropped.
type natsLog struct{ log *slog.Logger }

func (l natsLog) line(level slog.Level, format string, v []any) {
	l.log.Log(context.Background(), level, "cluster: NATS: "+strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// Noticef drops a notice.
func (natsLog) Noticef(string, ...any) {}

// Warnf drops a warning.
func (natsLog) Warnf(string, ...any) {}

// Fatalf logs what stops the server.
func (l natsLog) Fatalf(format string, v ...any) { l.line(slog.LevelError, format, v) }

// Errorf logs an error (at warning level: the server carries on).
func (l natsLog) Errorf(format string, v ...any) { l.line(slog.LevelWarn, format, v) }

// Debugf drops a debug line.
func (natsLog) Debugf(string, ...any) {}

// Tracef drops a trace line.
func (natsLog) Tracef(string, ...any) {}
