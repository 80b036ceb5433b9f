package topics

import (
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// This file checks Authorize against a reference written independently from
// docs/architecture.md: a regexp for the namespace, a map for the role table, a tiny MQTT
// matcher (itself checked against mochi's topic index) and brute force over
// every topic a filter can match.

// refTable is the role table of docs/architecture.md: the kinds each role may publish and
// subscribe ("config" is a Home Assistant discovery config, whose node id
// is the agent's for role agent).
var refTable = map[Role][2][]string{
	Admin:   {{"cmd"}, {"status", "cmd", "ack", "state", "event", "config"}},
	Member:  {{"cmd"}, {"status", "ack", "state", "event", "config"}},
	Service: {{"cmd"}, {"status", "ack", "state", "event", "config"}},
	Viewer:  {{}, {"state", "event", "status", "config"}},
	Agent:   {{"status", "state", "event", "ack", "config"}, {"cmd"}},
}

var refOperator = &Identity{Operator: true}

// refString applies MQTT's rules for any topic string.
func refString(s string) bool {
	return len(s) <= 65535 && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// refConcrete decides a concrete topic name (no wildcards) from the table.
func refConcrete(id *Identity, action Action, topic string, retain bool) bool {
	if id == nil || topic == "" || !refString(topic) || strings.ContainsAny(topic, "+#") {
		return false
	}
	if strings.Split(topic, "/")[0] != "homes" {
		return id.Operator
	}
	p, ok := refParse(topic)
	if !ok {
		return false
	}
	if action == Publish && retain && p.Kind == KindCmd {
		return false
	}
	if id.Operator {
		return true
	}
	role, ok := id.Homes[p.Home]
	if !ok {
		return false
	}
	if role == Agent && id.Sub != "agent:"+p.Agent {
		return false
	}
	row, ok := refTable[role]
	if !ok {
		return false
	}
	kinds := row[1]
	if action == Publish {
		kinds = row[0]
	}
	return slices.Contains(kinds, p.Kind.String())
}

// refExists reports whether topic can exist on the broker at all: someone
// (an operator) may publish it.
func refExists(topic string) bool { return refConcrete(refOperator, Publish, topic, false) }

// refUnshare strips $share/{group}/; ok is false for a malformed shared filter.
func refUnshare(f string) (inner string, ok bool) {
	if len(f) < 7 || !strings.EqualFold(f[:7], "$share/") {
		return f, true
	}
	group, inner, found := strings.Cut(f[7:], "/")
	nested := len(inner) >= 7 && strings.EqualFold(inner[:7], "$share/")
	return inner, found && group != "" && !strings.ContainsAny(group, "+#") && inner != "" && !nested
}

// refGroupOwner reports whether a shared filter's group may be used by id:
// every group by an operator, otherwise the id's sub or sub~name only.
func refGroupOwner(id *Identity, f string) bool {
	if id.Operator || len(f) < 7 || !strings.EqualFold(f[:7], "$share/") {
		return true
	}
	group, _, _ := strings.Cut(f[7:], "/")
	if id.Sub == "" {
		return false
	}
	return group == id.Sub || strings.HasPrefix(group, id.Sub+"~")
}

// expandGroup lets the fuzzer name the subscriber's own $share group without
// guessing its sub: a group "@" stands for the sub, "@~name" for sub~name.
func expandGroup(topic, sub string) string {
	if len(topic) < 9 || !strings.EqualFold(topic[:7], "$share/") || topic[7] != '@' || (topic[8] != '/' && topic[8] != '~') {
		return topic
	}
	return topic[:7] + sub + topic[8:]
}

// refFilterSyntax reports whether f is a well-formed MQTT filter.
func refFilterSyntax(f string) bool {
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return false
		}
	}
	return f != ""
}

// tinyMatch is MQTT matching written from the spec: + matches one level,
// # matches the rest including the parent level ("a/#" matches "a").
func tinyMatch(filter, topic string) bool {
	fl, tl := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i := 0; ; i++ {
		switch {
		case i == len(fl):
			return i == len(tl)
		case fl[i] == "#":
			return true
		case i == len(tl):
			return false
		case fl[i] != "+" && fl[i] != tl[i]:
			return false
		}
	}
}

// mochiMatch asks mochi's own topic index whether filter matches topic.
func mochiMatch(filter, topic string) bool {
	x := mqtt.NewTopicsIndex()
	x.Subscribe("c", packets.Subscription{Filter: filter})
	_, ok := x.Subscribers(topic).Subscriptions["c"]
	return ok
}

// universe returns concrete topics that filter can match: every namespace
// topic (discovery configs included) over the filter's own ids and one fresh
// id (in no home of id, not the agent's own), and the filter with its
// wildcards filled with the fresh id.
func universe(id *Identity, filter string) []string {
	levels := strings.Split(filter, "/")
	fresh := "zz"
	for {
		_, inHomes := id.Homes[fresh]
		if !inHomes && id.Sub != "agent:"+fresh && !slices.Contains(levels, fresh) {
			break
		}
		fresh += "z"
	}
	ids := []string{fresh}
	for _, i := range []int{1, 3, 4, 5} {
		if i < len(levels) && ValidID(levels[i]) && !slices.Contains(ids, levels[i]) {
			ids = append(ids, levels[i])
		}
	}
	var u []string
	for _, h := range ids {
		for _, a := range ids {
			u = append(u, StatusTopic(h, a))
			for _, d := range ids {
				u = append(u, CommandTopic(h, a, d), AckTopic(h, a, d), StateTopic(h, a, d), EventTopic(h, a, d))
				for _, c := range ids {
					u = append(u, DiscoveryTopic(h, c, a, d))
				}
			}
		}
	}
	filled := slices.Clone(levels)
	for i, l := range filled {
		if l == "+" || l == "#" {
			filled[i] = fresh
		}
	}
	u = append(u, strings.Join(filled, "/"))
	if levels[len(levels)-1] == "#" {
		u = append(u, strings.Join(levels[:len(levels)-1], "/"), strings.Join(filled, "/")+"/"+fresh)
	}
	return u
}

// identityString and parseIdentity carry an identity's homes through the fuzzer as "h1=admin,h2=viewer".
func identityString(id *Identity) string {
	var kv []string
	for h, r := range id.Homes {
		kv = append(kv, h+"="+string(r))
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// parseIdentity builds the identity; so that the fuzzer need not guess ids twice,
// the home "@" stands for the topic's home level, the subject "agent:@" for
// its agent level and "agent:@node" for its discovery node level.
func parseIdentity(sub, homes string, op bool, topic string) *Identity {
	inner, _ := refUnshare(topic)
	levels := append(strings.Split(inner, "/"), "", "", "", "")
	switch sub {
	case "agent:@":
		sub = "agent:" + levels[3]
	case "agent:@node":
		sub = "agent:" + levels[4]
	}
	id := &Identity{Sub: sub, Operator: op}
	if homes != "" {
		id.Homes = map[string]Role{}
		for _, kv := range strings.Split(homes, ",") {
			h, r, _ := strings.Cut(kv, "=")
			if h == "@" {
				h = levels[1]
			}
			id.Homes[h] = Role(r)
		}
	}
	return id
}

func FuzzAuthorize(f *testing.F) {
	for _, c := range roleTable {
		if c.id != nil {
			f.Add(c.topic, c.id.Sub, identityString(c.id), c.id.Operator, c.retain)
		}
	}
	for _, r := range []string{"admin", "member", "service", "viewer", "agent", "owner"} {
		f.Add("homes/h1/agents/pi1/devices/door/cmd", "agent:@", "@="+r, false, false)
		f.Add("homes/+/agents/+/devices/+/state", "user:u", "@="+r+",h2=admin", false, false)
		f.Add("$share/g/homes/h1/agents/pi1/#", "agent:@", "@="+r, false, true)
		f.Add("$share/@/homes/h1/agents/pi1/#", "agent:@", "@="+r, false, true)
		f.Add("$share/@~w/homes/h1/agents/+/devices/+/state", "user:u", "@="+r, false, false)
		f.Add("$share/service:ha/homes/h1/agents/+/devices/+/state", "user:u", "@="+r, false, false)
		f.Add("homes/h1/discovery/binary_sensor/pi1/door/config", "agent:@node", "@="+r, false, true)
		f.Add("homes/h1/discovery/+/pi1/#", "agent:@node", "@="+r, false, false)
		f.Add("homes/h1/+/pi1/+/door/+", "agent:@", "@="+r, false, false)
	}
	f.Fuzz(func(t *testing.T, topic, sub, homes string, op, retain bool) {
		id := parseIdentity(sub, homes, op, topic)
		topic = expandGroup(topic, id.Sub)

		// Publish: exactly the reference's answer.
		d := Authorize(id, Publish, topic, retain)
		if want := refConcrete(id, Publish, topic, retain); d.Allow != want || d.Reason == "" {
			t.Fatalf("Authorize(%+v, publish, %q, retain=%v) = %+v; the role table says allow=%v", id, topic, retain, d, want)
		}
		checkNamedHome(t, id, Publish, topic, d)

		// Subscribe: allowed exactly when the filter matches at least one topic
		// that can exist, and every such topic is allowed, by the reference.
		d = Authorize(id, Subscribe, topic, false)
		if d.Reason == "" {
			t.Fatalf("Authorize(%+v, subscribe, %q) has no reason", id, topic)
		}
		checkNamedHome(t, id, Subscribe, topic, d)
		inner, shareOK := refUnshare(topic)
		if !shareOK || !refString(topic) || !refFilterSyntax(inner) {
			if d.Allow {
				t.Fatalf("Authorize(%+v, subscribe, %q) = %+v; want a malformed filter refused", id, topic, d)
			}
			return
		}
		if len(inner) > 1024 {
			return // the brute force below is quadratic; long filters are covered by the checks above
		}
		matched := 0
		allAllowed := true
		for _, u := range universe(id, inner) {
			if mochiMatch(inner, u) && !tinyMatch(inner, u) {
				t.Fatalf("mochi matches %q with %q but the test's matcher does not", u, inner)
			}
			if !tinyMatch(inner, u) || !refExists(u) {
				continue
			}
			matched++
			ok := refConcrete(id, Subscribe, u, false)
			allAllowed = allAllowed && ok
			if d.Allow && (!ok || !Authorize(id, Subscribe, u, false).Allow) {
				t.Fatalf("Authorize(%+v, subscribe, %q) allows the filter, but its topic %q is refused (reference allow=%v, Authorize %+v)",
					id, topic, u, ok, Authorize(id, Subscribe, u, false))
			}
		}
		if want := matched > 0 && allAllowed && refGroupOwner(id, topic); d.Allow != want {
			t.Fatalf("Authorize(%+v, subscribe, %q) = %+v; want allow=%v (matches %d topics that can exist, all allowed: %v)",
				id, topic, d, want, matched, allAllowed)
		}
	})
}

// checkNamedHome fails when a non-operator is allowed a topic or filter that
// is not inside a home its token names with a known role.
func checkNamedHome(t *testing.T, id *Identity, action Action, topic string, d Decision) {
	t.Helper()
	if !d.Allow || id.Operator {
		return
	}
	inner, _ := refUnshare(topic)
	levels := strings.Split(inner, "/")
	if len(levels) < 2 || levels[0] != "homes" {
		t.Fatalf("Authorize(%+v, %v, %q) = %+v outside homes/ for a non-operator", id, action, topic, d)
	}
	if role, ok := id.Homes[levels[1]]; !ok || !role.Valid() {
		t.Fatalf("Authorize(%+v, %v, %q) = %+v in home %q that the token does not name", id, action, topic, d, levels[1])
	}
}

// TestTinyMatchAgreesWithMochi pins the test's matcher to mochi's on the cases that matter here.
func TestTinyMatchAgreesWithMochi(t *testing.T) {
	cases := []struct {
		filter, topic string
		want          bool
	}{
		{"homes/h1/#", tState, true},
		{"homes/h1/#", tH2State, false},
		{"homes/+/agents/+/status", tStatus, true},
		{"homes/h1/agents/pi1/devices/door/state/#", tState, true}, // # matches the parent level
		{"homes/h1/agents/pi1/+", tStatus, true},
		{"homes/h1/agents/pi1/+", tState, false},
		{"#", tCmd, true},
		{"homes/h1/agents/+/devices/+/state", tCmd, false},
		{"homes/h1/discovery/#", tDisc, true},
		{"homes/h1/+/+/+/+/config", tDisc, true},
		{"homes/h1/discovery/+/+/config", tDisc, false},
	}
	for _, c := range cases {
		if got := tinyMatch(c.filter, c.topic); got != c.want {
			t.Errorf("tinyMatch(%q, %q) = %v; want %v", c.filter, c.topic, got, c.want)
		}
		if got := mochiMatch(c.filter, c.topic); got != c.want {
			t.Errorf("mochi matches (%q, %q) = %v; want %v", c.filter, c.topic, got, c.want)
		}
	}
	// Where they differ, the test's matcher matches more (mochi skips "a/+/#" for "a/b"),
	// so checking every topic it matches checks every topic mochi delivers.
	if !tinyMatch("homes/h1/agents/pi1/+/#", tStatus) || mochiMatch("homes/h1/agents/pi1/+/#", tStatus) {
		t.Error("tinyMatch should match a/+/# with a/b, which mochi does not")
	}
}

// TestAuthorizeEveryFilterShape enumerates every filter built from the levels
// of the namespace, wildcards at every place and wrong words, and compares
// Authorize with brute force over a fixed universe of topics, for every role.
func TestAuthorizeEveryFilterShape(t *testing.T) {
	if testing.Short() {
		t.Skip("enumerates ~60k filters")
	}
	alphabet := [][]string{
		{"homes", "x"},
		{"h1", "h2", "H1"},
		{"agents", "devices", "discovery"},
		{"pi1", "pi2"},
		{"status", "devices", "cmd", "pi1"},
		{"door"},
		{"cmd", "ack", "state", "event", "status", "config"},
		{"x"},
	}
	var filters []string
	var grow func(prefix string, level int)
	grow = func(prefix string, level int) {
		if level == len(alphabet) {
			return
		}
		join := func(l string) string {
			if level == 0 {
				return l
			}
			return prefix + "/" + l
		}
		filters = append(filters, join("#"))
		for _, l := range append([]string{"+"}, alphabet[level]...) {
			filters = append(filters, join(l))
			grow(join(l), level+1)
		}
	}
	grow("", 0)

	var u []string
	for _, h := range []string{"h1", "h2", "zz"} {
		for _, a := range []string{"pi1", "pi2", "zz"} {
			u = append(u, StatusTopic(h, a))
			for _, d := range []string{"door", "zz"} {
				u = append(u, CommandTopic(h, a, d), AckTopic(h, a, d), StateTopic(h, a, d), EventTopic(h, a, d))
			}
		}
		// Discovery configs over every id the alphabet has at their levels:
		// component, node (an agent's id, or a word of the namespace), object.
		for _, c := range []string{"pi1", "pi2", "zz"} {
			for _, n := range []string{"pi1", "pi2", "status", "devices", "cmd", "zz"} {
				for _, o := range []string{"door", "zz"} {
					u = append(u, DiscoveryTopic(h, c, n, o))
				}
			}
		}
	}
	ids := []*Identity{admin, member, service, viewer, pi1, fakeAg, owner, twoHomes, noHomes, operator,
		{Sub: "agent:pi2", Homes: map[string]Role{"h1": Agent, "h2": Viewer}}}
	allowed := make([][]bool, len(ids))
	for i, id := range ids {
		for _, topic := range u {
			allowed[i] = append(allowed[i], refConcrete(id, Subscribe, topic, false))
		}
	}
	checked := 0
	for _, f := range filters {
		var matched []int
		for j, topic := range u {
			if tinyMatch(f, topic) {
				matched = append(matched, j)
			}
		}
		// Fill the wildcards with a fresh level: a topic outside the namespace
		// (only operators may use it) or a malformed one (nobody may publish it).
		levels := strings.Split(f, "/")
		for i, l := range levels {
			if l == "+" || l == "#" {
				levels[i] = "zz"
			}
		}
		filled := strings.Join(levels, "/")
		for i, id := range ids {
			want := len(matched) > 0
			for _, j := range matched {
				want = want && allowed[i][j]
			}
			if refExists(filled) {
				want = (want || len(matched) == 0) && refConcrete(id, Subscribe, filled, false)
			}
			own := id.Sub // a non-operator's $share group must be its own
			if id.Operator {
				own = "g"
			}
			for _, filter := range []string{f, "$share/" + own + "/" + f, "$share/" + own + "~w/" + f, "$share/zz/" + f} {
				want := want && (id.Operator || !strings.HasPrefix(filter, "$share/zz/"))
				if d := Authorize(id, Subscribe, filter, false); d.Allow != want {
					t.Errorf("Authorize(%s %v, subscribe, %q) = %+v; brute force over %d matching topics says allow=%v",
						id.Sub, id.Homes, filter, d, len(matched), want)
				}
				checked++
			}
		}
	}
	t.Logf("checked %d filter decisions over %d filters", checked, len(filters))
}
