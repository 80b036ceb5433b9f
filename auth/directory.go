package auth

import "errors"

// ErrNotRegistered is wrapped by the registry's errors (see
// tokenapi.Directory) when the agent, the user or the credential is not
// known (or the credential's secret is wrong): the token exchange answers
// those as a refused grant, anything else as a server error.
var ErrNotRegistered = errors.New("not registered")

// AgentGrant is what an agent token carries: the agent, its one home and
// the devices it owns.
type AgentGrant struct {
	Agent   string
	Home    string
	Devices []string
}
