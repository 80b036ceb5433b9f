package envelope

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"
)

// seedVectors adds every payload of testdata/vectors.json to f's corpus.
func seedVectors(f *testing.F, add func(payload []byte, now int64)) {
	b, err := os.ReadFile(vectorsFile)
	if err != nil {
		f.Fatal(err)
	}
	var vf vectorFile
	if err := json.Unmarshal(b, &vf); err != nil {
		f.Fatal(err)
	}
	for _, v := range vf.Valid {
		add([]byte(v.Envelope), v.Now)
		for _, p := range v.Equivalent {
			add([]byte(p), v.Now)
		}
	}
	for _, v := range vf.Invalid {
		p := []byte(v.Payload)
		if v.PayloadB64 != "" {
			p, _ = base64.StdEncoding.DecodeString(v.PayloadB64)
		}
		add(p, v.Now)
	}
}

// sameAsEncodingJSON fails t unless the standard decoder reads payload as e.
func sameAsEncodingJSON(t *testing.T, payload []byte, e Envelope) {
	var std Envelope
	if err := json.Unmarshal(payload, &std); err != nil || std != e {
		t.Fatalf("Parse accepted %q as %+v; encoding/json reads %+v, %v", payload, e, std, err)
	}
}

// FuzzOpen: Open never panics, and it accepts a payload only if its fields,
// sealed again by SealNonce with the same key, topic and kid, give the very
// same envelope, signature included: nothing Seal did not make gets through.
func FuzzOpen(f *testing.F) {
	key := DeriveKey(vMaster, vJti)
	seedVectors(f, func(p []byte, now int64) { f.Add(p, now) })
	f.Fuzz(func(t *testing.T, payload []byte, now int64) {
		if now < 0 || now > MaxTime {
			now = vIat
		}
		e, err := Open(key, vTopic, vJti, payload, time.Unix(now, 0), DefaultPolicy())
		if err != nil {
			if ReasonOf(err) == "" || e != (Envelope{}) {
				t.Fatalf("Open refused with %v (%T) and returned %+v", err, err, e)
			}
			return
		}
		again, err := SealNonce(key, vTopic, vJti, e.Msg, e.Nonce, e.Iat, e.Exp)
		if err != nil {
			t.Fatalf("Open accepted %+v but SealNonce refuses its fields: %v", e, err)
		}
		e2, err := Parse(again, DefaultPolicy())
		if err != nil || e2 != e {
			t.Fatalf("Open accepted %q as %+v; sealing its fields gives %s", payload, e, again)
		}
		sameAsEncodingJSON(t, payload, e)
	})
}

// FuzzParse: Parse never panics; what it accepts passes the member checks,
// reads the same with encoding/json, and survives MarshalJSON + Parse.
func FuzzParse(f *testing.F) {
	seedVectors(f, func(p []byte, _ int64) { f.Add(p) })
	f.Add([]byte(`{"v":1,"kid":"k","iat":0,"exp":9007199254740991,"nonce":"AAAAAAAAAAAAAAAAAAAAAA","msg":"\ud83d\ude00\u0000\/","sig":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		e, err := Parse(payload, DefaultPolicy())
		if err != nil {
			if r := ReasonOf(err); r != ReasonMalformed && r != ReasonVersion {
				t.Fatalf("Parse refused with reason %q: %v", r, err)
			}
			return
		}
		if err := e.check(); err != nil {
			t.Fatalf("Parse accepted %+v, which fails check: %v", e, err)
		}
		sameAsEncodingJSON(t, payload, e)
		b, _ := e.MarshalJSON()
		e2, err := Parse(b, DefaultPolicy())
		if err != nil || e2 != e {
			t.Fatalf("MarshalJSON(%+v) = %s parses as %+v, %v", e, b, e2, err)
		}
	})
}

func TestVectorKeyIsTheFuzzKey(t *testing.T) {
	if hex.EncodeToString(DeriveKey(vMaster, vJti)) != "2461e8783d9b34e07515adfb6466ca975594f1aa9619d0174b5d5fed5f12ffad" {
		t.Fatal("the vector key changed; regenerate vectors and the fuzz corpus")
	}
}
