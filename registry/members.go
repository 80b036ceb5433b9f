package registry

import (
	"bytes"
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"

	"homemq/auth"
	"homemq/topics"
)

// Membership is one user's role in one home.
type Membership struct {
	User string `json:"user"` // user:{id}
	Home string `json:"home"`
	Role string `json:"role"`
}

// UserID normalises a user id: "alice" becomes "user:alice"; anything that
// is not a valid user subject is an error.
func UserID(u string) (string, error) {
	if !strings.Contains(u, ":") {
		u = auth.KindUser + ":" + u
	}
	if !strings.HasPrefix(u, auth.KindUser+":") {
		return "", errorf(ErrInvalid, "user %q: memberships are for users (user:{id}); agents are added with homemq agent add", u)
	}
	if err := auth.ValidSubject(u); err != nil {
		return "", errorf(ErrInvalid, "user %q is invalid: %v", u, err)
	}
	return u, nil
}

// memberRole checks a role a user may hold.
func memberRole(role string) error {
	switch topics.Role(role) {
	case topics.Admin, topics.Member, topics.Viewer:
		return nil
	}
	return errorf(ErrInvalid, "role %q is not one of admin, member, viewer", role)
}

func memberKey(user, home string) []byte { return []byte(user + "\x00" + home) }

func splitMemberKey(k []byte) (user, home string) {
	u, h, _ := bytes.Cut(k, []byte{0})
	return string(u), string(h)
}

// AddMember gives user the role in home. An existing membership is refused:
// remove it first to change the role.
func (r *Registry) AddMember(home, user, role string) (Membership, error) {
	u, err := UserID(user)
	if err != nil {
		return Membership{}, err
	}
	if err := memberRole(role); err != nil {
		return Membership{}, err
	}
	m := Membership{User: u, Home: home, Role: role}
	err = r.update(func(tx *wtx) error {
		if err := homeExists(tx.Tx, home); err != nil {
			return err
		}
		b := tx.Bucket(bucketMembers)
		if old := b.Get(memberKey(u, home)); old != nil {
			return errorf(ErrExists, "%s is already %s of home %q; remove the membership first to change the role", u, old, home)
		}
		return tx.put(bucketMembers, memberKey(u, home), []byte(role))
	})
	return m, err
}

// RemoveMember takes user out of home.
func (r *Registry) RemoveMember(home, user string) error {
	u, err := UserID(user)
	if err != nil {
		return err
	}
	return r.update(func(tx *wtx) error {
		if err := homeExists(tx.Tx, home); err != nil {
			return err
		}
		b := tx.Bucket(bucketMembers)
		if b.Get(memberKey(u, home)) == nil {
			return errorf(ErrNotFound, "%s is not a member of home %q", u, home)
		}
		return tx.del(bucketMembers, memberKey(u, home))
	})
}

// Memberships returns the homes user belongs to and the role in each (an
// empty map for a user with none). It reads one key range, no scan.
func (r *Registry) Memberships(user string) (map[string]string, error) {
	out := map[string]string{}
	u, err := UserID(user)
	if err != nil {
		return out, err
	}
	prefix := []byte(u + "\x00")
	err = r.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMembers).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			_, home := splitMemberKey(k)
			out[home] = string(v)
		}
		return nil
	})
	return out, err
}

// Members lists the memberships of home ("" for every home), by user.
func (r *Registry) Members(home string) ([]Membership, error) {
	out := []Membership{}
	err := r.db.View(func(tx *bolt.Tx) error {
		if home != "" {
			if err := homeExists(tx, home); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMembers).ForEach(func(k, v []byte) error {
			u, h := splitMemberKey(k)
			if home == "" || h == home {
				out = append(out, Membership{User: u, Home: h, Role: string(v)})
			}
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Home != out[j].Home {
			return out[i].Home < out[j].Home
		}
		return out[i].User < out[j].User
	})
	return out, err
}
