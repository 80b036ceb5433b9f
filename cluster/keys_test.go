package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"homemq/auth"
	"homemq/internal/eventually"
)

func TestSealerOpensOnlyWhatItSealed(t *testing.T) {
	secret := NewSecret()
	s := newSealer(secret)
	value := []byte(`{"Keys":[]}`)
	sealed := s.seal(signingKeysKey, value)
	if bytes.Contains(sealed, value) {
		t.Fatal("the sealed value shows the plain text")
	}
	if again := s.seal(signingKeysKey, value); bytes.Equal(again, sealed) {
		t.Fatal("two seals of one value are equal: the nonce is not random")
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	tests := []struct {
		name    string
		sealer  sealer
		key     string
		sealed  []byte
		wantErr string
	}{
		{"as sealed", s, signingKeysKey, sealed, ""},
		{"same secret read elsewhere", newSealer(secret), signingKeysKey, sealed, ""},
		{"tampered", s, signingKeysKey, tampered, "does not open with this node's cluster secret"},
		{"other secret", newSealer(NewSecret()), signingKeysKey, sealed, "the nodes hold different cluster.secret_file contents"},
		{"moved to another key", s, masterKey, sealed, "HOMEMQ_KEYS/msg-master does not open"},
		{"truncated", s, signingKeysKey, sealed[:10], "too short to be a sealed value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.sealer.open(tt.key, tt.sealed)
			if tt.wantErr == "" {
				if err != nil || !bytes.Equal(got, value) {
					t.Fatalf("open = %q, %v; want %q", got, err, value)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("open = %q, %v; want an error saying %q", got, err, tt.wantErr)
			}
		})
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testNodes returns n nodes that share one JetStream (a single embedded
// server, replicas 1) and one cluster secret: enough for the keys bucket,
// without MQTT. logs[i] is node i's log.
func testNodes(t *testing.T, n int) (nodes []*Node, logs []syncBuffer) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	secret := NewSecret()
	nodes, logs = make([]*Node, n), make([]syncBuffer, n)
	for i := range nodes {
		nc, err := nats.Connect("", nats.InProcessServer(ns))
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		node := &Node{cfg: Config{Replicas: 1}, name: string(rune('a' + i)), secret: secret, d: Deps{Data: t.TempDir()}, log: slog.New(slog.NewTextHandler(&logs[i], nil)), nc: nc, js: js, done: make(chan struct{})}
		t.Cleanup(node.Close)
		nodes[i] = node
	}
	return nodes, logs
}

func TestNodesShareKeysAndRotateConcurrently(t *testing.T) {
	nodes, logs := testNodes(t, 3)
	restart := nodes[2] // node 0 restarted later
	restart.d.Data = nodes[0].d.Data
	nodes = nodes[:2]
	sets := make([]*auth.KeySet, len(nodes))
	masters := make([][]byte, len(nodes))
	for i, n := range nodes {
		ks, err := auth.LoadOrCreateKeys(n.d.Data)
		if err != nil {
			t.Fatal(err)
		}
		local, err := auth.LoadOrCreateMasterSecret(n.d.Data)
		if err != nil {
			t.Fatal(err)
		}
		_, master, err := n.ShareKeys(ks, local)
		if err != nil {
			t.Fatal(err)
		}
		sets[i], masters[i] = ks, master
	}
	if !bytes.Equal(masters[0], masters[1]) {
		t.Fatal("the second node kept its own master secret")
	}
	if saved, _ := os.ReadFile(filepath.Join(nodes[1].d.Data, auth.MasterSecretFile)); !bytes.Equal(saved, masters[0]) {
		t.Fatal("the second node did not save the cluster's master secret")
	}
	if !bytes.Equal(sets[0].JWKS(), sets[1].JWKS()) {
		t.Fatal("the second node kept its own signing keys")
	}
	if l := logs[0].String(); strings.Contains(l, "WARN") {
		t.Fatalf("the first node warned:\n%s", l)
	}
	for _, want := range []string{"master secret differs from the cluster's", "signing keys differ from the cluster's"} {
		if l := logs[1].String(); !strings.Contains(l, want) {
			t.Fatalf("the second node's log does not say %q:\n%s", want, l)
		}
	}
	first := sets[0].Current().Kid

	// both nodes rotate at once: both rotations land, one after the other
	kids := make([]string, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			resp, err := n.Keys().Rotate(time.Hour)
			kids[i], errs[i] = resp.Kid, err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []string{first, kids[0], kids[1]}
	eventually.That(t, 5*time.Second, "both nodes hold both rotations", func() bool {
		for _, ks := range sets {
			var got []string
			for _, k := range ks.All() {
				got = append(got, k.Kid)
			}
			slices.Sort(got)
			w := slices.Sorted(slices.Values(want))
			if !slices.Equal(got, w) {
				return false
			}
		}
		return sets[0].Current().Kid == sets[1].Current().Kid
	})

	// the first node restarts with its files: they are the cluster's
	reread, err := auth.LoadOrCreateKeys(restart.d.Data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(reread.JWKS(), sets[1].JWKS()) {
		t.Fatal("the first node's file is behind the cluster's set")
	}
	local, err := auth.LoadOrCreateMasterSecret(restart.d.Data)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := restart.ShareKeys(reread, local); err != nil {
		t.Fatal(err)
	}
	if l := logs[2].String(); strings.Contains(l, "WARN") {
		t.Fatalf("a node restarted with the cluster's files warned:\n%s", l)
	}
}

// TestLeaderGetReadsWhatCreateRefused: when a create is refused because
// the key exists, the value is read from the bucket stream's leader (what
// a lagging replica's direct get may not have yet), opened, with its
// revision.
func TestLeaderGetReadsWhatCreateRefused(t *testing.T) {
	n := jetStream(t)("a")
	n.secret = NewSecret()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := n.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: KeysBucket, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	k := &Keys{n: n, kv: kv, seal: newSealer(n.secret)}
	rev, err := kv.Create(ctx, signingKeysKey, k.seal.seal(signingKeysKey, []byte("held")))
	if err != nil {
		t.Fatal(err)
	}
	held, got, err := k.leaderGet(ctx, signingKeysKey)
	if err != nil || string(held) != "held" || got != rev {
		t.Fatalf("leaderGet = %q at %d, %v; want %q at %d", held, got, err, "held", rev)
	}
}
