package topics

import "testing"

// BenchmarkAuthorize measures the decisions the broker makes on every packet:
// a publish, the delivery check of a concrete topic to a subscriber, a
// subscribe with wildcards, and refusals. Each must report 0 allocs/op.
func BenchmarkAuthorize(b *testing.B) {
	cases := []struct {
		name   string
		id     *Identity
		action Action
		topic  string
	}{
		{"publish/cmd-member", member, Publish, tCmd},
		{"publish/state-agent", pi1, Publish, tState},
		{"publish/refused-other-home", member, Publish, tH2Cmd},
		{"publish/discovery-agent", pi1, Publish, tDisc},
		{"publish/operator-outside-homes", operator, Publish, "conformance/TopicA/B"},
		{"deliver/state-viewer", viewer, Subscribe, tState},
		{"deliver/cmd-agent", pi1, Subscribe, tCmd},
		{"deliver/refused-cmd-viewer", viewer, Subscribe, tCmd},
		{"subscribe/home-admin", admin, Subscribe, "homes/h1/#"},
		{"subscribe/all-states-viewer", viewer, Subscribe, "homes/h1/agents/+/devices/+/state"},
		{"subscribe/discovery-viewer", viewer, Subscribe, fDisc},
		{"subscribe/shared-member", member, Subscribe, "$share/g/homes/h1/agents/+/devices/+/state"},
		{"subscribe/refused-cross-homes", twoHomes, Subscribe, "homes/+/agents/+/status"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Authorize(c.id, c.action, c.topic, false)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(tCmd); err != nil {
			b.Fatal(err)
		}
	}
}
