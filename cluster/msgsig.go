package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// sigHeader carries the HMAC-SHA256 of what crosses nodes (a message, a
// revocation), under the key the cluster secret derives for "msg", over
// its subject, MQTT attributes (metaHeader; none for a revocation) and
// payload. A node delivers or applies only what checks, so whoever can
// publish on the NATS account without holding the secret cannot put a
// message in front of subscribers or revoke anyone.
const sigHeader = "Homemq-Sig"

// msgSigner signs outgoing messages and checks incoming ones.
type msgSigner struct {
	key     []byte
	log     *slog.Logger
	dropped atomic.Uint64
	logged  atomic.Int64 // unix seconds of the last warning
}

func newMsgSigner(s Secret, log *slog.Logger) *msgSigner {
	return &msgSigner{key: s.Key("msg", 32), log: log}
}

// sum is the HMAC of the message's parts, each length-prefixed so no part
// can lend bytes to another.
func (s *msgSigner) sum(subject, meta string, payload []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	var n [8]byte
	for _, part := range [][]byte{[]byte(subject), []byte(meta), payload} {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		m.Write(n[:])
		m.Write(part)
	}
	return m.Sum(nil)
}

// sign adds msg's signature header; call it after the meta header is set.
func (s *msgSigner) sign(msg *nats.Msg) {
	msg.Header.Set(sigHeader, base64.RawURLEncoding.EncodeToString(s.sum(msg.Subject, msg.Header.Get(metaHeader), msg.Data)))
}

// check reports whether the message was signed with the cluster's key.
// A message that was not is counted and logged (at most every 10 s).
func (s *msgSigner) check(subject string, h nats.Header, payload []byte) bool {
	got, err := base64.RawURLEncoding.DecodeString(h.Get(sigHeader))
	if err == nil && hmac.Equal(got, s.sum(subject, h.Get(metaHeader), payload)) {
		return true
	}
	n := s.dropped.Add(1)
	now := time.Now().Unix()
	if last := s.logged.Load(); now-last >= 10 && s.logged.CompareAndSwap(last, now) {
		s.log.Warn("cluster: dropped a message or revocation not signed with the cluster secret: someone without it publishes on the cluster's NATS account",
			"subject", subject, "dropped", n)
	}
	return false
}

// Forged is the number of messages and revocations this node dropped
// because they were not signed with the cluster secret.
func (h *Hook) Forged() uint64 { return h.n.sig.dropped.Load() }

// sealedSigLen is the length of the signature that starts a sealed value.
const sealedSigLen = 43 // base64url of 32 bytes, unpadded

// seal prefixes a KV value with its signature under the bucket key, so a
// value written without the secret is told apart (open).
func (s *msgSigner) seal(key string, value []byte) []byte {
	sig := base64.RawURLEncoding.EncodeToString(s.sum(key, "", value))
	return append(append([]byte(sig), ' '), value...)
}

// open returns a sealed value without its signature, or false (counted
// and logged as check does) when it was not sealed with the secret.
func (s *msgSigner) open(key string, sealed []byte) ([]byte, bool) {
	h := nats.Header{}
	var value []byte
	if len(sealed) > sealedSigLen && sealed[sealedSigLen] == ' ' {
		h.Set(sigHeader, string(sealed[:sealedSigLen]))
		value = sealed[sealedSigLen+1:]
	}
	if !s.check(key, h, value) {
		return nil, false
	}
	return value, true
}
