package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"homemq/bench"
	"homemq/bench/load"
	"homemq/broker"
)

func TestRunPrintsJSON(t *testing.T) {
	s := bench.NewBare(broker.DefaultConfig().Limits, slog.New(slog.DiscardHandler))
	l := broker.NewTCPListener("mqtt", "127.0.0.1:0", nil, 10*time.Second)
	if err := s.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out bytes.Buffer
	err := dispatch(context.Background(), []string{"run", "--json", "--target", "bare", "--addr", l.Address(),
		"--scenario", "state", "--pubs", "2", "--subs", "2", "--qos", "1", "--warmup", "50ms", "--duration", "200ms"}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var r load.Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("output is not a JSON result: %v\n%s", err, out.String())
	}
	if r.Target != "bare" || r.Scenario != load.State || r.Delivered == 0 || r.Rate <= 0 {
		t.Errorf("result %+v", r)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage"},
		{[]string{"fly"}, "unknown command"},
		{[]string{"run", "--qos", "2"}, "QoS 0 and 1"},
		{[]string{"run", "--scenario", "nope", "--addr", "127.0.0.1:1"}, "unknown scenario"},
		{[]string{"compare", "--homemq", "/nonexistent/homemq"}, "build it first"},
	} {
		err := dispatch(context.Background(), tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}
