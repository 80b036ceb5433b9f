package envelope

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Version is the envelope format version this package writes and accepts.
const Version = 1

// Limits of the format (docs/envelope.md, "Members").
const (
	NonceSize = 16          // bytes of randomness in a nonce
	SigSize   = sha256.Size // bytes of an HMAC-SHA256 signature
	MaxKidLen = 128         // longest kid, in bytes
	MaxTime   = 1<<53 - 1   // largest iat/exp: the largest integer a JSON number holds exactly in every language
	minKeyLen = 16          // shortest message key Seal and Verify accept
	nonceLen  = 22          // base64url characters of a 16-byte nonce
	sigLen    = 43          // base64url characters of a 32-byte signature
	keyLabel  = "homemq-msg-key-v1\n"
	sigLabel  = "homemq-envelope-v1\n"
)

// Envelope is the wire form of a command:
//
//	{"v":1,"kid":"…","iat":…,"exp":…,"nonce":"…","msg":"…","sig":"…"}
//
// Kid is the jti of the token whose message key signed it, Iat and Exp are
// Unix seconds, Nonce is 16 random bytes and Sig the 32-byte HMAC-SHA256 of
// SigningInput, both base64url without padding, and Msg is the command text.
type Envelope struct {
	V     int    `json:"v"`
	Kid   string `json:"kid"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
	Nonce string `json:"nonce"`
	Msg   string `json:"msg"`
	Sig   string `json:"sig"`
}

// IssuedAt returns Iat as a time.
func (e Envelope) IssuedAt() time.Time { return time.Unix(e.Iat, 0) }

// ExpiresAt returns Exp as a time: the envelope is refused from this instant on.
func (e Envelope) ExpiresAt() time.Time { return time.Unix(e.Exp, 0) }

// MarshalJSON writes the canonical compact form, members in the order of the
// type, strings escaped exactly as JavaScript's JSON.stringify escapes them,
// so Go and JavaScript seal byte-identical envelopes.
func (e Envelope) MarshalJSON() ([]byte, error) {
	return e.appendJSON(make([]byte, 0, 96+len(e.Kid)+len(e.Msg))), nil
}

// DeriveKey returns HMAC-SHA256(master, "homemq-msg-key-v1\n" + jti): the
// message key of the token with that jti. The broker hands it to the client
// with the token (msg_key) and re-derives it to verify, so it stores nothing.
func DeriveKey(master []byte, jti string) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte(keyLabel))
	m.Write([]byte(jti))
	return m.Sum(nil)
}

// EncodeKey returns key as base64url without padding, the form of the token
// API's msg_key.
func EncodeKey(key []byte) string { return base64.RawURLEncoding.EncodeToString(key) }

// DecodeKey parses a msg_key (base64url without padding; padded or standard
// base64 are accepted too, for keys pasted by hand).
func DecodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) < minKeyLen {
				return nil, fmt.Errorf("envelope: message key is %d bytes, want at least %d", len(k), minKeyLen)
			}
			return k, nil
		}
	}
	return nil, fmt.Errorf("envelope: message key is not base64url; use the msg_key that came with the token")
}

// SigningInput returns the bytes that sig is the HMAC-SHA256 of:
//
//	"homemq-envelope-v1\n{topic}\n{kid}\n{iat}\n{exp}\n{nonce}\n{msg}"
//
// with iat and exp in decimal and every string as its UTF-8 bytes.
func SigningInput(topic, kid string, iat, exp int64, nonce, msg string) []byte {
	n := len(sigLabel) + len(topic) + len(kid) + len(nonce) + len(msg) + 2*20 + 5
	return appendSigningInput(make([]byte, 0, n), topic, kid, iat, exp, nonce, msg)
}

func appendSigningInput(b []byte, topic, kid string, iat, exp int64, nonce, msg string) []byte {
	b = append(b, sigLabel...)
	b = append(b, topic...)
	b = append(b, '\n')
	b = append(b, kid...)
	b = append(b, '\n')
	b = strconv.AppendInt(b, iat, 10)
	b = append(b, '\n')
	b = strconv.AppendInt(b, exp, 10)
	b = append(b, '\n')
	b = append(b, nonce...)
	b = append(b, '\n')
	return append(b, msg...)
}

var inputPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// sign returns HMAC-SHA256(key, SigningInput(...)) into sum.
func sign(sum *[SigSize]byte, key []byte, topic, kid string, iat, exp int64, nonce, msg string) {
	bp := inputPool.Get().(*[]byte)
	b := appendSigningInput((*bp)[:0], topic, kid, iat, exp, nonce, msg)
	m := hmac.New(sha256.New, key)
	m.Write(b)
	m.Sum(sum[:0])
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		inputPool.Put(bp)
	}
}

// Seal returns a signed envelope for topic: a fresh random 16-byte nonce,
// iat = now (Unix seconds) and exp = iat + ttl (whole seconds, at least 1).
// key is the token's message key and kid the token's jti.
func Seal(key []byte, topic, kid, msg string, now time.Time, ttl time.Duration) ([]byte, error) {
	if ttl < time.Second {
		return nil, fmt.Errorf("envelope: cannot seal: ttl %v is shorter than one second", ttl)
	}
	var n [NonceSize]byte
	if _, err := rand.Read(n[:]); err != nil {
		return nil, err
	}
	iat := now.Unix()
	return SealNonce(key, topic, kid, msg, base64.RawURLEncoding.EncodeToString(n[:]), iat, iat+int64(ttl/time.Second))
}

// SealNonce is Seal with a given nonce and times, for test vectors and tests.
// It refuses what no receiver would accept whatever its clock: a bad topic,
// kid, nonce or msg, exp not after iat, and times outside [0, MaxTime].
func SealNonce(key []byte, topic, kid, msg, nonce string, iat, exp int64) ([]byte, error) {
	if len(key) < minKeyLen {
		return nil, fmt.Errorf("envelope: cannot seal: message key is %d bytes, want at least %d", len(key), minKeyLen)
	}
	if err := checkTopic(topic); err != nil {
		return nil, fmt.Errorf("envelope: cannot seal: %s", err.Detail)
	}
	e := Envelope{V: Version, Kid: kid, Iat: iat, Exp: exp, Nonce: nonce, Msg: msg, Sig: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
	if err := e.check(); err != nil {
		return nil, fmt.Errorf("envelope: cannot seal: %s", err.Detail)
	}
	if exp <= iat {
		return nil, fmt.Errorf("envelope: cannot seal: exp %d is not after iat %d", exp, iat)
	}
	return sealUnchecked(key, topic, e), nil
}

// sealUnchecked signs e's fields for topic and returns the wire form.
func sealUnchecked(key []byte, topic string, e Envelope) []byte {
	var sum [SigSize]byte
	sign(&sum, key, topic, e.Kid, e.Iat, e.Exp, e.Nonce, e.Msg)
	e.Sig = base64.RawURLEncoding.EncodeToString(sum[:])
	b, _ := e.MarshalJSON()
	return b
}

// appendJSON appends the canonical compact JSON of e.
func (e Envelope) appendJSON(b []byte) []byte {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(e.V), 10)
	b = append(b, `,"kid":`...)
	b = appendString(b, e.Kid)
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, e.Iat, 10)
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, e.Exp, 10)
	b = append(b, `,"nonce":`...)
	b = appendString(b, e.Nonce)
	b = append(b, `,"msg":`...)
	b = appendString(b, e.Msg)
	b = append(b, `,"sig":`...)
	b = appendString(b, e.Sig)
	return append(b, '}')
}

// appendString quotes s as JSON.stringify does: only '"', '\\' and control
// characters below U+0020 are escaped (\b \t \n \f \r short forms, others as
// \u00xx in lower-case hex); invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, "\uFFFD"...)
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\f':
			b = append(b, '\\', 'f')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// check verifies every member's form (not the signature, not the times
// against a clock): what Parse guarantees about a parsed envelope.
func (e *Envelope) check() *Error {
	if e.V != Version {
		return refuse(ReasonVersion, fmt.Sprintf("envelope version %d is not supported; this broker speaks version %d", e.V, Version))
	}
	if err := checkKid(e.Kid); err != nil {
		return err
	}
	if e.Iat < 0 || e.Iat > MaxTime {
		return malformed(`member "iat" must be an integer from 0 to 2^53-1 (Unix seconds)`)
	}
	if e.Exp < 0 || e.Exp > MaxTime {
		return malformed(`member "exp" must be an integer from 0 to 2^53-1 (Unix seconds)`)
	}
	var n [NonceSize]byte
	if !decodeB64(n[:], e.Nonce, nonceLen) {
		return malformed(`member "nonce" must be 16 bytes in base64url without padding (22 characters)`)
	}
	if e.Msg == "" {
		return malformed(`member "msg" is empty; it carries the command`)
	}
	if !utf8.ValidString(e.Msg) {
		return malformed(`member "msg" is not valid UTF-8`)
	}
	var s [SigSize]byte
	if !decodeB64(s[:], e.Sig, sigLen) {
		return malformed(`member "sig" must be 32 bytes in base64url without padding (43 characters)`)
	}
	return nil
}

func malformed(detail string) *Error { return refuse(ReasonMalformed, "malformed envelope: "+detail) }

func checkKid(kid string) *Error {
	if kid == "" || len(kid) > MaxKidLen {
		return malformed(`member "kid" must be 1 to 128 characters: the jti of your token`)
	}
	for i := 0; i < len(kid); i++ {
		if kid[i] < 0x21 || kid[i] > 0x7e {
			return malformed(`member "kid" may hold only printable ASCII without spaces`)
		}
	}
	return nil
}

func checkTopic(topic string) *Error {
	if topic == "" {
		return malformed("the topic is empty")
	}
	for i := 0; i < len(topic); i++ {
		if topic[i] == '\n' {
			return malformed("the topic contains a newline")
		}
	}
	return nil
}

// decodeB64 decodes s, which must be exactly want characters of the base64url
// alphabet whose unused trailing bits are zero, into dst (len(dst) bytes).
// Hand-written because Go's decoder skips CR and LF and allocates here.
func decodeB64(dst []byte, s string, want int) bool {
	if len(s) != want {
		return false
	}
	var acc uint32
	bits, j := 0, 0
	for i := 0; i < len(s); i++ {
		v := b64val[s[i]]
		if v == 0xff {
			return false
		}
		acc = acc<<6 | uint32(v)
		bits += 6
		if bits >= 8 {
			bits -= 8
			if j == len(dst) {
				return false
			}
			dst[j] = byte(acc >> bits)
			j++
			acc &= 1<<bits - 1
		}
	}
	return j == len(dst) && acc == 0
}

var b64val = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()
