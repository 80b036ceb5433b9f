package envelope

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var (
	tKey   = DeriveKey([]byte("0123456789abcdef0123456789abcdef"), "jti-one")
	tKey2  = DeriveKey([]byte("0123456789abcdef0123456789abcdef"), "jti-two")
	tTopic = "homes/h1/agents/pi1/devices/door/cmd"
	tNow   = time.Unix(1767225600, 250e6) // 2026-01-01T00:00:00.25Z
)

func TestSealOpenRoundTrip(t *testing.T) {
	for _, msg := range []string{`{"action":"on"}`, "toggle", "line one\nline two", `quote " backslash \ slash /`,
		"\x00\x01\x1f\x7f", "Grüße 😀 \u2028\u2029", "<script>&amp;</script>", strings.Repeat("x", 10000)} {
		b, err := Seal(tKey, tTopic, "jti-one", msg, tNow, 30*time.Second)
		if err != nil {
			t.Fatalf("Seal(%q): %v", msg, err)
		}
		e, err := Open(tKey, tTopic, "jti-one", b, tNow, DefaultPolicy())
		if err != nil {
			t.Fatalf("Open(Seal(%q)): %v", msg, err)
		}
		if e.Msg != msg || e.Kid != "jti-one" || e.Iat != tNow.Unix() || e.Exp != tNow.Unix()+30 || e.V != Version {
			t.Errorf("Open(Seal(%q)) = %+v", msg, e)
		}
		if !e.ExpiresAt().Equal(time.Unix(tNow.Unix()+30, 0)) || !e.IssuedAt().Equal(time.Unix(tNow.Unix(), 0)) {
			t.Errorf("ExpiresAt %v IssuedAt %v", e.ExpiresAt(), e.IssuedAt())
		}
		var std Envelope
		if err := json.Unmarshal(b, &std); err != nil || std != e {
			t.Errorf("encoding/json reads %+v, %v; Parse read %+v", std, err, e)
		}
	}
}

func TestSealUsesFreshNonces(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		b, err := Seal(tKey, tTopic, "jti-one", "on", tNow, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Parse(b, DefaultPolicy())
		if err != nil {
			t.Fatal(err)
		}
		if seen[e.Nonce] {
			t.Fatalf("nonce %s sealed twice", e.Nonce)
		}
		seen[e.Nonce] = true
	}
}

func TestSealRefusesWhatNoReceiverAccepts(t *testing.T) {
	nonce := EncodeKey(make([]byte, 16))
	cases := []struct {
		name                   string
		key                    []byte
		topic, kid, msg, nonce string
		iat, exp               int64
		want                   string
	}{
		{"short key", tKey[:15], tTopic, "k", "on", nonce, 10, 20, "message key is 15 bytes"},
		{"no key", nil, tTopic, "k", "on", nonce, 10, 20, "message key is 0 bytes"},
		{"empty topic", tKey, "", "k", "on", nonce, 10, 20, "topic is empty"},
		{"newline in topic", tKey, "a\nb", "k", "on", nonce, 10, 20, "newline"},
		{"empty kid", tKey, tTopic, "", "on", nonce, 10, 20, `"kid"`},
		{"kid with space", tKey, tTopic, "a b", "on", nonce, 10, 20, `"kid"`},
		{"kid too long", tKey, tTopic, strings.Repeat("k", 129), "on", nonce, 10, 20, `"kid"`},
		{"empty msg", tKey, tTopic, "k", "", nonce, 10, 20, `"msg" is empty`},
		{"msg not UTF-8", tKey, tTopic, "k", "\xff", nonce, 10, 20, "UTF-8"},
		{"short nonce", tKey, tTopic, "k", "on", nonce[:21], 10, 20, `"nonce"`},
		{"exp = iat", tKey, tTopic, "k", "on", nonce, 10, 10, "not after iat"},
		{"negative iat", tKey, tTopic, "k", "on", nonce, -1, 10, `"iat"`},
		{"exp too large", tKey, tTopic, "k", "on", nonce, 10, MaxTime + 1, `"exp"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := SealNonce(c.key, c.topic, c.kid, c.msg, c.nonce, c.iat, c.exp)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("SealNonce = %s, %v; want an error containing %q", b, err, c.want)
			}
		})
	}
	if _, err := Seal(tKey, tTopic, "k", "on", tNow, 999*time.Millisecond); err == nil {
		t.Error("Seal with a ttl under 1s succeeded")
	}
}

// TestVerifyTimes walks the time checks across their edges, with the
// default policy and with others.
func TestVerifyTimes(t *testing.T) {
	skew := func(d time.Duration) Policy { p := DefaultPolicy(); p.Skew = d; return p }
	lifetime := func(d time.Duration) Policy { p := DefaultPolicy(); p.MaxLifetime = d; return p }
	T := tNow.Unix()
	at := func(sec int64) time.Time { return time.Unix(sec, 0) }
	cases := []struct {
		name     string
		iat, exp int64
		now      time.Time
		p        Policy
		want     Reason
	}{
		{"fresh", T, T + 30, at(T), DefaultPolicy(), ""},
		{"last second", T, T + 30, at(T + 29), DefaultPolicy(), ""},
		{"last nanosecond", T, T + 30, time.Unix(T+29, 999999999), DefaultPolicy(), ""},
		{"expired at exp", T, T + 30, at(T + 30), DefaultPolicy(), ReasonExpired},
		{"expired later", T, T + 30, at(T + 3600), DefaultPolicy(), ReasonExpired},
		{"iat at now+skew", T + 5, T + 35, at(T), DefaultPolicy(), ""},
		{"iat at now+skew, fractional now", T + 5, T + 35, tNow, DefaultPolicy(), ""},
		{"iat past now+skew", T + 6, T + 36, at(T), DefaultPolicy(), ReasonFuture},
		{"zero skew allows none", T + 1, T + 30, at(T), skew(0), ReasonFuture},
		{"zero skew, iat now", T, T + 30, at(T), skew(0), ""},
		{"negative skew allows none", T + 1, T + 30, at(T), skew(-1), ReasonFuture},
		{"larger skew", T + 60, T + 90, at(T), skew(time.Minute), ""},
		{"lifetime at max", T, T + 60, at(T), DefaultPolicy(), ""},
		{"lifetime over max", T, T + 61, at(T), DefaultPolicy(), ReasonLifetime},
		{"zero policy accepts nothing", T, T + 30, at(T), Policy{MaxSize: DefaultMaxSize}, ReasonLifetime},
		{"configured 10m", T, T + 600, at(T), lifetime(10 * time.Minute), ""},
		{"configured 2h caps at 1h: 1h ok", T, T + 3600, at(T), lifetime(2 * time.Hour), ""},
		{"configured 2h caps at 1h: 1h1s refused", T, T + 3601, at(T), lifetime(2 * time.Hour), ReasonLifetime},
		{"exp = iat", T, T, at(T - 1), DefaultPolicy(), ReasonLifetime},
		{"exp < iat", T + 3, T + 2, at(T), DefaultPolicy(), ReasonLifetime},
		{"future beats expired-looking", T + 100, T + 130, at(T), DefaultPolicy(), ReasonFuture},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := Envelope{V: 1, Kid: "jti-one", Iat: c.iat, Exp: c.exp, Nonce: EncodeKey(make([]byte, 16)), Msg: "on"}
			b := sealUnchecked(tKey, tTopic, e)
			_, err := Open(tKey, tTopic, "jti-one", b, c.now, c.p)
			if ReasonOf(err) != c.want {
				t.Errorf("Open = %v, want reason %q", err, c.want)
			}
		})
	}
}

func TestVerifyBindsKeyTopicKidAndContent(t *testing.T) {
	b, err := SealNonce(tKey, tTopic, "jti-one", `{"action":"unlock"}`, EncodeKey(make([]byte, 16)), tNow.Unix(), tNow.Unix()+30)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Parse(b, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	alter := func(f func(*Envelope)) Envelope { c := e; f(&c); return c }
	cases := []struct {
		name  string
		e     Envelope
		key   []byte
		topic string
		kid   string
		want  Reason
	}{
		{"as sealed", e, tKey, tTopic, "jti-one", ""},
		{"other key", e, tKey2, tTopic, "jti-one", ReasonSignature},
		{"no key", e, nil, tTopic, "jti-one", ReasonSignature},
		{"other topic", e, tKey, tTopic + "x", "jti-one", ReasonSignature},
		{"topic with newline", e, tKey, tTopic + "\n", "jti-one", ReasonMalformed},
		{"other kid wanted", e, tKey, tTopic, "jti-two", ReasonKid},
		{"kid changed", alter(func(c *Envelope) { c.Kid = "jti-two" }), tKey, tTopic, "jti-two", ReasonSignature},
		{"msg changed", alter(func(c *Envelope) { c.Msg = `{"action":"lock"}` }), tKey, tTopic, "jti-one", ReasonSignature},
		{"iat changed", alter(func(c *Envelope) { c.Iat-- }), tKey, tTopic, "jti-one", ReasonSignature},
		{"exp changed", alter(func(c *Envelope) { c.Exp++ }), tKey, tTopic, "jti-one", ReasonSignature},
		{"nonce changed", alter(func(c *Envelope) { c.Nonce = EncodeKey(bytes.Repeat([]byte{1}, 16)) }), tKey, tTopic, "jti-one", ReasonSignature},
		{"sig changed", alter(func(c *Envelope) { c.Sig = EncodeKey(make([]byte, 32)) }), tKey, tTopic, "jti-one", ReasonSignature},
		{"hand-built bad nonce", alter(func(c *Envelope) { c.Nonce = "x" }), tKey, tTopic, "jti-one", ReasonMalformed},
		{"hand-built version 2", alter(func(c *Envelope) { c.V = 2 }), tKey, tTopic, "jti-one", ReasonVersion},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.e.Verify(c.key, c.topic, c.kid, tNow, DefaultPolicy())
			if ReasonOf(err) != c.want {
				t.Errorf("Verify = %v, want reason %q", err, c.want)
			}
		})
	}
}

func TestErrorsSayWhatWentWrong(t *testing.T) {
	T := tNow.Unix()
	nonce := EncodeKey(make([]byte, 16))
	sealAt := func(iat, exp int64) []byte {
		return sealUnchecked(tKey, tTopic, Envelope{V: 1, Kid: "jti-one", Iat: iat, Exp: exp, Nonce: nonce, Msg: "on"})
	}
	cases := []struct {
		payload []byte
		now     time.Time
		want    string
	}{
		{sealAt(T-42, T-12), tNow, "envelope expired 12s ago"},
		{sealAt(T-30, T), time.Unix(T, 0), "envelope expired just now"},
		{sealAt(T+20, T+30), tNow, "envelope issued 20s in the future"},
		{sealAt(T, T+120), tNow, "lifetime exp-iat is 2m0s, more than the allowed 1m0s"},
		{[]byte("on"), tNow, "malformed envelope: payload is not a JSON object"},
		{[]byte(`{"v":1}`), tNow, `malformed envelope: member "kid" is missing`},
		{[]byte(`{"v":1,"to":"x"}`), tNow, `unknown member "to"`},
	}
	for _, c := range cases {
		_, err := Open(tKey, tTopic, "jti-one", c.payload, c.now, DefaultPolicy())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%s) = %v, want a message containing %q", c.payload, err, c.want)
		}
	}
}

func TestReasonOf(t *testing.T) {
	if r := ReasonOf(nil); r != "" {
		t.Errorf("ReasonOf(nil) = %q", r)
	}
	if r := ReasonOf(errors.New("x")); r != "" {
		t.Errorf("ReasonOf(plain) = %q", r)
	}
	err := fmt.Errorf("hook: %w", &Error{Reason: ReasonReplay, Detail: "again"})
	if r := ReasonOf(err); r != ReasonReplay {
		t.Errorf("ReasonOf(wrapped) = %q", r)
	}
	if s := (&Error{Reason: ReasonReplay}).Error(); s != "envelope refused: replay" {
		t.Errorf("Error() without detail = %q", s)
	}
}

func TestDeriveKey(t *testing.T) {
	master := []byte("0123456789abcdef0123456789abcdef")
	a, b := DeriveKey(master, "a"), DeriveKey(master, "b")
	if len(a) != 32 || bytes.Equal(a, b) || !bytes.Equal(a, DeriveKey(master, "a")) {
		t.Errorf("DeriveKey: a=%x b=%x", a, b)
	}
	if bytes.Equal(a, DeriveKey([]byte("another master secret, 32 bytes!"), "a")) {
		t.Error("DeriveKey ignores the master secret")
	}
}

func TestEncodeDecodeKey(t *testing.T) {
	s := EncodeKey(tKey)
	if strings.ContainsAny(s, "=+/") || len(s) != 43 {
		t.Errorf("EncodeKey = %q", s)
	}
	for _, in := range []string{s, s + "=", base64.StdEncoding.EncodeToString(tKey)} {
		k, err := DecodeKey(in)
		if err != nil || !bytes.Equal(k, tKey) {
			t.Errorf("DecodeKey(%q) = %x, %v", in, k, err)
		}
	}
	for _, in := range []string{"", "not base64!", EncodeKey(make([]byte, 8))} {
		if _, err := DecodeKey(in); err == nil {
			t.Errorf("DecodeKey(%q) succeeded", in)
		}
	}
}

// TestMarshalJSONIsJSON checks the hand-written encoder against
// encoding/json on every ASCII character and some others.
func TestMarshalJSONIsJSON(t *testing.T) {
	var all strings.Builder
	for c := range 128 {
		all.WriteByte(byte(c))
	}
	all.WriteString("é€😀\u2028\u2029\ufeff")
	e := Envelope{V: 1, Kid: "k", Iat: 1, Exp: 2, Nonce: "n", Msg: all.String(), Sig: "s"}
	b, _ := e.MarshalJSON()
	var got Envelope
	if err := json.Unmarshal(b, &got); err != nil || got != e {
		t.Fatalf("encoding/json reads %s as %+v, %v", b, got, err)
	}
	want := `"\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f !\"#$%&'()*+,-./`
	if !bytes.Contains(b, []byte(want)) {
		t.Errorf("escaping differs from JSON.stringify's: %s", b)
	}
	if got := string(appendString(nil, "a\xffb")); got != "\"a\uFFFDb\"" {
		t.Errorf("invalid UTF-8 encodes as %q", got)
	}
}

func TestDecodeB64MatchesStrictStdlib(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=\n"
	for range 20000 {
		n := []int{22, 43}[r.IntN(2)]
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet)-4*b2int(r.IntN(4) != 0))]
		}
		size := map[int]int{22: 16, 43: 32}[n]
		dst := make([]byte, size)
		ok := decodeB64(dst, string(b), n)
		std, err := base64.RawURLEncoding.Strict().DecodeString(string(b))
		stdOK := err == nil && len(std) == size && !bytes.ContainsAny(b, "\r\n")
		if ok != stdOK || (ok && !bytes.Equal(dst, std)) {
			t.Fatalf("decodeB64(%q) = %v %x; stdlib %v %x", b, ok, dst, stdOK, std)
		}
	}
}

func b2int(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestPolicyValidate: a configured policy out of range is refused with its
// YAML key; the default and the edges of each range are accepted.
func TestPolicyValidate(t *testing.T) {
	with := func(f func(*Policy)) Policy { p := DefaultPolicy(); f(&p); return p }
	cases := []struct {
		name string
		p    Policy
		key  string // "" when valid
	}{
		{"default", DefaultPolicy(), ""},
		{"zero skew", with(func(p *Policy) { p.Skew = 0 }), ""},
		{"skew 1m", with(func(p *Policy) { p.Skew = time.Minute }), ""},
		{"negative skew", with(func(p *Policy) { p.Skew = -time.Second }), "skew"},
		{"skew over 1m", with(func(p *Policy) { p.Skew = time.Minute + 1 }), "skew"},
		{"zero lifetime", with(func(p *Policy) { p.MaxLifetime = 0 }), "max_lifetime"},
		{"lifetime 1h", with(func(p *Policy) { p.MaxLifetime = time.Hour }), ""},
		{"lifetime over 1h", with(func(p *Policy) { p.MaxLifetime = 2 * time.Hour }), "max_lifetime"},
		{"size 256", with(func(p *Policy) { p.MaxSize = 256 }), ""},
		{"size 255", with(func(p *Policy) { p.MaxSize = 255 }), "max_size"},
		{"size over 1 MiB", with(func(p *Policy) { p.MaxSize = 1<<20 + 1 }), "max_size"},
		{"zero policy", Policy{}, "max_lifetime"},
	}
	for _, c := range cases {
		err := c.p.Validate()
		switch {
		case c.key == "" && err != nil:
			t.Errorf("%s: Validate = %v, want nil", c.name, err)
		case c.key != "" && (err == nil || !strings.HasPrefix(err.Error(), c.key+":")):
			t.Errorf("%s: Validate = %v, want an error naming %s", c.name, err, c.key)
		}
	}
}
