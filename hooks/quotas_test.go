package hooks

import (
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
	"homemq/envelope"
	"homemq/topics"
)

// TestIssuedRecord: the record a run leaves for the next, from what it was
// given and what it accepted.
func TestIssuedRecord(t *testing.T) {
	cmd := func(iat int64, nonce string) envelope.Envelope {
		return envelope.Envelope{Kid: "k", Nonce: nonce, Iat: iat, Exp: iat + 30}
	}
	tests := []struct {
		name       string
		given      IssuedRecord
		accepted   []envelope.Envelope
		wantFloor  int64
		wantRecent []string
	}{
		{"nothing given, nothing accepted", IssuedRecord{}, nil, 0, nil},
		{"given passes on", IssuedRecord{Floor: 100, Recent: []IssuedCommand{{Kid: "k", Nonce: "a", Exp: 130}}}, nil, 100, []string{"a"}},
		{"the newest second's commands", IssuedRecord{}, []envelope.Envelope{cmd(200, "a"), cmd(201, "b"), cmd(201, "c"), cmd(199, "d")}, 200, []string{"b", "c"}},
		{"older than given changes nothing", IssuedRecord{Floor: 300}, []envelope.Envelope{cmd(250, "a")}, 300, nil},
		{"given recent kept when nothing newer", IssuedRecord{Floor: 300, Recent: []IssuedCommand{{Kid: "k", Nonce: "a", Exp: 330}}}, []envelope.Envelope{cmd(301, "b")}, 300, []string{"a", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, _, _ := testGuard(t)
			g.cfg.Issued = tc.given
			for _, e := range tc.accepted {
				g.noteIssued(e)
			}
			r := g.IssuedRecord()
			var nonces []string
			for _, c := range r.Recent {
				nonces = append(nonces, c.Nonce)
			}
			if r.Floor != tc.wantFloor || len(nonces) != len(tc.wantRecent) {
				t.Fatalf("record %+v, want floor %d recent %v", r, tc.wantFloor, tc.wantRecent)
			}
			for i := range nonces {
				if nonces[i] != tc.wantRecent[i] {
					t.Fatalf("recent %v, want %v", nonces, tc.wantRecent)
				}
			}
		})
	}
}

// TestIssuedRecordOverflow: past maxRecent commands in one second, the
// record keeps only the floor, which then includes that second.
func TestIssuedRecordOverflow(t *testing.T) {
	g, _, _ := testGuard(t)
	for i := 0; i <= maxRecent; i++ {
		g.noteIssued(envelope.Envelope{Kid: "k", Nonce: string(rune(i)), Iat: 500, Exp: 530})
	}
	if r := g.IssuedRecord(); r.Floor != 500 || len(r.Recent) != 0 {
		t.Fatalf("record after overflow: floor %d, %d recent; want 500, none", r.Floor, len(r.Recent))
	}
}

// TestIssuedEarlierPreloadsRecent: a command of the last second of the
// earlier run is a replay; another of that second passes.
func TestIssuedEarlierPreloadsRecent(t *testing.T) {
	g, _, _ := testGuard(t)
	now := time.Now()
	g.cfg.Issued = IssuedRecord{Floor: now.Unix() - 1, Recent: []IssuedCommand{{Kid: "k", Nonce: "seen", Exp: now.Unix() + 30}}}
	if g.issuedEarlier(now.Unix()-1) != true || g.issuedEarlier(now.Unix()) {
		t.Fatal("floor: iat at it must be refused, after it not")
	}
	exp := now.Add(30 * time.Second)
	if err := g.replay.Record("k", "seen", exp, now); envelope.ReasonOf(err) != envelope.ReasonReplay {
		t.Fatalf("the earlier run's command: %v, want a replay", err)
	}
	if err := g.replay.Record("k", "new", exp, now); err != nil {
		t.Fatalf("a new command of the same second: %v", err)
	}
}

func TestCapDisconnectExpiry(t *testing.T) {
	g, srv, _ := testGuard(t)
	srv.Options.Capabilities.MaximumSessionExpiryInterval = 86400
	for _, tc := range []struct {
		flag      bool
		got, want uint32
	}{{true, 0xFFFFFFFF, 86400}, {true, 86401, 86400}, {true, 600, 600}, {true, 0, 0}, {false, 0, 0}} {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
			Properties: packets.Properties{SessionExpiryInterval: tc.got, SessionExpiryIntervalFlag: tc.flag}}
		if out := g.capDisconnectExpiry(pk); out.Properties.SessionExpiryInterval != tc.want {
			t.Errorf("DISCONNECT with %d: %d, want %d", tc.got, out.Properties.SessionExpiryInterval, tc.want)
		}
	}
}

// TestSessionsPerSub: persistent sessions count per sub until the cap; a
// reconnect of an existing one and clean connections do not.
func TestSessionsPerSub(t *testing.T) {
	g, srv, is := testGuard(t)
	g.cfg.Quotas.SessionsPerSub = 2
	tok, _, _ := is.Mint(auth.Spec{Sub: "user:a", Homes: map[string]string{"h1": "admin"}})
	persistent := func(id string) error {
		cl := srv.NewClient(nil, "test", "", false)
		pk := packets.Packet{ProtocolVersion: 5, Connect: packets.ConnectParams{ClientIdentifier: id, Password: []byte(tok), PasswordFlag: true, Keepalive: 30},
			Properties: packets.Properties{SessionExpiryInterval: 600, SessionExpiryIntervalFlag: true}}
		cl.ParseConnect("test", pk)
		err := g.OnConnect(cl, pk)
		if err == nil {
			srv.Clients.Add(cl) // as mochi does after OnConnect
		}
		return err
	}
	for _, step := range []struct {
		id   string
		want bool
	}{{"user:a/1", true}, {"user:a/2", true}, {"user:a/3", false}, {"user:a/1", true}} {
		if err := persistent(step.id); (err == nil) != step.want {
			t.Fatalf("persistent session %s: %v, want ok=%v", step.id, err, step.want)
		}
	}
	clean, err := connect(t, g, srv, "user:a/clean", tok)
	if err != nil {
		t.Fatalf("a clean connection: %v", err)
	}
	srv.Clients.Add(clean)
	if err := persistent("user:a/clean"); err == nil {
		t.Fatal("taking over a clean connection with a persistent session slipped past the cap")
	}
	srv.Clients.Delete("user:a/2") // expired
	if err := persistent("user:a/3"); err != nil {
		t.Fatalf("after one expired: %v", err)
	}
}

// TestRetainedIndex: retained topics count per agent of a home, seeded from
// what mochi holds; replacing or clearing one's own always passes, and a
// topic mochi no longer holds frees its place.
func TestRetainedIndex(t *testing.T) {
	_, srv, _ := testGuard(t)
	retain := func(topic string, clear bool) { // what mochi does after the Guard allowed it
		if clear {
			srv.Topics.Retained.Delete(topic)
			return
		}
		srv.Topics.Retained.Add(topic, packets.Packet{TopicName: topic, Payload: []byte("x")})
	}
	restored := "homes/h1/agents/pi/devices/old/state"
	retain(restored, false)
	var x retainedIndex
	steps := []struct {
		topic       string
		clear, want bool
	}{
		{"homes/h1/agents/pi/devices/a/state", false, true},               // 2 of 2 with the restored one
		{"homes/h1/discovery/switch/pi/b/config", false, false},           // a third
		{"homes/h1/agents/pi/devices/a/state", false, true},               // replacing its own
		{"homes/h2/agents/pi/devices/a/state", false, true},               // another home: another agent
		{restored, true, true},                                            // clearing
		{"homes/h1/discovery/switch/pi/b/config", false, true},            // now it fits
		{"homes/h1/agents/pi/devices/c/state", false, false},              // full again
		{"homes/h1/agents/pi/devices/nothing-to-clear/state", true, true}, // clearing what is not there
	}
	for i, s := range steps {
		p, err := topics.Parse(s.topic)
		if err != nil {
			t.Fatal(err)
		}
		_, ok := x.admit(srv, retainedOwner(p), s.topic, s.clear, 2)
		if ok != s.want {
			t.Fatalf("step %d: admit %s clear=%v = %v, want %v", i, s.topic, s.clear, ok, s.want)
		}
		if ok {
			retain(s.topic, s.clear)
		}
	}
	srv.Topics.Retained.Delete("homes/h1/agents/pi/devices/a/state") // expired in mochi
	if _, ok := x.admit(srv, "h1/pi", "homes/h1/agents/pi/devices/c/state", false, 2); !ok {
		t.Fatal("a topic mochi no longer holds still takes a place")
	}
}
