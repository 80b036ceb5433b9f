package cluster

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestSubjectOf(t *testing.T) {
	h1 := shardOf("h1")
	for _, tc := range []struct {
		topic, want string
		ok          bool
	}{
		{"homes/h1/agents/a1/devices/d1/state", "homemq.msg." + h1 + ".homes.h1.agents.a1.devices.d1.state", true},
		{"homes/h1", "homemq.msg." + h1 + ".homes.h1", true},
		{"homes", "homemq.msg._.homes", true},
		{"a", "homemq.msg._.a", true},
		{"a/h1/x", "homemq.msg._.a.h1.x", true},
		{"a/b.c", "", false},
		{"a//b", "", false},
		{"a/*", "", false},
		{"a/b c", "", false},
		{"homes/h1/+", "", false},
		{"$SYS/broker/uptime", "", false},
	} {
		got, ok := subjectOf(tc.topic)
		if got != tc.want || ok != tc.ok {
			t.Errorf("subjectOf(%q) = %q, %v; want %q, %v", tc.topic, got, ok, tc.want, tc.ok)
		}
	}
}

// TestShardOf: a home's shard is two digits below shards, the same for
// every call, and homes spread over all shards.
func TestShardOf(t *testing.T) {
	seen := map[string]int{}
	for i := range 100 * shards {
		home := fmt.Sprintf("h%d", i)
		s := shardOf(home)
		if !isShard(s) || s >= fmt.Sprintf("%02d", shards) || shardOf(home) != s {
			t.Fatalf("shardOf(%q) = %q, want two digits below %d, stable", home, s, shards)
		}
		seen[s]++
	}
	for s := range shards {
		if n := seen[fmt.Sprintf("%02d", s)]; n < 50 || n > 150 {
			t.Errorf("shard %02d holds %d of %d homes, want about 100", s, n, 100*shards)
		}
	}
}

func TestFilterSubject(t *testing.T) {
	h1 := shardOf("h1")
	for _, tc := range []struct {
		filter, want string
		ok           bool
	}{
		{"homes/h1/#", "homemq.msg." + h1 + ".homes.h1.>", true},
		{"homes/h1/agents/a1/devices/+/cmd", "homemq.msg." + h1 + ".homes.h1.agents.a1.devices.*.cmd", true},
		{"homes/h1", "homemq.msg." + h1 + ".homes.h1", true},
		{"$share/g/homes/h1/#", "homemq.msg." + h1 + ".homes.h1.>", true},
		// A wildcard at the home level, or at the first level of a
		// filter that may reach a home, maps to every shard.
		{"homes/+/agents/+/status", "homemq.msg.*.homes.*.agents.*.status", true},
		{"homes/#", "homemq.msg.*.homes.>", true},
		{"homes/+", "homemq.msg.*.homes.*", true},
		{"+/h1/x", "homemq.msg.*.*.h1.x", true},
		{"+/#", "homemq.msg.*.*.>", true},
		{"#", "homemq.msg.>", true},
		// Outside homes: otherShard.
		{"+", "homemq.msg._.*", true},
		{"homes", "homemq.msg._.homes", true},
		{"a/+/c", "homemq.msg._.a.*.c", true},
		{"a/#", "homemq.msg._.a.>", true},
		{"$share/g", "", false},
		{"$SYS/#", "", false},
		{"a/b.c", "", false},
	} {
		got, ok := filterSubject(tc.filter)
		if got != tc.want || ok != tc.ok {
			t.Errorf("filterSubject(%q) = %q, %v; want %q, %v", tc.filter, got, ok, tc.want, tc.ok)
		}
	}
}

// TestFilterSubjectMatchesMQTT: on random filters and topics, a filter's
// subject matches a topic's subject exactly when MQTT matches the filter
// to the topic (a "#" aside that would match its parent level only).
func TestFilterSubjectMatchesMQTT(t *testing.T) {
	levels := []string{"homes", "h1", "h2", "a", "+", "#"}
	r := rand.New(rand.NewPCG(3, 4))
	random := func(wild bool) string {
		var lv []string
		for i := range 1 + r.IntN(4) {
			l := levels[r.IntN(len(levels))]
			for !wild && (l == "+" || l == "#") {
				l = levels[r.IntN(len(levels))]
			}
			if i == 0 && r.IntN(2) == 0 {
				l = "homes" // reach homes often
			}
			lv = append(lv, l)
			if l == "#" {
				break
			}
		}
		return strings.Join(lv, "/")
	}
	for range 20000 {
		filter, topic := random(true), random(false)
		fs, ok := filterSubject(filter)
		ts, ok2 := subjectOf(topic)
		if !ok || !ok2 {
			t.Fatalf("filterSubject(%q) %v, subjectOf(%q) %v: want both", filter, ok, topic, ok2)
		}
		parentOnly := strings.HasSuffix(filter, "/#") && matchMQTT(strings.TrimSuffix(filter, "/#"), topic)
		if want := matchMQTT(filter, topic); covers(fs, ts) != want && !parentOnly {
			t.Fatalf("filter %q (%s), topic %q (%s): subjects match %v, MQTT %v", filter, fs, topic, ts, !want, want)
		}
	}
}

// matchMQTT is MQTT's topic matching, plainly.
func matchMQTT(filter, topic string) bool {
	f, tp := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, l := range f {
		switch {
		case l == "#":
			return true
		case i >= len(tp):
			return false
		case l != "+" && l != tp[i]:
			return false
		}
	}
	return len(f) == len(tp)
}

func TestCoversAndOverlap(t *testing.T) {
	for _, tc := range []struct {
		a, b            string
		covers, overlap bool
	}{
		{"a.>", "a.b.c", true, true},
		{"a.>", "a", false, false},
		{"a.*", "a.b", true, true},
		{"a.b", "a.*", false, true},
		{"a.*.c", "a.b.*", false, true},
		{"a.b", "a.c", false, false},
		{"a.b", "a.b", true, true},
		{"a.b", "a.b.c", false, false},
		{"a.*", "a.>", false, true},
		{">", "x.y", true, true},
	} {
		if got := covers(tc.a, tc.b); got != tc.covers {
			t.Errorf("covers(%q, %q) = %v", tc.a, tc.b, got)
		}
		if got := overlap(tc.a, tc.b); got != tc.overlap {
			t.Errorf("overlap(%q, %q) = %v", tc.a, tc.b, got)
		}
		if overlap(tc.a, tc.b) != overlap(tc.b, tc.a) {
			t.Errorf("overlap(%q, %q) is not symmetric", tc.a, tc.b)
		}
	}
}

func TestInterest(t *testing.T) {
	p := msgPrefix
	h1, h2 := shardOf("h1"), shardOf("h2")
	if h1 == h2 {
		t.Fatal("h1 and h2 share a shard: pick other homes for this test")
	}
	for _, tc := range []struct {
		in, want []string
	}{
		{nil, []string{noInterest}},
		{[]string{p + "_.a.b", p + "_.a.b"}, []string{p + "_.a.b"}},
		{[]string{p + "_.a.>", p + "_.a.b.c", p + "_.x"}, []string{p + "_.a.>", p + "_.x"}},
		{[]string{p + "_.a.*.c", p + "_.a.b.*"}, []string{p + ">"}},
		{[]string{p + "_.h.*.s", p + "_.h.*.t"}, []string{p + "_.h.*.s", p + "_.h.*.t"}},
		// A home's filters become its shard.
		{[]string{p + h1 + ".homes.h1.a.*", p + h1 + ".homes.h1.*.b"}, []string{p + h1 + ".homes.>"}},
		{[]string{p + h1 + ".homes.h1.a", p + h2 + ".homes.h2.b", p + "_.x"}, sorted(p+h1+".homes.>", p+h2+".homes.>", p+"_.x")},
		// A wildcard across homes: alone it stays; next to a shard,
		// everything.
		{[]string{p + "*.homes.*.s"}, []string{p + "*.homes.*.s"}},
		{[]string{p + "*.homes.*.s", p + "_.x"}, []string{p + "*.homes.*.s", p + "_.x"}},
		{[]string{p + h1 + ".homes.h1.a.b", p + "*.homes.*.s"}, []string{p + ">"}},
		{[]string{p + h1 + ".homes.h1.a.b", p + "*.homes.>"}, []string{p + "*.homes.>"}},
		{[]string{p + h1 + ".homes.h1.a.b", p + "*.*.h1.a.b"}, []string{p + ">"}},
		{[]string{p + h1 + ".homes.h1.a.b", p + ">"}, []string{p + ">"}},
	} {
		if got := interest(slices.Clone(tc.in)); !slices.Equal(got, tc.want) {
			t.Errorf("interest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestWithinAndWidens(t *testing.T) {
	p := msgPrefix
	h1, h2 := shardOf("h1"), shardOf("h2")
	shard1 := []string{p + h1 + ".homes.>"}
	for _, tc := range []struct {
		interest []string
		f        string
		within   bool
	}{
		{shard1, p + h1 + ".homes.h1.agents.a1.devices.*.cmd", true},
		{shard1, p + h2 + ".homes.h2.agents.a1.devices.*.cmd", false},
		{shard1, p + "*.homes.*.status", false},
		{shard1, p + "_.x", false},
		{[]string{p + ">"}, p + "*.homes.*.status", true},
		{[]string{p + "*.homes.>"}, p + h2 + ".homes.h2.x", true},
		{[]string{p + "_.a.>"}, p + "_.a.b", true},
		{[]string{noInterest}, p + h1 + ".homes.h1.x", false},
	} {
		if got := within(tc.interest, tc.f); got != tc.within {
			t.Errorf("within(%q, %q) = %v", tc.interest, tc.f, got)
		}
	}
	both := sorted(p+h1+".homes.>", p+h2+".homes.>")
	for _, tc := range []struct {
		next, prev []string
		widens     bool
	}{
		{both, shard1, true},
		{shard1, both, false},
		{shard1, []string{noInterest}, true},
		{[]string{noInterest}, shard1, false},
		{[]string{p + ">"}, both, true},
		{both, []string{p + ">"}, false},
	} {
		if got := widens(tc.next, tc.prev); got != tc.widens {
			t.Errorf("widens(%q, %q) = %v", tc.next, tc.prev, got)
		}
	}
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// TestInterestOfManyAgents: however many homes a node serves, its interest
// is at most one filter per shard; filters outside homes beyond
// maxFilters are widened to their group, and beyond that to everything.
func TestInterestOfManyAgents(t *testing.T) {
	agents := func(homes, perHome int) []string {
		var out []string
		for h := range homes {
			for a := range perHome {
				s, _ := filterSubject(fmt.Sprintf("homes/h%d/agents/a%d/devices/+/cmd", h, a))
				out = append(out, s)
			}
		}
		return out
	}
	one := interest(agents(1, 3))
	if len(one) != 1 || one[0] != msgPrefix+shardOf("h0")+".homes.>" {
		t.Errorf("3 agents of one home: %q, want its shard", one)
	}
	for _, homes := range []int{10, 100, 10000} {
		got := interest(agents(homes, 2))
		if len(got) > shards || !strings.HasSuffix(got[0], ".>") || !isShard(strings.Split(strings.TrimPrefix(got[0], msgPrefix), ".")[0]) {
			t.Errorf("%d homes: %d filters starting %q, want one per shard at most", homes, len(got), got[0])
		}
		if homes == 10000 && len(got) != shards {
			t.Errorf("%d homes: %d filters, want every shard", homes, len(got))
		}
	}
	others := func(groups, each int) []string {
		var out []string
		for g := range groups {
			for e := range each {
				out = append(out, fmt.Sprintf("%s_.ops.g%d.e%d", msgPrefix, g, e))
			}
		}
		return out
	}
	if got := interest(others(maxFilters/2, 3)); len(got) != maxFilters/2 || got[0] != msgPrefix+"_.ops.g0.>" {
		t.Errorf("%d filters outside homes in %d groups: %d filters starting %q, want one per group", 3*maxFilters/2, maxFilters/2, len(got), got[0])
	}
	if got := interest(others(maxFilters+1, 2)); !slices.Equal(got, []string{msgPrefix + ">"}) {
		t.Errorf("more groups than maxFilters: %q, want everything", got)
	}
}

// TestInterestMatchesPairwise: on the subjects of random filters,
// interest keeps exactly what comparing every pair of their shards'
// filters keeps, and matches every topic one of them matches.
func TestInterestMatchesPairwise(t *testing.T) {
	levels := []string{"homes", "h1", "h2", "h3", "a", "b", "+", "#"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		var in []string
		for range 1 + r.IntN(6) {
			var lv []string
			for i := range 1 + r.IntN(4) {
				l := levels[r.IntN(len(levels))]
				if i == 0 && r.IntN(2) == 0 {
					l = "homes"
				}
				lv = append(lv, l)
				if l == "#" {
					break
				}
			}
			s, _ := filterSubject(strings.Join(lv, "/"))
			in = append(in, s)
		}
		wide := slices.Clone(in)
		for i, f := range wide {
			if shard := strings.Split(strings.TrimPrefix(f, msgPrefix), ".")[0]; isShard(shard) {
				wide[i] = msgPrefix + shard + ".homes.>"
			}
		}
		got := interest(slices.Clone(in))
		if want := pairwise(wide); !slices.Equal(got, want) {
			t.Fatalf("interest(%q) = %q, pairwise %q", in, got, want)
		}
		for _, f := range in {
			if !slices.ContainsFunc(got, func(g string) bool { return covers(g, f) }) {
				t.Fatalf("interest(%q) = %q: nothing covers %q", in, got, f)
			}
		}
	}
}

// pairwise is interest below maxFilters done the plain way.
func pairwise(filters []string) []string {
	slices.Sort(filters)
	filters = slices.Compact(filters)
	var kept []string
	for i, f := range filters {
		covered := false
		for j, g := range filters {
			if i != j && covers(g, f) {
				covered = true
			}
		}
		if !covered {
			kept = append(kept, f)
		}
	}
	for i := range kept {
		for j := i + 1; j < len(kept); j++ {
			if overlap(kept[i], kept[j]) {
				return []string{msgPrefix + ">"}
			}
		}
	}
	if len(kept) == 0 {
		return []string{noInterest}
	}
	return kept
}
