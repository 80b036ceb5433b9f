package bridge

import (
	"bytes"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"homemq/auth"
)

// TestConnectionTimers: each of a connection's timers closes it at its
// instant, and a handshaken client is told why. The connection's watcher
// runs in a synctest bubble, so the test checks the exact tick at which it
// closes (the watcher ticks every second with the default config) without
// waiting for it: the token's expiry backstop (exp + leeway + 1 s), the
// client time-out, the disconnect time-out and the handshake time-out.
func TestConnectionTimers(t *testing.T) {
	tests := []struct {
		name       string
		ttl        time.Duration // the token's lifetime (whole seconds)
		handshaken bool
		active     int           // open transport requests
		closesAt   time.Duration // the watcher tick that closes it
		want       string        // the Close record ("" when the client is not told)
	}{
		{name: "token expiry", ttl: 2 * time.Second, handshaken: true, active: 1, closesAt: 6 * time.Second,
			want: `{"type":7,"error":"token expired at 2000-01-01T00:00:02Z; connect again with a fresh token"}`},
		{name: "client time-out", ttl: time.Hour, handshaken: true, active: 1, closesAt: 31 * time.Second,
			want: `{"type":7,"error":"nothing received from the client for 30s (it must send a Ping at least every 15s)","allowReconnect":true}`},
		{name: "no transport request", ttl: time.Hour, handshaken: true, closesAt: 16 * time.Second,
			want: `{"type":7,"error":"no transport request for 15s: the connection is closed (a long polling client must keep polling)","allowReconnect":true}`},
		{name: "no handshake", ttl: time.Hour, active: 1, closesAt: 16 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				keys := auth.NewMemoryKeys()
				tok, claims, err := auth.NewIssuer(auth.Config{}, keys).Mint(auth.Spec{Sub: "user:ann", Homes: map[string]string{"h1": "admin"}, TTL: tt.ttl})
				if err != nil {
					t.Fatal(err)
				}
				srv := New(DefaultConfig(), auth.NewVerifier(auth.Config{}, keys, nil), func() (net.Conn, error) { return nil, net.ErrClosed })
				defer srv.Close()
				c, _, msg := srv.open(claims, tok)
				if c == nil {
					t.Fatal(msg)
				}
				c.mu.Lock()
				c.handshaken, c.active = tt.handshaken, tt.active
				c.mu.Unlock()

				time.Sleep(tt.closesAt - time.Millisecond)
				synctest.Wait()
				if c.isClosed() {
					t.Fatalf("closed before %v", tt.closesAt)
				}
				time.Sleep(time.Millisecond)
				synctest.Wait()
				if !c.isClosed() {
					t.Fatalf("still open at %v", tt.closesAt)
				}
				c.mu.Lock()
				out := c.out
				c.mu.Unlock()
				switch {
				case tt.want == "" && len(out) != 0:
					t.Fatalf("a client without a handshake was sent %q", out)
				case tt.want != "" && !bytes.HasSuffix(out, []byte(tt.want+"\x1e")):
					t.Fatalf("sent %q, want it to end with the Close %s", out, tt.want)
				}
			})
		})
	}
}
