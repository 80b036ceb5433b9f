package topics

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Role is what an identity may do in one home (the values of the token's homes claim).
type Role string

// The roles of docs/architecture.md. Any other string is an unknown role and is denied everything.
const (
	Admin   Role = "admin"
	Member  Role = "member"
	Viewer  Role = "viewer"
	Agent   Role = "agent" // only valid when Identity.Sub is "agent:{a}"; the agent's id is {a}
	Service Role = "service"
)

// Valid reports whether r is one of the five known roles.
func (r Role) Valid() bool {
	switch r {
	case Admin, Member, Viewer, Agent, Service:
		return true
	}
	return false
}

// Identity is who asks: the verified token's claims that matter for topics.
type Identity struct {
	Sub      string          // "user:alice", "agent:pi1", "service:ha"
	Homes    map[string]Role // home id -> role held there
	Operator bool            // operator token: any topic, $SYS and non-homes/ included
}

// Action is what an identity wants to do with a topic.
type Action uint8

// The actions Authorize decides.
const (
	Publish   Action = iota + 1
	Subscribe        // also used by the broker to check delivery of a concrete topic to a subscriber
)

// String returns "publish", "subscribe" or "Action(n)".
func (a Action) String() string {
	switch a {
	case Publish:
		return "publish"
	case Subscribe:
		return "subscribe"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Decision is the answer, with a short human reason in both cases (e.g. "viewer may not publish",
// "wildcard crosses homes", "invalid home id"). Allow==false for anything not explicitly allowed.
// Reasons are constant strings: they never contain the client's topic or token.
type Decision struct {
	Allow  bool
	Reason string
}

func deny(why string) Decision  { return Decision{Reason: why} }
func allow(why string) Decision { return Decision{Allow: true, Reason: why} }

// Reasons of Authorize (Parse's reasons are in namespace.go).
const (
	whyNoIdentity   = "no identity"
	whyBadAction    = "unknown action"
	whyEmptyTopic   = "empty topic"
	whyEmptyFilter  = "empty filter"
	whyTooLong      = "topic longer than 65535 bytes"
	whyBadUTF8      = "topic is not valid UTF-8 or contains U+0000"
	whyBadWildcard  = "+ and # must fill a whole level, and # must be the last level"
	whyShareGroup   = "$share needs a group without + or # and a filter: $share/{group}/{filter}"
	whyShareNested  = "$share inside $share is refused"
	whyShareOwner   = "a $share group must be your own: your sub, or your sub + \"~\" + a name"
	whyDollar       = "$ topics are for operators only"
	whyOutside      = "topics outside homes/ are for operators only"
	whyTopWild      = "a wildcard at the first level reaches outside homes/: operators only"
	whyNoMatch      = "filter matches no topic of the homes/ namespace"
	whyRetainCmd    = "retained cmd refused: a retained command would replay on every subscribe"
	whyCrossHomes   = "wildcard at the home level crosses homes: operators only"
	whyNoRole       = "token names no role in this home"
	whyUnknownRole  = "unknown role in this home"
	whyAgentSub     = `role agent needs an "agent:{id}" subject with a valid id`
	whyAdminPub     = "admin may publish only cmd"
	whyMemberPub    = "member may publish only cmd"
	whyMemberSub    = "member may not subscribe to cmd"
	whyServicePub   = "service may publish only cmd"
	whyServiceSub   = "service may not subscribe to cmd"
	whyViewerPub    = "viewer may not publish"
	whyViewerSub    = "viewer may subscribe only to state, event, status and discovery"
	whyAgentOther   = "agent may use only its own agent's topics (its own id as the discovery node id)"
	whyAgentPub     = "agent may publish only its own status, state, event, ack and discovery config"
	whyAgentSubOnly = "agent may subscribe only to its own cmd"

	okOperator = "allowed: operator"
	okAdmin    = "allowed: admin of the home"
	okMember   = "allowed: member of the home"
	okService  = "allowed: service in the home"
	okViewer   = "allowed: viewer of the home"
	okAgent    = "allowed: the agent's own topic"
)

// maxTopic is the longest topic MQTT can carry.
const maxTopic = 65535

// Authorize decides whether id may perform action on topic (a topic name for Publish, a filter for Subscribe,
// possibly $share/{group}/{filter}). retain is the PUBLISH retain flag (false for Subscribe).
//
// A filter is allowed only if every valid topic it can match is allowed. It is pure,
// safe for concurrent use and does not allocate.
func Authorize(id *Identity, action Action, topic string, retain bool) Decision {
	if id == nil {
		return deny(whyNoIdentity)
	}
	switch action {
	case Publish:
		return authorizePublish(id, topic, retain)
	case Subscribe:
		return authorizeSubscribe(id, topic)
	}
	return deny(whyBadAction)
}

func authorizePublish(id *Identity, topic string, retain bool) Decision {
	if topic == "" {
		return deny(whyEmptyTopic)
	}
	if len(topic) > maxTopic {
		return deny(whyTooLong)
	}
	var l levels
	l.scan(topic)
	switch {
	case l.badBytes:
		return deny(whyBadUTF8)
	case l.wild:
		return deny(whyWildPublish)
	case l.lv[0] != "homes":
		if id.Operator {
			return allow(okOperator)
		}
		if topic[0] == '$' {
			return deny(whyDollar)
		}
		return deny(whyOutside)
	}
	p, why := l.path()
	if why != "" {
		return deny(why)
	}
	if retain && p.Kind == KindCmd {
		return deny(whyRetainCmd)
	}
	if id.Operator {
		return allow(okOperator)
	}
	return decideHome(id, Publish, p.Home, p.Agent, false, kindBit(p.Kind))
}

// sharePrefix is compared without regard to case, as mochi does.
const sharePrefix = "$share/"

// isShared reports whether f starts with $share/ in any case, as mochi reads it.
func isShared(f string) bool {
	return len(f) >= len(sharePrefix) && strings.EqualFold(f[:len(sharePrefix)], sharePrefix)
}

func authorizeSubscribe(id *Identity, filter string) Decision {
	if filter == "" {
		return deny(whyEmptyFilter)
	}
	if len(filter) > maxTopic {
		return deny(whyTooLong)
	}
	if !isShared(filter) {
		return authorizeFilter(id, filter)
	}
	rest := filter[len(sharePrefix):]
	i := strings.IndexByte(rest, '/')
	if i <= 0 || i == len(rest)-1 || strings.ContainsAny(rest[:i], "+#") {
		return deny(whyShareGroup)
	}
	group := rest[:i]
	if !utf8.ValidString(group) || strings.IndexByte(group, 0) >= 0 {
		return deny(whyBadUTF8)
	}
	filter = rest[i+1:]
	if isShared(filter) {
		return deny(whyShareNested)
	}
	d := authorizeFilter(id, filter)
	if d.Allow && !id.Operator && !ownShareGroup(id.Sub, group) {
		return deny(whyShareOwner)
	}
	return d
}

// shareGroupSeparator separates the sub from a name of the subscriber's
// choice in a $share group: "$share/service:ha~workers/homes/h1/…".
const shareGroupSeparator = "~"

// ownShareGroup reports whether a $share group belongs to sub: it is sub
// itself or sub + shareGroupSeparator + any name. Groups are per identity,
// so identities never share a group and no one can take part of another's
// messages by joining its group. A valid sub never holds "~", "/", "+" or
// "#", so a group names its owner unambiguously.
func ownShareGroup(sub, group string) bool {
	if sub == "" {
		return false
	}
	rest, ok := strings.CutPrefix(group, sub)
	return ok && (rest == "" || strings.HasPrefix(rest, shareGroupSeparator))
}

// authorizeFilter decides a subscription filter without a $share prefix.
func authorizeFilter(id *Identity, filter string) Decision {
	var l levels
	l.scan(filter)
	switch {
	case l.badBytes:
		return deny(whyBadUTF8)
	case l.badWild:
		return deny(whyBadWildcard)
	case l.lv[0] != "homes":
		switch {
		case id.Operator:
			return allow(okOperator)
		case l.lv[0] == "+" || l.lv[0] == "#":
			return deny(whyTopWild)
		case filter[0] == '$':
			return deny(whyDollar)
		}
		return deny(whyOutside)
	case !l.wild:
		// A concrete topic: the broker's delivery check, or a plain subscribe.
		p, why := l.path()
		if why != "" {
			return deny(why)
		}
		if id.Operator {
			return allow(okOperator)
		}
		return decideHome(id, Subscribe, p.Home, p.Agent, false, kindBit(p.Kind))
	case l.n > maxLevels:
		return deny(whyTooMany)
	}
	lv := l.lv[:l.n]
	for i := 1; i < len(lv); i++ {
		if lv[i] == "" {
			return deny(whyEmptyLevel)
		}
	}
	kinds := matchKinds(lv)
	if kinds == 0 {
		return deny(diagnose(lv))
	}
	if id.Operator {
		return allow(okOperator)
	}
	if isWild(lv[1]) {
		return deny(whyCrossHomes)
	}
	// The agent level of the device and status topics the filter can
	// match. Discovery topics name their node elsewhere, but no role that
	// depends on the agent level may read them (decideHome).
	agentWild := len(lv) < 4 || isWild(lv[3])
	agent := ""
	if !agentWild {
		agent = lv[3]
	}
	return decideHome(id, Subscribe, lv[1], agent, agentWild, kinds)
}

func isWild(level string) bool { return level == "+" || level == "#" }

// kindBit is the bit of k in a set of kinds.
func kindBit(k Kind) uint8 { return 1 << k }

const (
	bitStatus    = 1 << KindStatus
	bitCmd       = 1 << KindCmd
	bitAck       = 1 << KindAck
	bitState     = 1 << KindState
	bitEvent     = 1 << KindEvent
	bitDiscovery = 1 << KindDiscovery
	bitDevices   = bitCmd | bitAck | bitState | bitEvent
	bitAgents    = bitStatus | bitDevices // the kinds under homes/{home}/agents/
	bitsAll      = bitAgents | bitDiscovery
)

// matchKinds returns the set of kinds of the valid namespace topics that the
// filter lv (lv[0] == "homes", wildcards well placed, no empty level) can
// match, by MQTT's rules: + matches one level, # any number of levels
// including none (so "a/#" matches "a"). It walks the levels once, keeping
// the kinds still possible: status topics have 5 levels, device and
// discovery topics 7.
func matchKinds(lv []string) uint8 {
	alive := uint8(bitsAll)
	for j := 1; j < len(lv); j++ {
		f := lv[j]
		if f == "#" {
			return alive
		}
		if f == "+" {
			if j == 5 {
				alive &= bitDevices | bitDiscovery // a status topic ends before this level
			} else if j > 6 {
				return 0
			}
			continue
		}
		switch j {
		case 1, 3: // home; agent or discovery component
			if !ValidID(f) {
				return 0
			}
		case 2:
			switch f {
			case "agents":
				alive &= bitAgents
			case "discovery":
				alive &= bitDiscovery
			default:
				return 0
			}
		case 4: // status or devices; discovery node
			keep := uint8(0)
			switch f {
			case "status":
				keep = bitStatus
			case "devices":
				keep = bitDevices
			}
			if ValidID(f) {
				keep |= bitDiscovery
			}
			alive &= keep
		case 5: // device; discovery object
			if !ValidID(f) {
				return 0
			}
			alive &= bitDevices | bitDiscovery
		case 6: // device kind; config
			keep := kindBit(deviceKind(f)) & bitDevices
			if f == "config" {
				keep |= bitDiscovery
			}
			alive &= keep
		default:
			return 0 // a level past every topic of the namespace
		}
	}
	switch len(lv) {
	case 5:
		return alive & bitStatus
	case 7:
		return alive & (bitDevices | bitDiscovery)
	}
	return 0
}

// diagnose says why a homes/ filter matches no valid topic: the first level
// that no valid topic can have there.
func diagnose(lv []string) string {
	n := len(lv)
	lit := func(i int) bool { return i < n && !isWild(lv[i]) }
	if lit(2) && lv[2] == "discovery" {
		switch {
		case lit(1) && !ValidID(lv[1]):
			return whyHomeID
		case lit(3) && !ValidID(lv[3]):
			return whyComponent
		case lit(4) && !ValidID(lv[4]):
			return whyNodeID
		case lit(5) && !ValidID(lv[5]):
			return whyObjectID
		case lit(6) && lv[6] != "config":
			return whyConfig
		case n < 7:
			return whyTooFew
		case n > 7:
			return whyTooMany
		}
		return whyNoMatch
	}
	switch {
	case lit(1) && !ValidID(lv[1]):
		return whyHomeID
	case lit(2) && lv[2] != "agents":
		return whyAgents
	case lit(3) && !ValidID(lv[3]):
		return whyAgentID
	case lit(4) && lv[4] != "status" && lv[4] != "devices":
		return whyStatusDevice
	case lit(5) && !ValidID(lv[5]):
		return whyDeviceID
	case lit(6) && deviceKind(lv[6]) == 0:
		return whyKind
	case n < 5:
		return whyTooFew
	case lit(4) && lv[4] == "status":
		return whyTooMany
	case lit(4) && n < 7:
		return whyTooFew
	case n > 7:
		return whyTooMany
	}
	return whyNoMatch
}

// decideHome applies the role table for one named home. kinds is the set of
// kinds the topic or filter can reach; agent is the agent level when it is
// fixed (agentWild false), the node level for a discovery topic. Every kind
// in the set must be allowed.
func decideHome(id *Identity, action Action, home, agent string, agentWild bool, kinds uint8) Decision {
	role, ok := id.Homes[home]
	if !ok {
		return deny(whyNoRole)
	}
	pub := action == Publish
	var allowed uint8
	var ok1, no string
	switch role {
	case Admin:
		allowed, ok1 = bitsAll, okAdmin
		if pub {
			allowed, no = bitCmd, whyAdminPub
		}
	case Member:
		allowed, ok1, no = bitsAll&^bitCmd, okMember, whyMemberSub
		if pub {
			allowed, no = bitCmd, whyMemberPub
		}
	case Service:
		allowed, ok1, no = bitsAll&^bitCmd, okService, whyServiceSub
		if pub {
			allowed, no = bitCmd, whyServicePub
		}
	case Viewer:
		allowed, ok1, no = bitState|bitEvent|bitStatus|bitDiscovery, okViewer, whyViewerSub
		if pub {
			allowed, no = 0, whyViewerPub
		}
	case Agent:
		self, isAgent := AgentOfSubject(id.Sub)
		if !isAgent || !ValidID(self) {
			return deny(whyAgentSub)
		}
		if agentWild || agent != self {
			return deny(whyAgentOther)
		}
		// An agent reads no discovery config, not even its own (it wrote it).
		allowed, ok1, no = bitCmd, okAgent, whyAgentSubOnly
		if pub {
			allowed, no = bitStatus|bitState|bitEvent|bitAck|bitDiscovery, whyAgentPub
		}
	default:
		return deny(whyUnknownRole)
	}
	if kinds&^allowed != 0 {
		return deny(no)
	}
	return allow(ok1)
}
