package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// ParseMessages never loses or invents a byte: the records, each followed
// by a separator, and then the rest, are the input; no record holds a
// separator or exceeds the limit.
func FuzzParseMessages(f *testing.F) {
	f.Add([]byte("{}\x1e"), 16)
	f.Add([]byte("{\"type\":6}\x1e{\"type\":1,\"target\":\"x\",\"arguments\":[]}\x1e{\"ty"), 64)
	f.Add([]byte("\x1e\x1e\x1e"), 1)
	f.Add([]byte("0123456789\x1e"), 4)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		if max < 0 || max > 1<<20 {
			return
		}
		recs, rest, err := ParseMessages(data, max)
		var rebuilt []byte
		for _, r := range recs {
			if bytes.IndexByte(r, RecordSeparator) >= 0 || len(r) > max {
				t.Fatalf("record %q holds a separator or exceeds %d", r, max)
			}
			rebuilt = AppendRecord(rebuilt, r)
		}
		if err != nil {
			if !errors.Is(err, ErrMessageTooLarge) || rest != nil {
				t.Fatalf("error %v with rest %q", err, rest)
			}
			if !bytes.HasPrefix(data, rebuilt) {
				t.Fatalf("records before the error are not a prefix of the input")
			}
			return
		}
		if bytes.IndexByte(rest, RecordSeparator) >= 0 || len(rest) > max {
			t.Fatalf("rest %q holds a separator or exceeds %d", rest, max)
		}
		if !bytes.Equal(append(rebuilt, rest...), data) {
			t.Fatalf("records %q + rest %q != input %q", recs, rest, data)
		}
	})
}

// ParseMessage never panics; what it accepts is one JSON object whose
// required properties have their types, and a message the server would
// write back parses to the same thing.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":1,"invocationId":"1","target":"SendCommand","arguments":["h1","pi","lamp","{}"]}`,
		`{"type":1,"target":"Subscribe","arguments":["h1"],"streamIds":[],"headers":{"a":"b"}}`,
		`{"type":2,"invocationId":"1","item":null}`,
		`{"type":3,"invocationId":"1","result":{"ok":true}}`,
		`{"type":3,"invocationId":"1","error":"x"}`,
		`{"type":4,"invocationId":"1","target":"X","arguments":[]}`,
		`{"type":5,"invocationId":"1"}`,
		`{"type":6}`,
		`{"type":7,"error":"bye","allowReconnect":true}`,
		`{"type":8,"sequenceId":3}`,
		`{"type":9,"sequenceId":-1}`,
		`{"type":1e3}`,
		`{"type":1,"type":3}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, record []byte) {
		m, err := ParseMessage(record)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is not a protocol error", err)
			}
			return
		}
		if !json.Valid(record) || bytes.TrimSpace(record)[0] != '{' {
			t.Fatalf("accepted %q, which is not a JSON object", record)
		}
		if len(m.InvocationID) > MaxInvocationIDLen {
			t.Fatalf("accepted an invocation id of %d bytes", len(m.InvocationID))
		}
		switch m.Type {
		case TypeInvocation, TypeStreamInvocation:
			if m.Arguments == nil {
				t.Fatal("invocation without arguments accepted")
			}
			if m.Type == TypeStreamInvocation && !m.HasInvocationID {
				t.Fatal("stream invocation without id accepted")
			}
		case TypeStreamItem, TypeCompletion, TypeCancelInvocation:
			if !m.HasInvocationID {
				t.Fatalf("type %d without invocation id accepted", m.Type)
			}
			if m.Type == TypeCompletion && m.HasError && m.Result != nil {
				t.Fatal("completion with result and error accepted")
			}
		}
		var back []byte
		switch {
		case m.Type == TypeClose:
			back = CloseRecord(m.Error, m.AllowReconnect)
		case m.Type == TypeCompletion && m.HasError:
			back = CompletionErrorRecord(m.InvocationID, m.Error)
		default:
			return
		}
		m2, err := ParseMessage(back[:len(back)-1])
		if err != nil || m2.Error != m.Error || m2.AllowReconnect != m.AllowReconnect || m2.InvocationID != m.InvocationID {
			t.Fatalf("%q written back as %q parses to %+v, %v", record, back, m2, err)
		}
	})
}

func FuzzParseHandshake(f *testing.F) {
	f.Add([]byte(`{"protocol":"json","version":1}`))
	f.Add([]byte(`{"protocol":"messagepack","version":1}`))
	f.Add([]byte(`{"protocol":"json","version":"1"}`))
	f.Fuzz(func(t *testing.T, record []byte) {
		h, err := ParseHandshake(record)
		if err == nil && !json.Valid(record) {
			t.Fatalf("accepted %q, which is not JSON", record)
		}
		if err == nil && h.Protocol == "json" && h.Version == 1 && !strings.Contains(string(record), "version") {
			t.Fatalf("accepted %q without a version", record)
		}
	})
}

// An SSE event, read back the way an EventSource reads it, gives the data
// with its line endings turned into \n (which the specification allows).
func FuzzSSEEvent(f *testing.F) {
	f.Add([]byte("{}\x1e"))
	f.Add([]byte("a\r\nb\rc\nd\x1e"))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev := sseEvent(data)
		if !bytes.HasSuffix(ev, []byte("\r\n\r\n")) {
			t.Fatalf("event %q does not end with a blank line", ev)
		}
		body := ev[:len(ev)-2]
		var got []string
		for line := range strings.SplitSeq(strings.TrimSuffix(string(body), "\r\n"), "\r\n") {
			if line == "" {
				t.Fatalf("event %q has a blank line inside: it would end early", ev)
			}
			v, ok := strings.CutPrefix(line, "data:")
			if !ok {
				t.Fatalf("line %q is not a data line", line)
			}
			got = append(got, strings.TrimPrefix(v, " "))
		}
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(data))
		if strings.Join(got, "\n") != want {
			t.Fatalf("read back %q, want %q", strings.Join(got, "\n"), want)
		}
	})
}
