package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseMessages(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		max     int
		records []string
		rest    string
		tooBig  bool
	}{
		{"empty", "", 10, nil, "", false},
		{"one record", "{}\x1e", 10, []string{"{}"}, "", false},
		{"two and a partial", "{\"a\":1}\x1e{}\x1e{\"b", 10, []string{`{"a":1}`, "{}"}, `{"b`, false},
		{"only a partial", `{"type":6`, 10, nil, `{"type":6`, false},
		{"empty record", "\x1e\x1e", 10, []string{"", ""}, "", false},
		{"record at the limit", "0123456789\x1e", 10, []string{"0123456789"}, "", false},
		{"record over the limit", "0123456789A\x1e", 10, nil, "", true},
		{"partial over the limit", "0123456789A", 10, nil, "", true},
		{"good then too big", "{}\x1e0123456789A\x1e", 10, []string{"{}"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, rest, err := ParseMessages([]byte(tt.in), tt.max)
			if tt.tooBig != errors.Is(err, ErrMessageTooLarge) {
				t.Fatalf("err = %v, want too large: %v", err, tt.tooBig)
			}
			var got []string
			for _, r := range recs {
				got = append(got, string(r))
			}
			if !reflect.DeepEqual(got, tt.records) || string(rest) != tt.rest {
				t.Errorf("got %q rest %q, want %q rest %q", got, rest, tt.records, tt.rest)
			}
		})
	}
}

func TestParseMessage(t *testing.T) {
	tests := []struct {
		in   string
		want Message
		err  string // substring of the error; "" for none
	}{
		{`{"type":1,"invocationId":"7","target":"SendCommand","arguments":["h1",2]}`,
			Message{Type: TypeInvocation, InvocationID: "7", HasInvocationID: true, Target: "SendCommand", Arguments: []json.RawMessage{[]byte(`"h1"`), []byte(`2`)}}, ""},
		{`{"type":1,"target":"Send","arguments":[]}`, Message{Type: TypeInvocation, Target: "Send", Arguments: []json.RawMessage{}}, ""},
		{`{"type":1,"invocationId":null,"target":"Send","arguments":[],"streamIds":["1"],"headers":{"a":"b"}}`,
			Message{Type: TypeInvocation, Target: "Send", Arguments: []json.RawMessage{}, StreamIDs: []string{"1"}, Headers: map[string]string{"a": "b"}}, ""},
		{`{"type":1,"invocationId":"1","arguments":[]}`, Message{}, `no "target"`},
		{`{"type":1,"invocationId":"1","target":"X"}`, Message{}, `no "arguments"`},
		{`{"type":1,"invocationId":"1","target":"X","arguments":{}}`, Message{}, `"arguments" must be an array`},
		{`{"type":1,"invocationId":1,"target":"X","arguments":[]}`, Message{}, `"invocationId" must be a string`},
		{`{"type":1,"invocationId":"` + strings.Repeat("x", 129) + `","target":"X","arguments":[]}`, Message{}, "limit is 128"},
		{`{"TYPE":1,"target":"X","arguments":[]}`, Message{}, `no "type"`},
		{`{"type":"1"}`, Message{}, `"type" must be an integer`},
		{`{"type":1.5}`, Message{}, `"type" must be an integer`},
		{`[1]`, Message{}, "one JSON object"},
		{``, Message{}, "one JSON object"},
		{`null`, Message{}, "one JSON object"},
		{`{"type":6}`, Message{Type: TypePing}, ""},
		{`{"type":6,"extra":true}`, Message{Type: TypePing}, ""},
		{`{"type":7,"error":"bye","allowReconnect":true}`, Message{Type: TypeClose, Error: "bye", HasError: true, AllowReconnect: true}, ""},
		{`{"type":7,"allowReconnect":"yes"}`, Message{}, "must be a boolean"},
		{`{"type":3,"invocationId":"1","result":42}`, Message{Type: TypeCompletion, InvocationID: "1", HasInvocationID: true, Result: []byte("42")}, ""},
		{`{"type":3,"invocationId":"1","error":"no"}`, Message{Type: TypeCompletion, InvocationID: "1", HasInvocationID: true, Error: "no", HasError: true}, ""},
		{`{"type":3,"invocationId":"1","result":1,"error":"no"}`, Message{}, "both"},
		{`{"type":3}`, Message{}, `no "invocationId"`},
		{`{"type":2,"invocationId":"1","item":[1]}`, Message{Type: TypeStreamItem, InvocationID: "1", HasInvocationID: true, Item: []byte("[1]")}, ""},
		{`{"type":2,"invocationId":"1"}`, Message{}, `no "item"`},
		{`{"type":4,"target":"X","arguments":[]}`, Message{}, `no "invocationId"`},
		{`{"type":5,"invocationId":"9"}`, Message{Type: TypeCancelInvocation, InvocationID: "9", HasInvocationID: true}, ""},
		{`{"type":8,"sequenceId":12}`, Message{Type: TypeAck, SequenceID: 12}, ""},
		{`{"type":9}`, Message{}, `no "sequenceId"`},
		{`{"type":42,"whatever":1}`, Message{Type: 42}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMessage([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrProtocol) {
					t.Fatalf("err = %v, want a protocol error containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseHandshake(t *testing.T) {
	tests := []struct {
		in   string
		want HandshakeRequest
		err  bool
	}{
		{`{"protocol":"json","version":1}`, HandshakeRequest{"json", 1}, false},
		{`{"protocol":"messagepack","version":1}`, HandshakeRequest{"messagepack", 1}, false},
		{`{"protocol":"json"}`, HandshakeRequest{}, true},
		{`{"version":1}`, HandshakeRequest{}, true},
		{`{"protocol":1,"version":1}`, HandshakeRequest{}, true},
		{`{"type":1}`, HandshakeRequest{}, true},
		{`json`, HandshakeRequest{}, true},
	}
	for _, tt := range tests {
		got, err := ParseHandshake([]byte(tt.in))
		if (err != nil) != tt.err || (!tt.err && got != tt.want) {
			t.Errorf("ParseHandshake(%s) = %+v, %v", tt.in, got, err)
		}
	}
}

// The records the server writes are exactly those of the specification's
// examples, each ending with the separator, and parse back.
func TestServerRecords(t *testing.T) {
	tests := []struct {
		got  []byte
		want string
	}{
		{HandshakeResponse(""), "{}"},
		{HandshakeResponse("Requested protocol 'messagepack' is not available."), `{"error":"Requested protocol 'messagepack' is not available."}`},
		{PingRecord, `{"type":6}`},
		{CloseRecord("", false), `{"type":7}`},
		{CloseRecord("token expired", false), `{"type":7,"error":"token expired"}`},
		{CloseRecord("gone", true), `{"type":7,"error":"gone","allowReconnect":true}`},
		{InvocationRecord("State", "h1", "pi", "lamp", `{"on":true}`), `{"type":1,"target":"State","arguments":["h1","pi","lamp","{\"on\":true}"]}`},
		{InvocationRecord("Nothing"), `{"type":1,"target":"Nothing","arguments":[]}`},
		{CompletionRecord("1", nil), `{"type":3,"invocationId":"1"}`},
		{CompletionRecord("1", json.RawMessage(`{"ok":true}`)), `{"type":3,"invocationId":"1","result":{"ok":true}}`},
		{CompletionErrorRecord("1", "It didn't work!"), `{"type":3,"invocationId":"1","error":"It didn't work!"}`},
	}
	for _, tt := range tests {
		if !bytes.HasSuffix(tt.got, []byte{RecordSeparator}) {
			t.Errorf("%q lacks the record separator", tt.got)
			continue
		}
		body := tt.got[:len(tt.got)-1]
		if string(body) != tt.want {
			t.Errorf("got %s, want %s", body, tt.want)
		}
		if bytes.HasPrefix(body, []byte(`{"type"`)) {
			if _, err := ParseMessage(body); err != nil {
				t.Errorf("%s does not parse back: %v", body, err)
			}
		}
	}
}
