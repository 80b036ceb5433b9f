package registry

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Invites and sign-ins. An admin's invite is a one-time secret, valid for
// minutes, that makes its holder a member of a home. Redeemed (once), it
// becomes a sign-in: a long-lived secret bound to the one device that
// redeemed it, which that device trades for short-lived tokens. Only
// hashes of both secrets are stored. Removing a sign-in stops its
// device's next refresh.

// Limits of invites.
const (
	DefaultInviteTTL = 15 * time.Minute
	MaxInviteTTL     = 24 * time.Hour
	maxDeviceLabel   = 80
)

var (
	bucketInvites = []byte("invites") // key: hex sha256 of the secret
	bucketSignIns = []byte("signins") // key: sign-in id
)

// Invite is a pending invitation to a home.
type Invite struct {
	Home    string    `json:"home"`
	Role    string    `json:"role"`
	User    string    `json:"user"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

// SignIn is one device's lasting sign-in of a user.
type SignIn struct {
	ID       string    `json:"id"`
	User     string    `json:"user"`
	Device   string    `json:"device"` // what the device said it is (its browser)
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used"`
}

type signInRecord struct {
	SignIn
	Hash []byte `json:"hash"`
}

func secret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func hashOf(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// AddInvite makes a one-time invite to home with role for user (empty: a
// new user:guest-… is made up) that expires after ttl (0: 15 minutes, at
// most 24 hours). It returns the invite and its secret, shown once.
func (r *Registry) AddInvite(home, role, user string, ttl time.Duration) (Invite, string, error) {
	if err := memberRole(role); err != nil {
		return Invite{}, "", err
	}
	if ttl == 0 {
		ttl = DefaultInviteTTL
	}
	if ttl < time.Minute || ttl > MaxInviteTTL {
		return Invite{}, "", errorf(ErrInvalid, "an invite lasts from 1m to %v, not %v", MaxInviteTTL, ttl)
	}
	if user == "" {
		b := make([]byte, 4)
		if _, err := rand.Read(b); err != nil {
			return Invite{}, "", err
		}
		user = "user:guest-" + hex.EncodeToString(b)
	}
	u, err := UserID(user)
	if err != nil {
		return Invite{}, "", err
	}
	sec, err := secret()
	if err != nil {
		return Invite{}, "", err
	}
	now := r.now().UTC().Truncate(time.Second)
	inv := Invite{Home: home, Role: role, User: u, Created: now, Expires: now.Add(ttl)}
	err = r.update(func(tx *wtx) error {
		if err := homeExists(tx.Tx, home); err != nil {
			return err
		}
		// forget expired invites on the way
		var expired [][]byte
		_ = tx.Bucket(bucketInvites).ForEach(func(k, v []byte) error {
			var old Invite
			if json.Unmarshal(v, &old) != nil || !now.Before(old.Expires) {
				expired = append(expired, k)
			}
			return nil
		})
		for _, k := range expired {
			if err := tx.del(bucketInvites, k); err != nil {
				return err
			}
		}
		return tx.putJSON(bucketInvites, hex.EncodeToString(hashOf(sec)), inv)
	})
	if err != nil {
		return Invite{}, "", err
	}
	return inv, sec, nil
}

// RedeemInvite uses an invite, once: its user becomes a member of its home
// with its role (an existing membership is kept as it is), and a sign-in is
// made for device. It returns the sign-in and its token, id.secret, which
// only that device keeps. An unknown, used or expired invite is ErrDenied.
func (r *Registry) RedeemInvite(invite, device string) (SignIn, string, error) {
	sec, err := secret()
	if err != nil {
		return SignIn{}, "", err
	}
	idb := make([]byte, 8)
	if _, err := rand.Read(idb); err != nil {
		return SignIn{}, "", err
	}
	if len(device) > maxDeviceLabel {
		device = device[:maxDeviceLabel]
	}
	now := r.now().UTC().Truncate(time.Second)
	rec := signInRecord{SignIn: SignIn{ID: hex.EncodeToString(idb), Device: device, Created: now, LastUsed: now}, Hash: hashOf(sec)}
	err = r.update(func(tx *wtx) error {
		b := tx.Bucket(bucketInvites)
		key := []byte(hex.EncodeToString(hashOf(invite)))
		var v []byte
		if b != nil {
			v = b.Get(key)
		}
		if v == nil {
			return errorf(ErrDenied, "this invite is unknown or was used already; ask the home's admin for a new one")
		}
		var inv Invite
		if err := json.Unmarshal(v, &inv); err != nil {
			return err
		}
		if !now.Before(inv.Expires) { // AddInvite sweeps it away
			return errorf(ErrDenied, "this invite expired at %s; ask the home's admin for a new one", inv.Expires.Format(time.RFC3339))
		}
		if err := tx.del(bucketInvites, key); err != nil { // once
			return err
		}
		if err := homeExists(tx.Tx, inv.Home); err != nil {
			return err
		}
		m := tx.Bucket(bucketMembers)
		if m.Get(memberKey(inv.User, inv.Home)) == nil {
			if err := tx.put(bucketMembers, memberKey(inv.User, inv.Home), []byte(inv.Role)); err != nil {
				return err
			}
		}
		rec.User = inv.User
		return tx.putJSON(bucketSignIns, rec.ID, rec)
	})
	if err != nil {
		return SignIn{}, "", err
	}
	return rec.SignIn, rec.ID + "." + sec, nil
}

// CheckSignIn returns the sign-in of a token from RedeemInvite, and notes
// its use. A removed sign-in or a wrong secret is ErrDenied.
func (r *Registry) CheckSignIn(token string) (SignIn, error) {
	id, sec, _ := strings.Cut(token, ".")
	var rec signInRecord
	err := r.update(func(tx *wtx) error {
		b := tx.Bucket(bucketSignIns)
		var v []byte
		if b != nil && id != "" {
			v = b.Get([]byte(id))
		}
		if v == nil || json.Unmarshal(v, &rec) != nil || subtle.ConstantTimeCompare(rec.Hash, hashOf(sec)) != 1 {
			return errorf(ErrDenied, "this device's sign-in is not valid any more (removed by an admin?); sign in again")
		}
		rec.LastUsed = r.now().UTC().Truncate(time.Second)
		return tx.putJSON(bucketSignIns, id, rec)
	})
	return rec.SignIn, err
}

// SignIns lists the sign-ins of user, or of everyone when user is "".
func (r *Registry) SignIns(user string) ([]SignIn, error) {
	var out []SignIn
	err := r.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSignIns)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var rec signInRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			if user == "" || rec.User == user {
				out = append(out, rec.SignIn)
			}
			return nil
		})
	})
	return out, err
}

// RemoveSignInsOf deletes every sign-in of user (when the user is revoked)
// and returns how many there were.
func (r *Registry) RemoveSignInsOf(user string) (int, error) {
	n := 0
	err := r.update(func(tx *wtx) error {
		b := tx.Bucket(bucketSignIns)
		if b == nil {
			return nil
		}
		var gone [][]byte
		_ = b.ForEach(func(k, v []byte) error {
			var rec signInRecord
			if json.Unmarshal(v, &rec) == nil && rec.User == user {
				gone = append(gone, k)
			}
			return nil
		})
		for _, k := range gone {
			if err := tx.del(bucketSignIns, k); err != nil {
				return err
			}
		}
		n = len(gone)
		return nil
	})
	return n, err
}

// RemoveSignIn deletes a sign-in: its device can no longer get tokens.
func (r *Registry) RemoveSignIn(id string) error {
	return r.update(func(tx *wtx) error {
		b := tx.Bucket(bucketSignIns)
		if b == nil || b.Get([]byte(id)) == nil {
			return errorf(ErrNotFound, "no sign-in %q; list them with: homemq member signins", id)
		}
		return tx.del(bucketSignIns, []byte(id))
	})
}

// doInvites runs the invite and sign-in operations of Do.
func (r *Registry) doInvites(req Request) (Response, error) {
	var resp Response
	var err error
	switch req.Op {
	case OpInviteAdd:
		var inv Invite
		inv, resp.Credential, err = r.AddInvite(req.Home, req.Role, req.User, req.TTL)
		resp.Invite = &inv
	case OpSignInList:
		user := req.User
		if user != "" {
			if user, err = UserID(user); err != nil {
				return Response{}, err
			}
		}
		resp.SignIns, err = r.SignIns(user)
	case OpSignInRemove:
		err = r.RemoveSignIn(req.ID)
	}
	return resp, err
}
