package topics

import "strings"

// AnyLevel is MQTT's single-level wildcard. In place of an id it makes a
// topic builder's result a filter: CommandTopic(home, agent, AnyLevel) is
// every command to the agent's devices.
const AnyLevel = "+"

// agentSubjectPrefix starts the subject of an agent's token.
const agentSubjectPrefix = "agent:"

// AgentSubject returns the token subject of agent: "agent:{agent}". The id
// is not validated (see ValidID).
func AgentSubject(agent string) string { return agentSubjectPrefix + agent }

// AgentOfSubject returns the agent id of an "agent:{id}" subject; ok is
// false for any other subject. The id is not validated (see ValidID).
func AgentOfSubject(sub string) (agent string, ok bool) {
	if agent, ok = strings.CutPrefix(sub, agentSubjectPrefix); !ok {
		return "", false
	}
	return agent, true
}

// SplitSubject splits a token subject at its first ":" into its kind and
// id: "user:alice" gives "user", "alice". ok is false without a ":".
func SplitSubject(sub string) (kind, id string, ok bool) {
	return strings.Cut(sub, ":")
}

// ClientIDOwner returns the subject a client ID belongs to under the
// client-ID rule (a client ID is its token's sub, or sub + "/" + anything;
// a sub never holds "/"): the part before the first "/".
func ClientIDOwner(clientID string) string {
	sub, _, _ := strings.Cut(clientID, "/")
	return sub
}

// ClientIDBelongsTo reports whether clientID is sub or starts with
// sub + "/": whether, under the client-ID rule, only a token of sub may
// hold it.
func ClientIDBelongsTo(clientID, sub string) bool {
	rest, ok := strings.CutPrefix(clientID, sub)
	return ok && sub != "" && (rest == "" || rest[0] == '/')
}
