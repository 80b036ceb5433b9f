package cluster

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"homemq/atomicfile"
	"homemq/auth"
)

// KeysBucket is the JetStream KV bucket of the cluster's identity: the
// token-signing key set and the message master secret, each sealed.
const KeysBucket = "HOMEMQ_KEYS"

// The keys of KeysBucket.
const (
	signingKeysKey = "signing-keys"
	masterKey      = "msg-master"
)

// rotateAttempts bounds how often a rotation reads the set again after
// another node's rotation landed between its read and its write.
const rotateAttempts = 10

// keysFile is the key set's value in the bucket: signing-keys.json's form.
type keysFile struct {
	Keys []*auth.SigningKey
}

// sealer seals the values of KeysBucket with AES-256-GCM under a key
// derived from the cluster secret, so neither JetStream's files nor
// whoever reads the NATS account sees a private key. A value is a random
// nonce followed by the ciphertext; the bucket key is the additional data,
// so a value moved to another key does not open.
type sealer struct{ aead cipher.AEAD }

func newSealer(s Secret) sealer {
	block, err := aes.NewCipher(s.Key("keys-seal", 32))
	if err != nil {
		panic("cluster: " + err.Error()) // only for a key that is not 32 bytes
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic("cluster: " + err.Error())
	}
	return sealer{aead: aead}
}

// seal returns value sealed for the bucket key name.
func (s sealer) seal(name string, value []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(value)+s.aead.Overhead())
	rand.Read(nonce) // never fails (crypto/rand)
	return s.aead.Seal(nonce, nonce, value, []byte(name))
}

// open returns the value sealed for name, or an error when it was sealed
// under another cluster secret, for another key, or altered.
func (s sealer) open(name string, sealed []byte) ([]byte, error) {
	if len(sealed) < s.aead.NonceSize()+s.aead.Overhead() {
		return nil, fmt.Errorf("cluster: %s/%s is too short to be a sealed value; it was not written by homemq", KeysBucket, name)
	}
	n := s.aead.NonceSize()
	value, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(name))
	if err != nil {
		return nil, fmt.Errorf("cluster: %s/%s does not open with this node's cluster secret: the nodes hold different cluster.secret_file contents, or the value was altered", KeysBucket, name)
	}
	return value, nil
}

// Keys keeps this node's signing keys the same as every other node's: it
// follows the key set in KeysBucket and rotates it there. Made by
// Node.ShareKeys.
type Keys struct {
	n    *Node
	kv   jetstream.KeyValue
	seal sealer
	ks   *auth.KeySet

	mu      sync.Mutex // orders adoptions
	applied uint64     // the bucket revision ks holds
}

// ShareKeys makes this node's signing keys ks and message master secret
// master the cluster's, before the node serves. The first node to start
// stores its own (a create-only put); every other node adopts what the
// bucket holds, writing it to its data folder so it restarts alone with
// it. It returns the cluster's master secret (master itself when this
// node's was stored), and keeps ks following the bucket: a rotation on
// any node (Keys.Rotate) reaches ks within a JetStream round trip.
func (n *Node) ShareKeys(ks *auth.KeySet, master []byte) (*Keys, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	k := &Keys{n: n, seal: newSealer(n.secret), ks: ks}
	var err error
	for {
		if err = k.open(ctx); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("cluster: bucket %s not ready within %v: %w", KeysBucket, StartTimeout, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	if master, err = k.shareMaster(ctx, master); err != nil {
		return nil, nil, err
	}
	if err := k.shareSigningKeys(ctx); err != nil {
		return nil, nil, err
	}
	if err := k.follow(ctx); err != nil {
		return nil, nil, err
	}
	n.keys = k
	return k, master, nil
}

// Keys is the cluster's signing keys as this node follows them; nil until
// ShareKeys.
func (n *Node) Keys() *Keys { return n.keys }

// open makes the bucket, or opens the one another node made.
func (k *Keys) open(ctx context.Context) error {
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	kv, err := k.n.sharedBucket(octx, jetstream.KeyValueConfig{Bucket: KeysBucket, History: 1}, k.n.cfg.replicas())
	k.kv = kv
	return err
}

// shareMaster stores master unless the bucket holds one, and returns the
// cluster's, saved to the data folder when it differs.
func (k *Keys) shareMaster(ctx context.Context, master []byte) ([]byte, error) {
	held, _, err := k.createOrGet(ctx, masterKey, master)
	if err != nil || held == nil {
		return master, err
	}
	if len(held) != len(master) {
		return nil, fmt.Errorf("cluster: %s/%s holds %d bytes, not a master secret of %d", KeysBucket, masterKey, len(held), len(master))
	}
	if bytes.Equal(held, master) {
		return master, nil
	}
	p := filepath.Join(k.n.d.Data, auth.MasterSecretFile)
	k.n.log.Warn("cluster: this node's message master secret differs from the cluster's; it adopts the cluster's, and message keys of tokens it minted before it joined no longer seal commands (sign in again)", "file", p)
	if err := atomicfile.WriteFile(p, held, 0o600); err != nil {
		return nil, fmt.Errorf("cluster: save the cluster's master secret to %s: %w", p, err)
	}
	return held, nil
}

// shareSigningKeys stores this node's key set unless the bucket holds
// one, and adopts the bucket's.
func (k *Keys) shareSigningKeys(ctx context.Context) error {
	local, err := json.Marshal(keysFile{Keys: k.ks.All()})
	if err != nil {
		return err
	}
	held, rev, err := k.createOrGet(ctx, signingKeysKey, local)
	if err != nil {
		return err
	}
	if held == nil {
		k.mu.Lock()
		k.applied = max(k.applied, rev)
		k.mu.Unlock()
		return nil
	}
	if !bytes.Equal(held, local) {
		k.n.log.Warn("cluster: this node's signing keys differ from the cluster's; it adopts the cluster's, and tokens it signed before it joined are refused (sign in again)", "file", filepath.Join(k.n.d.Data, auth.KeysFile))
	}
	return k.adopt(held, rev)
}

// createOrGet puts value at key if the bucket holds none and returns nil
// and the revision; else it returns the value held (opened) and its
// revision.
func (k *Keys) createOrGet(ctx context.Context, key string, value []byte) ([]byte, uint64, error) {
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	rev, err := k.kv.Create(octx, key, k.seal.seal(key, value))
	if err == nil {
		return nil, rev, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, 0, fmt.Errorf("cluster: store %s/%s: %w", KeysBucket, key, err)
	}
	e, err := k.kv.Get(octx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// The create was refused because the key exists, but a KV read
		// may be answered by a replica that has not stored it yet
		// (JetStream's direct get, seconds behind on a loaded machine):
		// ask the stream's leader, which refused the create.
		return k.leaderGet(octx, key)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("cluster: read %s/%s: %w", KeysBucket, key, err)
	}
	held, err := k.seal.open(key, e.Value())
	return held, e.Revision(), err
}

// leaderGet reads key from the leader of the bucket's stream (the
// stream's message-get API, not a replica's direct get), asking again
// while a new leader is elected.
func (k *Keys) leaderGet(ctx context.Context, key string) ([]byte, uint64, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": "$KV." + KeysBucket + "." + key})
	var r struct {
		Message *struct {
			Data []byte `json:"data"`
			Seq  uint64 `json:"seq"`
		} `json:"message"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	var err error
	for ctx.Err() == nil {
		var msg *nats.Msg
		msg, err = k.n.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+KeysBucket, req)
		if err == nil {
			r.Message, r.Error = nil, nil
			if err = json.Unmarshal(msg.Data, &r); err == nil && r.Message != nil {
				held, err := k.seal.open(key, r.Message.Data)
				return held, r.Message.Seq, err
			}
			if r.Error != nil {
				err = errors.New(r.Error.Description)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, 0, fmt.Errorf("cluster: read %s/%s from its leader: %w", KeysBucket, key, errors.Join(err, ctx.Err()))
}

// adopt makes the key set held at revision rev the node's, unless the
// node holds a newer one already.
func (k *Keys) adopt(value []byte, rev uint64) error {
	var f keysFile
	if err := json.Unmarshal(value, &f); err != nil {
		return fmt.Errorf("cluster: %s/%s is not a key set: %w", KeysBucket, signingKeysKey, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if rev <= k.applied {
		return nil
	}
	k.applied = rev
	return k.ks.Adopt(f.Keys)
}

// follow adopts every later change of the key set until the node closes.
func (k *Keys) follow(ctx context.Context) error {
	// the watch lives as long as the node (a watch's context ends its
	// subscription); it stops when the node closes
	w, err := k.kv.Watch(context.Background(), signingKeysKey, jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("cluster: watch %s/%s: %w", KeysBucket, signingKeysKey, err)
	}
	go func() {
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-k.n.done:
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil || e.Operation() != jetstream.KeyValuePut {
					continue
				}
				if err := k.apply(e); err != nil {
					k.n.log.Error("cluster: could not adopt the cluster's signing keys; tokens of a new key are refused here until it does", "revision", e.Revision(), "error", err)
				}
			}
		}
	}()
	// a rotation between shareSigningKeys and the watch's start
	e, err := k.kv.Get(ctx, signingKeysKey)
	if err != nil {
		return fmt.Errorf("cluster: read %s/%s: %w", KeysBucket, signingKeysKey, err)
	}
	return k.apply(e)
}

// apply adopts the key set of bucket entry e.
func (k *Keys) apply(e jetstream.KeyValueEntry) error {
	value, err := k.seal.open(signingKeysKey, e.Value())
	if err != nil {
		return err
	}
	return k.adopt(value, e.Revision())
}

// Rotate adds a new signing key to the cluster's set, retiring the
// current one and dropping keys retired longer ago than keep, and makes
// it this node's at once; the other nodes adopt it from the bucket. The
// write is an update on the revision read: when another node's rotation
// landed first, Rotate reads that set and rotates it, so two rotations at
// once both land, in order.
func (k *Keys) Rotate(keep time.Duration) (auth.RotateResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for range rotateAttempts {
		e, err := k.kv.Get(ctx, signingKeysKey)
		if err != nil {
			return auth.RotateResponse{}, fmt.Errorf("cluster: read %s/%s: %w; rotate again", KeysBucket, signingKeysKey, err)
		}
		value, err := k.seal.open(signingKeysKey, e.Value())
		if err != nil {
			return auth.RotateResponse{}, err
		}
		var f keysFile
		if err := json.Unmarshal(value, &f); err != nil {
			return auth.RotateResponse{}, fmt.Errorf("cluster: %s/%s is not a key set: %w", KeysBucket, signingKeysKey, err)
		}
		var next auth.KeySet // never saved: the bucket holds it until it lands
		if err := next.Adopt(f.Keys); err != nil {
			return auth.RotateResponse{}, err
		}
		resp, err := auth.RotateKeys(&next, keep)
		if err != nil {
			return auth.RotateResponse{}, err
		}
		rotated, err := json.Marshal(keysFile{Keys: next.All()})
		if err != nil {
			return auth.RotateResponse{}, err
		}
		rev, err := k.kv.Update(ctx, signingKeysKey, k.seal.seal(signingKeysKey, rotated), e.Revision())
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue // another rotation landed first: rotate the set it made
		}
		if err != nil {
			return auth.RotateResponse{}, fmt.Errorf("cluster: store the rotated keys in %s: %w; nothing changed, rotate again", KeysBucket, err)
		}
		if err := k.adopt(rotated, rev); err != nil {
			return auth.RotateResponse{}, err
		}
		return resp, nil
	}
	return auth.RotateResponse{}, fmt.Errorf("cluster: %d rotations landed while this one tried; rotate again", rotateAttempts)
}
