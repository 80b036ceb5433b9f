package compare

import (
	"fmt"
	"time"

	"homemq/bench/load"
)

// Metric is what a table row reads from a result.
type Metric int

// The metrics of the table.
const (
	Throughput     Metric = iota // delivered msgs/s or connects/s: higher is better
	LatencyP50                   // µs: lower is better
	LatencyP99                   // µs
	LatencyP999                  // µs
	BytesPerConn                 // broker RSS bytes per idle connection
	AdmitSeconds                 // storm: s until every agent is re-admitted: lower is better
	DeliverSeconds               // storm: s until every queued command is delivered
	CPUSeconds                   // storm: the broker's CPU s from restart to the end
	Delivered                    // storm: queued commands delivered after the crash
)

func (m Metric) value(r load.Result) float64 {
	switch m {
	case LatencyP50:
		return r.P50
	case LatencyP99:
		return r.P99
	case LatencyP999:
		return r.P999
	case BytesPerConn:
		return r.BytesPerConn
	case AdmitSeconds:
		return r.Seconds
	case DeliverSeconds:
		return r.DeliveredSeconds
	case CPUSeconds:
		return r.CPUSeconds
	case Delivered:
		return float64(r.Delivered)
	}
	return r.Rate
}

// Row is one line of the table: a metric of a case, with its goal.
type Row struct {
	Metric Metric
	// MinRatio is the least homemq/bare ratio that meets the goal (0: none);
	// MaxRatio the greatest (0: none); MaxExtra the most bytes per
	// connection homemq may use beyond bare (0: none).
	MinRatio, MaxRatio, MaxExtra float64
	// AtLeastMosquitto: homemq's figure must be at or above Mosquitto's.
	AtLeastMosquitto bool
}

// Case is one scenario run against every target.
type Case struct {
	Name string
	Unit string
	Spec load.Spec
	TLS  bool
	Rows []Row
	// Only, when set, names the one target the case applies to (the
	// SignalR bridge exists only in homemq); the others show "–".
	Only string
	// Rounds, when set, caps the rounds of this case (long cases such as
	// 15,000 idle connections).
	Rounds int
}

// IdleSteps are the connection counts at which the idle cases read memory
// on the way to their total; IdleSources the loopback source addresses
// they dial from (one address has about 28,000 ephemeral ports).
var (
	IdleSteps   = []int{1000, 5000, 10000}
	IdleSources = 4
)

// StormAgents is the number of agents of the reconnect storm.
var StormAgents = 2000

// idleRounds caps the rounds of the idle cases: each opens every
// connection again in a fresh process.
const idleRounds = 3

// Cases returns the scenarios of `make bench-compare` (a–d, docs/performance.md):
// each measured window lasts d after a warmup of w; idle holds conns.
func Cases(d, w time.Duration, conns int) []Case {
	sp := func(s load.Spec) load.Spec {
		s.Duration, s.Warmup = d, w
		return s
	}
	state := func(pubs, subs int, qos byte, size int) load.Spec {
		return sp(load.Spec{Scenario: load.State, Pubs: pubs, Subs: subs, QoS: qos, Size: size})
	}
	stateGoal := []Row{{Metric: Throughput, MinRatio: 0.90, AtLeastMosquitto: true}}
	latency := []Row{{Metric: LatencyP50}, {Metric: LatencyP99, MaxRatio: 1.2}, {Metric: LatencyP999}}
	fixed := state(4, 4, 1, 64)
	fixed.Rate = 500
	cmdRate := sp(load.Spec{Scenario: load.Command, Pubs: 4, Subs: 1, QoS: 1, Rate: 250})
	return []Case{
		{Name: "state, QoS 0, 64 B, 4 → 4", Unit: "msgs/s", Spec: state(4, 4, 0, 64), Rows: stateGoal},
		{Name: "state, QoS 0, 1 KiB, 4 → 4", Unit: "msgs/s", Spec: state(4, 4, 0, 1024), Rows: stateGoal},
		{Name: "state, QoS 1, 64 B, 4 → 4", Unit: "msgs/s", Spec: state(4, 4, 1, 64), Rows: stateGoal},
		{Name: "state, QoS 1, 1 KiB, 4 → 4", Unit: "msgs/s", Spec: state(4, 4, 1, 1024), Rows: stateGoal},
		{Name: "state fan-in, QoS 1, 64 B, 16 → 1", Unit: "msgs/s", Spec: state(16, 1, 1, 64), Rows: stateGoal},
		{Name: "state fan-out, QoS 1, 64 B, 1 → 16", Unit: "msgs/s", Spec: state(1, 16, 1, 64), Rows: stateGoal},
		{Name: "state latency, QoS 1, 64 B, 4 → 4 at 4 × 500 msgs/s", Unit: "µs", Spec: fixed, Rows: latency},
		{Name: "signed commands, QoS 1, 4 → 1", Unit: "msgs/s", Spec: sp(load.Spec{Scenario: load.Command, Pubs: 4, Subs: 1, QoS: 1}),
			Rows: []Row{{Metric: Throughput, MinRatio: 0.80, AtLeastMosquitto: true}}},
		{Name: "signed command latency, QoS 1, 4 → 1 at 4 × 250 msgs/s", Unit: "µs", Spec: cmdRate, Rows: latency},
		{Name: "JWT connects, fresh token each (CONNECT → CONNACK → DISCONNECT), 8 clients", Unit: "connects/s",
			Spec: sp(load.Spec{Scenario: load.Connect, Workers: 8}), Rows: []Row{{Metric: Throughput, MinRatio: 0.70, AtLeastMosquitto: true}}},
		{Name: "JWT connects, known token (the same token every time), 8 clients", Unit: "connects/s",
			Spec: sp(load.Spec{Scenario: load.Connect, Workers: 8, Tokens: 1}), Rows: []Row{{Metric: Throughput, MinRatio: 0.90}}},
		{Name: "SignalR bridge: SendCommand → agent's ack, 4 callers × 100/s", Unit: "µs", Only: Homemq,
			Spec: sp(load.Spec{Scenario: load.SignalR, Pubs: 4, Rate: 100}), Rows: []Row{{Metric: LatencyP50}, {Metric: LatencyP99}}},
		{Name: "state over TLS, QoS 1, 64 B, 4 → 4", Unit: "msgs/s", Spec: state(4, 4, 1, 64), TLS: true, Rows: stateGoal},
		{Name: fmt.Sprintf("reconnect storm after kill -9: %d agents, persistent sessions, 1 queued command each", StormAgents),
			Unit: "s", Rounds: idleRounds, Spec: load.Spec{Scenario: load.Storm, Conns: StormAgents, Workers: 16, Sources: IdleSources},
			Rows: []Row{{Metric: AdmitSeconds}, {Metric: DeliverSeconds}, {Metric: CPUSeconds}, {Metric: Delivered}}},
		{Name: fmt.Sprintf("idle connections (%d)", conns), Unit: "B/conn", Rounds: idleRounds,
			Spec: load.Spec{Scenario: load.Idle, Conns: conns, Steps: IdleSteps, Sources: IdleSources, Workers: 8},
			Rows: []Row{{Metric: BytesPerConn, MaxExtra: 2048}}},
		{Name: fmt.Sprintf("idle connections over TLS (%d)", conns), Unit: "B/conn", Rounds: idleRounds, TLS: true,
			Spec: load.Spec{Scenario: load.Idle, Conns: conns, Steps: IdleSteps, Sources: IdleSources, Workers: 8},
			Rows: []Row{{Metric: BytesPerConn, MaxExtra: 2048}}},
	}
}
