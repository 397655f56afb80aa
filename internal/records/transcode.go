// Package records turns Microsoft Graph JSON pages into Fluent Bit msgpack
// records, and builds the plugin's own health records.
//
// A record is the msgpack array [EventTime, map]: the map is the Graph object
// exactly as sent (same keys in the same order, same nesting, same types) and
// the EventTime is the object's event time to the nanosecond. The transcoder
// walks the JSON bytes once and appends msgpack to a reusable buffer, without
// building an intermediate tree: JSON strings become msgpack str, integers
// that fit 64 bits become msgpack integers, other numbers float64, and
// true/false/null the msgpack equivalents.
package records

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/tinylib/msgp/msgp"
)

// maxDepth bounds nesting so that hostile input cannot exhaust the stack.
const maxDepth = 512

// Key identifies an event for de-duplication: the 16 bytes of a GUID id, or
// a 128-bit FNV-1a hash of any other id.
type Key [16]byte

// Record locates one transcoded record in Page.Buf.
type Record struct {
	Key     Key
	Created int64 // event time, Unix nanoseconds
	Start   int   // Buf[Start:End] is the msgpack [EventTime, map]
	End     int
}

// Page is one decoded Graph response page. Its buffers are reused by the
// next DecodePage call.
type Page struct {
	NextLink string
	Records  []Record
	Buf      []byte
	// Invalid counts objects that could not be delivered because they lack
	// an id or a parseable time field; FirstInvalid says why for the first.
	Invalid      int
	FirstInvalid string
}

// SyntaxError reports malformed JSON at a byte offset.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("malformed JSON at byte %d: %s", e.Offset, e.Msg)
}

// ErrNoValue is returned for a response object without a "value" array.
var ErrNoValue = errors.New(`the response has no "value" array`)

// Decoder transcodes pages. It is not safe for concurrent use; its scratch
// buffers make steady-state decoding allocation-free.
type Decoder struct {
	// TimeField is the top-level key holding the event time
	// (createdDateTime for sign-ins).
	TimeField string
	// Versioned makes the key (id, time field): each update of an object
	// that changes over its life is an event of its own.
	Versioned bool

	in      []byte
	scratch []byte // unescaped string bytes
	skip    []byte // discarded top-level values
	id      []byte
	when    []byte
	hasID   bool
	hasWhen bool
}

// DecodePage transcodes a Graph collection page into p.
func (d *Decoder) DecodePage(body []byte, p *Page) error {
	p.NextLink = ""
	p.Records = p.Records[:0]
	p.Buf = p.Buf[:0]
	p.Invalid = 0
	p.FirstInvalid = ""
	d.in = body
	i := d.ws(0)
	if i >= len(body) || body[i] != '{' {
		return d.errAt(i, "the response is not a JSON object")
	}
	i = d.ws(i + 1)
	sawValue := false
	if i < len(body) && body[i] == '}' {
		return ErrNoValue
	}
	for {
		if i >= len(body) || body[i] != '"' {
			return d.errAt(i, "expected a key")
		}
		ks, ke, esc, _, next, err := d.scanString(i)
		if err != nil {
			return err
		}
		key := body[ks:ke]
		i = d.ws(next)
		if i >= len(body) || body[i] != ':' {
			return d.errAt(i, "expected ':'")
		}
		i = d.ws(i + 1)
		switch {
		case !esc && string(key) == "value":
			if i >= len(body) || body[i] != '[' {
				return d.errAt(i, `"value" is not an array`)
			}
			sawValue = true
			if i, err = d.values(i, p); err != nil {
				return err
			}
		case !esc && string(key) == "@odata.nextLink":
			if i >= len(body) || body[i] != '"' {
				return d.errAt(i, "@odata.nextLink is not a string")
			}
			if d.skip, i, err = d.appendString(d.skip[:0], i); err != nil {
				return err
			}
			link, _, rerr := msgp.ReadStringZC(d.skip)
			if rerr != nil {
				return d.errAt(i, "bad @odata.nextLink")
			}
			p.NextLink = string(link)
		default:
			if d.skip, i, err = d.value(d.skip[:0], i, 2); err != nil {
				return err
			}
		}
		i = d.ws(i)
		if i < len(body) && body[i] == ',' {
			i = d.ws(i + 1)
			continue
		}
		if i < len(body) && body[i] == '}' {
			i++
			break
		}
		return d.errAt(i, "expected ',' or '}'")
	}
	if j := d.ws(i); j != len(body) {
		return d.errAt(j, "data after the end of the response")
	}
	if !sawValue {
		return ErrNoValue
	}
	return nil
}

// values transcodes the elements of the "value" array, one record each.
func (d *Decoder) values(i int, p *Page) (int, error) {
	body := d.in
	i = d.ws(i + 1)
	if i < len(body) && body[i] == ']' {
		return i + 1, nil
	}
	for {
		start := len(p.Buf)
		// [EventTime, map]: fixarray(2), fixext8 type 0, then the map.
		p.Buf = append(p.Buf, 0x92, 0xd7, 0x00, 0, 0, 0, 0, 0, 0, 0, 0)
		d.hasID, d.hasWhen = false, false
		var err error
		isObject := i < len(body) && body[i] == '{'
		if p.Buf, i, err = d.value(p.Buf, i, 1); err != nil {
			return i, err
		}
		reason := ""
		var created time.Time
		switch {
		case !isObject:
			reason = "an element of value is not a JSON object"
		case !d.hasID || len(d.id) == 0:
			reason = "an object has no id"
		case !d.hasWhen:
			reason = "an object has no " + d.TimeField
		default:
			created, err = ParseTime(unsafe.String(unsafe.SliceData(d.when), len(d.when)))
			if err != nil || created.Year() < 1970 || created.Year() > 9999 {
				reason = fmt.Sprintf("an object has an unreadable %s %q", d.TimeField, d.when)
			}
		}
		if reason != "" {
			p.Buf = p.Buf[:start]
			if p.Invalid == 0 {
				p.FirstInvalid = reason
			}
			p.Invalid++
		} else {
			binary.BigEndian.PutUint32(p.Buf[start+3:], uint32(created.Unix()))
			binary.BigEndian.PutUint32(p.Buf[start+7:], uint32(created.Nanosecond()))
			key := KeyOf(d.id)
			if d.Versioned {
				// Normalised time, so that two spellings of one instant
				// are one update.
				d.id = append(d.id, 0)
				d.id = created.UTC().AppendFormat(d.id, time.RFC3339Nano)
				key = KeyOf(d.id)
			}
			p.Records = append(p.Records, Record{Key: key, Created: created.UnixNano(), Start: start, End: len(p.Buf)})
		}
		i = d.ws(i)
		if i < len(body) && body[i] == ',' {
			i = d.ws(i + 1)
			continue
		}
		if i < len(body) && body[i] == ']' {
			return i + 1, nil
		}
		return i, d.errAt(i, "expected ',' or ']' in value")
	}
}

// timeLayouts are the forms of an event time accepted besides RFC 3339:
// Graph writes UTC with a Z and 7 fractional digits, but a missing zone (read
// as UTC) or a space for the T must not lose an event.
var timeLayouts = []string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"}

// ParseTime reads an event time.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err == nil {
		return t, nil
	}
	up := strings.ToUpper(s) // RFC 3339 allows a lower-case t and z
	if t, e := time.Parse(time.RFC3339Nano, up); e == nil {
		return t, nil
	}
	for _, l := range timeLayouts {
		if t, e := time.Parse(l, up); e == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, err
}

// KeyOf returns the de-duplication key of an id.
func KeyOf(id []byte) Key {
	var k Key
	if len(id) == 36 && id[8] == '-' && id[13] == '-' && id[18] == '-' && id[23] == '-' {
		j := 0
		ok := true
		for i := 0; i < 36 && ok; i++ {
			if i == 8 || i == 13 || i == 18 || i == 23 {
				continue
			}
			hi, ok1 := unhex(id[i])
			lo, ok2 := unhex(id[i+1])
			ok = ok1 && ok2
			k[j] = hi<<4 | lo
			j++
			i++
		}
		if ok {
			return k
		}
	}
	h := fnv.New128a()
	h.Write(id)
	h.Sum(k[:0])
	// Mark hashed keys so they cannot equal a GUID whose text differs.
	k[6] = k[6]&0x0f | 0xf0
	return k
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func (d *Decoder) errAt(i int, msg string) error {
	if i >= len(d.in) {
		return &SyntaxError{Offset: len(d.in), Msg: "unexpected end of data (truncated response?)"}
	}
	return &SyntaxError{Offset: i, Msg: msg}
}

func (d *Decoder) ws(i int) int {
	for i < len(d.in) {
		// Compact JSON has no whitespace: one comparison settles most calls.
		if c := d.in[i]; c > ' ' || (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
			return i
		}
		i++
	}
	return i
}

// value transcodes the JSON value at i, appending to out. depth is 1 for a
// record's own map, whose id and time field are captured.
func (d *Decoder) value(out []byte, i, depth int) ([]byte, int, error) {
	in := d.in
	if i >= len(in) {
		return out, i, d.errAt(i, "expected a value")
	}
	if depth > maxDepth {
		return out, i, d.errAt(i, "nesting too deep")
	}
	switch c := in[i]; {
	case c == '{':
		return d.object(out, i, depth)
	case c == '[':
		return d.array(out, i, depth)
	case c == '"':
		return d.appendString(out, i)
	case c == 't':
		if len(in)-i >= 4 && string(in[i:i+4]) == "true" {
			return append(out, 0xc3), i + 4, nil
		}
	case c == 'f':
		if len(in)-i >= 5 && string(in[i:i+5]) == "false" {
			return append(out, 0xc2), i + 5, nil
		}
	case c == 'n':
		if len(in)-i >= 4 && string(in[i:i+4]) == "null" {
			return append(out, 0xc0), i + 4, nil
		}
	case c == '-' || ('0' <= c && c <= '9'):
		return d.number(out, i)
	}
	return out, i, d.errAt(i, "invalid value")
}

func (d *Decoder) object(out []byte, i, depth int) ([]byte, int, error) {
	in := d.in
	hdr := len(out)
	out = append(out, 0xde, 0, 0) // map16, count patched below
	n := 0
	i = d.ws(i + 1)
	if i < len(in) && in[i] == '}' {
		return finishContainer(out, hdr, 0, 0x80, 0xde, 0xdf), i + 1, nil
	}
	var err error
	for {
		if i >= len(in) || in[i] != '"' {
			return out, i, d.errAt(i, "expected a key")
		}
		keyStart := len(out)
		if out, i, err = d.appendString(out, i); err != nil {
			return out, i, err
		}
		capture := 0
		if depth == 1 {
			k, _, _ := msgp.ReadStringZC(out[keyStart:])
			switch {
			case string(k) == "id":
				capture = 1
			case string(k) == d.TimeField:
				capture = 2
			}
		}
		i = d.ws(i)
		if i >= len(in) || in[i] != ':' {
			return out, i, d.errAt(i, "expected ':'")
		}
		i = d.ws(i + 1)
		valStart := len(out)
		if i < len(in) && in[i] == '"' {
			out, i, err = d.appendString(out, i)
		} else {
			out, i, err = d.value(out, i, depth+1)
		}
		if err != nil {
			return out, i, err
		}
		if capture != 0 {
			if s, _, e := msgp.ReadStringZC(out[valStart:]); e == nil {
				if capture == 1 {
					d.id, d.hasID = append(d.id[:0], s...), true
				} else {
					d.when, d.hasWhen = append(d.when[:0], s...), true
				}
			}
		}
		n++
		i = d.ws(i)
		if i < len(in) && in[i] == ',' {
			i = d.ws(i + 1)
			continue
		}
		if i < len(in) && in[i] == '}' {
			return finishContainer(out, hdr, n, 0x80, 0xde, 0xdf), i + 1, nil
		}
		return out, i, d.errAt(i, "expected ',' or '}'")
	}
}

func (d *Decoder) array(out []byte, i, depth int) ([]byte, int, error) {
	in := d.in
	hdr := len(out)
	out = append(out, 0xdc, 0, 0) // array16, count patched below
	n := 0
	i = d.ws(i + 1)
	if i < len(in) && in[i] == ']' {
		return finishContainer(out, hdr, 0, 0x90, 0xdc, 0xdd), i + 1, nil
	}
	var err error
	for {
		if i < len(in) && in[i] == '"' {
			out, i, err = d.appendString(out, i)
		} else {
			out, i, err = d.value(out, i, depth+1)
		}
		if err != nil {
			return out, i, err
		}
		n++
		i = d.ws(i)
		if i < len(in) && in[i] == ',' {
			i = d.ws(i + 1)
			continue
		}
		if i < len(in) && in[i] == ']' {
			return finishContainer(out, hdr, n, 0x90, 0xdc, 0xdd), i + 1, nil
		}
		return out, i, d.errAt(i, "expected ',' or ']'")
	}
}

// finishContainer rewrites the 3-byte 16-bit header reserved at hdr with the
// smallest header for n elements, moving the content when the size differs.
func finishContainer(out []byte, hdr, n int, fix, b16, b32 byte) []byte {
	switch {
	case n < 16:
		out[hdr] = fix | byte(n)
		copy(out[hdr+1:], out[hdr+3:])
		return out[:len(out)-2]
	case n <= math.MaxUint16:
		out[hdr] = b16
		binary.BigEndian.PutUint16(out[hdr+1:], uint16(n))
		return out
	default:
		out = append(out, 0, 0)
		copy(out[hdr+5:], out[hdr+3:len(out)-2])
		out[hdr] = b32
		binary.BigEndian.PutUint32(out[hdr+1:], uint32(n))
		return out
	}
}

// Masks for looking at eight bytes at once (SWAR): a string's ordinary
// bytes are skipped a word at a time, and only a quote, a backslash, a
// control character or the first byte after them is looked at alone.
const (
	lsb   = 0x0101010101010101
	msb   = 0x8080808080808080
	quote = '"' * lsb
	bslsh = '\\' * lsb
	space = ' ' * lsb
)

// special has the top bit set in the lowest byte of w that is a quote, a
// backslash or below 0x20 (bits above the lowest may be set spuriously).
func special(w uint64) uint64 {
	q := w ^ quote
	b := w ^ bslsh
	return ((q-lsb)&^q | (b-lsb)&^b | (w-space)&^w) & msb
}

// scanString finds the string starting at the quote at i: its raw content
// in[start:end], whether it has escapes, whether it has bytes above ASCII
// (which must then be checked for valid UTF-8), and the index after the
// closing quote.
func (d *Decoder) scanString(i int) (start, end int, esc, high bool, next int, err error) {
	in := d.in
	start = i + 1
	j := start
	var hi uint64
	for {
		for j+8 <= len(in) {
			w := binary.LittleEndian.Uint64(in[j:])
			m := special(w)
			if m != 0 {
				n := uint(bits.TrailingZeros64(m)) &^ 7
				hi |= w & (1<<n - 1)
				j += int(n >> 3)
				break
			}
			hi |= w
			j += 8
		}
		if j >= len(in) {
			break
		}
		switch c := in[j]; {
		case c == '"':
			return start, j, esc, hi&msb != 0, j + 1, nil
		case c == '\\':
			esc = true
			j += 2
		case c < 0x20:
			return 0, 0, false, false, j, d.errAt(j, "control character in string")
		default:
			// Fewer than eight bytes are left.
			hi |= uint64(c)
			j++
		}
	}
	return 0, 0, false, false, len(in), d.errAt(len(in), "")
}

// appendString transcodes the JSON string at i into a msgpack str.
func (d *Decoder) appendString(out []byte, i int) ([]byte, int, error) {
	// Fast path: a string without escapes whose closing quote is found by
	// whole words, copied as it is once its UTF-8 is known to be valid.
	in := d.in
	j := i + 1
	var hi uint64
	for j+8 <= len(in) {
		w := binary.LittleEndian.Uint64(in[j:])
		if m := special(w); m != 0 {
			n := uint(bits.TrailingZeros64(m)) &^ 7
			hi |= w & (1<<n - 1)
			j += int(n >> 3)
			if in[j] != '"' || (hi&msb != 0 && !utf8.Valid(in[i+1:j])) {
				break
			}
			return append(appendStrHeader(out, j-i-1), in[i+1:j]...), j + 1, nil
		}
		hi |= w
		j += 8
	}
	return d.appendStringSlow(out, i)
}

// appendStringSlow transcodes a string with escapes, invalid UTF-8 or too
// close to the end of the input for the fast path.
func (d *Decoder) appendStringSlow(out []byte, i int) ([]byte, int, error) {
	start, end, esc, high, next, err := d.scanString(i)
	if err != nil {
		return out, next, err
	}
	raw := d.in[start:end]
	if !esc && (!high || utf8.Valid(raw)) {
		return append(appendStrHeader(out, len(raw)), raw...), next, nil
	}
	d.scratch = d.scratch[:0]
	s, err := d.unescape(d.scratch, raw, start)
	if err != nil {
		return out, next, err
	}
	d.scratch = s
	return append(appendStrHeader(out, len(s)), s...), next, nil
}

// appendStrHeader appends the smallest msgpack str header for n bytes.
func appendStrHeader(out []byte, n int) []byte {
	switch {
	case n < 32:
		return append(out, 0xa0|byte(n))
	case n <= math.MaxUint8:
		return append(out, 0xd9, byte(n))
	case n <= math.MaxUint16:
		return append(out, 0xda, byte(n>>8), byte(n))
	}
	return append(out, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// unescape decodes JSON escapes and replaces invalid UTF-8 and lone
// surrogates with U+FFFD, as encoding/json does.
func (d *Decoder) unescape(dst, raw []byte, off int) ([]byte, error) {
	for j := 0; j < len(raw); {
		c := raw[j]
		if c == '\\' {
			if j+1 >= len(raw) {
				return dst, d.errAt(off+j, "bad escape")
			}
			switch raw[j+1] {
			case '"', '\\', '/':
				dst = append(dst, raw[j+1])
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r, ok := hex4(raw[j+2:])
				if !ok {
					return dst, d.errAt(off+j, `bad \u escape`)
				}
				j += 6
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if j+1 < len(raw) && raw[j] == '\\' && raw[j+1] == 'u' {
						r2, ok = hex4(raw[j+2:])
						if !ok {
							return dst, d.errAt(off+j, `bad \u escape`)
						}
					}
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						j += 6
						r = dec
					} else {
						r = utf8.RuneError
					}
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default:
				return dst, d.errAt(off+j, "bad escape")
			}
			j += 2
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			j++
			continue
		}
		r, size := utf8.DecodeRune(raw[j:])
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, raw[j:j+size]...)
		}
		j += size
	}
	return dst, nil
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		v, ok := unhex(c)
		if !ok {
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	return r, true
}

// number transcodes a JSON number: integers that fit int64 or uint64 stay
// integers, everything else becomes float64.
func (d *Decoder) number(out []byte, i int) ([]byte, int, error) {
	in := d.in
	start := i
	neg := false
	if in[i] == '-' {
		neg = true
		i++
	}
	if i >= len(in) || in[i] < '0' || in[i] > '9' {
		return out, i, d.errAt(i, "invalid number")
	}
	if in[i] == '0' {
		i++
	} else {
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
	}
	isFloat := false
	if i < len(in) && in[i] == '.' {
		isFloat = true
		i++
		digits := i
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
		if i == digits {
			return out, i, d.errAt(i, "invalid number")
		}
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		isFloat = true
		i++
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			i++
		}
		digits := i
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
		if i == digits {
			return out, i, d.errAt(i, "invalid number")
		}
	}
	text := unsafe.String(&in[start], i-start)
	if !isFloat {
		if neg {
			if v, err := strconv.ParseInt(text, 10, 64); err == nil {
				return msgp.AppendInt64(out, v), i, nil
			}
		} else if v, err := strconv.ParseUint(text, 10, 64); err == nil {
			if v <= math.MaxInt64 {
				return msgp.AppendInt64(out, int64(v)), i, nil
			}
			return msgp.AppendUint64(out, v), i, nil
		}
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return out, i, d.errAt(start, "invalid number")
	}
	return msgp.AppendFloat64(out, f), i, nil
}
