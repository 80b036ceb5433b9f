package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"homemq/audit"
	"homemq/broker"
)

// TestAuditFloodDoesNotEraseHistory: 2,000 unauthenticated CONNECTs, each
// with a 60 KiB client id and a made-up token, against a broker whose audit
// log rotates at 256 KiB keeping one old file. An entry written before the
// flood is still in the log afterwards; the refusals' client ids are
// clipped and marked; and the flood is one full entry plus summary lines
// whose counts add up, with the full entries, to exactly 2,000.
func TestAuditFloodDoesNotEraseHistory(t *testing.T) {
	const attempts, workers = 2000, 4
	b := startBroker(t, func(c *broker.Config) {
		c.Observe.AuditMaxSize = 256 << 10
		c.Observe.AuditKeep = 1
	})
	first := b.mustV5(overTLS, "agent:first", b.mint("agent:first", "h1=agent"))
	_ = first

	longID := strings.Repeat("F", 60<<10)
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				refusedConnect(t, b, longID)
			}
		}()
	}
	for i := 0; i < attempts; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	b.Close() // writes out the queue and the open summaries

	lines := allAuditLines(t, b)
	var firstSeen bool
	var full, counted int
	var summaries []map[string]any
	for _, l := range lines {
		if l["event"] == "connect" && l["outcome"] == audit.OutcomeAllowed && l["client"] == "agent:first" {
			firstSeen = true
		}
		if l["event"] != "connect" || l["outcome"] != audit.OutcomeRefused {
			continue
		}
		if c, ok := l["count"].(float64); ok {
			counted += int(c)
			summaries = append(summaries, l)
			continue
		}
		full++
		c, _ := l["client"].(string)
		if !strings.Contains(c, audit.ClipMark) || len(c) > audit.MaxField+32 {
			t.Errorf("a refusal's client id is not clipped and marked: %d bytes, %.40q…", len(c), c)
		}
	}
	if !firstSeen {
		t.Error("the connect entry written before the flood was rotated away")
	}
	if len(summaries) == 0 {
		t.Fatalf("no summary line for the flood (%d full refusals)", full)
	}
	for _, s := range summaries {
		if s["remote"] != "127.0.0.1" || s["since"] == nil || !strings.Contains(s["detail"].(string), "more refused connect attempts from 127.0.0.1") {
			t.Errorf("summary %v does not say where from and since when", s)
		}
	}
	if full+counted != attempts {
		t.Fatalf("%d full refusals + %d counted in summaries = %d, want exactly %d", full, counted, full+counted, attempts)
	}
	if full > attempts/100 {
		t.Errorf("%d of %d refusals were written in full; a flood should be summarised", full, attempts)
	}
}

// refusedConnect sends one MQTT 5 CONNECT with clientID and a password
// that is no token over plain TCP, and waits for the refusing CONNACK.
func refusedConnect(t *testing.T, b *testBroker, clientID string) {
	conn := b.dial(overPlain)
	defer conn.Close()
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ClientID, c.KeepAlive, c.CleanStart = clientID, 30, true
	c.UsernameFlag, c.Username, c.PasswordFlag, c.Password = true, "u", true, []byte("not-a-token")
	if _, err := cp.WriteTo(conn); err != nil {
		t.Errorf("write CONNECT: %v", err)
		return
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	ack, err := packets.ReadPacket(bufio.NewReader(conn))
	if err != nil {
		t.Errorf("no CONNACK: %v", err)
		return
	}
	if ca, ok := ack.Content.(*packets.Connack); !ok || ca.ReasonCode < 0x80 {
		t.Errorf("a CONNECT with no token got %v", ack)
	}
}

// allAuditLines reads every audit file of b, oldest first.
func allAuditLines(t *testing.T, b *testBroker) []map[string]any {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(b.Data, broker.AuditDir, audit.FileName+"*"))
	sort.Sort(sort.Reverse(sort.StringSlice(files))) // audit.log.2, audit.log.1, audit.log
	var out []map[string]any
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("%s: line %.80q is not JSON: %v", f, sc.Text(), err)
			}
			out = append(out, m)
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		fh.Close()
	}
	return out
}
