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

// shards is the number of shards a home's messages are spread over: the
// first token after msgPrefix of every subject under "homes/{id}/" is the
// home's shard (shardOf), so that a node's interest is at most one filter
// per shard, whatever the number of homes it serves. A node rewrites its
// consumer once per shard it gains, then never for a SUBSCRIBE in a shard
// it has; the price is that it pulls every message of a shard in which it
// has one subscriber. 64 keeps the consumer's filter list short (a rewrite
// is cheap and a node with a few hundred homes has them all) and is a
// power of two, so a front could one day give each of 2, 4, …, 64 nodes
// the same number of shards.
const shards = 64

// otherShard is the first token of a topic that belongs to no home (its
// first level is not "homes", or it has no second level): it can never be
// a home's shard.
const otherShard = "_"

// shardOf is the shard token of a home id: FNV-1a of the id modulo shards,
// two decimal digits.
func shardOf(home string) string {
	h := uint32(2166136261)
	for i := 0; i < len(home); i++ {
		h ^= uint32(home[i])
		h *= 16777619
	}
	n := h % shards
	return string([]byte{'0' + byte(n/10), '0' + byte(n%10)})
}

// validToken reports whether an MQTT topic level can be a NATS subject
// token as it is.
func validToken(level string) bool {
	return level != "" && !strings.ContainsAny(level, ".*> \t\r\n")
}

// topicTokens is a topic's levels joined by ".", when every level maps to
// a NATS subject token: the part of its subject after the shard, and its
// key in the retained bucket. Topics that do not map (a level that is
// empty or holds ".", "*", ">" or space, or a first level starting with
// "$") stay on their node.
func topicTokens(topic string) (string, bool) {
	if strings.HasPrefix(topic, "$") {
		return "", false
	}
	levels := strings.Split(topic, "/")
	for _, l := range levels {
		if !validToken(l) || l == "+" || l == "#" {
			return "", false
		}
	}
	return strings.Join(levels, "."), true
}

// subjectOf maps a topic to its NATS subject: msgPrefix, the shard of the
// topic's home (otherShard outside homes), then one token per level, as
// "homemq.msg.17.homes.h1.agents.a1.state".
func subjectOf(topic string) (string, bool) {
	tokens, ok := topicTokens(topic)
	if !ok {
		return "", false
	}
	shard := otherShard
	if rest, ok := strings.CutPrefix(topic, "homes/"); ok {
		home, _, _ := strings.Cut(rest, "/")
		shard = shardOf(home)
	}
	return msgPrefix + shard + "." + tokens, true
}

// MessageSubject is the NATS subject on which a message published on
// topic crosses nodes, and false for a topic that stays on its node: for
// operators who watch or replay the stream HOMEMQ_MSGS from outside.
func MessageSubject(topic string) (string, bool) { return subjectOf(topic) }

// filterSubject maps a subscription filter to the NATS filter subject of
// exactly the subjects of the topics it matches: "+" becomes "*", "#"
// becomes ">", a shared subscription's "$share/{group}/" is dropped, and
// the shard is the home's when the home level is literal, "*" when a
// wildcard may stand for a home, otherShard when it matches no home's
// topic. (As before the shard, a trailing "#" does not match its parent
// level: "homes/h1/#" does not match the topic "homes/h1".)
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
	shard := otherShard
	switch {
	case levels[0] == ">":
		return msgPrefix + ">", true
	case len(levels) == 1:
		// one level: never a home's topic, which has two at least
	case levels[0] == "homes" && levels[1] != "*" && levels[1] != ">":
		shard = shardOf(levels[1])
	case levels[0] == "homes" || levels[0] == "*":
		shard = "*"
	}
	return msgPrefix + shard + "." + strings.Join(levels, "."), true
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
// one consumer: no duplicates and no two that overlap. A filter in one
// home's shard is widened to the whole shard ("homemq.msg.17.homes.>"),
// so the set holds at most shards of them however many homes the node
// serves. A filter covered by another is dropped; if two still overlap (a
// wildcard across homes next to a shard), everything ("homemq.msg.>") is
// asked for and mochi's own matching picks what local subscribers want.
// Beyond maxFilters, the filters outside homes are widened to their group
// ("homemq.msg._.a.b.>"), and beyond that again to everything. No filters
// gives noInterest.
//
// Filters are compared only within their group (a shard, or otherShard
// and the first two levels, when literal) and with the filters that have
// no group (a wildcard there): two filters of different groups can
// neither cover nor overlap each other. A node with many subscriptions
// thus pays about one comparison per filter, not one per pair.
func interest(filters []string) []string {
	for i, f := range filters {
		if shard, _, _ := strings.Cut(strings.TrimPrefix(f, msgPrefix), "."); isShard(shard) {
			filters[i] = msgPrefix + shard + ".homes.>"
		}
	}
	slices.Sort(filters)
	filters = slices.Compact(filters)
	kept := reduce(filters)
	if len(kept) > maxFilters {
		wide := make([]string, 0, len(kept))
		for _, f := range kept {
			if g, ok := group(f); ok && f != msgPrefix+g {
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

// within reports whether a consumer filtered by interest (sorted, as
// interest returns it) takes every subject of the filter subject f.
func within(interest []string, f string) bool {
	if _, ok := slices.BinarySearch(interest, msgPrefix+">"); ok {
		return true
	}
	if shard, _, _ := strings.Cut(strings.TrimPrefix(f, msgPrefix), "."); isShard(shard) {
		if _, ok := slices.BinarySearch(interest, msgPrefix+shard+".homes.>"); ok {
			return true
		}
	}
	return slices.ContainsFunc(interest, func(g string) bool { return covers(g, f) })
}

// widens reports whether a consumer filtered by next takes every subject
// one filtered by prev takes.
func widens(next, prev []string) bool {
	for _, f := range prev {
		if f != noInterest && !within(next, f) {
			return false
		}
	}
	return true
}

// isShard reports whether a subject token is a home's shard (shardOf).
func isShard(token string) bool {
	return len(token) == 2 && token[0] >= '0' && token[0] <= '9' && token[1] >= '0' && token[1] <= '9'
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

// group is what a filter's subjects all start with and another group's
// never do: its shard, or otherShard and the first two levels after it
// ("_.a.b"), when literal.
func group(f string) (string, bool) {
	tokens := strings.SplitN(strings.TrimPrefix(f, msgPrefix), ".", 4)
	switch {
	case isShard(tokens[0]):
		return tokens[0], true
	case tokens[0] != otherShard || len(tokens) < 3:
		return "", false
	}
	for _, t := range tokens[1:3] {
		if t == "*" || t == ">" {
			return "", false
		}
	}
	return strings.Join(tokens[:3], "."), true
}
