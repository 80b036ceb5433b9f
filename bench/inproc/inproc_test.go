package inproc

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
)

func TestSteps(t *testing.T) {
	for _, tc := range []struct {
		s    Spec
		want []int
	}{
		{Spec{Conns: 100}, []int{100}},
		{Spec{Conns: 100, Steps: []int{50, 10, 100, 500, 0}}, []int{10, 50, 100}},
	} {
		if got := steps(tc.s); !slices.Equal(got, tc.want) {
			t.Errorf("steps(%+v) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

// TestRunBothTargets opens a few hundred connections to each target and
// checks that every step has a plausible reading: two goroutines per
// connection (mochi's reader and writer) and some kilobytes of heap.
func TestRunBothTargets(t *testing.T) {
	if testing.Short() {
		t.Skip("starts brokers")
	}
	for _, name := range []string{Bare, Homemq} {
		prof := filepath.Join(t.TempDir(), "heap.pprof")
		r, err := Run(context.Background(), Spec{Target: name, Conns: 300, Steps: []int{100}, HeapProfile: prof})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(r.Steps) != 2 || r.Steps[1].Conns != 300 {
			t.Fatalf("%s: steps %+v", name, r.Steps)
		}
		for _, st := range r.Steps {
			if st.GoroutinesPerConn < 1.5 || st.GoroutinesPerConn > 3 || st.HeapPerConn < 1000 || st.StackPerConn <= 0 {
				t.Errorf("%s: implausible step %+v", name, st)
			}
		}
	}
	if _, err := Run(context.Background(), Spec{Target: "nope", Conns: 1}); err == nil {
		t.Error("an unknown target ran")
	}
}
