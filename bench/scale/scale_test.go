package scale

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	ms := time.Millisecond
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(100-i) * ms // 100 ms … 1 ms, unsorted
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		want Quantiles
	}{
		{"none", nil, Quantiles{}},
		{"one", []time.Duration{3 * ms}, Quantiles{N: 1, P50: 3, P99: 3, Max: 3}},
		{"two", []time.Duration{4 * ms, 2 * ms}, Quantiles{N: 2, P50: 2, P99: 4, Max: 4}},
		{"hundred", hundred, Quantiles{N: 100, P50: 50, P99: 99, Max: 100}},
	} {
		if got := Summarize(tc.in); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestRotate(t *testing.T) {
	abc := []string{"a", "b", "c"}
	for _, tc := range []struct {
		first int
		want  []string
	}{
		{0, []string{"a", "b", "c"}},
		{1, []string{"b", "c", "a"}},
		{2, []string{"c", "a", "b"}},
		{3, []string{"a", "b", "c"}},
		{-1, []string{"c", "a", "b"}},
	} {
		if got := Rotate(abc, tc.first); !slices.Equal(got, tc.want) {
			t.Errorf("Rotate(abc, %d) = %v, want %v", tc.first, got, tc.want)
		}
	}
	if Rotate(nil, 1) != nil {
		t.Error("Rotate(nil) is not nil")
	}
	if !slices.Equal(abc, []string{"a", "b", "c"}) {
		t.Errorf("Rotate changed its input: %v", abc)
	}
}

func TestBackoff(t *testing.T) {
	s := time.Second
	top := func(n int64) int64 { return n - 1 } // the greatest draw
	zero := func(int64) int64 { return 0 }
	for _, tc := range []struct {
		failures int
		r        func(int64) int64
		want     time.Duration
	}{
		{1, top, s},       // the first wait after a loss is min
		{2, top, 2 * s},   // then up to 2·min
		{2, zero, s},      // and at least min
		{4, top, 8 * s},   // doubling
		{10, top, 60 * s}, // capped at max
		{100, zero, s},    // never below min
		{0, top, s},       // no failure yet: min
		{7, top, 60 * s},  // 64 s capped
		{6, top, 32 * s},  // 32 s
		{3, zero, 1 * s},  // the floor
		{3, top, 4 * s},   // 4 s
		{2, func(int64) int64 { return int64(s / 2) }, s + s/2},
	} {
		if got := Backoff(s, time.Minute, tc.failures, tc.r); got != tc.want {
			t.Errorf("Backoff(failures %d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
}

func TestPerConn(t *testing.T) {
	for _, tc := range []struct {
		before, after int64
		n             int
		want          float64
	}{
		{1000, 5000, 4, 1000},
		{5000, 1000, 4, -1000}, // a GC shrank it: reported, not hidden
		{0, 100, 0, 0},
	} {
		if got := PerConn(tc.before, tc.after, tc.n); got != tc.want {
			t.Errorf("PerConn(%d, %d, %d) = %v, want %v", tc.before, tc.after, tc.n, got, tc.want)
		}
	}
}

func TestEnvelopeMsg(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{`{"v":1,"msg":"t12","kid":"k"}`, "t12", true},
		{`{"msg":""}`, "", true},
		{`{"msg":"t1`, "", false},
		{`{"v":1}`, "", false},
		{``, "", false},
	} {
		got, ok := envelopeMsg([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("envelopeMsg(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestFailureKind(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"bench: connect agent k1-a to 127.0.0.1:4000: mqttc: dial 127.0.0.1:4000: dial tcp 127.0.0.1:4000: connect: connection refused",
			"connection refused"},
		{`bench: agent k2-a on 127.0.0.1:4001: mqttc: wait for SUBACK of "x": read tcp 127.0.0.1:5->127.0.0.1:4001: i/o timeout`,
			"no SUBACK in time"},
		{"bench: connect agent k3-a to 127.0.0.1:4001: mqttc: read CONNACK: read tcp 127.0.0.1:5->127.0.0.1:4001: i/o timeout",
			"no CONNACK in time"},
		{"bench: connect agent k4-a to 127.0.0.1:4001: mqttc: CONNACK 0x88: server unavailable", "server unavailable"},
	} {
		if got := failureKind(errors.New(tc.in)); got != tc.want {
			t.Errorf("failureKind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
