package auth

import "errors"

// ErrNotRegistered is wrapped by a Directory's errors when the agent, the
// user or the credential is not known (or the credential's secret is wrong):
// the token exchange answers those as a refused grant, anything else as a
// server error.
var ErrNotRegistered = errors.New("not registered")

// AgentGrant is what an agent token carries: the agent, its one home and
// the devices it owns.
type AgentGrant struct {
	Agent   string
	Home    string
	Devices []string
}

// Directory is what the token exchange asks of the registry. Every answer
// is current: a membership removed a moment ago is gone from the next token.
type Directory interface {
	// CheckAgentCredential returns the grant of the agent the credential
	// names, if the credential's hash is the one stored for it.
	CheckAgentCredential(c AgentCredential) (AgentGrant, error)
	// AgentGrant returns the grant of a registered agent, by agent id.
	AgentGrant(agent string) (AgentGrant, error)
	// Memberships returns the homes a user (sub "user:…") belongs to and
	// the role held in each; an empty map if none.
	Memberships(user string) (map[string]string, error)
}
