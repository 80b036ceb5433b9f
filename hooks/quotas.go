package hooks

// Quotas bound what one identity may keep in the broker for others to pay
// for. Zero values switch a quota off.
type Quotas struct {
	// SessionsPerSub is the most persistent sessions (online or offline)
	// one token sub may hold; a CONNECT that would start one more gets
	// CONNACK 0x97. A reconnect to an existing session is not a new one.
	SessionsPerSub int
	// ReplayPerSub is the most replay-cache entries (live commands) one sub
	// may hold; a command beyond it gets PUBACK 0x97 while others' pass.
	ReplayPerSub int
}

// DefaultQuotas are generous for a home: 16 persistent sessions and 4096
// live commands per sub.
func DefaultQuotas() Quotas {
	return Quotas{SessionsPerSub: 16, ReplayPerSub: 4096}
}

// quotaState is the Guard's bookkeeping for its Quotas and the restart rule.
type quotaState struct {
	sessionIdx sessionIndex
	issued     issuedState
}
