package cluster

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestSubjectOf(t *testing.T) {
	for _, tc := range []struct {
		topic, want string
		ok          bool
	}{
		{"homes/h1/agents/a1/devices/d1/state", "homemq.msg.homes.h1.agents.a1.devices.d1.state", true},
		{"a", "homemq.msg.a", true},
		{"a/b.c", "", false},
		{"a//b", "", false},
		{"a/*", "", false},
		{"a/b c", "", false},
		{"$SYS/broker/uptime", "", false},
	} {
		got, ok := subjectOf(tc.topic)
		if got != tc.want || ok != tc.ok {
			t.Errorf("subjectOf(%q) = %q, %v; want %q, %v", tc.topic, got, ok, tc.want, tc.ok)
		}
	}
}

func TestFilterSubject(t *testing.T) {
	for _, tc := range []struct {
		filter, want string
		ok           bool
	}{
		{"homes/h1/#", "homemq.msg.homes.h1.>", true},
		{"homes/+/agents/+/status", "homemq.msg.homes.*.agents.*.status", true},
		{"#", "homemq.msg.>", true},
		{"$share/g/homes/h1/#", "homemq.msg.homes.h1.>", true},
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
	for _, tc := range []struct {
		in, want []string
	}{
		{nil, []string{noInterest}},
		{[]string{p + "a.b", p + "a.b"}, []string{p + "a.b"}},
		{[]string{p + "a.>", p + "a.b.c", p + "x"}, []string{p + "a.>", p + "x"}},
		{[]string{p + "a.*.c", p + "a.b.*"}, []string{p + ">"}},
		{[]string{p + "h.*.s", p + "h.*.t"}, []string{p + "h.*.s", p + "h.*.t"}},
		{[]string{p + "homes.h1.a.*", p + "homes.*.a.b"}, []string{p + ">"}},
		{[]string{p + "homes.h1.a.*", p + "homes.h1.a.b"}, []string{p + "homes.h1.a.*"}},
		{[]string{p + "homes.h1.a.*", p + "homes.h1.*.b"}, []string{p + ">"}},
		{[]string{p + "homes.h1.a.b", p + "homes.h2.a.b", p + "homes.*.s"}, []string{p + "homes.*.s", p + "homes.h1.a.b", p + "homes.h2.a.b"}},
	} {
		if got := interest(slices.Clone(tc.in)); !slices.Equal(got, tc.want) {
			t.Errorf("interest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestInterestOfManyAgents: a node with more agents than maxFilters asks
// for their homes, and with more homes than that for everything; below it,
// one filter per agent.
func TestInterestOfManyAgents(t *testing.T) {
	agents := func(homes, perHome int) []string {
		var out []string
		for h := range homes {
			for a := range perHome {
				out = append(out, fmt.Sprintf("%shomes.h%d.agents.a%d.devices.*.cmd", msgPrefix, h, a))
			}
		}
		return out
	}
	if got := interest(agents(10, 3)); len(got) != 30 {
		t.Errorf("30 agents: %d filters, want one each", len(got))
	}
	got := interest(agents(maxFilters/2, 3))
	if len(got) != maxFilters/2 || got[0] != msgPrefix+"homes.h0.>" {
		t.Errorf("%d agents in %d homes: %d filters starting %q, want one per home", 3*maxFilters/2, maxFilters/2, len(got), got[0])
	}
	if got := interest(agents(maxFilters+1, 2)); !slices.Equal(got, []string{msgPrefix + ">"}) {
		t.Errorf("more homes than maxFilters: %q, want everything", got)
	}
}

// TestInterestMatchesPairwise: on random filters, interest keeps exactly
// what comparing every pair keeps.
func TestInterestMatchesPairwise(t *testing.T) {
	tokens := []string{"homes", "h1", "h2", "a", "b", "*", ">"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		var in []string
		for range 1 + r.IntN(6) {
			var lv []string
			for i := range 1 + r.IntN(4) {
				tok := tokens[r.IntN(len(tokens))]
				if tok == ">" && i == 0 {
					tok = "*"
				}
				lv = append(lv, tok)
				if tok == ">" {
					break
				}
			}
			in = append(in, msgPrefix+strings.Join(lv, "."))
		}
		if got, want := interest(slices.Clone(in)), pairwise(slices.Clone(in)); !slices.Equal(got, want) {
			t.Fatalf("interest(%q) = %q, pairwise %q", in, got, want)
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
