package envelope

import (
	"encoding/base64"
	"encoding/binary"
	"runtime"
	"testing"
	"time"
)

func benchPayload(b *testing.B) []byte {
	p, err := SealNonce(tKey, tTopic, "kZ3x8cQp2mVb1nT7yLwEAg", `{"action":"unlock","device":"door"}`, EncodeKey(make([]byte, 16)), tNow.Unix(), tNow.Unix()+30)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func BenchmarkOpen(b *testing.B) {
	p := benchPayload(b)
	pol := DefaultPolicy()
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if _, err := Open(tKey, tTopic, "kZ3x8cQp2mVb1nT7yLwEAg", p, tNow, pol); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	p := benchPayload(b)
	pol := DefaultPolicy()
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if _, err := Parse(p, pol); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenRefused measures the cheapest refusals a flood would cost.
func BenchmarkOpenRefused(b *testing.B) {
	for _, c := range []struct {
		name    string
		payload []byte
		now     time.Time
	}{
		{"garbage", []byte("unlock the door please"), tNow},
		{"expired", benchPayload(b), tNow.Add(time.Hour)},
		{"bad_signature", benchPayload(b), tNow},
	} {
		key := tKey
		if c.name == "bad_signature" {
			key = tKey2
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Open(key, tTopic, "kZ3x8cQp2mVb1nT7yLwEAg", c.payload, c.now, DefaultPolicy()); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}

func BenchmarkSeal(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Seal(tKey, tTopic, "kZ3x8cQp2mVb1nT7yLwEAg", `{"action":"unlock"}`, tNow, 30*time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

// benchNonces returns n distinct nonces, as the broker would see them.
func benchNonces(n int) []string {
	out := make([]string, n)
	var raw [16]byte
	for i := range out {
		binary.LittleEndian.PutUint64(raw[:], uint64(i)*0x9e3779b97f4a7c15)
		binary.LittleEndian.PutUint64(raw[8:], uint64(i))
		out[i] = base64.RawURLEncoding.EncodeToString(raw[:])
	}
	return out
}

// BenchmarkReplayCacheRecord is one Record of a fresh nonce in steady state:
// the clock advances one second every 2048 records, so about 70k entries
// are live and every Record also pays its share of expiring old ones.
func BenchmarkReplayCacheRecord(b *testing.B) {
	nonces := benchNonces(1 << 18) // reused only after 128 s, long after they expired
	c := NewReplayCache(1<<20, DefaultPolicy().Horizon())
	now := tNow
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if i%2048 == 0 {
			now = now.Add(time.Second)
		}
		if err := c.Record("kZ3x8cQp2mVb1nT7yLwEAg", nonces[i&(1<<18-1)], now.Add(30*time.Second), now); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(c.Len()), "entries")
}

// BenchmarkReplayCacheRecordParallel is Record from every core at once.
func BenchmarkReplayCacheRecordParallel(b *testing.B) {
	nonces := benchNonces(1 << 20)
	c := NewReplayCache(1<<21, DefaultPolicy().Horizon())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// Replays and fresh nonces mixed: the cost of the shard lock either way.
			n := nonces[int(time.Now().UnixNano())&(1<<20-1)]
			if err := c.Record("kid", n, tNow.Add(30*time.Second), tNow); err != nil && ReasonOf(err) != ReasonReplay {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReplayCacheMemory fills a cache with 1M live entries and reports
// the heap it holds per entry (bytes/entry). Run with -benchtime=1x.
func BenchmarkReplayCacheMemory(b *testing.B) {
	const n = 1 << 20
	nonces := benchNonces(n)
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c := NewReplayCache(n, DefaultPolicy().Horizon())
		for i, nonce := range nonces {
			// spread over the whole horizon, as steady traffic would
			exp := tNow.Add(time.Second + time.Duration(i%60)*time.Second)
			if err := c.Record("kZ3x8cQp2mVb1nT7yLwEAg", nonce, exp, tNow); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(c.Len()), "bytes/entry")
		runtime.KeepAlive(c)
	}
}
