package topics

import (
	"os"
	"strings"
	"testing"
)

// The identities of the role-table test: one per role in home h1, plus the corners.
var (
	admin    = &Identity{Sub: "user:alice", Homes: map[string]Role{"h1": Admin}}
	member   = &Identity{Sub: "user:bob", Homes: map[string]Role{"h1": Member}}
	service  = &Identity{Sub: "service:ha", Homes: map[string]Role{"h1": Service}}
	viewer   = &Identity{Sub: "user:carol", Homes: map[string]Role{"h1": Viewer}}
	pi1      = &Identity{Sub: "agent:pi1", Homes: map[string]Role{"h1": Agent}}
	fakeAg   = &Identity{Sub: "user:mallory", Homes: map[string]Role{"h1": Agent}} // role agent, not an agent sub
	badAgSub = &Identity{Sub: "agent:PI1", Homes: map[string]Role{"h1": Agent}}    // agent sub with an invalid id
	owner    = &Identity{Sub: "user:oscar", Homes: map[string]Role{"h1": "owner"}} // unknown role
	caseRole = &Identity{Sub: "user:oscar", Homes: map[string]Role{"h1": "Admin"}} // roles are case-sensitive
	twoHomes = &Identity{Sub: "user:dave", Homes: map[string]Role{"h1": Admin, "h2": Admin}}
	noHomes  = &Identity{Sub: "user:nobody"}
	operator = &Identity{Sub: "user:root", Operator: true}
)

const (
	tStatus = "homes/h1/agents/pi1/status"
	tCmd    = "homes/h1/agents/pi1/devices/door/cmd"
	tAck    = "homes/h1/agents/pi1/devices/door/ack"
	tState  = "homes/h1/agents/pi1/devices/door/state"
	tEvent  = "homes/h1/agents/pi1/devices/door/event"

	tPi2Status = "homes/h1/agents/pi2/status"
	tPi2Cmd    = "homes/h1/agents/pi2/devices/door/cmd"
	tPi2Ack    = "homes/h1/agents/pi2/devices/door/ack"
	tPi2State  = "homes/h1/agents/pi2/devices/door/state"
	tPi2Event  = "homes/h1/agents/pi2/devices/door/event"

	tH2State = "homes/h2/agents/pi1/devices/door/state"
	tH2Cmd   = "homes/h2/agents/pi1/devices/door/cmd"

	tDisc    = "homes/h1/discovery/binary_sensor/pi1/door/config" // pi1's discovery config of its device door
	tPi2Disc = "homes/h1/discovery/binary_sensor/pi2/door/config"
	tH2Disc  = "homes/h2/discovery/binary_sensor/pi1/door/config"
	fDisc    = "homes/h1/discovery/#" // what Home Assistant subscribes to
)

type aclCase struct {
	name   string
	id     *Identity
	action Action
	topic  string
	retain bool
	want   bool
	why    string // a part of the reason, checked when not empty
}

func pub(name string, id *Identity, topic string, want bool, why string) aclCase {
	return aclCase{name, id, Publish, topic, false, want, why}
}

func pubRetained(name string, id *Identity, topic string, want bool, why string) aclCase {
	return aclCase{name, id, Publish, topic, true, want, why}
}

func sub(name string, id *Identity, filter string, want bool, why string) aclCase {
	return aclCase{name, id, Subscribe, filter, false, want, why}
}

// roleTable has one row for every cell of the role table (docs/architecture.md)
// (role × publish/subscribe × status/cmd/ack/state/event/discovery config) and the corners of docs/topics.md.
var roleTable = []aclCase{
	// admin: publish cmd of any device; subscribe everything in the home.
	pub("admin pub cmd", admin, tCmd, true, "admin"),
	pub("admin pub other agent's cmd", admin, tPi2Cmd, true, "admin"),
	pub("admin pub status", admin, tStatus, false, "admin may publish only cmd"),
	pub("admin pub ack", admin, tAck, false, "admin may publish only cmd"),
	pub("admin pub state", admin, tState, false, "admin may publish only cmd"),
	pub("admin pub event", admin, tEvent, false, "admin may publish only cmd"),
	sub("admin sub status", admin, tStatus, true, "admin"),
	sub("admin sub cmd", admin, tCmd, true, "admin"),
	sub("admin sub ack", admin, tAck, true, "admin"),
	sub("admin sub state", admin, tState, true, "admin"),
	sub("admin sub event", admin, tEvent, true, "admin"),
	sub("admin sub home #", admin, "homes/h1/#", true, "admin"),
	pub("admin pub discovery", admin, tDisc, false, "admin may publish only cmd"),
	pubRetained("admin pub retained discovery", admin, tDisc, false, "admin may publish only cmd"),
	sub("admin sub discovery", admin, tDisc, true, "admin"),
	sub("admin sub discovery #", admin, fDisc, true, "admin"),

	// member: publish cmd; subscribe everything but cmd.
	pub("member pub cmd", member, tCmd, true, "member"),
	pub("member pub status", member, tStatus, false, "member may publish only cmd"),
	pub("member pub ack", member, tAck, false, "member may publish only cmd"),
	pub("member pub state", member, tState, false, "member may publish only cmd"),
	pub("member pub event", member, tEvent, false, "member may publish only cmd"),
	sub("member sub status", member, tStatus, true, "member"),
	sub("member sub cmd", member, tCmd, false, "member may not subscribe to cmd"),
	sub("member sub ack", member, tAck, true, "member"),
	sub("member sub state", member, tState, true, "member"),
	sub("member sub event", member, tEvent, true, "member"),
	sub("member sub home # covers cmd", member, "homes/h1/#", false, "member may not subscribe to cmd"),
	sub("member sub all states", member, "homes/h1/agents/+/devices/+/state", true, ""),
	sub("member sub any device kind covers cmd", member, "homes/h1/agents/+/devices/+/+", false, "cmd"),
	pub("member pub discovery", member, tDisc, false, "member may publish only cmd"),
	pubRetained("member pub retained discovery", member, tDisc, false, "member may publish only cmd"),
	sub("member sub discovery", member, tDisc, true, "member"),
	sub("member sub discovery #", member, fDisc, true, "member"),

	// service: as member.
	pub("service pub cmd", service, tCmd, true, "service"),
	pub("service pub status", service, tStatus, false, "service may publish only cmd"),
	pub("service pub ack", service, tAck, false, "service may publish only cmd"),
	pub("service pub state", service, tState, false, "service may publish only cmd"),
	pub("service pub event", service, tEvent, false, "service may publish only cmd"),
	sub("service sub status", service, tStatus, true, "service"),
	sub("service sub cmd", service, tCmd, false, "service may not subscribe to cmd"),
	sub("service sub ack", service, tAck, true, "service"),
	sub("service sub state", service, tState, true, "service"),
	sub("service sub event", service, tEvent, true, "service"),
	sub("service sub home #", service, "homes/h1/#", false, "cmd"),
	pub("service pub discovery", service, tDisc, false, "service may publish only cmd"),
	pubRetained("service pub retained discovery", service, tDisc, false, "service may publish only cmd"),
	sub("service sub discovery", service, tDisc, true, "service"),
	sub("service sub discovery #", service, fDisc, true, "service"),

	// viewer: publish nothing; subscribe state, event, status.
	pub("viewer pub cmd", viewer, tCmd, false, "viewer may not publish"),
	pub("viewer pub status", viewer, tStatus, false, "viewer may not publish"),
	pub("viewer pub ack", viewer, tAck, false, "viewer may not publish"),
	pub("viewer pub state", viewer, tState, false, "viewer may not publish"),
	pub("viewer pub event", viewer, tEvent, false, "viewer may not publish"),
	sub("viewer sub status", viewer, tStatus, true, "viewer"),
	sub("viewer sub cmd", viewer, tCmd, false, "viewer may subscribe only"),
	sub("viewer sub ack", viewer, tAck, false, "viewer may subscribe only"),
	sub("viewer sub state", viewer, tState, true, "viewer"),
	sub("viewer sub event", viewer, tEvent, true, "viewer"),
	sub("viewer sub all states", viewer, "homes/h1/agents/+/devices/+/state", true, ""),
	sub("viewer sub home #", viewer, "homes/h1/#", false, "viewer may subscribe only"),
	pub("viewer pub discovery", viewer, tDisc, false, "viewer may not publish"),
	pubRetained("viewer pub retained discovery", viewer, tDisc, false, "viewer may not publish"),
	sub("viewer sub discovery", viewer, tDisc, true, "viewer"),
	sub("viewer sub discovery #", viewer, fDisc, true, "viewer"),
	sub("viewer sub discovery of one component", viewer, "homes/h1/discovery/binary_sensor/#", true, "viewer"),
	sub("viewer sub discovery of one node", viewer, "homes/h1/discovery/+/pi1/+/config", true, "viewer"),
	sub("viewer sub discovery config/#", viewer, tDisc+"/#", true, "viewer"),
	sub("viewer sub + at third level, 7 levels, covers cmd", viewer, "homes/h1/+/+/+/+/+", false, "viewer may subscribe only"),
	sub("viewer sub + at third level, ends in config", viewer, "homes/h1/+/+/+/+/config", true, "viewer"),
	sub("viewer sub + at third level, ends in state", viewer, "homes/h1/+/+/+/+/state", true, "viewer"),

	// agent pi1: publish its own status, state, event, ack; subscribe its own cmd.
	pub("agent pub own status", pi1, tStatus, true, "own"),
	pub("agent pub own cmd", pi1, tCmd, false, "agent may publish only its own status, state, event, ack and discovery config"),
	pub("agent pub own ack", pi1, tAck, true, "own"),
	pub("agent pub own state", pi1, tState, true, "own"),
	pub("agent pub own event", pi1, tEvent, true, "own"),
	sub("agent sub own status", pi1, tStatus, false, "agent may subscribe only to its own cmd"),
	sub("agent sub own cmd", pi1, tCmd, true, "own"),
	sub("agent sub own ack", pi1, tAck, false, "agent may subscribe only to its own cmd"),
	sub("agent sub own state", pi1, tState, false, "agent may subscribe only to its own cmd"),
	sub("agent sub own event", pi1, tEvent, false, "agent may subscribe only to its own cmd"),
	pub("agent pub other agent's status", pi1, tPi2Status, false, "own agent"),
	pub("agent pub other agent's cmd", pi1, tPi2Cmd, false, "own agent"),
	pub("agent pub other agent's ack", pi1, tPi2Ack, false, "own agent"),
	pub("agent pub other agent's state", pi1, tPi2State, false, "own agent"),
	pub("agent pub other agent's event", pi1, tPi2Event, false, "own agent"),
	sub("agent sub other agent's cmd", pi1, tPi2Cmd, false, "own agent"),
	sub("agent sub own cmds of all devices", pi1, "homes/h1/agents/pi1/devices/+/cmd", true, "own"),
	sub("agent sub own cmd parent #", pi1, "homes/h1/agents/pi1/devices/door/cmd/#", true, "own"),
	sub("agent sub all agents' cmds", pi1, "homes/h1/agents/+/devices/+/cmd", false, "own agent"),
	sub("agent sub own #", pi1, "homes/h1/agents/pi1/#", false, "agent may subscribe only to its own cmd"),
	sub("agent sub own devices/+/+", pi1, "homes/h1/agents/pi1/devices/+/+", false, "agent may subscribe only"),
	pub("agent pub in a home it has no role", pi1, tH2State, false, "no role"),
	pub("agent pub own discovery", pi1, tDisc, true, "own"),
	pubRetained("agent pub own retained discovery", pi1, tDisc, true, "own"),
	pubRetained("agent pub own discovery, another component", pi1, "homes/h1/discovery/switch/pi1/lamp/config", true, "own"),
	pubRetained("agent pub other agent's discovery", pi1, tPi2Disc, false, "own agent"),
	pubRetained("agent pub discovery with its id as the component", pi1, "homes/h1/discovery/pi1/pi2/door/config", false, "own agent"),
	pubRetained("agent pub discovery with its id as the object", pi1, "homes/h1/discovery/switch/pi2/pi1/config", false, "own agent"),
	pubRetained("agent pub discovery in a home it has no role", pi1, tH2Disc, false, "no role"),
	pubRetained("agent pub discovery without node id", pi1, "homes/h1/discovery/binary_sensor/pi1/config", false, "ends too early"),
	sub("agent sub own discovery", pi1, tDisc, false, "agent may subscribe only to its own cmd"),
	sub("agent sub other agent's discovery", pi1, tPi2Disc, false, "own agent"),
	sub("agent sub discovery #", pi1, fDisc, false, "agent"),
	sub("agent sub own node's discovery", pi1, "homes/h1/discovery/+/pi1/+/config", false, "agent"),
	sub("agent sub +/pi1 reaching discovery", pi1, "homes/h1/+/pi1/devices/door/+", false, "agent"),
	pubRetained("role agent, user sub, pub discovery", fakeAg, "homes/h1/discovery/switch/mallory/door/config", false, "agent:{id}"),
	pubRetained("unknown role pub discovery", owner, tDisc, false, "unknown role"),
	sub("member sub discovery of other home", member, "homes/h2/discovery/#", false, "no role"),
	sub("member sub discovery across homes", twoHomes, "homes/+/discovery/#", false, "crosses homes"),
	pubRetained("operator pub retained discovery", operator, tH2Disc, true, "operator"),

	// Role agent needs an agent:{a} subject; unknown roles get nothing.
	pub("role agent, user sub, pub state", fakeAg, tState, false, "agent:{id}"),
	sub("role agent, user sub, sub cmd", fakeAg, tCmd, false, "agent:{id}"),
	pub("role agent, invalid agent id in sub", badAgSub, tState, false, "agent:{id}"),
	pub("unknown role pub cmd", owner, tCmd, false, "unknown role"),
	sub("unknown role sub state", owner, tState, false, "unknown role"),
	sub("capitalised role is unknown", caseRole, tState, false, "unknown role"),
	sub("no homes at all", noHomes, tState, false, "no role"),
	{"nil identity", nil, Subscribe, tState, false, false, "no identity"},
	{"unknown action", admin, 0, tState, false, false, "unknown action"},
	{"unknown action 3", admin, 3, tState, false, false, "unknown action"},

	// Retain on cmd: refused for everyone, operators too.
	pubRetained("admin retained cmd", admin, tCmd, false, "retained cmd"),
	pubRetained("member retained cmd", member, tCmd, false, "retained cmd"),
	pubRetained("operator retained cmd", operator, tCmd, false, "retained cmd"),
	pubRetained("agent retained state", pi1, tState, true, ""),
	pubRetained("agent retained status", pi1, tStatus, true, ""),
	pubRetained("operator retained state", operator, tState, true, ""),
	pubRetained("operator retained outside homes", operator, "foo/bar", true, ""),

	// Other homes.
	pub("member pub cmd in other home", member, tH2Cmd, false, "no role"),
	sub("member sub state in other home", member, tH2State, false, "no role"),
	sub("member sub # of other home", member, "homes/h2/#", false, "no role"),
	sub("admin of both homes, h2", twoHomes, "homes/h2/#", true, ""),
	pub("admin of both homes, h2 cmd", twoHomes, tH2Cmd, true, ""),

	// Wildcards at each level.
	sub("# for admin", admin, "#", false, "first level"),
	sub("# for admin of two homes", twoHomes, "#", false, "first level"),
	sub("+/# for admin", admin, "+/#", false, "first level"),
	sub("+/h1/# for admin", admin, "+/h1/#", false, "first level"),
	sub("homes/# for admin of every named home", twoHomes, "homes/#", false, "crosses homes"),
	sub("homes/+/# for admin", admin, "homes/+/#", false, "crosses homes"),
	sub("homes/+/agents/pi1/status", admin, "homes/+/agents/pi1/status", false, "crosses homes"),
	sub("viewer: + at agents level", viewer, "homes/h1/+/pi1/status", true, ""),
	sub("viewer: + at status level matches only status", viewer, "homes/h1/agents/pi1/+", true, ""),
	sub("viewer: + at devices level", viewer, "homes/h1/agents/pi1/+/door/state", true, ""),
	sub("viewer: + at every id level", viewer, "homes/h1/+/+/+/+/state", true, ""),
	sub("viewer: +/+/status", viewer, "homes/h1/+/+/status", true, ""),
	sub("viewer: + at kind level covers cmd", viewer, "homes/h1/agents/pi1/devices/door/+", false, "viewer may subscribe only"),
	sub("viewer: # at agents level", viewer, "homes/h1/agents/#", false, "viewer may subscribe only"),
	sub("viewer: # at agent level", viewer, "homes/h1/agents/pi1/#", false, "viewer may subscribe only"),
	sub("viewer: +/# after agent", viewer, "homes/h1/agents/pi1/+/#", false, "viewer may subscribe only"),
	sub("viewer: # at device level", viewer, "homes/h1/agents/pi1/devices/#", false, "viewer may subscribe only"),
	sub("viewer: # after device", viewer, "homes/h1/agents/pi1/devices/door/#", false, "viewer may subscribe only"),
	sub("viewer: # after state matches state", viewer, "homes/h1/agents/pi1/devices/door/state/#", true, ""),
	sub("viewer: # after status matches status", viewer, "homes/h1/agents/pi1/status/#", true, ""),
	sub("viewer: # after agents/+/status", viewer, "homes/h1/agents/+/status/#", true, ""),
	sub("admin: # at agents level", admin, "homes/h1/agents/#", true, ""),
	sub("admin: every level +", admin, "homes/h1/+/+/+/+/+", true, ""),
	sub("member: every level + covers cmd", member, "homes/h1/+/+/+/+/+", false, "cmd"),
	sub("member: # after status", member, "homes/h1/agents/+/status/#", true, ""),
	sub("admin: homes/h1/+ matches nothing", admin, "homes/h1/+", false, "ends too early"),
	sub("admin: homes/h1 matches nothing", admin, "homes/h1", false, "ends too early"),
	sub("admin: homes alone", admin, "homes", false, "ends too early"),
	sub("admin: one level too many", admin, "homes/h1/agents/pi1/devices/door/state/x", false, "too many"),
	sub("admin: + after status", admin, "homes/h1/agents/pi1/status/+", false, "too many"),
	sub("admin: + past the kind", admin, "homes/h1/+/+/+/+/+/+", false, "too many"),
	sub("admin: ten levels", admin, "homes/h1/+/+/+/+/+/+/+/+", false, "too many"),
	sub("admin: unknown kind", admin, "homes/h1/agents/+/devices/+/config", false, "last level"),
	sub("admin: discovery without config", admin, "homes/h1/discovery/+/+/+/state", false, `must be "config"`),
	sub("admin: discovery without node id", admin, "homes/h1/discovery/+/+/config", false, "ends too early"),
	sub("admin: discovery, one level too many", admin, "homes/h1/discovery/+/+/+/config/x", false, "too many"),
	sub("admin: discovery, invalid component", admin, "homes/h1/discovery/Switch/#", false, "invalid discovery component"),
	sub("admin: discovery, invalid node", admin, "homes/h1/discovery/+/pi.1/+/config", false, "invalid discovery node id"),
	sub("admin: discovery, invalid object", admin, "homes/h1/discovery/+/pi1/D/#", false, "invalid discovery object id"),
	sub("admin: discovery alone", admin, "homes/h1/discovery", false, "ends too early"),
	sub("admin: wrong third level", admin, "homes/h1/agent/+/status", false, "agents"),
	sub("admin: wrong fifth level", admin, "homes/h1/agents/+/device/+/state", false, "status"),
	sub("admin: devices without device", admin, "homes/h1/agents/+/devices", false, "ends too early"),
	sub("operator: malformed homes filter", operator, "homes/h1/+", false, "ends too early"),
	sub("operator: homes/#", operator, "homes/#", true, "operator"),
	sub("operator: #", operator, "#", true, "operator"),
	sub("operator: +/+", operator, "+/+", true, "operator"),

	// Wildcards in the wrong place.
	pub("publish with +", admin, "homes/h1/agents/pi1/devices/+/cmd", false, "wildcard"),
	pub("publish with #", operator, "homes/h1/#", false, "wildcard"),
	pub("operator publish with + outside homes", operator, "foo/+", false, "wildcard"),
	sub("+ inside a level", admin, "homes/h1/agents/a+b/status", false, "whole level"),
	sub("# inside a level", admin, "homes/h1/agents/pi1/devices/door/state#", false, "whole level"),
	sub("# not last", operator, "homes/#/agents", false, "whole level"),
	sub("operator: + inside a level outside homes", operator, "foo/a+", false, "whole level"),

	// $share.
	sub("$share viewer states", viewer, "$share/user:carol/homes/h1/agents/+/devices/+/state", true, "viewer"),
	sub("$share viewer named own group", viewer, "$share/user:carol~kitchen/homes/h1/agents/+/devices/+/state", true, "viewer"),
	sub("$share viewer in a service's group", viewer, "$share/service:ha/homes/h1/agents/+/devices/+/state", false, "group must be your own"),
	sub("$share viewer in a service's named group", viewer, "$share/service:ha~w/homes/h1/agents/+/devices/+/state", false, "group must be your own"),
	sub("$share viewer in a foreign group", viewer, "$share/g/homes/h1/agents/+/devices/+/state", false, "group must be your own"),
	sub("$share sub as a mere prefix", viewer, "$share/user:carolyn/homes/h1/agents/+/devices/+/state", false, "group must be your own"),
	sub("$share group is a prefix of the sub", viewer, "$share/user:car/homes/h1/agents/+/devices/+/state", false, "group must be your own"),
	sub("$share no sub", &Identity{Homes: map[string]Role{"h1": Viewer}}, "$share/~x/homes/h1/agents/+/devices/+/state", false, "group must be your own"),
	sub("$share agent own cmd own group", pi1, "$share/agent:pi1/homes/h1/agents/pi1/devices/+/cmd", true, "own"),
	sub("$share agent own cmd foreign group", pi1, "$share/agent:pi2/homes/h1/agents/pi1/devices/+/cmd", false, "group must be your own"),
	sub("$share viewer cmd", viewer, "$share/g/homes/h1/agents/+/devices/+/cmd", false, "viewer may subscribe only"),
	sub("$share member other home", member, "$share/g/homes/h2/#", false, "no role"),
	sub("$share member other home state", member, "$share/g/"+tH2State, false, "no role"),
	sub("$share member #", member, "$share/g/#", false, "first level"),
	sub("$share homes/+", admin, "$share/g/homes/+/#", false, "crosses homes"),
	sub("$SHARE any case", member, "$SHARE/g/homes/h2/#", false, "no role"),
	sub("$SHARE any case allowed", admin, "$ShArE/user:alice/homes/h1/#", true, ""),
	sub("$SHARE any case foreign group", admin, "$ShArE/g/homes/h1/#", false, "group must be your own"),
	sub("$share empty group", admin, "$share//homes/h1/#", false, "$share"),
	sub("$share wildcard group", admin, "$share/g+/homes/h1/#", false, "$share"),
	sub("$share # group", admin, "$share/#/homes/h1/#", false, "$share"),
	sub("$share no filter", admin, "$share/g", false, "$share"),
	sub("$share empty filter", admin, "$share/g/", false, "$share"),
	sub("$share operator #", operator, "$share/g/#", true, "operator"),
	sub("$share operator empty group", operator, "$share//#", false, "$share"),
	sub("$share nested $share", operator, "$share/g/$SHARE/h/#", false, "inside $share"),
	sub("$share nested $SYS", admin, "$share/g/$SYS/#", false, "operators only"),

	// $SYS and other $ topics.
	sub("admin $SYS/#", admin, "$SYS/#", false, "operators only"),
	sub("operator $SYS/#", operator, "$SYS/#", true, "operator"),
	pub("admin publish $SYS", admin, "$SYS/broker/x", false, "operators only"),
	pub("operator publish $SYS", operator, "$SYS/broker/x", true, "operator"),
	sub("admin $foo", admin, "$foo/bar", false, "operators only"),
	pub("admin publish $share topic name", admin, "$share/g/"+tCmd, false, "operators only"),

	// Outside homes/.
	pub("admin publish outside", admin, "foo/bar", false, "outside homes/"),
	sub("admin subscribe outside", admin, "foo/#", false, "outside homes/"),
	pub("admin publish Homes/ (case)", admin, "Homes/h1/agents/pi1/status", false, "outside homes/"),
	pub("admin publish homesx", admin, "homesx/h1", false, "outside homes/"),
	pub("operator publish outside", operator, "foo/bar", true, "operator"),
	pub("operator publish leading empty level", operator, "/TopicA", true, "operator"),
	sub("operator subscribe empty levels outside homes", operator, "/+", true, "operator"),
	sub("operator subscribe outside", operator, "TopicA/#", true, "operator"),
	pub("operator publish valid cmd", operator, tCmd, true, "operator"),
	pub("operator publish state of any home", operator, tH2State, true, "operator"),

	// Invalid ids and malformed topics under homes/: refused for everyone, operators too.
	pub("uppercase home", operator, "homes/H1/agents/pi1/status", false, "invalid home id"),
	sub("uppercase home filter", admin, "homes/H1/#", false, "invalid home id"),
	pub("uppercase agent", admin, "homes/h1/agents/Pi1/devices/door/cmd", false, "invalid agent id"),
	pub("uppercase device", admin, "homes/h1/agents/pi1/devices/Door/cmd", false, "invalid device id"),
	pub("64-char home", &Identity{Homes: map[string]Role{strings.Repeat("a", 64): Admin}},
		"homes/"+strings.Repeat("a", 64)+"/agents/pi1/devices/door/cmd", true, ""),
	pub("65-char home", &Identity{Homes: map[string]Role{strings.Repeat("a", 65): Admin}},
		"homes/"+strings.Repeat("a", 65)+"/agents/pi1/devices/door/cmd", false, "invalid home id"),
	pub("65-char device", operator, "homes/h1/agents/pi1/devices/"+strings.Repeat("d", 65)+"/state", false, "invalid device id"),
	pub("empty home level", operator, "homes//agents/pi1/status", false, "empty level"),
	pub("empty device level", admin, "homes/h1/agents/pi1/devices//cmd", false, "empty level"),
	pub("trailing slash", operator, tState+"/", false, "too many"),
	pub("trailing slash after status", operator, tStatus+"/", false, "empty level"),
	sub("empty level in filter", admin, "homes/h1//pi1/status", false, "empty level"),
	sub("empty level in filter for operator", operator, "homes/h1/agents//#", false, "empty level"),
	pub("dot in agent", admin, "homes/h1/agents/pi.1/devices/door/cmd", false, "invalid agent id"),
	pub("dot-dot home", operator, "homes/../agents/pi1/status", false, "invalid home id"),
	pub("unicode home", operator, "homes/hé/agents/pi1/status", false, "invalid home id"),
	sub("unicode device in filter", admin, "homes/h1/agents/+/devices/dööр/state", false, "invalid device id"),
	pub("+ in a level", admin, "homes/h1/agents/a+b/devices/door/cmd", false, "wildcard"),
	pub("space in device", admin, "homes/h1/agents/pi1/devices/front door/cmd", false, "invalid device id"),
	pub("operator malformed homes/", operator, "homes/h1/foo", false, "agents"),
	pub("operator unknown kind", operator, "homes/h1/agents/pi1/devices/door/config", false, "last level"),
	pub("operator discovery with extra level", operator, tDisc+"/x", false, "too many"),
	pub("operator homes alone", operator, "homes", false, "ends too early"),
	pub("operator status with extra level", operator, tStatus+"/x", false, "too many"),
	pub("operator cmd with extra level", operator, tCmd+"/x", false, "too many"),
	pub("empty topic", operator, "", false, "empty topic"),
	sub("empty filter", operator, "", false, "empty filter"),
	pub("NUL in topic", operator, "foo/\x00", false, "UTF-8"),
	sub("invalid UTF-8 filter", operator, "foo/\xff/#", false, "UTF-8"),
	pub("too long topic", operator, "foo/"+strings.Repeat("x", 65535), false, "65535"),

	// Delivery checks: the broker asks Subscribe with a concrete topic.
	sub("deliver state to viewer", viewer, tState, true, ""),
	sub("deliver cmd to viewer", viewer, tCmd, false, ""),
	sub("deliver other home's state to member", member, tH2State, false, "no role"),
	sub("deliver discovery to viewer", viewer, tDisc, true, ""),
	sub("deliver other home's discovery to viewer", viewer, tH2Disc, false, "no role"),
}

func TestAuthorizeRoleTable(t *testing.T) {
	for _, c := range roleTable {
		t.Run(c.name, func(t *testing.T) {
			got := Authorize(c.id, c.action, c.topic, c.retain)
			if got.Allow != c.want || got.Reason == "" || !strings.Contains(got.Reason, c.why) {
				t.Errorf("Authorize(%s, %v, %q, retain=%v) = %+v; want allow=%v with reason containing %q",
					subOf(c.id), c.action, c.topic, c.retain, got, c.want, c.why)
			}
		})
	}
}

func subOf(id *Identity) string {
	if id == nil {
		return "<nil>"
	}
	return id.Sub
}

// TestAuthorizeDoesNotAllocate checks the hot paths (publish, delivery, filter
// subscribe, refusals) allocate nothing: Authorize runs on every delivery.
func TestAuthorizeDoesNotAllocate(t *testing.T) {
	for _, c := range roleTable {
		if c.id == nil {
			continue
		}
		if n := testing.AllocsPerRun(20, func() { Authorize(c.id, c.action, c.topic, c.retain) }); n != 0 {
			t.Errorf("%s: Authorize allocates %v times per call; want 0", c.name, n)
		}
	}
}

func TestRoleValid(t *testing.T) {
	for _, r := range []Role{Admin, Member, Viewer, Agent, Service} {
		if !r.Valid() {
			t.Errorf("Role(%q).Valid() = false; want true", r)
		}
	}
	for _, r := range []Role{"", "Admin", "owner", "admin "} {
		if r.Valid() {
			t.Errorf("Role(%q).Valid() = true; want false", r)
		}
	}
}

func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{Publish: "publish", Subscribe: "subscribe", 0: "Action(0)", 7: "Action(7)"} {
		if got := a.String(); got != want {
			t.Errorf("Action(%d).String() = %q; want %q", a, got, want)
		}
	}
}

// TestDocExamples checks every example filter of docs/topics.md against
// Authorize, so the page cannot drift from the code.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../docs/topics.md")
	if err != nil {
		t.Fatalf("read the user docs: %v", err)
	}
	_, table, ok := strings.Cut(string(doc), "| filter | admin | member / service | viewer | agent `pi1` |")
	if !ok {
		t.Fatal("docs/topics.md: the examples table is missing")
	}
	columns := [][]*Identity{{admin}, {member, service}, {viewer}, {pi1}}
	rows := 0
	for _, line := range strings.Split(table, "\n")[2:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 5 {
			t.Fatalf("docs/topics.md: row %q has %d cells; want 5", line, len(cells))
		}
		filterCell, _, _ := strings.Cut(cells[0], "(") // "(…)" explains, with words in backquotes
		filters := strings.Split(filterCell, "`")
		for i := 1; i < len(filters); i += 2 {
			f := filters[i]
			if strings.Contains(f, "…") {
				f = strings.ReplaceAll(f, "…", "agents/pi1/devices/door/state")
			}
			for c, ids := range columns {
				want := strings.HasPrefix(strings.TrimSpace(cells[c+1]), "yes")
				for _, id := range ids {
					f := strings.ReplaceAll(f, "{sub}", id.Sub) // the subscriber's own $share group
					if d := Authorize(id, Subscribe, f, false); d.Allow != want {
						t.Errorf("docs/topics.md says %s may subscribe to %q: %v; Authorize says %+v", id.Sub, f, want, d)
					}
				}
			}
			rows++
		}
	}
	if rows < 15 {
		t.Errorf("checked only %d example filters of docs/topics.md", rows)
	}
}
