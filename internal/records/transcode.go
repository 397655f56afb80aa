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
//
// What Fluent Bit's outputs cannot carry is changed, and counted in the Page,
// rather than handed on: a container nested deeper than SafeDepth becomes a
// string holding its JSON text, a number float64 cannot hold (1e400, or a
// non-zero 1e-400 that would become 0) becomes a string holding its text,
// and invalid UTF-8 or a lone surrogate escape becomes U+FFFD. An element of
// "value" that cannot be delivered at all (malformed, nested deeper than 512
// levels, without a string id or a readable time) is skipped on its own: the
// page fails only when the end of that element cannot be found.
package records

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/tinylib/msgp/msgp"
)

// maxDepth bounds nesting: an object nested deeper is not an event, and it
// is skipped. The walk past SafeDepth is iterative, so no depth exhausts the
// stack.
const maxDepth = 512

// SafeDepth is the deepest container delivered as a container; the record's
// own map is depth 1. A deeper one is delivered as a string of its JSON
// text. Fluent Bit's JSON encoders recurse on the output's coroutine stack
// (24 KiB on Linux before 5.x) and its msgpack reader holds 32 (3.x) or 64
// (4.x, 5.x) open containers: a record with a container at depth 17 crashes
// Fluent Bit 4.0 and 4.1 in the file output (31 to 33 in stdout, http, es
// and splunk), 3.2 crashes from 28 (file) and drops records from 32, 5.1
// drops them from 64, each without a word. 12 leaves room for outputs with
// larger frames; Graph's objects nest about 5 deep.
const SafeDepth = 12

// MaxListed bounds the ids and reasons a Page lists.
const MaxListed = 10

// maxIDLen bounds an id quoted in a Page's lists, in bytes.
const maxIDLen = 128

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
	// Invalid counts the elements of value that could not be delivered
	// (malformed, nested deeper than 512 levels, not an object, without a
	// string id or a readable time field); FirstInvalid says why for the
	// first, Skipped lists the first MaxListed.
	Invalid      int
	FirstInvalid string
	Skipped      []Skipped
	// Delivered records that were changed so that every Fluent Bit output
	// can carry them.
	Deep    Altered // a container deeper than SafeDepth became its JSON text
	Numbers Altered // a number beyond float64 became its text
	Text    Altered // invalid UTF-8 or a lone surrogate became U+FFFD
}

// Skipped is an element of value that was not delivered.
type Skipped struct {
	ID     string // "" when it cannot be read; at most 128 bytes, cut ones end in "…"
	Reason string
}

// Altered counts the records changed in one way.
type Altered struct {
	Count int
	IDs   []string // of the first MaxListed, as in Skipped
}

// IDList joins the listed ids, with the number of the others.
func (a *Altered) IDList() string { return JoinIDs(a.IDs, a.Count) }

func (a *Altered) add(id []byte) {
	a.Count++
	if len(a.IDs) < MaxListed {
		a.IDs = append(a.IDs, listedID(id))
	}
}

// SkippedIDs joins the readable ids of the skipped elements listed, with
// the number of the others.
func (p *Page) SkippedIDs() string {
	var ids []string
	for _, s := range p.Skipped {
		if s.ID != "" {
			ids = append(ids, s.ID)
		}
	}
	return JoinIDs(ids, p.Invalid)
}

// SkippedReasons joins the different reasons of the skipped elements
// listed.
func (p *Page) SkippedReasons() string {
	var rs []string
	for _, s := range p.Skipped {
		if !slices.Contains(rs, s.Reason) {
			rs = append(rs, s.Reason)
		}
	}
	return strings.Join(rs, "; ")
}

// JoinIDs joins the ids listed, with the number of the others of total.
func JoinIDs(ids []string, total int) string {
	s := strings.Join(ids, ", ")
	if more := total - len(ids); len(ids) > 0 && more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

// listedID is an id as a Page lists it, for messages and log lines: at most
// maxIDLen bytes, cut on a character boundary, control characters as
// U+FFFD.
func listedID(id []byte) string {
	cut := ""
	if len(id) > maxIDLen {
		n := maxIDLen
		for n > 0 && !utf8.RuneStart(id[n]) {
			n--
		}
		id, cut = id[:n], "…"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return utf8.RuneError
		}
		return r
	}, string(id)) + cut
}

func (p *Page) skip(reason string, id []byte) {
	if p.Invalid == 0 {
		p.FirstInvalid = reason
	}
	p.Invalid++
	if len(p.Skipped) < MaxListed {
		p.Skipped = append(p.Skipped, Skipped{ID: listedID(id), Reason: reason})
	}
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
	// IDField is the top-level key holding the object's identity: "id"
	// when empty (Graph); the Management Activity API's records use "Id".
	IDField string
	// Extra is msgpack key-value pairs (ExtraCount of them) appended to
	// every record's top-level map, after the object's own keys: the
	// tenant of a multi-tenant input (AppendExtra).
	Extra      []byte
	ExtraCount int

	in      []byte
	scratch []byte // unescaped string bytes
	skip    []byte // discarded top-level values
	stack   []byte // open containers past SafeDepth
	num     []byte // numbers checked past SafeDepth
	id      []byte
	when    []byte
	hasID   bool
	hasWhen bool
	// An id or time field that is there but not a string.
	badID, badWhen bool
	// What the current record needed changed (Page.Deep, Numbers, Text).
	deep, bigNum, badText bool
}

func (d *Decoder) idField() string {
	if d.IDField == "" {
		return "id"
	}
	return d.IDField
}

// reset empties p for the next body.
func (p *Page) reset() {
	p.NextLink = ""
	p.Records = p.Records[:0]
	p.Buf = p.Buf[:0]
	p.Invalid = 0
	p.FirstInvalid = ""
	p.Skipped = p.Skipped[:0]
	p.Deep = Altered{IDs: p.Deep.IDs[:0]}
	p.Numbers = Altered{IDs: p.Numbers.IDs[:0]}
	p.Text = Altered{IDs: p.Text.IDs[:0]}
}

// DecodeArray transcodes a body that is a JSON array of objects (a content
// blob of the Management Activity API) into p, each element as an element
// of a Graph page's value is.
func (d *Decoder) DecodeArray(body []byte, p *Page) error {
	p.reset()
	d.in = body
	i := d.ws(0)
	if i >= len(body) || body[i] != '[' {
		return d.errAt(i, "the content is not a JSON array")
	}
	i, err := d.values(i, p)
	if err != nil {
		return err
	}
	if j := d.ws(i); j != len(body) {
		return d.errAt(j, "data after the end of the content")
	}
	return nil
}

// DecodePage transcodes a Graph collection page into p.
func (d *Decoder) DecodePage(body []byte, p *Page) error {
	p.reset()
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

// values transcodes the elements of the "value" array, one record each. An
// element that cannot be delivered is skipped; only one whose end cannot be
// found fails the page.
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
		d.hasID, d.hasWhen, d.badID, d.badWhen = false, false, false, false
		d.deep, d.bigNum, d.badText = false, false, false
		elem := i
		isObject := i < len(body) && body[i] == '{'
		var err error
		if p.Buf, i, err = d.value(p.Buf, i, 1); err == nil {
			if i = d.ws(i); i >= len(body) || (body[i] != ',' && body[i] != ']') {
				err = d.errAt(i, "expected ',' or ']' in value")
			}
		}
		reason := ""
		var id []byte
		if d.hasID {
			id = d.id
		}
		var created time.Time
		switch {
		case err != nil:
			// Malformed, or nested too deep: only this element is lost if
			// its end can be found.
			end, ok := d.span(elem, ']')
			if !ok || end == elem {
				return i, err
			}
			i = end
			reason = skipReason(err)
			id = d.peekID(elem)
		case !isObject:
			reason = "an element is not a JSON object"
		case !d.hasID && d.badID:
			reason = "an object has an " + d.idField() + " that is not a string"
		case !d.hasID:
			reason = "an object has no " + d.idField()
		case len(d.id) == 0:
			reason = "an object has an empty " + d.idField()
		case !d.hasWhen && d.badWhen:
			reason = "an object has a " + d.TimeField + " that is not a string"
		case !d.hasWhen:
			reason = "an object has no " + d.TimeField
		default:
			created, err = ParseTime(unsafe.String(unsafe.SliceData(d.when), len(d.when)))
			if err != nil || created.Year() < 1970 || created.Year() > 9999 {
				reason = fmt.Sprintf("an object has an unreadable %s %q", d.TimeField, listedID(d.when))
			}
		}
		if reason != "" {
			p.Buf = p.Buf[:start]
			p.skip(reason, id)
		} else {
			binary.BigEndian.PutUint32(p.Buf[start+3:], uint32(created.Unix()))
			binary.BigEndian.PutUint32(p.Buf[start+7:], uint32(created.Nanosecond()))
			if d.deep {
				p.Deep.add(d.id)
			}
			if d.bigNum {
				p.Numbers.add(d.id)
			}
			if d.badText {
				p.Text.add(d.id)
			}
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
		if body[i] == ',' {
			i = d.ws(i + 1)
			continue
		}
		return i + 1, nil
	}
}

// skipReason says why an element that failed to transcode is skipped.
func skipReason(err error) string {
	var se *SyntaxError
	if errors.As(err, &se) && se.Msg == msgTooDeep {
		return fmt.Sprintf("an object is nested more than %d levels deep", maxDepth)
	}
	return err.Error()
}

const msgTooDeep = "nesting too deep"

// span finds where the value at i ends, without judging it: strings (with
// their escapes) and brackets are followed, anything else is passed over. It
// returns the index of the first ',' or closer outside them, and false when
// the brackets do not match or the input ends first.
func (d *Decoder) span(i int, closer byte) (int, bool) {
	in := d.in
	st := d.stack[:0]
	ok := false
loop:
	for ; i < len(in); i++ {
		switch c := in[i]; c {
		case '"':
			for i++; i < len(in) && in[i] != '"'; i++ {
				if in[i] == '\\' {
					i++
				}
			}
			if i >= len(in) {
				break loop
			}
		case '{', '[':
			st = append(st, c)
		case '}', ']':
			if len(st) == 0 {
				ok = c == closer
				break loop
			}
			if st[len(st)-1]+2 != c { // '{'+2 is '}', '['+2 is ']'
				break loop
			}
			st = st[:len(st)-1]
		case ',':
			if len(st) == 0 {
				ok = true
				break loop
			}
		}
	}
	d.stack = st
	return i, ok
}

// peekID reads the id of the object at i, which could not be transcoded,
// looking only at its top-level keys; "" when it cannot be read.
func (d *Decoder) peekID(i int) []byte {
	in := d.in
	if in[i] != '{' {
		return nil
	}
	i = d.ws(i + 1)
	for i < len(in) && in[i] == '"' {
		var err error
		if d.skip, i, err = d.appendString(d.skip[:0], i); err != nil {
			return nil
		}
		k, _, _ := msgp.ReadStringZC(d.skip)
		isID := string(k) == d.idField()
		if i = d.ws(i); i >= len(in) || in[i] != ':' {
			return nil
		}
		if i = d.ws(i + 1); isID {
			if i >= len(in) || in[i] != '"' {
				return nil
			}
			if d.skip, _, err = d.appendString(d.skip[:0], i); err != nil {
				return nil
			}
			id, _, _ := msgp.ReadStringZC(d.skip)
			return id
		}
		end, ok := d.span(i, '}')
		if !ok || in[end] != ',' {
			return nil
		}
		i = d.ws(end + 1)
	}
	return nil
}

// timeLayouts are the forms of an event time accepted besides RFC 3339:
// Graph writes UTC with a Z and 7 fractional digits, but a missing zone (read
// as UTC) or a space for the T must not lose an event.
var timeLayouts = []string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"}

// ParseTime reads an event time.
func ParseTime(s string) (time.Time, error) {
	if t, ok := parseUTC(s); ok {
		return t, nil
	}
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

// parseUTC reads the forms Microsoft writes, 2006-01-02T15:04:05 with an
// optional fraction of up to 9 digits and an optional Z, without
// time.Parse's allocations; it reports false for anything else, which
// ParseTime then reads the slow way.
func parseUTC(s string) (time.Time, bool) {
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	num := func(i, n int) int {
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	hour, minute, sec := num(11, 2), num(14, 2), num(17, 2)
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return time.Time{}, false
	}
	if day > 28 && time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC).Day() != day {
		return time.Time{}, false
	}
	i, nsec := 19, 0
	if i < len(s) && s[i] == '.' {
		i++
		digits := 0
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			if digits == 9 {
				return time.Time{}, false
			}
			nsec = nsec*10 + int(s[i]-'0')
			digits++
		}
		if digits == 0 {
			return time.Time{}, false
		}
		for ; digits < 9; digits++ {
			nsec *= 10
		}
	}
	if i < len(s) && s[i] == 'Z' {
		i++
	}
	if i != len(s) {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
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
	switch c := in[i]; {
	case c == '{':
		if depth > SafeDepth {
			return d.text(out, i, depth)
		}
		return d.object(out, i, depth)
	case c == '[':
		if depth > SafeDepth {
			return d.text(out, i, depth)
		}
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
		out, n = d.extra(out, depth, n)
		return finishContainer(out, hdr, n, 0x80, 0xde, 0xdf), i + 1, nil
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
			case string(k) == d.idField():
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
			s, _, e := msgp.ReadStringZC(out[valStart:])
			switch {
			case e == nil && capture == 1:
				d.id, d.hasID = append(d.id[:0], s...), true
			case e == nil:
				d.when, d.hasWhen = append(d.when[:0], s...), true
			case capture == 1:
				d.badID = true
			default:
				d.badWhen = true
			}
		}
		n++
		i = d.ws(i)
		if i < len(in) && in[i] == ',' {
			i = d.ws(i + 1)
			continue
		}
		if i < len(in) && in[i] == '}' {
			out, n = d.extra(out, depth, n)
			return finishContainer(out, hdr, n, 0x80, 0xde, 0xdf), i + 1, nil
		}
		return out, i, d.errAt(i, "expected ',' or '}'")
	}
}

// extra appends the Extra pairs to a top-level object of n members.
func (d *Decoder) extra(out []byte, depth, n int) ([]byte, int) {
	if depth != 1 || d.ExtraCount == 0 {
		return out, n
	}
	return append(out, d.Extra...), n + d.ExtraCount
}

// SetExtra makes every record carry the string pairs kv (key, value, key,
// value...) as its last top-level keys.
func (d *Decoder) SetExtra(kv ...string) {
	d.Extra, d.ExtraCount = d.Extra[:0], len(kv)/2
	for _, s := range kv[:2*d.ExtraCount] {
		d.Extra = msgp.AppendString(d.Extra, s)
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
// surrogates with U+FFFD, as encoding/json does (and Fluent Bit 5's JSON
// encoder; 3.x and 4.x write invalid bytes as private-use characters, and
// msgpack outputs would pass them on to receivers that refuse them), and
// notes that it did.
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
						d.badText = true
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
			d.badText = true
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
// integers, others float64, except a number float64 cannot hold (beyond
// ±1.8e308, or non-zero and below 4.9e-324), which becomes a string of its
// text: Fluent Bit's JSON outputs would write ±Inf as inf, which is not JSON,
// and 0 is not the number sent.
func (d *Decoder) number(out []byte, i int) ([]byte, int, error) {
	in := d.in
	start := i
	if in[i] == '-' {
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
		if in[start] == '-' {
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
	// A number of valid syntax fails only by being out of range.
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || (f == 0 && nonZero(text)) {
		d.bigNum = true
		return append(appendStrHeader(out, len(text)), text...), i, nil
	}
	return msgp.AppendFloat64(out, f), i, nil
}

// nonZero reports whether a number's digits before its exponent are not
// all zero.
func nonZero(text string) bool {
	for i := 0; i < len(text) && text[i] != 'e' && text[i] != 'E'; i++ {
		if '1' <= text[i] && text[i] <= '9' {
			return true
		}
	}
	return false
}

// text appends the container at i, nested deeper than SafeDepth, as a
// string of its JSON text, exactly as sent (invalid UTF-8 aside).
func (d *Decoder) text(out []byte, i, depth int) ([]byte, int, error) {
	end, high, err := d.validate(i, depth)
	if err != nil {
		return out, end, err
	}
	raw := d.in[i:end]
	d.deep = true
	if high && !utf8.Valid(raw) {
		d.badText = true
		s := d.scratch[:0]
		for j := 0; j < len(raw); {
			r, size := utf8.DecodeRune(raw[j:])
			if r == utf8.RuneError && size == 1 {
				s = utf8.AppendRune(s, utf8.RuneError)
			} else {
				s = append(s, raw[j:j+size]...)
			}
			j += size
		}
		d.scratch = s
		raw = s
	}
	return append(appendStrHeader(out, len(raw)), raw...), end, nil
}

// validate checks the JSON container at i, at the given depth, without
// recursion, and returns the index after it and whether a string in it has
// bytes above ASCII.
func (d *Decoder) validate(i, depth int) (int, bool, error) {
	in := d.in
	st := d.stack[:0]
	high := false
	var err error
	// Escapes and numbers are decoded to check them; what they decode to
	// is not delivered, so it changes nothing in the record.
	badText, bigNum := d.badText, d.bigNum
	defer func() { d.stack, d.badText, d.bigNum = st, badText, bigNum }()
	for {
		// A value is expected at i.
		if i >= len(in) {
			return i, high, d.errAt(i, "expected a value")
		}
		switch c := in[i]; {
		case c == '{' || c == '[':
			if depth+len(st) > maxDepth {
				return i, high, d.errAt(i, msgTooDeep)
			}
			st = append(st, c)
			if i = d.ws(i + 1); i < len(in) && in[i] == c+2 {
				st = st[:len(st)-1]
				i++
				break
			}
			if c == '{' {
				if i, err = d.member(i, &high); err != nil {
					return i, high, err
				}
			}
			continue
		case c == '"':
			if i, err = d.checkString(i, &high); err != nil {
				return i, high, err
			}
		case c == 't' && len(in)-i >= 4 && string(in[i:i+4]) == "true",
			c == 'n' && len(in)-i >= 4 && string(in[i:i+4]) == "null":
			i += 4
		case c == 'f' && len(in)-i >= 5 && string(in[i:i+5]) == "false":
			i += 5
		case c == '-' || ('0' <= c && c <= '9'):
			if d.num, i, err = d.number(d.num[:0], i); err != nil {
				return i, high, err
			}
		default:
			return i, high, d.errAt(i, "invalid value")
		}
		// After a value: close what it ends, or go on to the next element.
		for {
			if len(st) == 0 {
				return i, high, nil
			}
			i = d.ws(i)
			if i >= len(in) {
				return i, high, d.errAt(i, "")
			}
			top := st[len(st)-1]
			if in[i] == top+2 {
				st = st[:len(st)-1]
				i++
				continue
			}
			if in[i] != ',' {
				if top == '{' {
					return i, high, d.errAt(i, "expected ',' or '}'")
				}
				return i, high, d.errAt(i, "expected ',' or ']'")
			}
			if i = d.ws(i + 1); top == '{' {
				if i, err = d.member(i, &high); err != nil {
					return i, high, err
				}
			}
			break
		}
	}
}

// member checks an object's key and colon at i, and returns the index of
// the value.
func (d *Decoder) member(i int, high *bool) (int, error) {
	in := d.in
	if i >= len(in) || in[i] != '"' {
		return i, d.errAt(i, "expected a key")
	}
	i, err := d.checkString(i, high)
	if err != nil {
		return i, err
	}
	if i = d.ws(i); i >= len(in) || in[i] != ':' {
		return i, d.errAt(i, "expected ':'")
	}
	return d.ws(i + 1), nil
}

// checkString checks the string at i, escapes included.
func (d *Decoder) checkString(i int, high *bool) (int, error) {
	start, end, esc, h, next, err := d.scanString(i)
	if err != nil {
		return next, err
	}
	*high = *high || h
	if esc {
		if d.scratch, err = d.unescape(d.scratch[:0], d.in[start:end], start); err != nil {
			return next, err
		}
	}
	return next, nil
}
