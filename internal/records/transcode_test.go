package records

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
)

const sample = `{"id":"66ea54eb-6301-4ee5-be62-ff5a759b0100","createdDateTime":"2020-03-13T19:15:41.6195833Z",
 "userDisplayName":"Zoë Ångström \"the admin\" \\ 東京 😀","ipAddress":"131.107.159.37","isInteractive":true,
 "riskEventTypes":[],"status":{"errorCode":0,"failureReason":null,"additionalDetails":"tab\there\nnew line \u0001 \u00e9 \ud83d\ude00 \/"},
 "location":{"city":"Redmond","geoCoordinates":{"altitude":null,"latitude":47.68050003051758,"longitude":-122.12094116210938}},
 "big":18446744073709551615,"bigger":123456789012345678901234567890,"neg":-9223372036854775808,"exp":1e-7,"zero":0,"negzero":-0,
 "appliedConditionalAccessPolicies":[{"id":"de7e60eb-ed89-4d73-8205-2227def6b7c9","enforcedGrantControls":[],"result":"notEnabled"}],
 "nested":[[1,[2,[3,{}]]],{"a":[true,false,null]}]}`

// jsonSemantics decodes JSON the way the transcoder is specified to: numbers
// that fit int64 or uint64 stay integers, the rest float64.
func jsonSemantics(t testing.TB, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	return normalize(v)
}

func normalize(v any) any {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return i
			}
			if u, err := strconv.ParseUint(s, 10, 64); err == nil {
				return u
			}
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
	}
	return v
}

// msgpSemantics widens msgpack integers the same way.
func msgpSemantics(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = msgpSemantics(e)
		}
	case []any:
		for i, e := range x {
			x[i] = msgpSemantics(e)
		}
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
	}
	return v
}

func decodeOne(t testing.TB, obj string) (Record, Event, []byte) {
	t.Helper()
	d := Decoder{TimeField: "createdDateTime"}
	var p Page
	if err := d.DecodePage([]byte(`{"value":[`+obj+`]}`), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != 1 {
		t.Fatalf("%d records, %d invalid (%s)", len(p.Records), p.Invalid, p.FirstInvalid)
	}
	evs, err := DecodeEvents(p.Buf)
	if err != nil || len(evs) != 1 {
		t.Fatalf("decode: %v", err)
	}
	return p.Records[0], evs[0], p.Buf
}

func TestTranscodeFidelity(t *testing.T) {
	rec, ev, _ := decodeOne(t, sample)
	want := jsonSemantics(t, []byte(sample))
	got := msgpSemantics(any(ev.Fields))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fields differ:\n got %#v\nwant %#v", got, want)
	}
	wantTime := time.Date(2020, 3, 13, 19, 15, 41, 619583300, time.UTC)
	if !ev.Time.Equal(wantTime) || rec.Created != wantTime.UnixNano() {
		t.Fatalf("time %v (%d), want %v", ev.Time, rec.Created, wantTime)
	}
	if rec.Key != KeyOf([]byte("66EA54EB-6301-4ee5-be62-ff5a759b0100")) {
		t.Fatal("GUID key must not depend on letter case")
	}
	if s := ev.Fields["userDisplayName"]; s != "Zoë Ångström \"the admin\" \\ 東京 😀" {
		t.Fatalf("unicode: %q", s)
	}
}

func TestKeyOrderAndTypesPreserved(t *testing.T) {
	_, _, buf := decodeOne(t, `{"z":1,"id":"x","a":2.5,"createdDateTime":"2024-01-01T00:00:00Z","m":"s","n":null,"t":true,"u":-3}`)
	body := buf[1+10:]
	n, rest, err := msgp.ReadMapHeaderBytes(body)
	if err != nil || n != 8 {
		t.Fatalf("map header %d %v", n, err)
	}
	var keys []string
	var types []msgp.Type
	for range n {
		var k string
		k, rest, _ = msgp.ReadStringBytes(rest)
		keys = append(keys, k)
		types = append(types, msgp.NextType(rest))
		rest, _ = msgp.Skip(rest)
	}
	if got := strings.Join(keys, ","); got != "z,id,a,createdDateTime,m,n,t,u" {
		t.Fatalf("key order %s", got)
	}
	want := []msgp.Type{msgp.IntType, msgp.StrType, msgp.Float64Type, msgp.StrType, msgp.StrType, msgp.NilType, msgp.BoolType, msgp.IntType}
	if !reflect.DeepEqual(types, want) {
		t.Fatalf("types %v, want %v", types, want)
	}
}

func TestContainerSizes(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, 65535, 65536, 70000} {
		var sb strings.Builder
		sb.WriteString(`{"id":"a","createdDateTime":"2024-01-01T00:00:00Z","arr":[`)
		for i := range n {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprint(&sb, i)
		}
		sb.WriteString(`],"obj":{`)
		for i := range n {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `"k%d":%d`, i, i)
		}
		sb.WriteString(`}}`)
		_, ev, _ := decodeOne(t, sb.String())
		if len(ev.Fields["arr"].([]any)) != n || len(ev.Fields["obj"].(map[string]any)) != n {
			t.Fatalf("n=%d: sizes %d %d", n, len(ev.Fields["arr"].([]any)), len(ev.Fields["obj"].(map[string]any)))
		}
		if n > 0 && msgpSemantics(ev.Fields["arr"].([]any)[n-1]) != int64(n-1) {
			t.Fatalf("n=%d: last element wrong", n)
		}
	}
}

func TestTimePrecision(t *testing.T) {
	rows := map[string]time.Time{
		"2024-05-06T07:08:09Z":           time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
		"2024-05-06T07:08:09.1Z":         time.Date(2024, 5, 6, 7, 8, 9, 100000000, time.UTC),
		"2024-05-06T07:08:09.1234567Z":   time.Date(2024, 5, 6, 7, 8, 9, 123456700, time.UTC),
		"2024-05-06T07:08:09.123456789Z": time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC),
		"2024-05-06T09:08:09.5+02:00":    time.Date(2024, 5, 6, 7, 8, 9, 500000000, time.UTC),
		"2024-05-06t07:08:09.1234567z":   time.Date(2024, 5, 6, 7, 8, 9, 123456700, time.UTC),
		"2024-05-06T07:08:09.1234567":    time.Date(2024, 5, 6, 7, 8, 9, 123456700, time.UTC),
		"2024-05-06 07:08:09Z":           time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
		"2024-05-06 07:08:09.25":         time.Date(2024, 5, 6, 7, 8, 9, 250000000, time.UTC),
	}
	for in, want := range rows {
		rec, ev, _ := decodeOne(t, `{"id":"x","createdDateTime":"`+in+`"}`)
		if !ev.Time.Equal(want) || rec.Created != want.UnixNano() {
			t.Errorf("%s: got %v, want %v", in, ev.Time, want)
		}
	}
}

func TestPageEnvelope(t *testing.T) {
	d := Decoder{TimeField: "createdDateTime"}
	var p Page
	body := `{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns","@odata.nextLink":"https://graph.microsoft.com/v1.0/auditLogs/signIns?$top=1&$skiptoken=9177f2e3\u0026x","value":[
	{"id":"1","createdDateTime":"2024-01-01T00:00:01Z"},{"createdDateTime":"2024-01-01T00:00:02Z"},
	{"id":"3","createdDateTime":"yesterday"},{"id":"4"},[1],{"id":"6","createdDateTime":"2024-01-01T00:00:06Z"}],"extra":{"x":[1,2]}}`
	if err := d.DecodePage([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	if p.NextLink != "https://graph.microsoft.com/v1.0/auditLogs/signIns?$top=1&$skiptoken=9177f2e3&x" {
		t.Fatalf("nextLink %q", p.NextLink)
	}
	if len(p.Records) != 2 || p.Invalid != 4 || p.FirstInvalid != "an object has no id" {
		t.Fatalf("records %d invalid %d %q", len(p.Records), p.Invalid, p.FirstInvalid)
	}
	evs, err := DecodeEvents(p.Buf)
	if err != nil || len(evs) != 2 || evs[1].Fields["id"] != "6" {
		t.Fatalf("events %v %v", evs, err)
	}
	for i, r := range p.Records {
		one, err := DecodeEvents(p.Buf[r.Start:r.End])
		if err != nil || len(one) != 1 || one[0].Fields["id"] != evs[i].Fields["id"] {
			t.Fatalf("record span %d wrong", i)
		}
	}
	// A decoder is reused: the previous page leaves nothing behind.
	if err := d.DecodePage([]byte(`{"value":[]}`), &p); err != nil || len(p.Records) != 0 || len(p.Buf) != 0 || p.NextLink != "" || p.Invalid != 0 {
		t.Fatalf("reuse: %v %+v", err, p)
	}
}

func TestMalformedPages(t *testing.T) {
	full := []byte(`{"value":[{"id":"1","createdDateTime":"2024-01-01T00:00:01Z","s":"abc\"def"}],"@odata.nextLink":"https://x/y"}`)
	d := Decoder{TimeField: "createdDateTime"}
	var p Page
	// Every truncation of a valid page is an error, never a shorter page.
	for n := range len(full) {
		if err := d.DecodePage(full[:n], &p); err == nil {
			t.Fatalf("truncated at %d accepted: %q", n, full[:n])
		}
	}
	// A page whose structure cannot be followed fails as a whole.
	rows := map[string]string{
		`{}`:                               ErrNoValue.Error(),
		`{"odata":1}`:                      ErrNoValue.Error(),
		`<html>Bad gateway</html>`:         "malformed JSON at byte 0: the response is not a JSON object",
		`{"value":{}}`:                     `malformed JSON at byte 9: "value" is not an array`,
		`{"value":[]} x`:                   "malformed JSON at byte 13: data after the end of the response",
		`{"value":[{"a":1]}`:               "malformed JSON at byte 16: expected ',' or '}'",
		`{"value":[{"a":"1}]}`:             "malformed JSON at byte 20: unexpected end of data (truncated response?)",
		`{"value":[1,]}`:                   "malformed JSON at byte 12: invalid value",
		`{"value":[,1]}`:                   "malformed JSON at byte 10: invalid value",
		`{"value":[{"x":[}]]}`:             "malformed JSON at byte 16: invalid value",
		`{"@odata.nextLink":5,"value":[]}`: "malformed JSON at byte 19: @odata.nextLink is not a string",
		`{"@odata.count":tru,"value":[]}`:  "malformed JSON at byte 16: invalid value",
		`{"value":[{"a":1}}{"b":2}]}`:      "malformed JSON at byte 17: expected ',' or ']' in value",
	}
	for in, want := range rows {
		err := d.DecodePage([]byte(in), &p)
		if err == nil || err.Error() != want {
			t.Errorf("%s: got %v, want %s", in, err, want)
		}
	}
	// An element that is malformed but whose end can be found is skipped on
	// its own, and the page goes on.
	skipped := map[string]string{
		`01`:        "malformed JSON at byte 11: expected ',' or ']' in value",
		`{"a":tru}`: "malformed JSON at byte 15: invalid value",
		`{"a" 1}`:   "malformed JSON at byte 15: expected ':'",
		"\"a\nb\"":  "malformed JSON at byte 12: control character in string",
		`"\x"`:      "malformed JSON at byte 11: bad escape",
		`1.`:        "malformed JSON at byte 12: invalid number",
		`1e`:        "malformed JSON at byte 12: invalid number",
		`"\u12"`:    `malformed JSON at byte 11: bad \u escape`,
		`-`:         "malformed JSON at byte 11: invalid number",
		`{1:1}`:     "malformed JSON at byte 11: expected a key",
		`{"a":1} x`: "malformed JSON at byte 18: expected ',' or ']' in value",
	}
	good := `{"id":"g","createdDateTime":"2024-01-01T00:00:01Z"}`
	for in, want := range skipped {
		err := d.DecodePage([]byte(`{"value":[`+in+`,`+good+`]}`), &p)
		if err != nil || p.Invalid != 1 || p.FirstInvalid != want || len(p.Records) != 1 {
			t.Errorf("%s: %v, %d records, %d skipped (%q), want one skipped: %s", in, err, len(p.Records), p.Invalid, p.FirstInvalid, want)
		}
	}
}

func TestInvalidUTF8AndSurrogates(t *testing.T) {
	_, ev, _ := decodeOne(t, "{\"id\":\"x\",\"createdDateTime\":\"2024-01-01T00:00:00Z\",\"a\":\"\xff\xfe ok\",\"b\":\"\\ud800 lone\",\"c\":\"\\udc00\\ud800\"}")
	want := jsonSemantics(t, []byte("{\"a\":\"\xff\xfe ok\",\"b\":\"\\ud800 lone\",\"c\":\"\\udc00\\ud800\"}")).(map[string]any)
	for _, k := range []string{"a", "b", "c"} {
		if ev.Fields[k] != want[k] {
			t.Errorf("%s: got %q, want %q", k, ev.Fields[k], want[k])
		}
	}
}

func TestKeyOf(t *testing.T) {
	a := KeyOf([]byte("66ea54eb-6301-4ee5-be62-ff5a759b0100"))
	if a[0] != 0x66 || a[15] != 0x00 || a[14] != 0x01 {
		t.Fatalf("guid bytes %x", a)
	}
	if KeyOf([]byte("Directory_1")) == KeyOf([]byte("Directory_2")) {
		t.Fatal("hash collision")
	}
	if KeyOf([]byte("66ea54eb-6301-4ee5-be62-ff5a759b010g")) == KeyOf([]byte("66ea54eb-6301-4ee5-be62-ff5a759b0100")) {
		t.Fatal("non-hex GUID-like id must hash")
	}
}

func TestHealthRecordRoundTrip(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	b := AppendRecord(nil, now, []Field{{"msgraph_warning", "throttled"}, {"count", 3}, {"wait", 1500 * time.Millisecond}, {"ok", true}, {"ratio", 0.5}})
	evs, err := DecodeEvents(b)
	if err != nil || len(evs) != 1 {
		t.Fatal(err)
	}
	f := evs[0].Fields
	if !evs[0].Time.Equal(now) || f["msgraph_warning"] != "throttled" || f["count"] != int64(3) || f["wait"] != 1.5 || f["ok"] != true || f["ratio"] != 0.5 {
		t.Fatalf("%+v", evs[0])
	}
}

func FuzzDecodePage(f *testing.F) {
	f.Add([]byte(`{"value":[` + sample + `]}`))
	f.Add([]byte(`{"@odata.nextLink":"https://graph.microsoft.com/v1.0/x?$skiptoken=1","value":[]}`))
	f.Add([]byte(`{"value":[{"id":"1","createdDateTime":"2024-01-01T00:00:01Z","n":[1e400,-0.0,12345678901234567890123]}]}`))
	f.Add([]byte("{\"value\":[\"\\ud83d\\ude00\xff\"]}"))
	f.Add([]byte(`{"value":[{"id":"1","createdDateTime":"2024-01-01T00:00:01Z","n":[1e-400,-1E400,0e-999,1e9999999999,-1e-9999999999,0e9999999999]},{"id":"2","createdDateTime":"2024-01-01T00:00:01Z","a":tru},{"id":"3","createdDateTime":"2024-01-01T00:00:01Z"}]}`))
	f.Add([]byte(`{"value":[{"id":"1","createdDateTime":"2024-01-01T00:00:01Z","d":` + nest(SafeDepth+2, `{"k":[1, "\u00e9\ud800"]}`) + `}]}`))
	f.Add([]byte(`{"value":[{"id":"1","createdDateTime":"2024-01-01T00:00:01Z","d":` + nest(maxDepth, `1`) + `},{"id":"2"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		d := Decoder{TimeField: "createdDateTime"}
		var p Page
		if err := d.DecodePage(body, &p); err != nil {
			return
		}
		evs, err := DecodeEvents(p.Buf)
		if err != nil || len(evs) != len(p.Records) {
			t.Fatalf("output does not decode: %v", err)
		}
		if len(p.Skipped) != min(p.Invalid, MaxListed) || p.Deep.Count > len(evs) || p.Numbers.Count > len(evs) || p.Text.Count > len(evs) {
			t.Fatalf("counts: %d skipped listed of %d, altered %d %d %d of %d", len(p.Skipped), p.Invalid, p.Deep.Count, p.Numbers.Count, p.Text.Count, len(evs))
		}
		if !json.Valid(body) {
			// Only elements of value may be malformed, and they are skipped.
			if p.Invalid == 0 {
				t.Fatalf("accepted invalid JSON %q", body)
			}
			return
		}
		var env struct{ Value []json.RawMessage }
		if err := json.Unmarshal(body, &env); err != nil {
			return
		}
		j := 0
		for _, raw := range env.Value {
			if j < len(evs) && bytes.Contains(raw, []byte(`"id"`)) {
				want := representable(t, raw, 1)
				if m, ok := want.(map[string]any); ok && reflect.DeepEqual(msgpSemantics(any(evs[j].Fields)), m) {
					j++
				}
			}
		}
		if j != len(evs) {
			t.Fatalf("only %d of %d records match encoding/json", j, len(evs))
		}
	})
}

func TestVersionedKeys(t *testing.T) {
	d := Decoder{TimeField: "lastUpdateDateTime", Versioned: true}
	var p Page
	body := `{"value":[
	{"id":"alert-1","lastUpdateDateTime":"2026-01-01T00:00:00Z","status":"new"},
	{"id":"alert-1","lastUpdateDateTime":"2026-01-01T01:00:00Z","status":"inProgress"},
	{"id":"alert-1","lastUpdateDateTime":"2026-01-01T01:00:00.000+00:00","status":"inProgress"},
	{"id":"alert-2","lastUpdateDateTime":"2026-01-01T00:00:00Z","status":"new"}]}`
	if err := d.DecodePage([]byte(body), &p); err != nil || len(p.Records) != 4 {
		t.Fatalf("%v %d", err, len(p.Records))
	}
	k := func(i int) Key { return p.Records[i].Key }
	if k(0) == k(1) || k(1) != k(2) || k(0) == k(3) {
		t.Fatal("an update is (id, time): two times are two updates, two spellings of one time are one")
	}
	plain := Decoder{TimeField: "lastUpdateDateTime"}
	var q Page
	plain.DecodePage([]byte(body), &q)
	if q.Records[0].Key != q.Records[1].Key {
		t.Fatal("without Versioned the key is the id")
	}
}

// A content blob of the Management Activity API: a JSON array of records
// identified by Id, whose CreationTime has no zone (UTC).
func TestDecodeArray(t *testing.T) {
	d := Decoder{TimeField: "CreationTime", IDField: "Id"}
	var p Page
	body := []byte(` [{"CreationTime":"2026-12-01T10:11:12","Id":"0b6d3e1c-6b0a-4f57-9b8e-2d1f00000001","Operation":"UserLoggedIn","RecordType":15},
		{"Id":"0b6d3e1c-6b0a-4f57-9b8e-2d1f00000002","CreationTime":"2026-12-01T10:11:13.5"},
		{"id":"lower-case","CreationTime":"2026-12-01T10:11:14"},
		{"Id":"x","CreationTime":"yesterday"},
		[1,2]] `)
	if err := d.DecodeArray(body, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != 2 || p.Invalid != 3 {
		t.Fatalf("%d records, %d invalid (%s)", len(p.Records), p.Invalid, p.SkippedReasons())
	}
	want := time.Date(2026, 12, 1, 10, 11, 12, 0, time.UTC)
	if p.Records[0].Created != want.UnixNano() || p.Records[1].Created != want.Add(1500*time.Millisecond).UnixNano() {
		t.Fatalf("times %v %v", time.Unix(0, p.Records[0].Created).UTC(), time.Unix(0, p.Records[1].Created).UTC())
	}
	if p.Records[0].Key != KeyOf([]byte("0b6d3e1c-6b0a-4f57-9b8e-2d1f00000001")) {
		t.Fatal("key is not of Id")
	}
	for _, r := range []string{"an object has no Id", `an object has an unreadable CreationTime "yesterday"`, "an element is not a JSON object"} {
		if !strings.Contains(p.SkippedReasons(), r) {
			t.Errorf("reasons %q lack %q", p.SkippedReasons(), r)
		}
	}
	evs, err := DecodeEvents(p.Buf)
	if err != nil || len(evs) != 2 || !evs[0].Time.Equal(want) {
		t.Fatalf("%v %+v", err, evs)
	}
	for _, bad := range []string{`{"value":[]}`, `[{"Id":"a","CreationTime":"2026-12-01T10:11:12"}`, `[] []`, ``} {
		if err := d.DecodeArray([]byte(bad), &p); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if err := d.DecodeArray([]byte(`[]`), &p); err != nil || len(p.Records) != 0 {
		t.Fatalf("empty array: %v", err)
	}
}

// The fast path reads what time.Parse reads, and leaves the rest to it.
func TestParseTimeFastPath(t *testing.T) {
	for _, s := range []string{"2026-12-01T10:11:12", "2026-12-01T10:11:12Z", "2026-12-01T10:11:12.5", "2026-12-01T10:11:12.1234567Z",
		"2024-02-29T23:59:59.999999999Z", "0001-01-01T00:00:00", "2026-12-01T10:11:12+02:00", "2026-12-01t10:11:12z", "2026-12-01 10:11:12"} {
		got, err := ParseTime(s)
		want, werr := time.Parse("2006-01-02T15:04:05.999999999Z07:00", strings.ToUpper(s))
		if werr != nil {
			want, werr = time.Parse("2006-01-02T15:04:05.999999999", strings.ToUpper(s))
		}
		if werr != nil {
			want, werr = time.Parse("2006-01-02 15:04:05.999999999", s)
		}
		if err != nil || werr != nil || !got.Equal(want) {
			t.Errorf("%q: %v %v, want %v %v", s, got, err, want, werr)
		}
	}
	for _, s := range []string{"2026-02-30T10:11:12", "2026-13-01T10:11:12", "2026-12-01T24:00:00", "2026-12-01T10:11:12.", "2026-12-01T10:11:12.1234567890Z",
		"2026-12-01T10:11:12ZZ", "2026-12-01T1a:11:12", "2026-12-01T10:11:60"} {
		if _, ok := parseUTC(s); ok {
			t.Errorf("%q read by the fast path", s)
		}
		if _, err := ParseTime(s); err == nil && s != "2026-12-01T10:11:60" && s != "2026-12-01T10:11:12.1234567890Z" {
			t.Errorf("%q: no error", s)
		}
	}
}

// SetExtra's pairs are the last top-level keys of every record, whatever
// the object's size (a map header that grows past 15 members), and only
// at the top level.
func TestExtraKeysAreLast(t *testing.T) {
	d := Decoder{TimeField: "createdDateTime"}
	d.SetExtra("msgraph_tenant", "contoso.onmicrosoft.com")
	fifteen := `{"id":"b","createdDateTime":"2024-01-01T00:00:00Z"`
	for i := range 13 {
		fifteen += fmt.Sprintf(`,"k%d":{"nested":%d}`, i, i)
	}
	fifteen += "}"
	var p Page
	if err := d.DecodePage([]byte(`{"value":[{"id":"a","createdDateTime":"2024-01-01T00:00:00Z","x":{}},`+fifteen+`]}`), &p); err != nil {
		t.Fatal(err)
	}
	evs, err := DecodeEvents(p.Buf)
	if err != nil || len(evs) != 2 {
		t.Fatalf("decode: %d events, %v", len(evs), err)
	}
	for i, want := range []int{4, 16} {
		body := p.Buf[p.Records[i].Start+11 : p.Records[i].End]
		n, rest, err := msgp.ReadMapHeaderBytes(body)
		if err != nil || int(n) != want {
			t.Fatalf("record %d: %d keys (%v), want %d", i, n, err, want)
		}
		var k, v string
		for range n {
			k, rest, _ = msgp.ReadStringBytes(rest)
			if k == "msgraph_tenant" {
				v, rest, _ = msgp.ReadStringBytes(rest)
				continue
			}
			rest, _ = msgp.Skip(rest)
		}
		if k != "msgraph_tenant" || v != "contoso.onmicrosoft.com" {
			t.Fatalf("record %d: last key %q = %q", i, k, v)
		}
		if x, ok := evs[i].Fields["x"].(map[string]any); i == 0 && (!ok || len(x) != 0) {
			t.Fatalf("a nested object gained keys: %v", evs[i].Fields["x"])
		}
	}
}
