package hooks

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paholog "github.com/eclipse/paho.golang/paho/log"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.etcd.io/bbolt"

	"homemq/auth"
	"homemq/internal/eventually"
)

// storeServer is a bare mochi server (allow-all auth) with the Store on a
// data folder, reached through an in-process listener: the storage hook
// alone, without the Guard.
type storeServer struct {
	*mqtt.Server
	store *Store
	pipe  *pipeListener
	once  sync.Once
}

// stop closes the server (once).
func (ss *storeServer) stop() { ss.once.Do(func() { _ = ss.Server.Close() }) }

// allowAll admits every client to every topic.
type allowAll struct{ mqtt.HookBase }

func (allowAll) ID() string { return "allow-all" }
func (allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }
func (allowAll) OnACLCheck(*mqtt.Client, string, bool) bool              { return true }

func startStoreServer(t *testing.T, data string) *storeServer {
	t.Helper()
	s := mqtt.New(&mqtt.Options{InlineClient: false, Logger: slog.New(slog.NewTextHandler(testLogOut(), &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err := s.AddHook(new(allowAll), nil); err != nil {
		t.Fatal(err)
	}
	st := NewStore(s)
	if err := s.AddHook(st, StoreOptions(data)); err != nil {
		t.Fatal(err)
	}
	p := &pipeListener{}
	if err := s.AddListener(p); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	ss := &storeServer{Server: s, store: st, pipe: p}
	t.Cleanup(ss.stop)
	return ss
}

// pipeListener hands in-process connections (net.Pipe) to the server, so
// that the tests run inside a synctest bubble.
type pipeListener struct {
	mu        sync.Mutex
	establish listeners.EstablishFn
}

func (l *pipeListener) ID() string                    { return "t" }
func (l *pipeListener) Address() string               { return "pipe" }
func (l *pipeListener) Protocol() string              { return "pipe" }
func (l *pipeListener) Init(*slog.Logger) error       { return nil }
func (l *pipeListener) Close(close listeners.CloseFn) { close("t") }
func (l *pipeListener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	l.establish = establish
	l.mu.Unlock()
}

// Dial returns the client end of a new in-process connection, or an error
// before the server serves.
func (l *pipeListener) Dial() (net.Conn, error) {
	l.mu.Lock()
	establish := l.establish
	l.mu.Unlock()
	if establish == nil {
		return nil, errors.New("not serving yet")
	}
	client, server := net.Pipe()
	go func() { _ = establish("t", server) }()
	return client, nil
}

// client is a paho.golang MQTT 5 client on the in-process listener.
type client struct {
	*paho.Client
	mu  sync.Mutex
	got []string
}

func (ss *storeServer) connect(t *testing.T, id string, expiry uint32, edit ...func(*paho.Connect)) *client {
	t.Helper()
	var conn net.Conn
	var err error
	// mochi starts its listeners in goroutines.
	eventually.That(t, 5*time.Second, "the in-process listener to serve", func() bool {
		conn, err = ss.pipe.Dial()
		return err == nil
	})
	c := &client{}
	c.Client = paho.NewClient(paho.ClientConfig{Conn: conn, PingHandler: quietPinger{},
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.mu.Lock()
			c.got = append(c.got, string(pr.Packet.Payload))
			c.mu.Unlock()
			return true, nil
		}},
	})
	cp := &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: expiry == 0, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
	for _, f := range edit {
		f(cp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, cp); err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	return c
}

// quietPinger never pings: paho.golang v0.23's default pinger may write a
// PINGREQ in the middle of another packet; tests are far shorter than the
// keep-alive.
type quietPinger struct{}

func (quietPinger) Run(ctx context.Context, _ net.Conn, _ uint16) error {
	<-ctx.Done()
	return nil
}
func (quietPinger) PacketSent()             {}
func (quietPinger) PacketReceived()         {}
func (quietPinger) PingResp()               {}
func (quietPinger) SetDebug(paholog.Logger) {}

func (c *client) received() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]string(nil), c.got...)
	sort.Strings(out)
	return out
}

func (c *client) subscribe(t *testing.T, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
}

func (c *client) publish(t *testing.T, topic, payload string, expiry uint32, retain bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p := &paho.Publish{Topic: topic, QoS: 1, Retain: retain, Payload: []byte(payload)}
	if expiry > 0 {
		p.Properties = &paho.PublishProperties{MessageExpiry: &expiry}
	}
	if _, err := c.Publish(ctx, p); err != nil {
		t.Fatalf("publish %s: %v", payload, err)
	}
}

func (c *client) leave(t *testing.T) {
	t.Helper()
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
}

// storedKeys lists the keys of the store file (the server must be closed).
func storedKeys(t *testing.T, data string) []string {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(data, StoreFile), 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var keys []string
	_ = db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bbolt.Bucket) error {
			return b.ForEach(func(k, _ []byte) error { keys = append(keys, string(k)); return nil })
		})
	})
	return keys
}

// TestStoreWritesNoSecrets: the password, the user name and the MQTT 5
// authentication data (where a homemq-jwt token travels) never reach the
// file, whatever is stored about the client.
func TestStoreWritesNoSecrets(t *testing.T) {
	data := t.TempDir()
	ss := startStoreServer(t, data)
	c := ss.connect(t, "agent:pi", 3600, func(cp *paho.Connect) {
		cp.Username, cp.UsernameFlag = "NAME-SECRET", true
		cp.Password, cp.PasswordFlag = []byte("PASSWORD-SECRET"), true
		cp.Properties.AuthMethod = auth.MQTTMethod
		cp.Properties.AuthData = []byte("AUTHDATA-SECRET")
		cp.WillMessage = &paho.WillMessage{Topic: "homes/h1/agents/pi/status", Payload: []byte("offline"), QoS: 1, Retain: true}
	})
	c.subscribe(t, "homes/h1/agents/pi/devices/+/cmd")
	c.leave(t)
	ss.stop()
	raw, err := os.ReadFile(filepath.Join(data, StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"PASSWORD-SECRET", "AUTHDATA-SECRET", "NAME-SECRET"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("%s is in %s", secret, StoreFile)
		}
	}
	keys := storedKeys(t, data)
	if !contains(keys, "CL_agent:pi") || !contains(keys, "SUB_agent:pi:homes/h1/agents/pi/devices/+/cmd") {
		t.Fatalf("the session was not stored: %v", keys)
	}
	if contains(keys, "SYS") {
		t.Errorf("$SYS info was stored: %v", keys)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestQueuedMessagesSurviveARestartOnceAndUnexpired: messages queued for
// an offline session come back after a restart, each once (mochi's bolt
// hook loses their packet ids, which would fold them into one), and those
// whose message expiry passed while the broker was down never arrive.
func TestQueuedMessagesSurviveARestartOnceAndUnexpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data := t.TempDir()
		ss := startStoreServer(t, data)
		agent := ss.connect(t, "agent:pi", 3600)
		agent.subscribe(t, "cmd/#")
		agent.leave(t)
		pub := ss.connect(t, "user:ann", 0)
		for _, m := range []struct {
			payload string
			expiry  uint32
		}{{"a", 3600}, {"short-1", 1}, {"b", 0}, {"short-2", 1}, {"c", 3600}} {
			pub.publish(t, "cmd/lock", m.payload, m.expiry, false)
		}
		pub.publish(t, "state/lamp", "on", 0, true)
		pub.publish(t, "state/fan", "spinning", 1, true)
		pub.leave(t)
		ss.stop()
		time.Sleep(2 * time.Second) // on the bubble's clock: the 1 s messages expire while the broker is down

		ss = startStoreServer(t, data)
		agent = ss.connect(t, "agent:pi", 3600)
		eventually.That(t, 5*time.Second, "three queued messages", func() bool { return len(agent.received()) >= 3 })
		synctest.Wait() // every goroutine is idle: anything more would have arrived
		if got := agent.received(); strings.Join(got, ",") != "a,b,c" {
			t.Fatalf("after the restart the agent got %v, want a, b and c once each and no expired message", got)
		}
		watcher := ss.connect(t, "user:bob", 0)
		watcher.subscribe(t, "state/#")
		eventually.That(t, 5*time.Second, "the retained state", func() bool { return len(watcher.received()) >= 1 })
		synctest.Wait()
		if got := watcher.received(); strings.Join(got, ",") != "on" {
			t.Fatalf("retained after the restart: %v, want only \"on\" (the 1 s one expired)", got)
		}
		agent.leave(t)
		watcher.leave(t)
		ss.stop()
		for _, k := range storedKeys(t, data) {
			if strings.HasPrefix(k, "IFM_") {
				t.Errorf("delivered message still stored: %s", k)
			}
		}
	})
}

// TestExpiryOfLoadedMessagesIsKept: a queued message loaded from the
// store still expires on time while its session stays offline.
func TestExpiryOfLoadedMessagesIsKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data := t.TempDir()
		ss := startStoreServer(t, data)
		agent := ss.connect(t, "agent:pi", 3600)
		agent.subscribe(t, "cmd/#")
		agent.leave(t)
		pub := ss.connect(t, "user:ann", 0)
		pub.publish(t, "cmd/lock", "short", 2, false)
		pub.publish(t, "cmd/lock", "long", 3600, false)
		pub.leave(t)
		ss.stop()

		ss = startStoreServer(t, data)
		cl, ok := ss.Clients.Get("agent:pi")
		if !ok || cl.State.Inflight.Len() != 2 {
			t.Fatalf("the offline session was not loaded with its 2 messages")
		}
		for _, pk := range cl.State.Inflight.GetAll(false) {
			if pk.Expiry == 0 {
				t.Errorf("loaded message %q has no expiry", pk.Payload)
			}
		}
		eventually.That(t, 5*time.Second, "mochi's sweep to drop the expired message", func() bool { return cl.State.Inflight.Len() == 1 })
		agent = ss.connect(t, "agent:pi", 3600)
		eventually.That(t, 5*time.Second, "the long-lived message", func() bool { return len(agent.received()) == 1 })
		synctest.Wait()
		if got := agent.received(); len(got) != 1 || got[0] != "long" {
			t.Fatalf("got %v, want only the long-lived message", got)
		}
	})
}

// TestAcknowledgedPublishIsReplayedAfterACrash: a publish acknowledged but
// not yet queued for its subscribers when the process died (its write-ahead
// record still in the store) reaches the offline session after a restart,
// and the record is gone.
func TestAcknowledgedPublishIsReplayedAfterACrash(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data := t.TempDir()
		ss := startStoreServer(t, data)
		agent := ss.connect(t, "agent:pi", 3600)
		agent.subscribe(t, "cmd/#")
		agent.leave(t)
		// The state a crash leaves between mochi's PUBACK and the fan-out: the
		// write-ahead record, and nothing queued for the session yet.
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 7, TopicName: "cmd/lock",
			Payload: []byte("unlock"), Origin: "user:ann", Created: time.Now().Unix(), Properties: packets.Properties{MessageExpiryInterval: 60}}
		if _, err := ss.store.OnPublish(&mqtt.Client{ID: "user:ann"}, pk); err != nil {
			t.Fatal(err)
		}
		expired := pk
		expired.PacketID, expired.Payload, expired.Created = 8, []byte("too-late"), time.Now().Unix()-120
		ss.store.Hook.OnQosPublish(&mqtt.Client{ID: walPrefix + "user:ann"}, expired, expired.Created, 0)
		ss.stop()
		if keys := storedKeys(t, data); !contains(keys, "IFM_$wal/user:ann:7") {
			t.Fatalf("no write-ahead record for a persistent subscriber: %v", keys)
		}

		ss = startStoreServer(t, data)
		agent = ss.connect(t, "agent:pi", 3600)
		eventually.That(t, 5*time.Second, "the replayed message", func() bool { return len(agent.received()) == 1 })
		synctest.Wait()
		if got := agent.received(); len(got) != 1 || got[0] != "unlock" {
			t.Fatalf("got %v, want the acknowledged message once and not the expired one", got)
		}
		agent.leave(t)
		ss.stop()
		for _, k := range storedKeys(t, data) {
			if strings.HasPrefix(k, "IFM_") {
				t.Errorf("record left after the replay: %s", k)
			}
		}
	})
}

// TestWriteAheadOnlyForPersistentSubscribers: a publish nobody's session
// would keep costs no write-ahead record, and a normal publish leaves none.
func TestWriteAheadOnlyForPersistentSubscribers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data := t.TempDir()
		ss := startStoreServer(t, data)
		live := ss.connect(t, "user:bob", 0)
		live.subscribe(t, "state/#")
		pub := ss.connect(t, "user:ann", 0)
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 3, TopicName: "state/lamp"}
		if _, err := ss.store.OnPublish(&mqtt.Client{ID: "user:ann"}, pk); err != nil {
			t.Fatal(err)
		}
		if _, ok := ss.store.logged.Load(storeKey("user:ann", 3)); ok {
			t.Error("a write-ahead record for a clean-session subscriber")
		}
		agent := ss.connect(t, "agent:pi", 3600)
		agent.subscribe(t, "cmd/#")
		pub.publish(t, "cmd/lock", "x", 0, false)
		eventually.That(t, 5*time.Second, "delivery", func() bool { return len(agent.received()) == 1 })
		live.leave(t)
		pub.leave(t)
		agent.leave(t)
		ss.stop()
		for _, k := range storedKeys(t, data) {
			if strings.HasPrefix(k, "IFM_") {
				t.Errorf("record left after a completed publish: %s", k)
			}
		}
	})
}

// TestExpiredSessionLeavesNothingBehind: when a session expires, its
// subscriptions and queued messages leave the store with it.
func TestExpiredSessionLeavesNothingBehind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data := t.TempDir()
		ss := startStoreServer(t, data)
		gone := ss.connect(t, "user:gone/x1", 1)
		gone.subscribe(t, "cmd/#")
		gone.leave(t)
		pub := ss.connect(t, "user:ann", 0)
		pub.publish(t, "cmd/lock", "queued", 0, false)
		pub.leave(t)
		eventually.That(t, 5*time.Second, "the session to expire", func() bool { _, ok := ss.Clients.Get("user:gone/x1"); return !ok })
		ss.stop()
		for _, k := range storedKeys(t, data) {
			if strings.Contains(k, "user:gone/x1") {
				t.Errorf("left in the store after the session expired: %s", k)
			}
		}
	})
}

func TestPacketIDOf(t *testing.T) {
	for key, want := range map[string]uint16{"IFM_agent:pi:17": 17, "IFM_$wal/user:a/x:65535": 65535, "IFM_x:0": 0, "IFM_x": 0, "IFM_x:70000": 0, "IFM_x:-1": 0} {
		got, ok := packetIDOf(key)
		if got != want || ok != (want != 0) {
			t.Errorf("packetIDOf(%q) = %d %v, want %d", key, got, ok, want)
		}
	}
}

func testLogOut() io.Writer {
	if os.Getenv("STORE_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}
