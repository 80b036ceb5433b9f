package envelope

import (
	"fmt"
	"testing"
	"time"
)

// TestReplayOwnerQuota: an owner at its quota is refused with ReasonQuota,
// others are not, a replay is still a replay, and the quota frees up as the
// owner's entries expire.
func TestReplayOwnerQuota(t *testing.T) {
	c := NewReplayCache(1000, DefaultPolicy().Horizon(), OwnerQuota(3))
	steps := []struct {
		name         string
		owner, nonce string
		exp, now     time.Time
		want         Reason
	}{
		{"first", "user:a", "n1", t0.Add(sec(10)), t0, ""},
		{"second", "user:a", "n2", t0.Add(sec(20)), t0, ""},
		{"third", "user:a", "n3", t0.Add(sec(30)), t0, ""},
		{"fourth over the quota", "user:a", "n4", t0.Add(sec(30)), t0, ReasonQuota},
		{"a replay at the quota is a replay", "user:a", "n1", t0.Add(sec(10)), t0, ReasonReplay},
		{"another owner passes", "user:b", "n4", t0.Add(sec(30)), t0, ""},
		{"no owner has no quota", "", "n5", t0.Add(sec(30)), t0, ""},
		{"after the first expired", "user:a", "n6", t0.Add(sec(40)), t0.Add(sec(16)), ""},
		{"and the quota is full again", "user:a", "n7", t0.Add(sec(40)), t0.Add(sec(16)), ReasonQuota},
		{"all expired", "user:a", "n8", t0.Add(sec(90)), t0.Add(sec(50)), ""},
	}
	for _, s := range steps {
		err := c.RecordFor(s.owner, "kid", s.nonce, s.exp, s.now)
		if ReasonOf(err) != s.want {
			t.Fatalf("%s: RecordFor(%q, %s) = %v, want reason %q", s.name, s.owner, s.nonce, err, s.want)
		}
	}
}

// TestReplayOwnerQuotaGivesBackOnCacheFull: an entry refused by the global
// cap does not count against its owner.
func TestReplayOwnerQuotaGivesBackOnCacheFull(t *testing.T) {
	c := NewReplayCache(2, DefaultPolicy().Horizon(), OwnerQuota(2))
	exp := t0.Add(sec(30))
	for i, want := range []Reason{"", "", ReasonCacheFull, ReasonCacheFull} {
		owner := "user:a"
		if i >= 1 {
			owner = "user:b"
		}
		if err := c.RecordFor(owner, "kid", fmt.Sprint("n", i), exp, t0); ReasonOf(err) != want {
			t.Fatalf("record %d: %v, want %q", i, err, want)
		}
	}
	// user:b holds one entry: after user:a's expires, it may add one more
	if err := c.RecordFor("user:a", "kid", "late", t0.Add(sec(60)), t0.Add(sec(40))); err != nil {
		t.Fatal(err)
	}
	if err := c.RecordFor("user:b", "kid", "x", t0.Add(sec(60)), t0.Add(sec(40))); err != nil {
		t.Fatalf("user:b after the cache had room again: %v", err)
	}
}

func TestOwnerUseSlots(t *testing.T) {
	var u ownerUse
	for _, s := range []int64{5, 3, 5, 9, 1} {
		u.add(s, 1)
	}
	if u.n != 5 || len(u.slots) != 4 || u.slots[0].slot != 1 || u.slots[3].slot != 9 {
		t.Fatalf("after adds: %+v", u)
	}
	u.add(3, -1)
	u.add(2, -1) // an expired slot: nothing to give back
	if u.n != 4 || len(u.slots) != 3 {
		t.Fatalf("after give-backs: %+v", u)
	}
	u.expire(5)
	if u.n != 1 || len(u.slots) != 1 || u.slots[0].slot != 9 {
		t.Fatalf("after expire(5): %+v", u)
	}
}

// BenchmarkReplayCacheRecordFor is BenchmarkReplayCacheRecord with an owner
// quota: one owner in steady state, below its quota.
func BenchmarkReplayCacheRecordFor(b *testing.B) {
	nonces := benchNonces(1 << 18)
	c := NewReplayCache(1<<20, DefaultPolicy().Horizon(), OwnerQuota(1<<20))
	now := tNow
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if i%2048 == 0 {
			now = now.Add(time.Second)
		}
		if err := c.RecordFor("user:alice", "kZ3x8cQp2mVb1nT7yLwEAg", nonces[i&(1<<18-1)], now.Add(30*time.Second), now); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
