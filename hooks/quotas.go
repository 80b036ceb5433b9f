package hooks

// Quotas bound what one identity may keep in the broker for others to pay
// for: persistent sessions, replay-cache entries and retained messages.
// Zero values switch a quota off.
type Quotas struct {
	// SessionsPerSub is the most persistent sessions (online or offline)
	// one token sub may hold; a CONNECT that would start one more gets
	// CONNACK 0x97. A reconnect to an existing session is not a new one.
	SessionsPerSub int
	// ReplayPerSub is the most replay-cache entries (live commands) one sub
	// may hold; a command beyond it gets PUBACK 0x97 while others' pass.
	ReplayPerSub int
	// RetainedPerAgent is the most retained topics one agent may hold in a
	// home (its state and discovery configs); one more gets PUBACK 0x97.
	RetainedPerAgent int
	// MaxRetainedSize is the largest retained payload, in bytes, anyone but
	// an operator may publish; a larger one gets PUBACK 0x95.
	MaxRetainedSize int
	// RetainedRate and RetainedBurst limit the retained messages one sub may
	// publish per second (each is written to disk with an fsync); beyond,
	// PUBACK 0x96.
	RetainedRate  float64
	RetainedBurst int
}

// DefaultQuotas are generous for a home: 16 sessions per sub, 4096 live
// commands per sub, 256 retained topics per agent of at most 16 KiB, and
// 20 retained messages a second per sub (bursts of 500, as at an agent's
// start).
func DefaultQuotas() Quotas {
	return Quotas{SessionsPerSub: 16, ReplayPerSub: 4096, RetainedPerAgent: 256, MaxRetainedSize: 16 << 10,
		RetainedRate: 20, RetainedBurst: 500}
}

// quotaState is the Guard's bookkeeping for its Quotas and the restart rule.
type quotaState struct {
	sessionIdx  sessionIndex
	retainedIdx retainedIndex
	issued      issuedState
}
