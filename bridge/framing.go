package bridge

import (
	"bytes"
	"errors"
	"fmt"
)

// RecordSeparator (ASCII 0x1E) ends every message of the JSON hub protocol,
// the handshake included.
const RecordSeparator = 0x1E

// ErrMessageTooLarge is returned when a record grows past the size limit.
var ErrMessageTooLarge = errors.New("bridge: message too large")

// ParseMessages splits buf into the complete records it holds (each without
// its separator) and returns the bytes after the last separator, a record
// still being received. A record, complete or not, longer than max bytes is
// an error wrapping ErrMessageTooLarge. The records alias buf.
func ParseMessages(buf []byte, max int) (records [][]byte, rest []byte, err error) {
	for {
		i := bytes.IndexByte(buf, RecordSeparator)
		if i < 0 {
			if len(buf) > max {
				return records, nil, fmt.Errorf("%w: an unterminated record is already %d bytes, the limit is %d", ErrMessageTooLarge, len(buf), max)
			}
			return records, buf, nil
		}
		if i > max {
			return records, nil, fmt.Errorf("%w: a record of %d bytes, the limit is %d", ErrMessageTooLarge, i, max)
		}
		records = append(records, buf[:i:i])
		buf = buf[i+1:]
	}
}

// AppendRecord appends msg and the record separator to dst.
func AppendRecord(dst, msg []byte) []byte {
	return append(append(dst, msg...), RecordSeparator)
}
