package hooks

import (
	"errors"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
	"homemq/envelope"
)

// fakeLedger answers every claim with err and remembers the claims.
type fakeLedger struct {
	err    error
	claims []string
}

func (f *fakeLedger) Claim(kid, nonce string, exp time.Time) error {
	f.claims = append(f.claims, kid+"/"+nonce)
	return f.err
}

// TestSharedReplayLedger: a command the Guard's own cache accepts is
// accepted only if the shared ledger accepts it too; a replay elsewhere or
// a ledger that cannot answer refuses it.
func TestSharedReplayLedger(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		accept bool
	}{
		{"new everywhere", nil, true},
		{"accepted by another broker", &envelope.Error{Reason: envelope.ReasonReplay, Detail: "nonce already used"}, false},
		{"ledger cannot answer", errors.New("no quorum"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, srv, is := testGuard(t)
			l := &fakeLedger{err: tc.err}
			g.ShareReplay(l)
			tok, c, _ := is.Mint(auth.Spec{Sub: "user:alice", Homes: map[string]string{"h1": "admin"}})
			cl, err := connect(t, g, srv, "user:alice", tok)
			if err != nil {
				t.Fatal(err)
			}
			topic := "homes/h1/agents/pi/devices/lock/cmd"
			key := envelope.DeriveKey(make([]byte, 32), c.ID)
			now := time.Now()
			env, _ := envelope.SealNonce(key, topic, c.ID, `{"action":"unlock"}`, "AAAAAAAAAAAAAAAAAAAAAA", now.Unix()+1, now.Unix()+20)
			g.started = now.Unix()
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic, Payload: env}
			_, err = g.OnPublish(cl, pk)
			if accepted := err == nil; accepted != tc.accept {
				t.Fatalf("OnPublish: %v, want accepted %v", err, tc.accept)
			}
			if len(l.claims) != 1 {
				t.Fatalf("the ledger was asked %d times, want once", len(l.claims))
			}
		})
	}
}
