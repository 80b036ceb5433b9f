package envelope

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Unix(1767225600, 0)

func sec(n int) time.Duration { return time.Duration(n) * time.Second }

func TestReplayCacheRefusesASecondRecord(t *testing.T) {
	c := NewReplayCache(100, DefaultPolicy().Horizon())
	exp := t0.Add(sec(30))
	steps := []struct {
		kid, nonce string
		now        time.Time
		want       Reason
	}{
		{"k1", "n1", t0, ""},
		{"k1", "n1", t0, ReasonReplay},
		{"k1", "n1", t0.Add(sec(29)), ReasonReplay},
		{"k2", "n1", t0, ""}, // same nonce, another token
		{"k1", "n2", t0, ""},
		{"k1", "n1", t0.Add(-sec(20)), ReasonReplay}, // the clock went back a little
		{"k1n", "1", t0, ""},                         // no ambiguity between kid and nonce
	}
	for i, s := range steps {
		if err := c.Record(s.kid, s.nonce, exp, s.now); ReasonOf(err) != s.want {
			t.Fatalf("step %d: Record(%s, %s) = %v, want reason %q", i, s.kid, s.nonce, err, s.want)
		}
	}
	if c.Len() != 4 {
		t.Errorf("Len = %d, want 4", c.Len())
	}
}

func TestReplayCacheBounds(t *testing.T) {
	c := NewReplayCache(10, DefaultPolicy().Horizon())
	if err := c.Record("k", "n", t0, t0); ReasonOf(err) != ReasonExpired {
		t.Errorf("Record at exp = %v, want expired", err)
	}
	if err := c.Record("k", "n", t0.Add(c.Horizon()+time.Second), t0); ReasonOf(err) != ReasonLifetime {
		t.Errorf("Record beyond the horizon = %v, want lifetime_too_long", err)
	}
	if err := c.Record("k", "n", t0.Add(c.Horizon()), t0); err != nil {
		t.Errorf("Record at the horizon = %v", err)
	}
	if c.Horizon() != 65*time.Second {
		t.Errorf("Horizon = %v", c.Horizon())
	}
}

func TestReplayCacheForgetsAtExpPlusGrace(t *testing.T) {
	for _, horizon := range []time.Duration{DefaultPolicy().Horizon(), CapMaxLifetime + DefaultSkew, 10 * time.Hour} {
		t.Run(horizon.String(), func(t *testing.T) {
			c := NewReplayCache(100, horizon)
			exp := t0.Add(horizon - time.Second)
			if err := c.Record("k", "n", exp, t0); err != nil {
				t.Fatal(err)
			}
			c.Expire(exp.Add(replayGrace - time.Nanosecond))
			if c.Len() != 1 {
				t.Fatalf("forgotten before exp+grace")
			}
			c.Expire(exp.Add(replayGrace + time.Duration(c.width)*time.Second))
			if c.Len() != 0 {
				t.Fatalf("still held one bucket after exp+grace: Len %d", c.Len())
			}
		})
	}
}

func TestReplayCacheFullRefusesUntilEntriesExpire(t *testing.T) {
	c := NewReplayCache(3, DefaultPolicy().Horizon())
	for i := range 3 {
		if err := c.Record("k", fmt.Sprint("n", i), t0.Add(sec(10)), t0); err != nil {
			t.Fatal(err)
		}
	}
	err := c.Record("k", "n3", t0.Add(sec(10)), t0)
	if ReasonOf(err) != ReasonCacheFull {
		t.Fatalf("fourth Record = %v, want replay_cache_full", err)
	}
	if c.Len() != 3 {
		t.Errorf("Len = %d after a refusal", c.Len())
	}
	// At exp+grace every entry is gone, whichever shard holds it and
	// whichever shard the next Record lands in.
	later := t0.Add(sec(15))
	for i := range 3 {
		if err := c.Record("k", fmt.Sprint("m", i), later.Add(sec(10)), later); err != nil {
			t.Fatalf("Record after expiry: %v", err)
		}
	}
	if c.Len() != 3 {
		t.Errorf("Len = %d, want 3", c.Len())
	}
}

// TestReplayCacheModel drives the cache and a plain map side by side with
// random steps. With a clock that only moves forward the answers must be
// exact (to the second: an entry lives until exp+grace rounded up to a whole
// second). With a clock that also steps back, an entry may be remembered
// longer but never forgotten before a time at or past its end has been seen.
func TestReplayCacheModel(t *testing.T) {
	for _, backwards := range []bool{false, true} {
		t.Run(fmt.Sprint("backwards=", backwards), func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, 11))
			c := NewReplayCache(1<<20, DefaultPolicy().Horizon())
			type entry struct{ kid, nonce string }
			type state struct {
				until     time.Time // exp+grace rounded up to the second
				droppable bool      // a time >= until was seen since it was recorded
			}
			model := map[entry]*state{}
			var used []entry
			now := t0
			steps := 50000
			if backwards {
				steps = 8000
			}
			for step := range steps {
				switch x := r.IntN(100); {
				case x < 10:
					now = now.Add(time.Duration(r.Int64N(int64(3 * time.Second))))
				case x < 11:
					now = now.Add(sec(r.IntN(200)))
				case x < 13 && backwards:
					now = now.Add(-time.Duration(r.Int64N(int64(300 * time.Second))))
				}
				if backwards {
					for _, s := range model {
						if !now.Before(s.until) {
							s.droppable = true
						}
					}
				}
				var e entry
				if len(used) > 0 && r.IntN(2) == 0 {
					e = used[len(used)-1-r.IntN(min(len(used), 100))] // mostly recent: live or just dead
				} else {
					e = entry{fmt.Sprint("k", r.IntN(3)), fmt.Sprint("n", step)}
					used = append(used, e)
				}
				exp := now.Add(time.Second + time.Duration(r.Int64N(int64(c.Horizon()-time.Second))))
				err := c.Record(e.kid, e.nonce, exp, now)
				s, known := model[e]
				mustRemember := known && now.Before(s.until) && !s.droppable
				switch {
				case mustRemember && ReasonOf(err) != ReasonReplay:
					t.Fatalf("step %d: live entry %v (until %v, now %v) not refused as a replay: %v", step, e, s.until, now, err)
				case !backwards && !mustRemember && err != nil:
					t.Fatalf("step %d: fresh entry %v refused: %v", step, e, err)
				case err == nil:
					keep := exp.Add(replayGrace)
					until := keep.Truncate(time.Second)
					if until.Before(keep) {
						until = until.Add(time.Second)
					}
					model[e] = &state{until: until}
				}
				if step%1000 == 0 && !backwards {
					c.Expire(now)
					n := 0
					for _, s := range model {
						if now.Before(s.until) {
							n++
						}
					}
					if c.Len() != n {
						t.Fatalf("step %d: Len %d, model %d", step, c.Len(), n)
					}
				}
			}
		})
	}
}

func TestReplayCacheConcurrentRecordsAcceptEachNonceOnce(t *testing.T) {
	c := NewReplayCache(1<<16, DefaultPolicy().Horizon())
	const nonces, workers = 2000, 8
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range nonces {
				n := (i + w*nonces/workers) % nonces
				if err := c.Record("k", fmt.Sprint(n), t0.Add(sec(30)), t0); err == nil {
					accepted.Add(1)
				} else if ReasonOf(err) != ReasonReplay {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if accepted.Load() != nonces || c.Len() != nonces {
		t.Errorf("accepted %d, Len %d; want %d each", accepted.Load(), c.Len(), nonces)
	}
}
