package eventually

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// recorder is a T that records failures instead of stopping the test.
type recorder struct{ failures []string }

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func TestThat(t *testing.T) {
	tests := []struct {
		name     string
		trueAt   time.Duration // when cond becomes true; <0: never
		within   time.Duration
		wantFail string // "" when That must succeed
		wantWait time.Duration
	}{
		{name: "already true", trueAt: 0, within: time.Second, wantWait: 0},
		{name: "true later", trueAt: 250 * time.Millisecond, within: time.Second, wantWait: 250 * time.Millisecond},
		{name: "never true", trueAt: -1, within: 3 * time.Second, wantFail: "timed out after 3s waiting for the door to open", wantWait: 3 * time.Second},
		{name: "true too late", trueAt: 5 * time.Second, within: time.Second, wantFail: "timed out after 1s", wantWait: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var open atomic.Bool
				switch {
				case tt.trueAt == 0:
					open.Store(true)
				case tt.trueAt > 0:
					time.AfterFunc(tt.trueAt, func() { open.Store(true) })
				}
				r := &recorder{}
				start := time.Now()
				That(r, tt.within, "the door to open", open.Load)
				waited := time.Since(start)
				// The first look happens before any wait, the last one at most
				// one Interval after the condition became true.
				if waited < tt.wantWait || waited > tt.wantWait+Interval {
					t.Errorf("waited %v, want %v (+ at most %v)", waited, tt.wantWait, Interval)
				}
				switch {
				case tt.wantFail == "" && len(r.failures) != 0:
					t.Errorf("failed: %q", r.failures)
				case tt.wantFail != "" && (len(r.failures) != 1 || !strings.Contains(r.failures[0], tt.wantFail)):
					t.Errorf("failures %q, want one containing %q", r.failures, tt.wantFail)
				}
			})
		})
	}
}

func TestNever(t *testing.T) {
	tests := []struct {
		name     string
		trueAt   time.Duration // <0: never
		wantFail bool
		wantWait time.Duration
	}{
		{name: "stays false", trueAt: -1, wantWait: time.Second},
		{name: "true at once", trueAt: 0, wantFail: true, wantWait: 0},
		{name: "true midway", trueAt: 300 * time.Millisecond, wantFail: true, wantWait: 300 * time.Millisecond},
		{name: "true after the watch", trueAt: 2 * time.Second, wantWait: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var dup atomic.Bool
				switch {
				case tt.trueAt == 0:
					dup.Store(true)
				case tt.trueAt > 0:
					time.AfterFunc(tt.trueAt, func() { dup.Store(true) })
				}
				r := &recorder{}
				start := time.Now()
				Never(r, time.Second, "a second delivery", dup.Load)
				waited := time.Since(start)
				if waited < tt.wantWait || waited > tt.wantWait+Interval {
					t.Errorf("watched %v, want %v (+ at most %v)", waited, tt.wantWait, Interval)
				}
				if failed := len(r.failures) == 1 && r.failures[0] == "unexpectedly: a second delivery"; failed != tt.wantFail || len(r.failures) > 1 {
					t.Errorf("failures %q, want a failure: %v", r.failures, tt.wantFail)
				}
			})
		})
	}
}
