package tokenapi

import "homemq/auth"

// Directory is what the token exchange asks of the registry. Every answer
// is current: a membership removed a moment ago is gone from the next token.
type Directory interface {
	// CheckAgentCredential returns the grant of the agent the credential
	// names, if the credential's hash is the one stored for it.
	CheckAgentCredential(c auth.AgentCredential) (auth.AgentGrant, error)
	// AgentGrant returns the grant of a registered agent, by agent id.
	AgentGrant(agent string) (auth.AgentGrant, error)
	// Memberships returns the homes a user (sub "user:…") belongs to and
	// the role held in each; an empty map if none.
	Memberships(user string) (map[string]string, error)
}
