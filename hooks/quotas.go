package hooks

import (
	"errors"
	"fmt"
)

// Quotas bound what one identity may keep in the broker for others to pay
// for: persistent sessions and retained messages (replay-cache entries are
// Replay's). Its fields are YAML keys of the broker's limits section. Zero
// values switch a quota off.
type Quotas struct {
	// SessionsPerSub is the most persistent sessions (online or offline)
	// one token sub may hold; a CONNECT that would start one more gets
	// CONNACK 0x97. A reconnect to an existing session is not a new one.
	SessionsPerSub int `yaml:"sessions_per_sub"`
	// RetainedPerAgent is the most retained topics one agent may hold in a
	// home (its state and discovery configs); one more gets PUBACK 0x97.
	RetainedPerAgent int `yaml:"retained_per_agent"`
	// MaxRetainedSize is the largest retained payload, in bytes, anyone but
	// an operator may publish; a larger one gets PUBACK 0x95.
	MaxRetainedSize int `yaml:"max_retained_size"`
	// RetainedRate and RetainedBurst limit the retained messages one sub may
	// publish per second (each is written to disk with an fsync); beyond,
	// PUBACK 0x96.
	RetainedRate  float64 `yaml:"retained_rate"`
	RetainedBurst int     `yaml:"retained_burst"`
}

// DefaultQuotas are generous for a home: 16 sessions per sub, 256 retained
// topics per agent of at most 16 KiB, and 20 retained messages a second per
// sub (bursts of 500, as at an agent's start).
func DefaultQuotas() Quotas {
	return Quotas{SessionsPerSub: 16, RetainedPerAgent: 256, MaxRetainedSize: 16 << 10,
		RetainedRate: 20, RetainedBurst: 500}
}

// Validate reports the first field of q out of range, by its YAML key. The
// broker checks in addition that max_retained_size fits max_packet_size.
func (q Quotas) Validate() error {
	switch {
	case q.SessionsPerSub < 0:
		return fmt.Errorf("sessions_per_sub: %d must not be negative (0 switches it off)", q.SessionsPerSub)
	case q.RetainedPerAgent < 0:
		return fmt.Errorf("retained_per_agent: %d must not be negative (0 switches it off)", q.RetainedPerAgent)
	case q.MaxRetainedSize < 0:
		return fmt.Errorf("max_retained_size: %d must not be negative (0 switches it off)", q.MaxRetainedSize)
	case q.RetainedRate < 0:
		return fmt.Errorf("retained_rate: %v must not be negative (0 switches it off)", q.RetainedRate)
	case q.RetainedBurst < 0:
		return fmt.Errorf("retained_burst: %d must not be negative", q.RetainedBurst)
	case q.RetainedRate > 0 && q.RetainedBurst == 0:
		return errors.New("retained_burst: must be positive when retained_rate is (retained_rate 0 switches the limit off)")
	}
	return nil
}

// Replay bounds the Guard's command replay cache; its fields are YAML keys
// of the broker's envelope section.
type Replay struct {
	// ReplayCache is the hard cap on remembered command nonces; beyond it
	// commands are refused (0x97).
	ReplayCache int `yaml:"replay_cache"`
	// ReplayQuota is the most replay-cache entries (live commands) one sub
	// may hold; a command beyond it gets PUBACK 0x97 while others' pass.
	// 0 switches it off.
	ReplayQuota int `yaml:"replay_quota"`
}

// DefaultReplay remembers up to 2^20 nonces, at most 4096 per sub.
func DefaultReplay() Replay { return Replay{ReplayCache: 1 << 20, ReplayQuota: 4096} }

// Validate reports the first field of r out of range, by its YAML key.
func (r Replay) Validate() error {
	switch {
	case r.ReplayCache < 1024:
		return fmt.Errorf("replay_cache: %d is too small (at least 1024)", r.ReplayCache)
	case r.ReplayQuota < 0 || r.ReplayQuota > r.ReplayCache:
		return fmt.Errorf("replay_quota: %d is out of range (0 to replay_cache, %d; 0 switches it off)", r.ReplayQuota, r.ReplayCache)
	}
	return nil
}

// quotaState is the Guard's bookkeeping for its Quotas and the restart rule.
type quotaState struct {
	sessionIdx  sessionIndex
	retainedIdx retainedIndex
	issued      issuedState
}
