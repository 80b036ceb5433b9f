package compare

import (
	"path/filepath"
	"reflect"
	"testing"

	"homemq/bench"
	"homemq/broker"
)

// TestHomemqConfigIsForLoad: the YAML the comparison runs homemq with
// carries every limit bench.ForLoad raises, so no flood limit or
// per-identity quota refuses the load (a replay quota left at its default
// once refused the signed-command scenario).
func TestHomemqConfigIsForLoad(t *testing.T) {
	work := t.TempDir()
	e := &env{cfg: Config{Work: work}, data: filepath.Join(work, "homemq-data")}
	file, err := e.homemqConfig(&server{tls: "127.0.0.1:1", plain: "127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := broker.LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	want := bench.ForLoad(broker.DefaultConfig())
	if !reflect.DeepEqual(got.Limits, want.Limits) {
		t.Errorf("limits differ from bench.ForLoad:\n got %+v\nwant %+v", got.Limits, want.Limits)
	}
	if !reflect.DeepEqual(got.Envelope, want.Envelope) {
		t.Errorf("envelope differs from bench.ForLoad:\n got %+v\nwant %+v", got.Envelope, want.Envelope)
	}
}
