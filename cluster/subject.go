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

// interest reduces filter subjects to a sorted set JetStream accepts for
// one consumer: no duplicates and no two that overlap. A filter covered by
// another is dropped; if two still overlap, everything ("homemq.msg.>") is
// asked for and mochi's own matching picks what local subscribers want.
// No filters gives noInterest.
func interest(filters []string) []string {
	slices.Sort(filters)
	filters = slices.Compact(filters)
	var kept []string
	for i, f := range filters {
		dropped := false
		for j, g := range filters {
			if i != j && covers(g, f) {
				dropped = true
				break
			}
		}
		if !dropped {
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
