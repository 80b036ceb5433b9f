package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"homemq/auth"
	"homemq/topics"
)

// Agent is a registered agent: its id (unique across homes, since its
// token's sub is agent:{id}), its home and the devices it owns.
type Agent struct {
	ID      string    `json:"id"`
	Home    string    `json:"home"`
	Devices []string  `json:"devices"`
	Created time.Time `json:"created"`
	// Rotated is when the credential was last replaced (zero if never).
	Rotated time.Time `json:"rotated,omitzero"`
}

// agentRecord is what is stored: the agent and its credential's hash.
type agentRecord struct {
	Agent
	Hash []byte `json:"hash"`
}

// AddAgent registers agent id in home with its devices and returns a fresh
// credential. Only the credential's hash is stored: show Encode() of it to
// the owner once.
func (r *Registry) AddAgent(home, id string, devices []string) (Agent, auth.AgentCredential, error) {
	if !topics.ValidID(id) {
		return Agent{}, auth.AgentCredential{}, errorf(ErrInvalid, "agent id %q is invalid: use 1-64 of a-z 0-9 _ -", id)
	}
	devs, err := sortedUnique(devices)
	if err != nil {
		return Agent{}, auth.AgentCredential{}, err
	}
	var rec agentRecord
	var cred auth.AgentCredential
	err = r.update(func(tx *wtx) error {
		if err := homeExists(tx.Tx, home); err != nil {
			return err
		}
		b := tx.Bucket(bucketAgents)
		if v := b.Get([]byte(id)); v != nil {
			var old agentRecord
			_ = json.Unmarshal(v, &old)
			return errorf(ErrExists, "agent %q already exists (in home %q); agent ids are unique across homes because the token's sub is agent:%s", id, old.Home, id)
		}
		var err error
		if cred, err = auth.NewAgentCredential(home, id); err != nil {
			return err
		}
		rec = agentRecord{Agent: Agent{ID: id, Home: home, Devices: devs, Created: r.now().UTC().Truncate(time.Second)}, Hash: cred.Hash()}
		return tx.putJSON(bucketAgents, id, rec)
	})
	if err != nil {
		return Agent{}, auth.AgentCredential{}, err
	}
	return rec.Agent, cred, nil
}

// RotateAgent replaces an agent's credential with a fresh one; the old one
// stops working at once.
func (r *Registry) RotateAgent(home, id string) (Agent, auth.AgentCredential, error) {
	var rec agentRecord
	var cred auth.AgentCredential
	err := r.update(func(tx *wtx) error {
		var err error
		if rec, err = getAgent(tx.Tx, home, id); err != nil {
			return err
		}
		if cred, err = auth.NewAgentCredential(home, id); err != nil {
			return err
		}
		rec.Hash = cred.Hash()
		rec.Rotated = r.now().UTC().Truncate(time.Second)
		return tx.putJSON(bucketAgents, id, rec)
	})
	if err != nil {
		return Agent{}, auth.AgentCredential{}, err
	}
	return rec.Agent, cred, nil
}

// RemoveAgent deletes an agent and its credential.
func (r *Registry) RemoveAgent(home, id string) error {
	return r.update(func(tx *wtx) error {
		if _, err := getAgent(tx.Tx, home, id); err != nil {
			return err
		}
		return tx.del(bucketAgents, []byte(id))
	})
}

// Agent returns a registered agent by id.
func (r *Registry) Agent(id string) (Agent, error) {
	var rec agentRecord
	err := r.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, err = getAgent(tx, "", id)
		return err
	})
	return rec.Agent, err
}

// Agents lists the agents of home ("" for every home), sorted by id.
func (r *Registry) Agents(home string) ([]Agent, error) {
	out := []Agent{}
	err := r.db.View(func(tx *bolt.Tx) error {
		if home != "" {
			if err := homeExists(tx, home); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketAgents).ForEach(func(_, v []byte) error {
			var rec agentRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("registry: broken agent record: %w", err)
			}
			if home == "" || rec.Home == home {
				out = append(out, rec.Agent)
			}
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// CheckAgentCredential returns the grant of the agent c names if c's hash
// is the one stored (compared in constant time). Unknown agents and wrong
// secrets give the same error, wrapping ErrDenied and auth.ErrNotRegistered.
func (r *Registry) CheckAgentCredential(c auth.AgentCredential) (auth.AgentGrant, error) {
	var rec agentRecord
	err := r.recheck(func() error {
		err := r.db.View(func(tx *bolt.Tx) error {
			var err error
			rec, err = getAgent(tx, c.Home, c.Agent)
			return err
		})
		if err != nil || !c.Matches(rec.Hash) {
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			return errorf(ErrDenied, "agent credential for %s/%s is not accepted (wrong, rotated or removed)", c.Home, c.Agent)
		}
		return nil
	})
	if err != nil {
		return auth.AgentGrant{}, err
	}
	return grantOf(rec.Agent), nil
}

// AgentGrant returns the grant of a registered agent (for refreshing its token).
func (r *Registry) AgentGrant(id string) (auth.AgentGrant, error) {
	a, err := r.Agent(id)
	if err != nil {
		return auth.AgentGrant{}, err
	}
	return grantOf(a), nil
}

func grantOf(a Agent) auth.AgentGrant {
	return auth.AgentGrant{Agent: a.ID, Home: a.Home, Devices: append([]string(nil), a.Devices...)}
}

// getAgent reads an agent; home "" accepts any home.
func getAgent(tx *bolt.Tx, home, id string) (agentRecord, error) {
	var rec agentRecord
	if !topics.ValidID(id) {
		return rec, errorf(ErrInvalid, "agent id %q is invalid: use 1-64 of a-z 0-9 _ -", id)
	}
	if home != "" {
		if err := homeExists(tx, home); err != nil {
			return rec, err
		}
	}
	v := tx.Bucket(bucketAgents).Get([]byte(id))
	if v == nil {
		if home == "" {
			return rec, errorf(ErrNotFound, "agent %q does not exist", id)
		}
		return rec, errorf(ErrNotFound, "agent %q does not exist in home %q (list them with: homemq agent list --home %s)", id, home, home)
	}
	if err := json.Unmarshal(v, &rec); err != nil {
		return rec, fmt.Errorf("registry: broken record for agent %q: %w", id, err)
	}
	if home != "" && rec.Home != home {
		return rec, errorf(ErrNotFound, "agent %q does not exist in home %q (it belongs to home %q)", id, home, rec.Home)
	}
	return rec, nil
}
