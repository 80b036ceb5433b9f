// Package topics owns homemq's topic namespace (homes/{home}/agents/{agent}/…
// and homes/{home}/discovery/…) and the per-home role rules over it: Parse and the topic builders for the
// names, and Authorize, one pure allocation-free function that says allow or deny.
package topics

import (
	"strconv"
	"unicode/utf8"
)

// Kind is the last part of a topic in the homes/ namespace: what the topic carries.
// The zero Kind means "not a homes/ topic".
type Kind uint8

// The kinds of topic in the namespace.
const (
	KindStatus    Kind = iota + 1 // homes/{home}/agents/{agent}/status: "online"/"offline", retained
	KindCmd                       // homes/{home}/agents/{agent}/devices/{device}/cmd: signed commands, never retained
	KindAck                       // homes/{home}/agents/{agent}/devices/{device}/ack: the agent's answer to a command
	KindState                     // homes/{home}/agents/{agent}/devices/{device}/state: current state, retained
	KindEvent                     // homes/{home}/agents/{agent}/devices/{device}/event: events
	KindDiscovery                 // homes/{home}/discovery/{component}/{node}/{object}/config: Home Assistant discovery, retained
)

// String returns the topic level of the kind ("status", "cmd", …), or "Kind(n)" for an unknown one.
func (k Kind) String() string {
	switch k {
	case KindStatus:
		return "status"
	case KindCmd:
		return "cmd"
	case KindAck:
		return "ack"
	case KindState:
		return "state"
	case KindEvent:
		return "event"
	case KindDiscovery:
		return "config"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// deviceKind maps the last level of a device topic to its Kind (0 if it is none).
func deviceKind(s string) Kind {
	switch s {
	case "cmd":
		return KindCmd
	case "ack":
		return KindAck
	case "state":
		return KindState
	case "event":
		return KindEvent
	}
	return 0
}

// Path is a parsed concrete topic of the homes/ namespace. Device is empty for KindStatus.
//
// For KindDiscovery, Agent is the node id, Device the object id and
// Component the Home Assistant component (empty for every other kind): the
// agent's own discovery configs have its id as the node id, and homemq's
// agent uses the device id as the object id.
type Path struct {
	Home, Agent, Device string
	Kind                Kind
	Component           string
}

// String builds the topic name back, e.g. "homes/h1/agents/pi1/devices/door/cmd".
// It does not validate; a Path from Parse always round-trips. The zero Path gives "".
func (p Path) String() string {
	switch p.Kind {
	case KindStatus:
		return StatusTopic(p.Home, p.Agent)
	case KindCmd, KindAck, KindState, KindEvent:
		return deviceTopic(p.Home, p.Agent, p.Device, p.Kind.String())
	case KindDiscovery:
		return DiscoveryTopic(p.Home, p.Component, p.Agent, p.Device)
	}
	return ""
}

// ValidID reports whether s is a valid home, agent or device id (or discovery
// component, node or object id): 1–64 bytes of [a-z0-9_-].
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// StatusTopic returns homes/{home}/agents/{agent}/status. Ids are not validated (see ValidID).
func StatusTopic(home, agent string) string {
	return "homes/" + home + "/agents/" + agent + "/status"
}

// CommandTopic returns homes/{home}/agents/{agent}/devices/{device}/cmd. Ids are not validated (see ValidID).
func CommandTopic(home, agent, device string) string {
	return deviceTopic(home, agent, device, "cmd")
}

// AckTopic returns homes/{home}/agents/{agent}/devices/{device}/ack. Ids are not validated (see ValidID).
func AckTopic(home, agent, device string) string {
	return deviceTopic(home, agent, device, "ack")
}

// StateTopic returns homes/{home}/agents/{agent}/devices/{device}/state. Ids are not validated (see ValidID).
func StateTopic(home, agent, device string) string {
	return deviceTopic(home, agent, device, "state")
}

// EventTopic returns homes/{home}/agents/{agent}/devices/{device}/event. Ids are not validated (see ValidID).
func EventTopic(home, agent, device string) string {
	return deviceTopic(home, agent, device, "event")
}

// DiscoveryTopic returns homes/{home}/discovery/{component}/{node}/{object}/config, where
// Home Assistant with the discovery prefix homes/{home}/discovery reads the
// config of one entity. Ids are not validated (see ValidID).
func DiscoveryTopic(home, component, node, object string) string {
	return "homes/" + home + "/discovery/" + component + "/" + node + "/" + object + "/config"
}

func deviceTopic(home, agent, device, kind string) string {
	return "homes/" + home + "/agents/" + agent + "/devices/" + device + "/" + kind
}

// IsCommand reports whether topic is a valid command topic, homes/{h}/agents/{a}/devices/{d}/cmd.
func IsCommand(topic string) bool {
	p, why := parse(topic)
	return why == "" && p.Kind == KindCmd
}

// Error is the error of Parse: which topic was refused and why.
type Error struct {
	Topic  string // the topic as given (Error() shortens a long one)
	Reason string // what is wrong, e.g. "invalid agent id"
}

// Error says what is wrong and what a valid topic looks like.
func (e *Error) Error() string {
	t := e.Topic
	if len(t) > 80 {
		t = t[:80] + "…"
	}
	return "topics: " + strconv.Quote(t) + ": " + e.Reason +
		" (want homes/{home}/agents/{agent}/status, homes/{home}/agents/{agent}/devices/{device}/{cmd|ack|state|event}" +
		" or homes/{home}/discovery/{component}/{node}/{object}/config, ids 1-64 of a-z 0-9 _ -)"
}

// Parse parses a concrete topic name of the homes/ namespace. Filters (+, #) and
// anything that is not exactly one of the six topic shapes are refused with an *Error.
// It does not allocate unless it fails.
func Parse(topic string) (Path, error) {
	p, why := parse(topic)
	if why != "" {
		return Path{}, &Error{Topic: topic, Reason: why}
	}
	return p, nil
}

// maxLevels is one more than the most levels a filter that can match a valid
// namespace topic may have (7 levels and a trailing #).
const maxLevels = 9

// levels is a topic or filter cut at '/', without allocating.
type levels struct {
	lv       [maxLevels]string // the first levels
	n        int               // how many levels; maxLevels+1 means "more than maxLevels"
	wild     bool              // a + or # somewhere
	badWild  bool              // a + or # that does not fill its level, or a # that is not last
	badBytes bool              // U+0000 or invalid UTF-8
}

// scan cuts s into levels and checks MQTT's rules for topic strings in the same pass.
func (l *levels) scan(s string) {
	start, high := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '/':
			if l.n < maxLevels {
				l.lv[l.n] = s[start:i]
			}
			l.n++
			start = i + 1
		case '+':
			l.wild = true
			if i != start || (i+1 < len(s) && s[i+1] != '/') {
				l.badWild = true
			}
		case '#':
			l.wild = true
			if i != start || i+1 != len(s) {
				l.badWild = true
			}
		case 0:
			l.badBytes = true
		default:
			if c >= utf8.RuneSelf {
				high = true
			}
		}
	}
	if l.n < maxLevels {
		l.lv[l.n] = s[start:]
	}
	l.n++
	if l.n > maxLevels {
		l.n = maxLevels + 1
	}
	if high && !utf8.ValidString(s) {
		l.badBytes = true
	}
}

// Reasons shared by Parse and Authorize. Constant strings: deciding never
// allocates and never echoes the client's bytes back.
const (
	whyNotHomes     = "topic is not under homes/"
	whyWildPublish  = "wildcard + or # in a topic name"
	whyEmptyLevel   = "empty level"
	whyTooFew       = "topic ends too early"
	whyTooMany      = "too many levels"
	whyHomeID       = "invalid home id"
	whyAgents       = `third level must be "agents" or "discovery"`
	whyAgentID      = "invalid agent id"
	whyStatusDevice = `fifth level must be "status" or "devices"`
	whyDeviceID     = "invalid device id"
	whyKind         = "last level must be cmd, ack, state or event"
	whyComponent    = "invalid discovery component"
	whyNodeID       = "invalid discovery node id"
	whyObjectID     = "invalid discovery object id"
	whyConfig       = `last level of a discovery topic must be "config"`
)

// parse is Parse without the error allocation: it returns a reason when topic is malformed.
func parse(topic string) (Path, string) {
	var l levels
	l.scan(topic)
	if l.wild {
		return Path{}, whyWildPublish
	}
	return l.path()
}

// path reads the levels of a topic name (no wildcards) as a namespace topic.
func (l *levels) path() (Path, string) {
	lv, n := &l.lv, l.n
	if lv[0] != "homes" {
		return Path{}, whyNotHomes
	}
	for i := 1; i < n && i < 7; i++ {
		if lv[i] == "" {
			return Path{}, whyEmptyLevel
		}
	}
	switch {
	case n < 2:
		return Path{}, whyTooFew
	case !ValidID(lv[1]):
		return Path{}, whyHomeID
	case n < 3:
		return Path{}, whyTooFew
	case lv[2] == "discovery":
		return l.discoveryPath()
	case lv[2] != "agents":
		return Path{}, whyAgents
	case n < 4:
		return Path{}, whyTooFew
	case !ValidID(lv[3]):
		return Path{}, whyAgentID
	case n < 5:
		return Path{}, whyTooFew
	case lv[4] == "status":
		if n > 5 {
			return Path{}, whyTooMany
		}
		return Path{Home: lv[1], Agent: lv[3], Kind: KindStatus}, ""
	case lv[4] != "devices":
		return Path{}, whyStatusDevice
	case n < 6:
		return Path{}, whyTooFew
	case !ValidID(lv[5]):
		return Path{}, whyDeviceID
	case n < 7:
		return Path{}, whyTooFew
	}
	k := deviceKind(lv[6])
	if k == 0 {
		return Path{}, whyKind
	}
	if n > 7 {
		return Path{}, whyTooMany
	}
	return Path{Home: lv[1], Agent: lv[3], Device: lv[5], Kind: k}, ""
}

// discoveryPath reads the levels of homes/{home}/discovery/… as a discovery topic.
func (l *levels) discoveryPath() (Path, string) {
	lv, n := &l.lv, l.n
	switch {
	case n < 4:
		return Path{}, whyTooFew
	case !ValidID(lv[3]):
		return Path{}, whyComponent
	case n < 5:
		return Path{}, whyTooFew
	case !ValidID(lv[4]):
		return Path{}, whyNodeID
	case n < 6:
		return Path{}, whyTooFew
	case !ValidID(lv[5]):
		return Path{}, whyObjectID
	case n < 7:
		return Path{}, whyTooFew
	case lv[6] != "config":
		return Path{}, whyConfig
	case n > 7:
		return Path{}, whyTooMany
	}
	return Path{Home: lv[1], Agent: lv[4], Device: lv[5], Kind: KindDiscovery, Component: lv[3]}, ""
}
