package records

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// nest wraps inner in n containers, alternating {"k":…} and […]: the
// outermost is one level deeper than where it is placed, inner n levels.
func nest(n int, inner string) string {
	var open, close strings.Builder
	for i := range n {
		if i%2 == 0 {
			open.WriteString(`{"k":`)
		} else {
			open.WriteString(`[`)
		}
	}
	for i := n - 1; i >= 0; i-- {
		if i%2 == 0 {
			close.WriteString(`}`)
		} else {
			close.WriteString(`]`)
		}
	}
	return open.String() + inner + close.String()
}

// representable is what the transcoder is specified to deliver for the JSON
// value raw at depth (the record's map is 1), built from encoding/json: a
// container deeper than SafeDepth is the string of its text, invalid UTF-8
// in it replaced byte by byte; a number float64 cannot hold (±Inf, or a
// non-zero number that would read as 0) is the string of its text; other
// numbers as jsonSemantics has them.
func representable(t testing.TB, raw []byte, depth int) any {
	t.Helper()
	raw = bytes.TrimSpace(raw)
	switch raw[0] {
	case '{', '[':
		if depth > SafeDepth {
			var s strings.Builder
			for _, r := range string(raw) {
				s.WriteRune(r)
			}
			return s.String()
		}
		if raw[0] == '[' {
			var a []json.RawMessage
			if err := json.Unmarshal(raw, &a); err != nil {
				t.Fatal(err)
			}
			out := make([]any, len(a))
			for i, e := range a {
				out[i] = representable(t, e, depth+1)
			}
			return out
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		out := make(map[string]any, len(m))
		for k, e := range m {
			out[k] = representable(t, e, depth+1)
		}
		return out
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		s := string(raw)
		exact, _, err := big.ParseFloat(s, 10, 64, big.ToNearestEven)
		if err != nil {
			// An exponent beyond big.Float's range on non-zero digits (zero
			// digits parse): far outside float64's range either way.
			return s
		}
		if f, acc := exact.Float64(); (f == 0 && exact.Sign() != 0) || (acc != big.Exact && (f > 1.7976931348623157e308 || f < -1.7976931348623157e308)) {
			return s
		}
		if f, err := strconv.ParseFloat(s, 64); err != nil || f != f {
			return s
		}
	}
	return jsonSemantics(t, raw)
}

// decodePage decodes body and fails on an error.
func decodePage(t *testing.T, body string) (*Page, []Event) {
	t.Helper()
	d := Decoder{TimeField: "createdDateTime"}
	p := new(Page)
	if err := d.DecodePage([]byte(body), p); err != nil {
		t.Fatalf("the page fails: %v", err)
	}
	evs, err := DecodeEvents(p.Buf)
	if err != nil || len(evs) != len(p.Records) {
		t.Fatalf("output does not decode: %v", err)
	}
	return p, evs
}

func rec(id string, extra string) string {
	return `{"id":"` + id + `","createdDateTime":"2024-01-01T00:00:00Z"` + extra + `}`
}

func ids(evs []Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, fmt.Sprint(e.Fields["id"]))
	}
	return strings.Join(s, ",")
}

// TestOneRecordNeverStopsThePage: a valid record nested 601 levels deep
// used to fail the page, and so every later query of its time. It is
// skipped on its own, with its id, wherever the id is.
func TestOneRecordNeverStopsThePage(t *testing.T) {
	deep := strings.Repeat("[", 600) + strings.Repeat("]", 600)
	body := `{"value":[` + rec("a", "") + `,` + rec("deep-1", `,"n":`+deep) + `,` +
		`{"n":` + deep + `,"createdDateTime":"2024-01-01T00:00:00Z","id":"deep-2"}` + `,` + rec("b", "") + `]}`
	p, evs := decodePage(t, body)
	if ids(evs) != "a,b" {
		t.Fatalf("delivered %s, want a,b", ids(evs))
	}
	want := []Skipped{{"deep-1", "an object is nested more than 512 levels deep"}, {"deep-2", "an object is nested more than 512 levels deep"}}
	if p.Invalid != 2 || !reflect.DeepEqual(p.Skipped, want) || p.FirstInvalid != want[0].Reason {
		t.Fatalf("skipped %d %+v", p.Invalid, p.Skipped)
	}
	if got := p.SkippedIDs(); got != "deep-1, deep-2" {
		t.Fatalf("SkippedIDs %q", got)
	}
	if got := p.SkippedReasons(); got != want[0].Reason {
		t.Fatalf("SkippedReasons %q", got)
	}

	// 512 levels are delivered (what lies past SafeDepth as text), 513 not.
	at512 := rec("at-512", `,"n":`+strings.Repeat("[", 511)+strings.Repeat("]", 511))
	at513 := rec("at-513", `,"n":`+strings.Repeat("[", 512)+strings.Repeat("]", 512))
	p, evs = decodePage(t, `{"value":[`+at512+`,`+at513+`]}`)
	if ids(evs) != "at-512" || p.Invalid != 1 || p.Skipped[0].ID != "at-513" {
		t.Fatalf("delivered %s, skipped %+v", ids(evs), p.Skipped)
	}
}

// TestSkippedRecordsSayWhyAndWhich: every kind of element that cannot be
// delivered is skipped with its reason and, when it can be read, its id,
// and the good records around it are delivered.
func TestSkippedRecordsSayWhyAndWhich(t *testing.T) {
	rows := []struct{ elem, id, reason string }{
		{`{"id":"m1","createdDateTime":"2024-01-01T00:00:00Z","a":tru}`, "m1", "malformed JSON at byte 123: invalid value"},
		{`{"a":[1,2 3],"id":"m2"}`, "m2", "malformed JSON at byte 77: expected ',' or ']'"},
		{"{\"s\":\"a\tb\",\"id\":\"m3\"}", "m3", "malformed JSON at byte 74: control character in string"},
		{`{"id":"m4\x"}`, "", `malformed JSON at byte 76: bad escape`},
		{`{"id":7,"createdDateTime":"2024-01-01T00:00:00Z"}`, "", "an object has an id that is not a string"},
		{`{"id":null,"createdDateTime":"2024-01-01T00:00:00Z"}`, "", "an object has an id that is not a string"},
		{`{"id":"","createdDateTime":"2024-01-01T00:00:00Z"}`, "", "an object has an empty id"},
		{`{"createdDateTime":"2024-01-01T00:00:00Z"}`, "", "an object has no id"},
		{`{"id":"t1"}`, "t1", "an object has no createdDateTime"},
		{`{"id":"t2","createdDateTime":1704067200}`, "t2", "an object has a createdDateTime that is not a string"},
		{`{"id":"t3","createdDateTime":"yesterday"}`, "t3", `an object has an unreadable createdDateTime "yesterday"`},
		{`{"id":"t4","createdDateTime":"0001-01-01T00:00:00Z"}`, "t4", `an object has an unreadable createdDateTime "0001-01-01T00:00:00Z"`},
		{`"just a string"`, "", "an element is not a JSON object"},
		{`{"id":"line\nbreak\u0000","a":tru}`, "line\uFFFDbreak\uFFFD", "malformed JSON at byte 97: invalid value"},
	}
	for _, r := range rows {
		body := `{"value":[` + rec("before", "") + `,` + r.elem + `,` + rec("after", "") + `]}`
		p, evs := decodePage(t, body)
		if ids(evs) != "before,after" || p.Invalid != 1 || p.Skipped[0] != (Skipped{r.id, r.reason}) {
			t.Errorf("%s: delivered %s, skipped %d %+v, want {%s %s}", r.elem, ids(evs), p.Invalid, p.Skipped, r.id, r.reason)
		}
	}

	// The list is bounded; the count is not; a long id is cut.
	long := strings.Repeat("é", 100)
	var b strings.Builder
	b.WriteString(`{"value":[`)
	for i := range MaxListed + 5 {
		fmt.Fprintf(&b, `{"id":"%s%d"},`, long, i)
	}
	b.WriteString(rec("ok", "") + `]}`)
	p, evs := decodePage(t, b.String())
	if len(evs) != 1 || p.Invalid != MaxListed+5 || len(p.Skipped) != MaxListed {
		t.Fatalf("%d delivered, %d skipped, %d listed", len(evs), p.Invalid, len(p.Skipped))
	}
	if id := p.Skipped[0].ID; id != strings.Repeat("é", 64)+"…" {
		t.Fatalf("long id listed as %q", id)
	}
	if s := p.SkippedIDs(); !strings.HasSuffix(s, " and 5 more") || strings.Count(s, ", ") != MaxListed-1 {
		t.Fatalf("SkippedIDs %q", s)
	}
	if p.SkippedReasons() != "an object has no createdDateTime" {
		t.Fatalf("SkippedReasons %q", p.SkippedReasons())
	}
}

// TestDeepSubtreesBecomeText: a container at SafeDepth is delivered as it
// is, one deeper becomes a string holding exactly its JSON text, and the
// record is counted with its id.
func TestDeepSubtreesBecomeText(t *testing.T) {
	// "d" is at depth 2; nest(n) puts its innermost container at 1+n.
	inner := "{ \"x\" : [1, 2.5e3, \"\\u00e9\\\"\", {\"y\":null}] ,\n\t\"z\":{}}"
	atSafe := rec("at-safe", `,"d":`+nest(SafeDepth-1, `1`))
	beyond := rec("beyond", `,"d":`+nest(SafeDepth-1, inner))
	empty := rec("empty", `,"d":`+nest(SafeDepth-1, `[]`))
	p, evs := decodePage(t, `{"value":[`+atSafe+`,`+beyond+`,`+empty+`]}`)
	if len(evs) != 3 {
		t.Fatalf("%d delivered", len(evs))
	}
	// Walk down the SafeDepth-1 containers nest made, to what they hold.
	down := func(v any, steps int) any {
		for range steps {
			switch x := v.(type) {
			case map[string]any:
				v = x["k"]
			case []any:
				v = x[0]
			default:
				t.Fatalf("%T above SafeDepth", v)
			}
		}
		return v
	}
	switch v := down(evs[0].Fields["d"], SafeDepth-2).(type) {
	case map[string]any, []any:
		if down(v, 1) != int64(1) {
			t.Fatalf("at SafeDepth: %#v", v)
		}
	default:
		t.Fatalf("the container at SafeDepth is a %T", v)
	}
	if v := down(evs[1].Fields["d"], SafeDepth-1); v != inner {
		t.Fatalf("beyond SafeDepth: %#v, want the text %q", v, inner)
	}
	if v := down(evs[2].Fields["d"], SafeDepth-1); v != "[]" {
		t.Fatalf("an empty container beyond SafeDepth: %#v", v)
	}
	if p.Deep.Count != 2 || p.Deep.IDList() != "beyond, empty" || p.Numbers.Count != 0 || p.Text.Count != 0 {
		t.Fatalf("counted %+v %+v %+v", p.Deep, p.Numbers, p.Text)
	}
	for i, e := range evs {
		if !reflect.DeepEqual(msgpSemantics(any(e.Fields)), representable(t, []byte([]string{atSafe, beyond, empty}[i]), 1)) {
			t.Fatalf("record %d differs from the specification", i)
		}
	}

	// Invalid UTF-8 in the text is replaced, and counted too.
	bad := rec("bad", `,"d":`+nest(SafeDepth, "[\"a\xffb\"]"))
	p, evs = decodePage(t, `{"value":[`+bad+`]}`)
	if !reflect.DeepEqual(msgpSemantics(any(evs[0].Fields)), representable(t, []byte(bad), 1)) || p.Deep.Count != 1 || p.Text.Count != 1 {
		t.Fatalf("%+v %+v", p.Deep, p.Text)
	}
	if !strings.Contains(fmt.Sprint(evs[0].Fields), "a\uFFFDb") {
		t.Fatalf("not replaced: %v", evs[0].Fields)
	}

	// A malformed deep part makes its record malformed.
	p, evs = decodePage(t, `{"value":[`+rec("m", `,"d":`+nest(SafeDepth+3, `[1,]`))+`]}`)
	if len(evs) != 0 || p.Invalid != 1 || p.Skipped[0].ID != "m" || !strings.Contains(p.FirstInvalid, "invalid value") {
		t.Fatalf("%d delivered, %+v", len(evs), p.Skipped)
	}
}

// TestNumbersBeyondFloat64: a number float64 cannot hold is delivered as
// its text (Fluent Bit would write ±Inf as inf, which is not JSON, and 0 is
// not the number sent); the others as numbers.
func TestNumbersBeyondFloat64(t *testing.T) {
	text := []string{"1E400", "-1E400", "1e-400", "-1e-400", "1.7976931348623159e308", "2e-324", "1e9999999999", "-1e-9999999999", strings.Repeat("9", 400), "-" + strings.Repeat("9", 400)}
	numbers := map[string]any{
		"0e-999": 0.0, "0e9999999999": 0.0, "-0.0e-400": 0.0, "0.0": 0.0, "4.9e-324": 5e-324, "1.7976931348623157e308": 1.7976931348623157e308,
		"18446744073709551615": uint64(18446744073709551615), "-9223372036854775808": int64(-9223372036854775808),
		"123456789012345678901234567890": 1.2345678901234568e29, "1e308": 1e308,
	}
	var b strings.Builder
	b.WriteString(`{"value":[`)
	for i, s := range text {
		fmt.Fprintf(&b, `%s,`, rec("t"+strconv.Itoa(i), `,"n":`+s+`,"a":[`+s+`]`))
	}
	i := 0
	for s := range numbers {
		fmt.Fprintf(&b, `%s,`, rec("n"+strconv.Itoa(i), `,"n":`+s))
		i++
	}
	b.WriteString(rec("last", "") + `]}`)
	p, evs := decodePage(t, b.String())
	if len(evs) != len(text)+len(numbers)+1 || p.Invalid != 0 {
		t.Fatalf("%d delivered, %d skipped", len(evs), p.Invalid)
	}
	for i, s := range text {
		f := evs[i].Fields
		if f["n"] != s || f["a"].([]any)[0] != s {
			t.Errorf("%s: delivered %#v %#v", s, f["n"], f["a"])
		}
	}
	for _, e := range evs[len(text) : len(evs)-1] {
		n := e.Fields["n"]
		var want any
		for s, w := range numbers {
			if reflect.DeepEqual(n, w) {
				want = s
			}
		}
		if want == nil {
			t.Errorf("%s: %#v is not one of the numbers", e.Fields["id"], n)
		}
	}
	if p.Numbers.Count != len(text) || p.Numbers.IDs[0] != "t0" || p.Deep.Count != 0 || p.Text.Count != 0 {
		t.Fatalf("counted %+v", p.Numbers)
	}
	// Negative zero stays a float.
	_, ev, _ := decodeOne(t, rec("z", `,"n":-0.0`))
	if n, ok := ev.Fields["n"].(float64); !ok || n != 0 || !math.Signbit(n) {
		t.Fatalf("-0.0 delivered as %#v", ev.Fields["n"])
	}
}

// TestInvalidTextIsReplacedAndCounted: invalid UTF-8 and lone surrogate
// escapes become U+FFFD, as Fluent Bit 5's encoder writes them (3.x and 4.x
// write private-use characters instead), and the record is counted; a
// U+FFFD that was sent, or a surrogate pair, is not.
func TestInvalidTextIsReplacedAndCounted(t *testing.T) {
	rows := []struct {
		s, want string
		bad     bool
	}{
		{"a\xffb", "a\uFFFDb", true},
		{"\xe2\x82", "\uFFFD\uFFFD", true},
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD", true}, // a surrogate in UTF-8
		{`\ud800`, "\uFFFD", true},
		{`x\udc00\ud800y`, "x\uFFFD\uFFFDy", true},
		{`\ud83d\ude00`, "😀", false},
		{`\ufffd`, "\uFFFD", false},
		{"\uFFFD", "\uFFFD", false},
		{"é東", "é東", false},
	}
	for _, r := range rows {
		for _, where := range []string{"value", "key"} {
			extra := `,"s":"` + r.s + `"`
			if where == "key" {
				extra = `,"` + r.s + `":"s"`
			}
			p, evs := decodePage(t, `{"value":[`+rec("x", extra)+`]}`)
			got := evs[0].Fields["s"]
			if where == "key" {
				for k := range evs[0].Fields {
					if k != "id" && k != "createdDateTime" {
						got = k
					}
				}
			}
			if got != r.want || (p.Text.Count == 1) != r.bad || p.Invalid != 0 {
				t.Errorf("%q as a %s: %q, counted %d, want %q, %t", r.s, where, got, p.Text.Count, r.want, r.bad)
			}
			if r.bad && p.Text.IDList() != "x" {
				t.Errorf("%q: ids %q", r.s, p.Text.IDList())
			}
		}
	}
}
