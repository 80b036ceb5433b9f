package broker

import "homemq/registry"

// integrations gives the Guard the registry's integration credentials
// (hooks.Integrations), so that hooks does not import registry.
type integrations struct{ reg *registry.Registry }

// CheckIntegration returns the home and role of integration id if
// credential is its current credential.
func (x integrations) CheckIntegration(id, credential string) (string, string, error) {
	in, err := x.reg.CheckIntegration(id, credential)
	if err != nil {
		return "", "", err
	}
	return in.Home, in.Role, nil
}

// DoorGranted reports whether plain commands may drive the door-guarding
// device of agent in home.
func (x integrations) DoorGranted(home, agent, device string) bool {
	return x.reg.DoorGranted(home, agent, device)
}
