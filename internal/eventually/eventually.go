// Package eventually lets a test wait for something another goroutine, a
// timer or another process makes true: it polls a condition until it
// holds, with a generous deadline, instead of sleeping for a guessed time.
//
// Inside a testing/synctest bubble the polling runs on the bubble's fake
// clock, so waiting costs no wall time there.
package eventually

import "time"

// Interval is how long That and Never wait between two looks at the
// condition.
const Interval = 10 * time.Millisecond

// T is the part of *testing.T (or testing.TB) the helpers use.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
}

// That calls cond every Interval until it returns true and then returns.
// If cond is still false after within, That fails t with a message that
// names what the test was waiting for. Pass a bound well above the
// expected wait: it is a safety net for a hung test, not a timing promise.
func That(t T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if !time.Now().Before(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
			return
		}
		time.Sleep(Interval)
	}
}

// Never checks that cond stays false for the whole of d, looking every
// Interval, and fails t naming what happened as soon as cond is true. It
// is for promises of absence ("no second delivery"), which only a period
// of watching can show; keep d short.
func Never(t T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if cond() {
			t.Fatalf("unexpectedly: %s", what)
			return
		}
		if !time.Now().Before(deadline) {
			return
		}
		time.Sleep(Interval)
	}
}
