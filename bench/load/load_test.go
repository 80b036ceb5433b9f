package load

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"homemq/bench"
	"homemq/broker"
)

func TestHistQuantiles(t *testing.T) {
	var h Hist
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 500 * time.Microsecond},
		{0.99, 990 * time.Microsecond},
		{0.999, 999 * time.Microsecond},
		{0, time.Microsecond},
		{1, 1000 * time.Microsecond},
	} {
		got := h.Quantile(tc.q)
		if rel := math.Abs(float64(got-tc.want)) / float64(tc.want); rel > 0.035 {
			t.Errorf("q%.3f = %v, want %v within 3.5%%", tc.q, got, tc.want)
		}
	}
	var empty Hist
	if empty.Quantile(0.5) != 0 || empty.Count() != 0 {
		t.Error("an empty histogram has a quantile")
	}
	var m Hist
	m.Record(time.Millisecond)
	m.Merge(&h)
	if m.Count() != 1001 {
		t.Errorf("merged count %d, want 1001", m.Count())
	}
}

func TestHistResolution(t *testing.T) {
	for v := int64(1); v < 1<<40; v = v*3/2 + 1 {
		mid := bucketMid(bucketOf(v))
		if rel := math.Abs(float64(mid-v)) / float64(v); rel > 1.0/32 {
			t.Fatalf("%d ns lands in a bucket centred on %d ns (%.1f%% off)", v, mid, 100*rel)
		}
	}
	if bucketOf(-5) != 0 || bucketOf(math.MaxInt64) != histBuckets-1 {
		t.Error("out-of-range values are not clamped")
	}
}

func TestStampOf(t *testing.T) {
	state := make([]byte, 64)
	binary.BigEndian.PutUint64(state, 123456789)
	for _, tc := range []struct {
		name    string
		payload []byte
		want    int64
		ok      bool
	}{
		{"state", state, 123456789, true},
		{"command", []byte(`{"v":1,"kid":"k","iat":1,"exp":2,"nonce":"n","msg":"t987654321","sig":"s"}`), 987654321, true},
		{"short", []byte{1, 2}, 0, false},
		{"empty", nil, 0, false},
		{"json without msg", []byte(`{"v":1}`), 0, false},
		{"msg without digits", []byte(`{"msg":"tx"}`), 0, false},
	} {
		got, ok := stampOf(tc.payload)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: got %d %v, want %d %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// bareTarget runs the bare comparison server in-process on a free port.
func bareTarget(t *testing.T) Target {
	t.Helper()
	s := bench.NewBare(broker.DefaultConfig().Limits, quiet)
	l := broker.NewTCPListener("mqtt", "127.0.0.1:0", nil, 10*time.Second)
	if err := s.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return Target{Name: "bare", Addr: l.Address(), PID: os.Getpid()}
}

// homemqTarget runs homemq with every check on, in-process, with limits
// raised for load as the compare run does, and a minter on its data folder.
func homemqTarget(t *testing.T) Target {
	t.Helper()
	cfg := bench.ForLoad(broker.DefaultConfig())
	cfg.Data = t.TempDir()
	cfg.Listeners = broker.ListenersConfig{MQTT: "127.0.0.1:0", HTTPS: "127.0.0.1:0", MQTTPlain: "127.0.0.1:0"}
	b, err := broker.New(cfg, broker.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	m, err := NewMinter(cfg.Data, cfg.Tokens)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(b.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return Target{Name: "homemq", Addr: b.Addrs()["mqtt"], Minter: m, PID: os.Getpid(),
		HTTPS: b.Addrs()["https"], HTTPSTLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
}

func short(s Spec) Spec {
	s.Warmup, s.Duration, s.Window = 50*time.Millisecond, 300*time.Millisecond, 32
	return s
}

func TestFlowsDeliverEverything(t *testing.T) {
	ctx := context.Background()
	bare, hmq := bareTarget(t), homemqTarget(t)
	for _, tc := range []struct {
		name string
		spec Spec
	}{
		{"state qos0 2x3", Spec{Scenario: State, Pubs: 2, Subs: 3, QoS: 0, Size: 64}},
		{"state qos1 2 groups", Spec{Scenario: State, Pubs: 1, Subs: 2, Groups: 2, QoS: 1, Size: 1024}},
		{"state at a fixed rate", Spec{Scenario: State, Pubs: 2, Subs: 1, QoS: 1, Rate: 200}},
		{"command", Spec{Scenario: Command, Pubs: 2, Subs: 1, QoS: 1}},
	} {
		for _, tg := range []Target{bare, hmq} {
			r, err := Run(ctx, tg, short(tc.spec))
			if err != nil {
				t.Fatalf("%s on %s: %v", tc.name, tg.Name, err)
			}
			if r.Delivered == 0 || r.Samples == 0 || r.P50 <= 0 || r.P99 < r.P50 {
				t.Errorf("%s on %s: nothing measured: %+v", tc.name, tg.Name, r)
			}
			if r.Refused != 0 || r.Lost != 0 || r.Errors != 0 {
				t.Errorf("%s on %s: refused %d, lost %d, errors %d (%s)", tc.name, tg.Name, r.Refused, r.Lost, r.Errors, r.FirstError)
			}
			if tc.spec.Rate > 0 {
				want := tc.spec.Rate * float64(tc.spec.Pubs*tc.spec.Subs)
				if r.Rate > 1.5*want {
					t.Errorf("%s on %s: %.0f msgs/s, paced at %.0f", tc.name, tg.Name, r.Rate, want)
				}
			}
		}
	}
}

func TestHomemqRefusesAForeignKey(t *testing.T) {
	hmq := homemqTarget(t)
	other, err := NewMinter(t.TempDir(), broker.DefaultConfig().Tokens)
	if err != nil {
		t.Fatal(err)
	}
	hmq.Minter = other
	_, err = Run(context.Background(), hmq, short(Spec{Scenario: State, Pubs: 1, Subs: 1}))
	if err == nil || !strings.Contains(err.Error(), "0x86") {
		t.Fatalf("tokens of another data folder: got %v, want a refusal 0x86", err)
	}
}

func TestConnectAndIdle(t *testing.T) {
	ctx := context.Background()
	for _, tg := range []Target{bareTarget(t), homemqTarget(t)} {
		r, err := Run(ctx, tg, short(Spec{Scenario: Connect, Workers: 2, Tokens: 50}))
		if err != nil || r.Connects == 0 || r.Errors != 0 {
			t.Errorf("connect on %s: %+v, %v", tg.Name, r, err)
		}
		heap := int64(1 << 20)
		tg.HeapLive = func() (int64, error) { heap += 1000; return heap, nil }
		r, err = Run(ctx, tg, Spec{Scenario: Idle, Conns: 200, Steps: []int{50, 100, 500}, Sources: 3, Workers: 4, Settle: 10 * time.Millisecond})
		if err != nil || r.Conns != 200 || r.RSSBefore <= 0 || r.RSSAfter <= 0 {
			t.Errorf("idle on %s: %+v, %v", tg.Name, r, err)
		}
		var steps []int
		for _, st := range r.Steps {
			steps = append(steps, st.Conns)
			if st.RSS <= 0 || st.HeapLive <= 0 {
				t.Errorf("idle on %s: step %+v lacks a reading", tg.Name, st)
			}
		}
		if !slices.Equal(steps, []int{50, 100, 200}) {
			t.Errorf("idle on %s: steps at %v, want 50, 100, 200", tg.Name, steps)
		}
	}
	if _, err := Run(ctx, Target{Name: "x", Addr: "127.0.0.1:1"}, Spec{Scenario: Idle, Conns: 1}); err == nil {
		t.Error("idle without a process id ran")
	}
	if _, err := Run(ctx, Target{Name: "x"}, Spec{Scenario: "nope"}); err == nil {
		t.Error("an unknown scenario ran")
	}
}

func TestSourceIP(t *testing.T) {
	for _, tc := range []struct {
		i, n int
		want string
	}{{0, 1, ""}, {5, 0, ""}, {0, 4, "127.0.0.1"}, {3, 4, "127.0.0.4"}, {4, 4, "127.0.0.1"}} {
		if got := sourceIP(tc.i, tc.n); got != tc.want {
			t.Errorf("sourceIP(%d, %d) = %q, want %q", tc.i, tc.n, got, tc.want)
		}
	}
}

func TestSignalRRoundTrip(t *testing.T) {
	hmq := homemqTarget(t)
	r, err := Run(context.Background(), hmq, short(Spec{Scenario: SignalR, Pubs: 2, Rate: 50}))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d round trips, p50 %.0fµs p99 %.0fµs", r.Delivered, r.P50, r.P99)
	if r.Delivered == 0 || r.P50 <= 0 || r.Errors != 0 {
		t.Errorf("no round trip measured: %+v", r)
	}
	if _, err := Run(context.Background(), bareTarget(t), short(Spec{Scenario: SignalR, Pubs: 1})); err == nil {
		t.Error("the SignalR scenario ran against a broker without the bridge")
	}
}

func TestCPUSecondsAndHomeOf(t *testing.T) {
	for i := 0; i < 2e7; i++ { // burn a little CPU so the reading is above zero
		_ = i * i
	}
	if s, err := CPUSeconds(os.Getpid()); err != nil || s < 0 {
		t.Errorf("CPUSeconds = %v, %v", s, err)
	}
	if _, err := CPUSeconds(0x7fffffff); err == nil {
		t.Error("the CPU time of no process was read")
	}
	a := Identity{Sub: "agent:s3-a12"}
	if homeOf(a) != "s3" || cmdFilter(a) != "homes/s3/agents/s3-a12/devices/+/cmd" {
		t.Errorf("homeOf %q, cmdFilter %q", homeOf(a), cmdFilter(a))
	}
}

// TestStormKeepsQueuedCommands runs the storm against homemq in process:
// Restart closes the broker and starts a new one on the same data folder
// and address (the compare run kills a real process instead). Every
// session and every queued command must come back.
func TestStormKeepsQueuedCommands(t *testing.T) {
	cfg := bench.ForLoad(broker.DefaultConfig())
	cfg.Data = t.TempDir()
	cfg.Listeners = broker.ListenersConfig{MQTTPlain: "127.0.0.1:0"}
	b, err := broker.New(cfg, broker.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	m, err := NewMinter(cfg.Data, cfg.Tokens)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listeners.MQTTPlain = b.Addrs()["mqtt"]
	tg := Target{Name: "homemq", Addr: cfg.Listeners.MQTTPlain, Minter: m, PID: os.Getpid()}
	tg.Restart = func(context.Context) (int, error) {
		b.Close()
		nb, err := broker.New(cfg, broker.WithLogger(quiet))
		if err != nil {
			return 0, err
		}
		if err := nb.Start(); err != nil {
			return 0, err
		}
		b = nb
		return os.Getpid(), nil
	}
	r, err := Run(context.Background(), tg, Spec{Scenario: Storm, Conns: 40, Workers: 4, Settle: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Connects != 40 || r.SessionsPresent != 40 || r.Published != 40 || r.Delivered != 40 || r.Lost != 0 || r.Seconds <= 0 || r.DeliveredSeconds <= 0 {
		t.Errorf("storm: %+v", r)
	}
	if _, err := Run(context.Background(), Target{Name: "x"}, Spec{Scenario: Storm, Conns: 1}); err == nil {
		t.Error("a storm without a restart ran")
	}
}
