package registry

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"homemq/topics"
)

// Integrations are third-party systems (Home Assistant, Node-RED, openHAB)
// that keep a static MQTT password. Each has a long-lived credential,
// shown once and stored hashed, that it uses as the MQTT password with the
// user name service:{id}. Its rights are one role in one home, read from
// the registry at every CONNECT; the broker revokes service:{id} whenever
// they change, so a connection never outlives them.

// IntegrationCredentialPrefix starts every integration credential:
//
//	hmqi1.{id}.{secret}
//
// where secret is 32 random bytes in unpadded base64url.
const IntegrationCredentialPrefix = "hmqi1."

// IntegrationRoles are the roles an integration may hold in its home:
// never admin (it may not read commands) nor agent.
var IntegrationRoles = []string{string(topics.Viewer), string(topics.Member), string(topics.Service)}

// Integration is a registered integration.
type Integration struct {
	ID      string    `json:"id"`
	Home    string    `json:"home"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"`
	// Rotated is when the credential or role last changed (zero if never).
	Rotated time.Time `json:"rotated,omitzero"`
}

// DoorGrant says that plain commands from integrations may drive one
// door-guarding device of a home (see docs/integrations.md).
type DoorGrant struct {
	Home   string `json:"home"`
	Agent  string `json:"agent"`
	Device string `json:"device"`
}

type integrationRecord struct {
	Integration
	Hash []byte `json:"hash"`
}

var bucketIntegrations = []byte("integrations")

// doorKey is the key of a DoorGrant in bucketIntegrations; integration ids
// never contain a slash, so the two kinds of key cannot meet.
func doorKey(home, agent, device string) string {
	return "door/" + home + "/" + agent + "/" + device
}

func validIntegrationRole(r string) bool {
	for _, ok := range IntegrationRoles {
		if r == ok {
			return true
		}
	}
	return false
}

func newIntegrationSecret() ([]byte, error) {
	s := make([]byte, 32)
	_, err := rand.Read(s)
	return s, err
}

func integrationHash(id string, secret []byte) []byte {
	h := sha256.New()
	h.Write([]byte("homemq integration credential v1\x00"))
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write(secret)
	return h.Sum(nil)
}

func encodeIntegrationCredential(id string, secret []byte) string {
	return IntegrationCredentialPrefix + id + "." + base64.RawURLEncoding.EncodeToString(secret)
}

// AddIntegration registers integration id with role in home and returns
// its credential, to be shown once.
func (r *Registry) AddIntegration(home, id, role string) (Integration, string, error) {
	if !topics.ValidID(id) {
		return Integration{}, "", errorf(ErrInvalid, "integration id %q is invalid: use 1-64 of a-z 0-9 _ -", id)
	}
	if !validIntegrationRole(role) {
		return Integration{}, "", errorf(ErrInvalid, "integration role %q is not allowed: use one of %s", role, strings.Join(IntegrationRoles, ", "))
	}
	secret, err := newIntegrationSecret()
	if err != nil {
		return Integration{}, "", err
	}
	rec := integrationRecord{Integration: Integration{ID: id, Home: home, Role: role, Created: r.now().UTC().Truncate(time.Second)}, Hash: integrationHash(id, secret)}
	err = r.update(func(tx *wtx) error {
		if err := homeExists(tx.Tx, home); err != nil {
			return err
		}
		if v := tx.Bucket(bucketIntegrations).Get([]byte(id)); v != nil {
			var old integrationRecord
			_ = json.Unmarshal(v, &old)
			return errorf(ErrExists, "integration %q already exists (in home %q); ids are unique across homes because the MQTT user name is service:%s", id, old.Home, id)
		}
		return tx.putJSON(bucketIntegrations, id, rec)
	})
	if err != nil {
		return Integration{}, "", err
	}
	return rec.Integration, encodeIntegrationCredential(id, secret), nil
}

// RotateIntegration replaces an integration's credential and, if role is
// not empty, its role. The old credential stops working at once.
func (r *Registry) RotateIntegration(home, id, role string) (Integration, string, error) {
	if role != "" && !validIntegrationRole(role) {
		return Integration{}, "", errorf(ErrInvalid, "integration role %q is not allowed: use one of %s", role, strings.Join(IntegrationRoles, ", "))
	}
	secret, err := newIntegrationSecret()
	if err != nil {
		return Integration{}, "", err
	}
	var rec integrationRecord
	err = r.update(func(tx *wtx) error {
		var err error
		if rec, err = getIntegration(tx.Tx, home, id); err != nil {
			return err
		}
		rec.Hash = integrationHash(id, secret)
		if role != "" {
			rec.Role = role
		}
		rec.Rotated = r.now().UTC().Truncate(time.Second)
		return tx.putJSON(bucketIntegrations, id, rec)
	})
	if err != nil {
		return Integration{}, "", err
	}
	return rec.Integration, encodeIntegrationCredential(id, secret), nil
}

// RemoveIntegration deletes an integration and its credential.
func (r *Registry) RemoveIntegration(home, id string) error {
	return r.update(func(tx *wtx) error {
		if _, err := getIntegration(tx.Tx, home, id); err != nil {
			return err
		}
		return tx.del(bucketIntegrations, []byte(id))
	})
}

// Integrations lists the integrations of home ("" for every home), by id.
func (r *Registry) Integrations(home string) ([]Integration, error) {
	out := []Integration{}
	err := r.db.View(func(tx *bolt.Tx) error {
		if home != "" {
			if err := homeExists(tx, home); err != nil {
				return err
			}
		}
		b := tx.Bucket(bucketIntegrations)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if strings.HasPrefix(string(k), "door/") {
				return nil
			}
			var rec integrationRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("registry: broken integration record: %w", err)
			}
			if home == "" || rec.Home == home {
				out = append(out, rec.Integration)
			}
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// CheckIntegration returns the integration whose credential is credential,
// if its id is id and its hash is the one stored (compared in constant
// time). Unknown ids and wrong secrets give the same error (ErrDenied).
func (r *Registry) CheckIntegration(id, credential string) (Integration, error) {
	denied := errorf(ErrDenied, "integration credential for service:%s is not accepted (wrong, rotated or removed)", id)
	rest, ok := strings.CutPrefix(credential, IntegrationCredentialPrefix)
	if !ok {
		return Integration{}, errorf(ErrDenied, "an integration password starts with %q (copy it whole from 'homemq integration add')", IntegrationCredentialPrefix)
	}
	cid, enc, ok := strings.Cut(rest, ".")
	if !ok || cid != id || !topics.ValidID(id) || len(enc) != 43 {
		return Integration{}, denied
	}
	secret, err := base64.RawURLEncoding.Strict().DecodeString(enc)
	if err != nil {
		return Integration{}, denied
	}
	var rec integrationRecord
	err = r.recheck(func() error {
		err := r.db.View(func(tx *bolt.Tx) error {
			var err error
			rec, err = getIntegration(tx, "", id)
			return err
		})
		switch {
		case errors.Is(err, ErrNotFound):
			return denied
		case err != nil:
			return err
		case subtle.ConstantTimeCompare(integrationHash(id, secret), rec.Hash) != 1:
			return denied
		}
		return nil
	})
	if err != nil {
		return Integration{}, err
	}
	return rec.Integration, nil
}

// SetDoorGrant allows (allow) or stops plain commands from integrations to
// the door-guarding device of agent in home.
func (r *Registry) SetDoorGrant(home, agent, device string, allow bool) error {
	if !topics.ValidID(agent) || !topics.ValidID(device) {
		return errorf(ErrInvalid, "agent %q or device %q is not a valid id: use 1-64 of a-z 0-9 _ -", agent, device)
	}
	return r.update(func(tx *wtx) error {
		if err := homeExists(tx.Tx, home); err != nil {
			return err
		}
		k := doorKey(home, agent, device)
		if !allow {
			return tx.del(bucketIntegrations, []byte(k))
		}
		return tx.putJSON(bucketIntegrations, k, DoorGrant{Home: home, Agent: agent, Device: device})
	})
}

// DoorGranted reports whether plain commands may drive the door-guarding
// device of agent in home.
func (r *Registry) DoorGranted(home, agent, device string) bool {
	found := false
	_ = r.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketIntegrations); b != nil {
			found = b.Get([]byte(doorKey(home, agent, device))) != nil
		}
		return nil
	})
	return found
}

// DoorGrants lists the door grants of home.
func (r *Registry) DoorGrants(home string) ([]DoorGrant, error) {
	out := []DoorGrant{}
	err := r.db.View(func(tx *bolt.Tx) error {
		if err := homeExists(tx, home); err != nil {
			return err
		}
		b := tx.Bucket(bucketIntegrations)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		prefix := []byte("door/" + home + "/")
		for k, v := c.Seek(prefix); k != nil && strings.HasPrefix(string(k), string(prefix)); k, v = c.Next() {
			var g DoorGrant
			if err := json.Unmarshal(v, &g); err != nil {
				return fmt.Errorf("registry: broken door grant: %w", err)
			}
			out = append(out, g)
		}
		return nil
	})
	return out, err
}

// dropHomeIntegrations refuses to remove a home that still has
// integrations, and deletes its door grants.
func dropHomeIntegrations(tx *wtx, home string) error {
	b := tx.Bucket(bucketIntegrations)
	if b == nil {
		return nil
	}
	var ids, doors []string
	_ = b.ForEach(func(k, v []byte) error {
		if strings.HasPrefix(string(k), "door/"+home+"/") {
			doors = append(doors, string(k))
			return nil
		}
		var rec integrationRecord
		if !strings.HasPrefix(string(k), "door/") && json.Unmarshal(v, &rec) == nil && rec.Home == home {
			ids = append(ids, rec.ID)
		}
		return nil
	})
	if len(ids) > 0 {
		return errorf(ErrInvalid, "home %q still has integration(s) %s; remove them first (homemq integration remove --home %s --id ID)", home, strings.Join(ids, ", "), home)
	}
	for _, k := range doors {
		if err := tx.del(bucketIntegrations, []byte(k)); err != nil {
			return err
		}
	}
	return nil
}

// getIntegration reads an integration; home "" accepts any home.
func getIntegration(tx *bolt.Tx, home, id string) (integrationRecord, error) {
	var rec integrationRecord
	if !topics.ValidID(id) {
		return rec, errorf(ErrInvalid, "integration id %q is invalid: use 1-64 of a-z 0-9 _ -", id)
	}
	if home != "" {
		if err := homeExists(tx, home); err != nil {
			return rec, err
		}
	}
	var v []byte
	if b := tx.Bucket(bucketIntegrations); b != nil {
		v = b.Get([]byte(id))
	}
	if v == nil {
		return rec, errorf(ErrNotFound, "integration %q does not exist (list them with: homemq integration list)", id)
	}
	if err := json.Unmarshal(v, &rec); err != nil {
		return rec, fmt.Errorf("registry: broken record for integration %q: %w", id, err)
	}
	if home != "" && rec.Home != home {
		return rec, errorf(ErrNotFound, "integration %q does not exist in home %q (it belongs to home %q)", id, home, rec.Home)
	}
	return rec, nil
}

// doIntegration runs the integration operations of Do; ok is false for
// any other operation.
func (r *Registry) doIntegration(req Request) (resp Response, ok bool, err error) {
	switch req.Op {
	case OpIntegrationAdd, OpIntegrationRotate:
		var in Integration
		var cred string
		if req.Op == OpIntegrationAdd {
			in, cred, err = r.AddIntegration(req.Home, req.Integration, req.Role)
		} else {
			in, cred, err = r.RotateIntegration(req.Home, req.Integration, req.Role)
		}
		if err == nil {
			resp.Integrations, resp.Credential = []Integration{in}, cred
		}
	case OpIntegrationRemove:
		err = r.RemoveIntegration(req.Home, req.Integration)
	case OpIntegrationList:
		resp.Integrations, err = r.Integrations(req.Home)
		if err == nil && req.Home != "" {
			resp.Doors, err = r.DoorGrants(req.Home)
		}
	case OpDoorAllow, OpDoorDeny:
		if len(req.Devices) != 1 {
			return resp, true, errorf(ErrInvalid, "name exactly one device")
		}
		err = r.SetDoorGrant(req.Home, req.Agent, req.Devices[0], req.Op == OpDoorAllow)
		if err == nil {
			resp.Doors, err = r.DoorGrants(req.Home)
		}
	default:
		return resp, false, nil
	}
	return resp, true, err
}

// Integration operations of Request.Op.
const (
	OpIntegrationAdd    = "integration.add"
	OpIntegrationRotate = "integration.rotate"
	OpIntegrationRemove = "integration.remove"
	OpIntegrationList   = "integration.list"
	OpDoorAllow         = "integration.door.allow"
	OpDoorDeny          = "integration.door.deny"
)

// revokesIntegration reports whether req changes an integration's rights,
// so that its connections must be cut.
func revokesIntegration(req Request) bool {
	return req.Op == OpIntegrationRotate || req.Op == OpIntegrationRemove
}
