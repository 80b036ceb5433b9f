package envelope

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Policy bounds what Parse, Verify and Open accept. It is also the
// envelope section of the broker's YAML configuration (skew, max_lifetime,
// max_size). Every field means what it says: a zero Skew allows no skew,
// and the zero Policy accepts no envelope at all, so start from
// DefaultPolicy and check a configured one with Validate.
type Policy struct {
	Skew        time.Duration `yaml:"skew"`         // allowed clock skew for iat in the future
	MaxLifetime time.Duration `yaml:"max_lifetime"` // max exp-iat; capped at CapMaxLifetime whatever is set
	MaxSize     int           `yaml:"max_size"`     // max payload bytes
}

// Defaults and caps of Policy.
const (
	DefaultSkew        = 5 * time.Second
	DefaultMaxLifetime = 60 * time.Second
	DefaultMaxSize     = 16 << 10
	CapMaxLifetime     = time.Hour // the longest lifetime any policy accepts
	maxSkew            = time.Minute
	minMaxSize         = 256
	capMaxSize         = 1 << 20
)

// DefaultPolicy returns the broker's defaults: 5s skew, 60s lifetime, 16 KiB.
func DefaultPolicy() Policy {
	return Policy{Skew: DefaultSkew, MaxLifetime: DefaultMaxLifetime, MaxSize: DefaultMaxSize}
}

// Validate reports the first field of p that a broker cannot run with,
// named by its YAML key (the caller adds the section, e.g. "envelope.").
func (p Policy) Validate() error {
	switch {
	case p.Skew < 0 || p.Skew > maxSkew:
		return fmt.Errorf("skew: %v is out of range (0 to 1m)", p.Skew)
	case p.MaxLifetime <= 0 || p.MaxLifetime > CapMaxLifetime:
		return fmt.Errorf("max_lifetime: %v is out of range (1s to 1h)", p.MaxLifetime)
	case p.MaxSize < minMaxSize || p.MaxSize > capMaxSize:
		return fmt.Errorf("max_size: %d is out of range (256 to 1048576)", p.MaxSize)
	}
	return nil
}

// capped returns p with its caps applied: MaxLifetime at most
// CapMaxLifetime, and a negative Skew as none. These are bounds, not
// defaults: a zero field stays zero.
func (p Policy) capped() Policy {
	p.Skew = max(p.Skew, 0)
	p.MaxLifetime = min(p.MaxLifetime, CapMaxLifetime)
	return p
}

// Horizon is the longest exp - now an envelope accepted under p can have
// (MaxLifetime + Skew): the horizon to give NewReplayCache.
func (p Policy) Horizon() time.Duration {
	p = p.capped()
	return p.MaxLifetime + p.Skew
}

// Parse checks that payload is a well-formed envelope and returns it. It needs
// no key and no clock. Well-formed means: at most MaxSize bytes of UTF-8 that
// form one JSON object with exactly the seven members of Envelope, each once,
// named exactly so, v/iat/exp integers in [0, 2^53-1], v == Version, kid 1–128
// printable ASCII characters, nonce 16 bytes and sig 32 bytes in base64url
// without padding, msg a non-empty string. Refusals are *Error with
// ReasonMalformed or, for a number v other than 1, ReasonVersion.
func Parse(payload []byte, p Policy) (Envelope, error) {
	if len(payload) > p.MaxSize {
		return Envelope{}, malformed(fmt.Sprintf("payload is %d bytes, more than the limit of %d", len(payload), p.MaxSize))
	}
	if len(payload) == 0 {
		return Envelope{}, malformed("payload is empty; a command must be a signed envelope (see docs/envelope.md)")
	}
	if !utf8.Valid(payload) {
		return Envelope{}, malformed("payload is not valid UTF-8")
	}
	e, err := decode(string(payload))
	if err != nil {
		if v, ok := probeVersion(payload); ok && v != Version {
			return Envelope{}, refuse(ReasonVersion, fmt.Sprintf("envelope version %v is not supported; this broker speaks version %d", v, Version))
		}
		return Envelope{}, err
	}
	if err := e.check(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

// probeVersion reports the member "v" of a JSON object that the strict
// decoder refused, when it is a number: a newer format may look different.
func probeVersion(payload []byte) (float64, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(payload, &m) != nil {
		return 0, false
	}
	raw, ok := m["v"]
	if !ok || len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, false
	}
	v, _ := strconv.ParseFloat(string(raw), 64) // a JSON number; out of range gives ±Inf
	return v, true
}

// Members of the envelope, as bits of the decoder's "seen" mask.
const (
	mV = 1 << iota
	mKid
	mIat
	mExp
	mNonce
	mMsg
	mSig
	mAll = 1<<iota - 1
)

var memberNames = [...]string{"v", "kid", "iat", "exp", "nonce", "msg", "sig"}

// decoder is a strict reader of the one JSON object an envelope is.
type decoder struct {
	s string
	i int
}

func decode(s string) (Envelope, *Error) {
	var e Envelope
	d := decoder{s: s}
	d.ws()
	if !d.eat('{') {
		return e, malformed("payload is not a JSON object; a command must be a signed envelope (see docs/envelope.md)")
	}
	seen := 0
	d.ws()
	if !d.eat('}') {
		for {
			d.ws()
			m, err := d.member()
			if err != nil {
				return e, err
			}
			if seen&m != 0 {
				return e, malformed(fmt.Sprintf("member %q appears twice", nameOf(m)))
			}
			seen |= m
			d.ws()
			if !d.eat(':') {
				return e, d.unexpected("':'")
			}
			d.ws()
			switch m {
			case mV:
				var v int64
				v, err = d.integer("v")
				e.V = int(min(v, 1<<31-1)) // int may be 32 bits (Pi armv7)
			case mIat:
				e.Iat, err = d.integer("iat")
			case mExp:
				e.Exp, err = d.integer("exp")
			case mKid:
				e.Kid, err = d.str("kid")
			case mNonce:
				e.Nonce, err = d.str("nonce")
			case mMsg:
				e.Msg, err = d.str("msg")
			case mSig:
				e.Sig, err = d.str("sig")
			}
			if err != nil {
				return e, err
			}
			d.ws()
			if d.eat(',') {
				continue
			}
			if d.eat('}') {
				break
			}
			return e, d.unexpected("',' or '}'")
		}
	}
	d.ws()
	if d.i != len(d.s) {
		return e, malformed(fmt.Sprintf("unexpected data after the envelope at byte %d", d.i))
	}
	if seen != mAll {
		for bit := 1; bit < mAll; bit <<= 1 {
			if seen&bit == 0 {
				return e, malformed(fmt.Sprintf("member %q is missing", nameOf(bit)))
			}
		}
	}
	return e, nil
}

func nameOf(bit int) string {
	for i, n := range memberNames {
		if bit == 1<<i {
			return n
		}
	}
	return "?"
}

func (d *decoder) ws() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) eat(c byte) bool {
	if d.i < len(d.s) && d.s[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *decoder) unexpected(want string) *Error {
	if d.i >= len(d.s) {
		return malformed("payload ends early, want " + want)
	}
	return malformed(fmt.Sprintf("unexpected %q at byte %d, want %s", d.s[d.i], d.i, want))
}

// member reads a member name, which must be one of memberNames spelled
// exactly (no escapes), and returns its bit.
func (d *decoder) member() (int, *Error) {
	if !d.eat('"') {
		return 0, d.unexpected("a member name")
	}
	start := d.i
	for d.i < len(d.s) && d.s[d.i] >= 'a' && d.s[d.i] <= 'z' {
		d.i++
	}
	name := d.s[start:d.i]
	if !d.eat('"') {
		return 0, malformed(fmt.Sprintf("unknown member at byte %d; an envelope has exactly v, kid, iat, exp, nonce, msg and sig", start-1))
	}
	for i, n := range memberNames {
		if name == n {
			return 1 << i, nil
		}
	}
	return 0, malformed(fmt.Sprintf("unknown member %q; an envelope has exactly v, kid, iat, exp, nonce, msg and sig", name))
}

// integer reads a JSON integer in [0, MaxTime]: digits only, no sign, no
// leading zero, no fraction or exponent.
func (d *decoder) integer(name string) (int64, *Error) {
	bad := func() *Error { return malformed(fmt.Sprintf("member %q must be an integer from 0 to 2^53-1", name)) }
	start := d.i
	for d.i < len(d.s) && d.s[d.i] >= '0' && d.s[d.i] <= '9' {
		d.i++
	}
	digits := d.s[start:d.i]
	if digits == "" || len(digits) > 16 || (len(digits) > 1 && digits[0] == '0') {
		return 0, bad()
	}
	if d.i < len(d.s) && (d.s[d.i] == '.' || d.s[d.i] == 'e' || d.s[d.i] == 'E') {
		return 0, bad()
	}
	var v int64
	for i := 0; i < len(digits); i++ {
		v = v*10 + int64(digits[i]-'0')
	}
	if v > MaxTime {
		return 0, bad()
	}
	return v, nil
}

// str reads a JSON string. The payload is known to be valid UTF-8; control
// characters must be escaped, and \u escapes must not leave a lone surrogate.
func (d *decoder) str(name string) (string, *Error) {
	if !d.eat('"') {
		return "", malformed(fmt.Sprintf("member %q must be a string", name))
	}
	start := d.i
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			d.i++
			return d.s[start : d.i-1], nil
		case c == '\\':
			return d.escaped(name, start)
		case c < 0x20:
			return "", malformed(fmt.Sprintf("member %q holds a raw control character; escape it", name))
		}
		d.i++
	}
	return "", malformed(fmt.Sprintf("member %q: string is not terminated", name))
}

// escaped finishes a string that contains escapes, from its first character.
func (d *decoder) escaped(name string, start int) (string, *Error) {
	// The decoded string is never longer than the raw one: size it once.
	end := d.i
	for end < len(d.s) && d.s[end] != '"' {
		if d.s[end] == '\\' {
			end++
		}
		end++
	}
	var b strings.Builder
	b.Grow(min(end, len(d.s)) - start)
	b.WriteString(d.s[start:d.i])
	bad := func(what string) (string, *Error) {
		return "", malformed(fmt.Sprintf("member %q: %s", name, what))
	}
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			d.i++
			return b.String(), nil
		case c < 0x20:
			return bad("raw control character; escape it")
		case c != '\\':
			b.WriteByte(c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.s) {
			break
		}
		esc := d.s[d.i+1]
		d.i += 2
		switch esc {
		case '"', '\\', '/':
			b.WriteByte(esc)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return bad(`\u must be followed by four hex digits`)
			}
			if utf16.IsSurrogate(r) {
				if r >= 0xdc00 || d.i+1 >= len(d.s) || d.s[d.i] != '\\' || d.s[d.i+1] != 'u' {
					return bad("lone UTF-16 surrogate escape")
				}
				d.i += 2
				lo, ok := d.hex4()
				if !ok || lo < 0xdc00 || lo > 0xdfff {
					return bad("lone UTF-16 surrogate escape")
				}
				r = utf16.DecodeRune(r, lo)
			}
			b.WriteRune(r)
		default:
			return bad(fmt.Sprintf(`invalid escape \%c`, esc))
		}
	}
	return bad("string is not terminated")
}

func (d *decoder) hex4() (rune, bool) {
	if d.i+4 > len(d.s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(d.s[d.i : d.i+4]) {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	d.i += 4
	return r, true
}
