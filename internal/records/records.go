package records

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// Field is one key/value of a record built by the plugin itself.
type Field struct {
	Key   string
	Value any // string, int, int64, float64, bool or time.Duration (as seconds)
}

// AppendEventTime appends a msgpack EventTime (ext type 0, seconds and
// nanoseconds as big-endian uint32), the form Fluent Bit keeps to the
// nanosecond.
func AppendEventTime(b []byte, t time.Time) []byte {
	b = append(b, 0xd7, 0x00, 0, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(b)-8:], uint32(t.Unix()))
	binary.BigEndian.PutUint32(b[len(b)-4:], uint32(t.Nanosecond()))
	return b
}

// AppendRecord appends the record [EventTime(t), {fields...}].
func AppendRecord(b []byte, t time.Time, fields []Field) []byte {
	b = append(b, 0x92)
	b = AppendEventTime(b, t)
	b = msgp.AppendMapHeader(b, uint32(len(fields)))
	for _, f := range fields {
		b = msgp.AppendString(b, f.Key)
		switch v := f.Value.(type) {
		case string:
			b = msgp.AppendString(b, v)
		case int:
			b = msgp.AppendInt64(b, int64(v))
		case int64:
			b = msgp.AppendInt64(b, v)
		case float64:
			b = msgp.AppendFloat64(b, v)
		case bool:
			b = msgp.AppendBool(b, v)
		case time.Duration:
			b = msgp.AppendFloat64(b, v.Seconds())
		default:
			b = msgp.AppendString(b, fmt.Sprint(v))
		}
	}
	return b
}

// Event is a decoded Fluent Bit record.
type Event struct {
	Time   time.Time
	Fields map[string]any
}

// DecodeEvents decodes a concatenation of Fluent Bit records, in either the
// [ts, map] or the [[ts, metadata], map] form, with ts an EventTime, an
// integer or a float. It checks that the buffer holds nothing else.
func DecodeEvents(b []byte) ([]Event, error) {
	var out []Event
	for len(b) > 0 {
		n, rest, err := msgp.ReadArrayHeaderBytes(b)
		if err != nil || n != 2 {
			return out, fmt.Errorf("record %d: not a 2-element array: %v", len(out), err)
		}
		var ev Event
		if msgp.NextType(rest) == msgp.ArrayType {
			m, r2, err := msgp.ReadArrayHeaderBytes(rest)
			if err != nil || m != 2 {
				return out, fmt.Errorf("record %d: bad v2 header", len(out))
			}
			if ev.Time, rest, err = readTime(r2); err != nil {
				return out, fmt.Errorf("record %d: %w", len(out), err)
			}
			if rest, err = msgp.Skip(rest); err != nil {
				return out, fmt.Errorf("record %d: metadata: %w", len(out), err)
			}
		} else if ev.Time, rest, err = readTime(rest); err != nil {
			return out, fmt.Errorf("record %d: %w", len(out), err)
		}
		if msgp.NextType(rest) != msgp.MapType {
			return out, fmt.Errorf("record %d: body is not a map", len(out))
		}
		v, r3, err := msgp.ReadIntfBytes(rest)
		if err != nil {
			return out, fmt.Errorf("record %d: body: %w", len(out), err)
		}
		ev.Fields = v.(map[string]any)
		out = append(out, ev)
		b = r3
	}
	return out, nil
}

func readTime(b []byte) (time.Time, []byte, error) {
	switch {
	case len(b) >= 10 && b[0] == 0xd7 && b[1] == 0x00:
		sec := binary.BigEndian.Uint32(b[2:])
		nsec := binary.BigEndian.Uint32(b[6:])
		return time.Unix(int64(sec), int64(nsec)).UTC(), b[10:], nil
	case msgp.NextType(b) == msgp.IntType || msgp.NextType(b) == msgp.UintType:
		v, rest, err := msgp.ReadInt64Bytes(b)
		return time.Unix(v, 0).UTC(), rest, err
	case msgp.NextType(b) == msgp.Float64Type:
		v, rest, err := msgp.ReadFloat64Bytes(b)
		sec := int64(v)
		return time.Unix(sec, int64((v-float64(sec))*1e9)).UTC(), rest, err
	}
	return time.Time{}, b, fmt.Errorf("unknown timestamp encoding 0x%02x", b[0])
}
