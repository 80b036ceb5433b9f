package topics

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	valid := []struct {
		topic string
		want  Path
	}{
		{"homes/h1/agents/pi1/status", Path{Home: "h1", Agent: "pi1", Kind: KindStatus}},
		{"homes/h1/agents/pi1/devices/door/cmd", Path{Home: "h1", Agent: "pi1", Device: "door", Kind: KindCmd}},
		{"homes/h1/agents/pi1/devices/door/ack", Path{Home: "h1", Agent: "pi1", Device: "door", Kind: KindAck}},
		{"homes/h1/agents/pi1/devices/door/state", Path{Home: "h1", Agent: "pi1", Device: "door", Kind: KindState}},
		{"homes/h1/agents/pi1/devices/door/event", Path{Home: "h1", Agent: "pi1", Device: "door", Kind: KindEvent}},
		{"homes/my-home_2/agents/0/devices/front-door_1/state", Path{Home: "my-home_2", Agent: "0", Device: "front-door_1", Kind: KindState}},
		// Ids may spell a namespace word.
		{"homes/homes/agents/agents/devices/status/cmd", Path{Home: "homes", Agent: "agents", Device: "status", Kind: KindCmd}},
		{"homes/" + strings.Repeat("z", 64) + "/agents/a/status", Path{Home: strings.Repeat("z", 64), Agent: "a", Kind: KindStatus}},
		// Home Assistant discovery: the node is the agent, the object the device.
		{"homes/h1/discovery/binary_sensor/pi1/door/config",
			Path{Home: "h1", Agent: "pi1", Device: "door", Kind: KindDiscovery, Component: "binary_sensor"}},
		{"homes/h1/discovery/switch/pi1/lamp/config", Path{Home: "h1", Agent: "pi1", Device: "lamp", Kind: KindDiscovery, Component: "switch"}},
		{"homes/h1/discovery/agents/status/devices/config", Path{Home: "h1", Agent: "status", Device: "devices", Kind: KindDiscovery, Component: "agents"}},
	}
	for _, c := range valid {
		got, err := Parse(c.topic)
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", c.topic, got, err, c.want)
		}
		if s := got.String(); s != c.topic {
			t.Errorf("Parse(%q).String() = %q; want the topic back", c.topic, s)
		}
	}

	invalid := []struct{ topic, why string }{
		{"", "not under homes/"},
		{"foo/bar", "not under homes/"},
		{"$SYS/x", "not under homes/"},
		{"Homes/h1/agents/pi1/status", "not under homes/"},
		{"homes", "ends too early"},
		{"homes/h1", "ends too early"},
		{"homes/h1/agents", "ends too early"},
		{"homes/h1/agents/pi1", "ends too early"},
		{"homes/h1/agents/pi1/devices", "ends too early"},
		{"homes/h1/agents/pi1/devices/door", "ends too early"},
		{"homes/h1/agents/pi1/status/x", "too many levels"},
		{"homes/h1/agents/pi1/devices/door/cmd/x", "too many levels"},
		{"homes/h1/agents/pi1/devices/door/cmd/x/y/z", "too many levels"},
		{"homes//agents/pi1/status", "empty level"},
		{"homes/h1/agents/pi1/devices//cmd", "empty level"},
		{"homes/h1/agents/pi1/status/", "empty level"},
		{"homes/H1/agents/pi1/status", "invalid home id"},
		{"homes/" + strings.Repeat("z", 65) + "/agents/a/status", "invalid home id"},
		{"homes/h.1/agents/pi1/status", "invalid home id"},
		{"homes/hé/agents/pi1/status", "invalid home id"},
		{"homes/h1/agent/pi1/status", `"agents" or "discovery"`},
		{"homes/h1/Discovery/switch/pi1/door/config", `"agents" or "discovery"`},
		{"homes/h1/discovery", "ends too early"},
		{"homes/h1/discovery/switch", "ends too early"},
		{"homes/h1/discovery/switch/pi1", "ends too early"},
		{"homes/h1/discovery/switch/door/config", "ends too early"}, // Home Assistant's form without a node id
		{"homes/h1/discovery/switch/pi1/door", "ends too early"},
		{"homes/h1/discovery/switch/pi1/door/config/x", "too many levels"},
		{"homes/h1/discovery/switch/pi1/door/config/", "too many levels"},
		{"homes/h1/discovery//pi1/door/config", "empty level"},
		{"homes/h1/discovery/Switch/pi1/door/config", "invalid discovery component"},
		{"homes/h1/discovery/switch/pi.1/door/config", "invalid discovery node id"},
		{"homes/h1/discovery/switch/pi1/" + strings.Repeat("d", 65) + "/config", "invalid discovery object id"},
		{"homes/h1/discovery/switch/pi1/door/state", `must be "config"`},
		{"homes/h1/discovery/switch/pi1/door/+", "wildcard"},
		{"homes/h1/agents/pi 1/status", "invalid agent id"},
		{"homes/h1/agents/pi1/state", `"status" or "devices"`},
		{"homes/h1/agents/pi1/devices/DOOR/cmd", "invalid device id"},
		{"homes/h1/agents/pi1/devices/door/command", "cmd, ack, state or event"},
		{"homes/h1/agents/pi1/devices/door/+", "wildcard"},
		{"homes/h1/#", "wildcard"},
		{"homes/h1/agents/a+b/status", "wildcard"},
	}
	for _, c := range invalid {
		p, err := Parse(c.topic)
		var pe *Error
		if !errors.As(err, &pe) || p != (Path{}) {
			t.Errorf("Parse(%q) = %+v, %v; want the zero Path and an *Error", c.topic, p, err)
			continue
		}
		if pe.Topic != c.topic || !strings.Contains(pe.Reason, c.why) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("Parse(%q) error = %q (reason %q); want it to say %q", c.topic, err, pe.Reason, c.why)
		}
		if !strings.Contains(err.Error(), "want homes/{home}/agents/{agent}/status") || !strings.Contains(err.Error(), "/discovery/{component}/{node}/{object}/config") {
			t.Errorf("Parse(%q) error = %q; want it to say what a valid topic looks like", c.topic, err)
		}
	}
}

func TestParseErrorShortensLongTopics(t *testing.T) {
	_, err := Parse("x/" + strings.Repeat("y", 10000))
	if err == nil || len(err.Error()) > 400 {
		t.Fatalf("Parse(10 KB topic) error is %d bytes; want a short message", len(err.Error()))
	}
}

func TestBuilders(t *testing.T) {
	cases := []struct{ got, want string }{
		{StatusTopic("h1", "pi1"), "homes/h1/agents/pi1/status"},
		{CommandTopic("h1", "pi1", "door"), "homes/h1/agents/pi1/devices/door/cmd"},
		{AckTopic("h1", "pi1", "door"), "homes/h1/agents/pi1/devices/door/ack"},
		{StateTopic("h1", "pi1", "door"), "homes/h1/agents/pi1/devices/door/state"},
		{EventTopic("h1", "pi1", "door"), "homes/h1/agents/pi1/devices/door/event"},
		{DiscoveryTopic("h1", "binary_sensor", "pi1", "door"), "homes/h1/discovery/binary_sensor/pi1/door/config"},
		{Path{}.String(), ""},
		{Path{Home: "h", Agent: "a", Device: "d", Kind: 9}.String(), ""},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q; want %q", c.got, c.want)
		}
	}
}

func TestIsCommand(t *testing.T) {
	for topic, want := range map[string]bool{
		"homes/h1/agents/pi1/devices/door/cmd":      true,
		"homes/h1/agents/pi1/devices/door/state":    false,
		"homes/h1/agents/pi1/status":                false,
		"homes/h1/agents/pi1/devices/+/cmd":         false,
		"homes/H1/agents/pi1/devices/door/cmd":      false,
		"homes/h1/agents/pi1/devices/door/cmd/x":    false,
		"homes/h1/discovery/switch/pi1/door/config": false,
		"homes/h1/discovery/switch/pi1/cmd/config":  false,
		"cmd": false,
		"":    false,
	} {
		if got := IsCommand(topic); got != want {
			t.Errorf("IsCommand(%q) = %v; want %v", topic, got, want)
		}
	}
}

func TestValidID(t *testing.T) {
	for s, want := range map[string]bool{
		"a": true, "h1": true, "front-door_2": true, strings.Repeat("x", 64): true,
		"": false, strings.Repeat("x", 65): false, "A": false, "a.b": false, "a b": false,
		"a/b": false, "a+b": false, "#": false, "é": false, "a\x00": false,
	} {
		if got := ValidID(s); got != want {
			t.Errorf("ValidID(%q) = %v; want %v", s, got, want)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindStatus: "status", KindCmd: "cmd", KindAck: "ack",
		KindState: "state", KindEvent: "event", KindDiscovery: "config", 0: "Kind(0)", 42: "Kind(42)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q; want %q", k, got, want)
		}
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	for _, topic := range []string{tStatus, tCmd, tState, tDisc} {
		if n := testing.AllocsPerRun(20, func() { _, _ = Parse(topic); IsCommand(topic) }); n != 0 {
			t.Errorf("Parse(%q) allocates %v times; want 0", topic, n)
		}
	}
}

// refTopic is the namespace of docs/architecture.md written as a regular expression, to
// check Parse against something written differently.
var refTopic = regexp.MustCompile(`^homes/([a-z0-9_-]{1,64})/agents/([a-z0-9_-]{1,64})/(?:(status)|devices/([a-z0-9_-]{1,64})/(cmd|ack|state|event))$`)

// refDiscovery is the Home Assistant discovery topic of a home.
var refDiscovery = regexp.MustCompile(`^homes/([a-z0-9_-]{1,64})/discovery/([a-z0-9_-]{1,64})/([a-z0-9_-]{1,64})/([a-z0-9_-]{1,64})/config$`)

// refParse parses topic with refTopic.
func refParse(topic string) (Path, bool) {
	if m := refDiscovery.FindStringSubmatch(topic); m != nil {
		return Path{Home: m[1], Component: m[2], Agent: m[3], Device: m[4], Kind: KindDiscovery}, true
	}
	m := refTopic.FindStringSubmatch(topic)
	if m == nil {
		return Path{}, false
	}
	if m[3] == "status" {
		return Path{Home: m[1], Agent: m[2], Kind: KindStatus}, true
	}
	kinds := map[string]Kind{"cmd": KindCmd, "ack": KindAck, "state": KindState, "event": KindEvent}
	return Path{Home: m[1], Agent: m[2], Device: m[4], Kind: kinds[m[5]]}, true
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{tStatus, tCmd, tAck, tState, tEvent, "homes/h1/agents/pi1/devices/door/cmd/x",
		"homes//agents/a/status", "homes/h1/+/pi1/status", "foo", "", "homes", "homes/a/agents/b/devices/c/state/",
		tDisc, "homes/h1/discovery/switch/door/config", "homes/h1/discovery/a/b/c/config/d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		p, err := Parse(topic)
		want, ok := refParse(topic)
		if (err == nil) != ok || p != want {
			t.Fatalf("Parse(%q) = %+v, %v; the namespace's regexp says %+v, valid=%v", topic, p, err, want, ok)
		}
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Reason == "" {
				t.Fatalf("Parse(%q) error %v is not an *Error with a reason", topic, err)
			}
		} else if p.String() != topic {
			t.Fatalf("Parse(%q).String() = %q; want the topic back", topic, p.String())
		}
		if IsCommand(topic) != (ok && want.Kind == KindCmd) {
			t.Fatalf("IsCommand(%q) = %v; want %v", topic, !(ok && want.Kind == KindCmd), ok && want.Kind == KindCmd)
		}
		// The namespace under homes/ holds only valid topics: not even an operator may publish another.
		if topic == "homes" || strings.HasPrefix(topic, "homes/") {
			if d := Authorize(operator, Publish, topic, false); d.Allow != ok {
				t.Fatalf("operator publish %q = %+v; want allow=%v (Parse says valid=%v)", topic, d, ok, ok)
			}
		}
	})
}
