package cluster

import (
	"slices"
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
	} {
		if got := interest(slices.Clone(tc.in)); !slices.Equal(got, tc.want) {
			t.Errorf("interest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
