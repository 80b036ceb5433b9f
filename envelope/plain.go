package envelope

import "strings"

// Plain commands. An integration (Home Assistant, Node-RED) cannot sign
// envelopes: it publishes a plain payload such as ON to a cmd topic, and
// the broker, having authenticated it and checked the ACL, seals the
// command into an envelope of its own with a fresh iat, a short exp and a
// nonce, so that the agent's expiry and replay checks hold downstream. The
// kid of such an envelope names the integration and says whether the
// home's admin allowed plain commands to drive the device if it guards a
// door; the agent refuses a plain command to a door it was not allowed for.
const (
	// PlainKidPrefix starts the kid of a broker-sealed plain command.
	PlainKidPrefix = "plain:"
	// PlainDoorKidPrefix starts the kid of a broker-sealed plain command
	// to a device whose door grant the home's admin gave.
	PlainDoorKidPrefix = "plain-door:"
)

// PlainKid returns the kid the broker seals a plain command from
// integration with; door says whether the device's door grant is given.
func PlainKid(integration string, door bool) string {
	if door {
		return PlainDoorKidPrefix + integration
	}
	return PlainKidPrefix + integration
}

// ParsePlainKid reports whether kid is a broker-sealed plain command's,
// from which integration, and whether it may drive a door.
func ParsePlainKid(kid string) (integration string, door, ok bool) {
	if rest, found := strings.CutPrefix(kid, PlainDoorKidPrefix); found {
		return rest, true, true
	}
	if rest, found := strings.CutPrefix(kid, PlainKidPrefix); found {
		return rest, false, true
	}
	return "", false, false
}
