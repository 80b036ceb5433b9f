package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"homemq/internal/eventually"
	"homemq/registry"
)

// startJetStream runs one NATS server with JetStream for the test.
func startJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); ns.Shutdown() })
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// registryNode is a node with only what the registry's log needs, over js.
func registryNode(t *testing.T, js jetstream.JetStream, secret Secret, name string, reg *registry.Registry) *Node {
	t.Helper()
	n := &Node{cfg: Config{Replicas: 1}, name: name, secret: secret, js: js, d: Deps{Registry: reg},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.followRegistry(ctx); err != nil {
		t.Fatalf("node %s follows the registry: %v", name, err)
	}
	t.Cleanup(n.registry.stop)
	return n
}

func openRegistry(t *testing.T, homes ...string) (*registry.Registry, string) {
	t.Helper()
	dir := t.TempDir()
	r, err := registry.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	for _, h := range homes {
		if _, err := r.AddHome(h); err != nil {
			t.Fatal(err)
		}
	}
	return r, dir
}

func homeIDs(t *testing.T, r *registry.Registry) []string {
	t.Helper()
	hs, err := r.Homes()
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, h := range hs {
		out = append(out, h.ID)
	}
	return out
}

func hasHome(t *testing.T, r *registry.Registry, id string) bool {
	for _, h := range homeIDs(t, r) {
		if h == id {
			return true
		}
	}
	return false
}

// TestRegistryLogSeedResetResume: the first node seeds the empty log with
// its records; a node with records of its own that joins later is reset
// to the log, its old file kept; writes on either reach the other; a
// restarted node resumes where it was and catches up; an append on a
// stale position is a conflict, also on an empty position (create-only).
func TestRegistryLogSeedResetResume(t *testing.T) {
	js := startJetStream(t)
	secret := NewSecret()
	regA, _ := openRegistry(t, "old-a")
	regB, dirB := openRegistry(t, "old-b")
	a := registryNode(t, js, secret, "a", regA)
	if _, applied, _ := regA.LogPosition(); applied != 1 {
		t.Fatalf("a seeded the log: applied %d, want 1", applied)
	}
	registryNode(t, js, secret, "b", regB)
	if got := homeIDs(t, regB); len(got) != 1 || got[0] != "old-a" {
		t.Fatalf("b's homes after joining: %v, want the log's [old-a]", got)
	}
	if saved, _ := filepath.Glob(filepath.Join(dirB, registry.File+".pre-cluster-*")); len(saved) != 1 {
		t.Fatalf("b's records before joining were not kept: %v", saved)
	}

	if _, err := regB.AddHome("h1"); err != nil {
		t.Fatalf("write on b: %v", err)
	}
	eventually.That(t, 5*time.Second, "a has b's home", func() bool { return hasHome(t, regA, "h1") })
	if _, err := regA.AddHome("h1"); !errors.Is(err, registry.ErrExists) {
		t.Fatalf("the same home on a: %v, want ErrExists", err)
	}

	// a stops; b writes; a restarts on its file and catches up
	a.registry.stop()
	regA.Replicate(nil)
	if _, err := regB.AddHome("h2"); err != nil {
		t.Fatal(err)
	}
	registryNode(t, js, secret, "a", regA)
	if !hasHome(t, regA, "h2") {
		t.Fatalf("a restarted without b's write: %v", homeIDs(t, regA))
	}
	if _, err := regA.AddHome("h3"); err != nil {
		t.Fatalf("write on the restarted a: %v", err)
	}
	eventually.That(t, 5*time.Second, "b has a's home", func() bool { return hasHome(t, regB, "h3") })

	var conflict *registry.ConflictError
	last := regA.Applied()
	for _, after := range []uint64{0, last - 1} {
		_, err := a.registry.Commit(context.Background(), after, []registry.Change{{Bucket: "homes", Key: []byte("x"), Value: []byte("{}")}})
		if !errors.As(err, &conflict) || conflict.Last != last {
			t.Fatalf("append after %d on a log ending at %d: %v, want a conflict naming %d", after, last, err, last)
		}
	}
}

// TestRegistryLogIgnoresForgedEntries: an entry not sealed with the
// cluster's key, or a sealed entry published again, is applied as nothing
// and does not stop the nodes from applying later entries.
func TestRegistryLogIgnoresForgedEntries(t *testing.T) {
	js := startJetStream(t)
	secret := NewSecret()
	regA, _ := openRegistry(t)
	regB, _ := openRegistry(t)
	registryNode(t, js, secret, "a", regA)
	registryNode(t, js, secret, "b", regB)
	if _, err := regA.AddHome("h1"); err != nil {
		t.Fatal(err)
	}
	if err := regA.RemoveHome("h1"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := js.Stream(ctx, RegistryStream)
	if err != nil {
		t.Fatal(err)
	}
	added, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	forger := &registryLog{key: NewSecret().Key("registry", 32)}
	data, mac, _ := forger.seal(changeSet{Node: "x", After: 3, Changes: []registry.Change{{Bucket: "homes", Key: []byte("evil"), Value: []byte(`{"id":"evil"}`)}}})
	for _, m := range []*nats.Msg{
		{Subject: registrySubject, Data: added.Data, Header: nats.Header{macHeader: added.Header[macHeader]}}, // h1 again: a replay
		{Subject: registrySubject, Data: data, Header: nats.Header{macHeader: []string{mac}}},                 // another key
	} {
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := regA.AddHome("h2"); err != nil { // on top of the forged entries
		t.Fatalf("a write after forged entries: %v", err)
	}
	eventually.That(t, 5*time.Second, "b applies the entry after the forged ones", func() bool { return regB.Applied() == 5 })
	for _, r := range []*registry.Registry{regA, regB} {
		if got := homeIDs(t, r); len(got) != 1 || got[0] != "h2" {
			t.Fatalf("homes: %v, want [h2] (neither the replay nor the forgery applied)", got)
		}
	}
}
