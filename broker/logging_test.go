package broker

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestRedactDropsPacketContents(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(Redact(slog.NewTextHandler(&buf, nil)))
	log.Warn("error processing packet", "error", "bad", "client", "user:a", "pk", struct{ Password string }{"secret-token"})
	log.With("packet", "cmd-payload").Info("x")
	out := buf.String()
	for _, leak := range []string{"secret-token", "cmd-payload"} {
		if strings.Contains(out, leak) {
			t.Errorf("log leaks %q: %s", leak, out)
		}
	}
	if !strings.Contains(out, "client=user:a") || !strings.Contains(out, "[redacted]") {
		t.Errorf("log lost its other attributes: %s", out)
	}
}
