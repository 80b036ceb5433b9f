package topics

import "strings"

// Place returns the home, agent and device a topic names (the ids that
// are empty for its kind stay empty). For a filter it returns what its
// literal levels name ("homes/h1/#" gives home h1); it never returns an id
// that is not valid (ValidID) or not literally in the topic.
func Place(topic string) (home, agent, device string) {
	if p, err := Parse(topic); err == nil {
		return p.Home, p.Agent, p.Device
	}
	lv := strings.Split(topic, "/")
	if len(lv) < 2 || lv[0] != "homes" || !ValidID(lv[1]) {
		return "", "", ""
	}
	home = lv[1]
	if len(lv) >= 4 && lv[2] == "agents" && ValidID(lv[3]) {
		agent = lv[3]
		if len(lv) >= 6 && lv[4] == "devices" && ValidID(lv[5]) {
			device = lv[5]
		}
	}
	return home, agent, device
}
