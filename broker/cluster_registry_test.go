package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"homemq/registry"
)

// noLog is a registry.Replicator for a registry that is never written
// while it follows a log.
type noLog struct{}

func (noLog) Commit(context.Context, uint64, []registry.Change) (uint64, error) {
	return 0, errors.New("not in this test")
}
func (noLog) Last(context.Context) (uint64, error) { return 0, nil }

// TestBrokerWithoutClusterTakesItsRegistryBack: a data folder whose
// registry followed a cluster's log refuses offline writes; a broker
// started on it without a cluster section makes it its own again.
func TestBrokerWithoutClusterTakesItsRegistryBack(t *testing.T) {
	dir := t.TempDir()
	reg, err := registry.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if err := reg.Seed(context.Background(), noLog{}, "log-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.AddHome("h1"); !errors.Is(err, registry.ErrNotReplicated) {
		t.Fatalf("a write on a node's copy without its cluster: %v, want ErrNotReplicated", err)
	}
	b := &Broker{cfg: Config{Data: dir}, Registry: reg, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := b.joinCluster(); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.AddHome("h1"); err != nil {
		t.Fatalf("a write after the broker took the registry back: %v", err)
	}
	if stream, _, _ := reg.LogPosition(); stream != "" {
		t.Fatalf("the registry still follows %q", stream)
	}
}
