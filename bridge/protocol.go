package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// MessageType is the "type" of a hub protocol message.
type MessageType int

// The message types of the hub protocol.
const (
	TypeInvocation       MessageType = 1
	TypeStreamItem       MessageType = 2
	TypeCompletion       MessageType = 3
	TypeStreamInvocation MessageType = 4
	TypeCancelInvocation MessageType = 5
	TypePing             MessageType = 6
	TypeClose            MessageType = 7
	TypeAck              MessageType = 8
	TypeSequence         MessageType = 9
)

// MaxInvocationIDLen bounds the invocation ids a client may choose.
const MaxInvocationIDLen = 128

// ErrProtocol marks a message that breaks the hub protocol; the connection
// that sent it is closed.
var ErrProtocol = errors.New("protocol error")

func protocolErr(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, a...)...)
}

// Message is one decoded hub protocol message. Fields that the message's
// type does not use are zero.
type Message struct {
	Type MessageType
	// InvocationID is the caller's id; HasInvocationID is false for a
	// non-blocking invocation.
	InvocationID    string
	HasInvocationID bool
	Target          string
	Arguments       []json.RawMessage
	StreamIDs       []string
	Item            json.RawMessage
	Result          json.RawMessage
	Error           string
	HasError        bool
	AllowReconnect  bool
	SequenceID      int64
	Headers         map[string]string
}

// ParseMessage decodes one JSON hub protocol record (without its separator).
// Property names are case-sensitive; unknown properties are ignored, as the
// specification's forward compatibility asks; a missing required property or
// one of the wrong JSON type is an error wrapping ErrProtocol. Unknown message
// types decode with only Type set.
func ParseMessage(record []byte) (Message, error) {
	var m Message
	fields, err := objectFields(record)
	if err != nil {
		return m, err
	}
	raw, ok := fields["type"]
	if !ok {
		return m, protocolErr("message has no \"type\"")
	}
	var t int64
	if err := decodeNumber(raw, &t); err != nil {
		return m, protocolErr("\"type\" must be an integer")
	}
	m.Type = MessageType(t)
	if h, ok := fields["headers"]; ok && !isNull(h) {
		if err := json.Unmarshal(h, &m.Headers); err != nil {
			return m, protocolErr("\"headers\" must be an object of strings")
		}
	}
	switch m.Type {
	case TypeInvocation, TypeStreamInvocation:
		if err := m.readInvocationID(fields, m.Type == TypeStreamInvocation); err != nil {
			return m, err
		}
		if err := readString(fields, "target", &m.Target, true); err != nil {
			return m, err
		}
		a, ok := fields["arguments"]
		if !ok {
			return m, protocolErr("invocation has no \"arguments\"")
		}
		if err := json.Unmarshal(a, &m.Arguments); err != nil || m.Arguments == nil {
			return m, protocolErr("\"arguments\" must be an array")
		}
		if s, ok := fields["streamIds"]; ok && !isNull(s) {
			if err := json.Unmarshal(s, &m.StreamIDs); err != nil {
				return m, protocolErr("\"streamIds\" must be an array of strings")
			}
		}
	case TypeStreamItem:
		if err := m.readInvocationID(fields, true); err != nil {
			return m, err
		}
		item, ok := fields["item"]
		if !ok {
			return m, protocolErr("stream item has no \"item\"")
		}
		m.Item = item
	case TypeCompletion:
		if err := m.readInvocationID(fields, true); err != nil {
			return m, err
		}
		if err := readString(fields, "error", &m.Error, false); err != nil {
			return m, err
		}
		m.HasError = present(fields, "error")
		if r, ok := fields["result"]; ok {
			if m.HasError {
				return m, protocolErr("a completion may not carry both \"result\" and \"error\"")
			}
			m.Result = r
		}
	case TypeCancelInvocation:
		if err := m.readInvocationID(fields, true); err != nil {
			return m, err
		}
	case TypeClose:
		if err := readString(fields, "error", &m.Error, false); err != nil {
			return m, err
		}
		m.HasError = present(fields, "error")
		if r, ok := fields["allowReconnect"]; ok && !isNull(r) {
			if err := json.Unmarshal(r, &m.AllowReconnect); err != nil {
				return m, protocolErr("\"allowReconnect\" must be a boolean")
			}
		}
	case TypeAck, TypeSequence:
		s, ok := fields["sequenceId"]
		if !ok {
			return m, protocolErr("message has no \"sequenceId\"")
		}
		if err := decodeNumber(s, &m.SequenceID); err != nil {
			return m, protocolErr("\"sequenceId\" must be an integer")
		}
	}
	return m, nil
}

func (m *Message) readInvocationID(fields map[string]json.RawMessage, required bool) error {
	if err := readString(fields, "invocationId", &m.InvocationID, required); err != nil {
		return err
	}
	m.HasInvocationID = present(fields, "invocationId")
	if len(m.InvocationID) > MaxInvocationIDLen {
		return protocolErr("\"invocationId\" is %d bytes, the limit is %d", len(m.InvocationID), MaxInvocationIDLen)
	}
	return nil
}

// objectFields decodes record as one JSON object, keeping the raw values.
func objectFields(record []byte) (map[string]json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(record, &fields); err != nil || fields == nil {
		return nil, protocolErr("a message must be one JSON object")
	}
	return fields, nil
}

// present reports whether the object has the property with a non-null value.
func present(fields map[string]json.RawMessage, name string) bool {
	raw, ok := fields[name]
	return ok && !isNull(raw)
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

func readString(fields map[string]json.RawMessage, name string, dst *string, required bool) error {
	raw, ok := fields[name]
	if !ok || isNull(raw) {
		if required {
			return protocolErr("message has no %q", name)
		}
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return protocolErr("%q must be a string", name)
	}
	return nil
}

// decodeNumber reads a JSON integer (not a string holding one).
func decodeNumber(raw json.RawMessage, dst *int64) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || !(raw[0] == '-' || '0' <= raw[0] && raw[0] <= '9') {
		return errors.New("not a number")
	}
	var f json.Number
	if err := json.Unmarshal(raw, &f); err != nil {
		return err
	}
	n, err := f.Int64()
	if err != nil {
		return err
	}
	*dst = n
	return nil
}

// HandshakeRequest is the client's first message: the hub protocol and its
// version it wants to speak.
type HandshakeRequest struct {
	Protocol string
	Version  int64
}

// ParseHandshake decodes the handshake request record (without its
// separator). Both properties are required.
func ParseHandshake(record []byte) (HandshakeRequest, error) {
	var h HandshakeRequest
	fields, err := objectFields(record)
	if err != nil {
		return h, protocolErr("the handshake must be one JSON object like {\"protocol\":\"json\",\"version\":1}")
	}
	if err := readString(fields, "protocol", &h.Protocol, true); err != nil {
		return h, err
	}
	v, ok := fields["version"]
	if !ok {
		return h, protocolErr("the handshake has no \"version\"")
	}
	if err := decodeNumber(v, &h.Version); err != nil {
		return h, protocolErr("the handshake \"version\" must be an integer")
	}
	return h, nil
}

// Records the server writes. Each ends with the record separator.

// HandshakeResponse is the server's answer to the handshake: {} or
// {"error":"…"}.
func HandshakeResponse(errMsg string) []byte {
	if errMsg == "" {
		return []byte("{}\x1e")
	}
	return encode(struct {
		Error string `json:"error"`
	}{errMsg})
}

// PingRecord is the keep-alive message.
var PingRecord = []byte("{\"type\":6}\x1e")

// CloseRecord tells the client the server is closing the connection, why,
// and whether an automatic reconnect may help.
func CloseRecord(errMsg string, allowReconnect bool) []byte {
	return encode(struct {
		Type           MessageType `json:"type"`
		Error          string      `json:"error,omitempty"`
		AllowReconnect bool        `json:"allowReconnect,omitempty"`
	}{TypeClose, errMsg, allowReconnect})
}

// InvocationRecord invokes target on the client without expecting an
// answer (a non-blocking invocation).
func InvocationRecord(target string, args ...any) []byte {
	if args == nil {
		args = []any{}
	}
	return encode(struct {
		Type      MessageType `json:"type"`
		Target    string      `json:"target"`
		Arguments []any       `json:"arguments"`
	}{TypeInvocation, target, args})
}

// CompletionRecord completes the client's invocation id with a result
// (omitted when nil, for a void method).
func CompletionRecord(id string, result any) []byte {
	if result == nil {
		return encode(struct {
			Type         MessageType `json:"type"`
			InvocationID string      `json:"invocationId"`
		}{TypeCompletion, id})
	}
	return encode(struct {
		Type         MessageType `json:"type"`
		InvocationID string      `json:"invocationId"`
		Result       any         `json:"result"`
	}{TypeCompletion, id, result})
}

// CompletionErrorRecord completes the client's invocation id with an error.
func CompletionErrorRecord(id, errMsg string) []byte {
	return encode(struct {
		Type         MessageType `json:"type"`
		InvocationID string      `json:"invocationId"`
		Error        string      `json:"error"`
	}{TypeCompletion, id, errMsg})
}

// encode marshals v as one record. Values that cannot be marshalled are a
// programming error; the record then carries no data but stays well-formed.
func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"type":7,"error":"internal error: a message could not be encoded"}`)
	}
	return append(b, RecordSeparator)
}
