package cluster

import (
	"slices"
	"strings"
)

// msgPrefix starts the NATS subject of every message that crosses nodes.
const msgPrefix = "homemq.msg."

// noInterest is a filter subject no message has: a topic whose first
// level starts with "$" never crosses nodes (subjectOf).
const noInterest = msgPrefix + "$none"

// validToken reports whether an MQTT topic level can be a NATS subject
// token as it is.
func validToken(level string) bool {
	return level != "" && !strings.ContainsAny(level, ".*> \t\r\n")
}

// subjectOf maps a topic to its NATS subject, one token per level. Topics
// that do not map (a level that is empty or holds ".", "*", ">" or space,
// or a first level starting with "$") stay on their node.
func subjectOf(topic string) (string, bool) {
	if strings.HasPrefix(topic, "$") {
		return "", false
	}
	levels := strings.Split(topic, "/")
	for _, l := range levels {
		if !validToken(l) || l == "+" || l == "#" {
			return "", false
		}
	}
	return msgPrefix + strings.Join(levels, "."), true
}

// filterSubject maps a subscription filter to a NATS filter subject: "+"
// becomes "*", "#" becomes ">", a shared subscription's "$share/{group}/"
// is dropped.
func filterSubject(filter string) (string, bool) {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		_, filter, ok = strings.Cut(rest, "/")
		if !ok {
			return "", false
		}
	}
	if strings.HasPrefix(filter, "$") {
		return "", false
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		switch {
		case l == "+":
			levels[i] = "*"
		case l == "#":
			levels[i] = ">"
		case !validToken(l):
			return "", false
		}
	}
	return msgPrefix + strings.Join(levels, "."), true
}

// covers reports whether every subject that matches b matches a.
func covers(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i, t := range at {
		if t == ">" {
			return len(bt) > i
		}
		if i >= len(bt) || bt[i] == ">" {
			return false
		}
		if t != "*" && (bt[i] == "*" || bt[i] != t) {
			return false
		}
	}
	return len(at) == len(bt)
}

// overlap reports whether some subject matches both a and b.
func overlap(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		switch {
		case i == len(at) || i == len(bt):
			return len(at) == len(bt)
		case at[i] == ">" || bt[i] == ">":
			return true
		case at[i] != "*" && bt[i] != "*" && at[i] != bt[i]:
			return false
		}
	}
}

// maxFilters bounds the filter subjects of a node's consumer: each update
// sends them all to JetStream in one request, which must stay well under
// NATS's 1 MB payload limit and cheap to apply.
const maxFilters = 1000

// interest reduces filter subjects to a sorted set JetStream accepts for
// one consumer: no duplicates and no two that overlap. A filter covered by
// another is dropped; if two still overlap, everything ("homemq.msg.>") is
// asked for and mochi's own matching picks what local subscribers want.
// Beyond maxFilters, filters are widened to their group (a home's
// "homemq.msg.homes.{id}.>"), and beyond that again to everything. No
// filters gives noInterest.
//
// Filters are compared only within their group (the first two levels,
// when both are literal) and with the filters that have no group (a
// wildcard in the first two levels): two filters of different groups can
// neither cover nor overlap each other. A node with many agents thus pays
// about one comparison per filter, not one per pair.
func interest(filters []string) []string {
	slices.Sort(filters)
	filters = slices.Compact(filters)
	kept := reduce(filters)
	if len(kept) > maxFilters {
		wide := make([]string, 0, len(kept))
		for _, f := range kept {
			if g, ok := group(f); ok {
				f = msgPrefix + g + ".>"
			}
			wide = append(wide, f)
		}
		slices.Sort(wide)
		kept = reduce(slices.Compact(wide))
	}
	switch {
	case len(kept) == 0:
		return []string{noInterest}
	case len(kept) > maxFilters:
		return []string{msgPrefix + ">"}
	}
	return kept
}

// reduce drops the sorted, distinct filters that another covers, and
// returns everything if two of those left overlap.
func reduce(filters []string) []string {
	groups := map[string][]string{}
	var loose []string // no group: compared with every filter
	for _, f := range filters {
		if g, ok := group(f); ok {
			groups[g] = append(groups[g], f)
		} else {
			loose = append(loose, f)
		}
	}
	coveredBy := func(f string, others ...[]string) bool {
		for _, set := range others {
			for _, g := range set {
				if g != f && covers(g, f) {
					return true
				}
			}
		}
		return false
	}
	var kept, keptLoose []string
	for _, f := range loose {
		if !coveredBy(f, loose) {
			keptLoose = append(keptLoose, f)
		}
	}
	for _, f := range filters {
		g, ok := group(f)
		if !ok {
			continue
		}
		if !coveredBy(f, groups[g], loose) {
			kept = append(kept, f)
		}
	}
	if overlapping(kept, keptLoose) {
		return []string{msgPrefix + ">"}
	}
	kept = append(kept, keptLoose...)
	slices.Sort(kept)
	return kept
}

// overlapping reports whether two of the grouped filters kept (sorted, so
// a group's filters are next to each other) or any of them and a loose
// one overlap.
func overlapping(kept, loose []string) bool {
	for i, f := range kept {
		g, _ := group(f)
		for _, h := range kept[i+1:] {
			if hg, _ := group(h); hg != g {
				break
			}
			if overlap(f, h) {
				return true
			}
		}
		for _, l := range loose {
			if overlap(f, l) {
				return true
			}
		}
	}
	for i, f := range loose {
		for _, l := range loose[i+1:] {
			if overlap(f, l) {
				return true
			}
		}
	}
	return false
}

// group is a filter's first two levels after msgPrefix ("homes.h1"), when
// both are literal: a filter of one group matches no subject of another.
func group(f string) (string, bool) {
	rest := strings.TrimPrefix(f, msgPrefix)
	first, after, ok := strings.Cut(rest, ".")
	if !ok || first == "*" || first == ">" {
		return "", false
	}
	second, _, _ := strings.Cut(after, ".")
	if second == "*" || second == ">" || second == "" {
		return "", false
	}
	return first + "." + second, true
}
