package records

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
)

// page builds a Graph page of n simulator sign-ins.
func page(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	b.WriteString(`{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns","@odata.nextLink":"https://graph.microsoft.com/v1.0/auditLogs/signIns?$top=1000&$skiptoken=abc","value":[`)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(graphsim.SignIn(rng, graphsim.NewID(rng), t0.Add(time.Duration(i)*time.Second)))
	}
	b.WriteString("]}")
	return b.Bytes()
}

// baselineDecode is what most Go plugins do: encoding/json into
// map[string]any, then a msgpack library encode of each object. Numbers are
// read as json.Number and given the transcoder's types (int64 when they
// fit, uint64, else float64), so that both produce the same records.
func baselineDecode(body []byte, out []byte) ([]byte, int, error) {
	var env struct {
		Value    []map[string]any `json:"value"`
		NextLink string           `json:"@odata.nextLink"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&env); err != nil {
		return out, 0, err
	}
	n := 0
	for _, obj := range env.Value {
		s, _ := obj["createdDateTime"].(string)
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			continue
		}
		out = append(out, 0x92)
		out = AppendEventTime(out, t)
		if out, err = appendBaseline(out, obj); err != nil {
			return out, n, err
		}
		n++
	}
	return out, n, nil
}

func appendBaseline(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return msgp.AppendInt64(b, i), nil
			}
			if u, err := strconv.ParseUint(s, 10, 64); err == nil {
				return msgp.AppendUint64(b, u), nil
			}
		}
		f, _ := strconv.ParseFloat(s, 64)
		return msgp.AppendFloat64(b, f), nil
	case map[string]any:
		b = msgp.AppendMapHeader(b, uint32(len(x)))
		var err error
		for k, e := range x {
			b = msgp.AppendString(b, k)
			if b, err = appendBaseline(b, e); err != nil {
				return b, err
			}
		}
		return b, nil
	case []any:
		b = msgp.AppendArrayHeader(b, uint32(len(x)))
		var err error
		for _, e := range x {
			if b, err = appendBaseline(b, e); err != nil {
				return b, err
			}
		}
		return b, nil
	}
	return msgp.AppendIntf(b, v)
}

// canonical returns the msgpack value b with every map's entries sorted by
// key and everything else, headers included, byte for byte as it was: two
// encodings that differ only in map order (a Go map has none) become equal.
func canonical(t testing.TB, b []byte) []byte {
	t.Helper()
	var out []byte
	for len(b) > 0 {
		var err error
		if out, b, err = canonicalValue(out, b); err != nil {
			t.Fatalf("canonical: %v", err)
		}
	}
	return out
}

func canonicalValue(out, b []byte) ([]byte, []byte, error) {
	switch msgp.NextType(b) {
	case msgp.MapType:
		n, rest, err := msgp.ReadMapHeaderBytes(b)
		if err != nil {
			return out, b, err
		}
		out = append(out, b[:len(b)-len(rest)]...)
		type kv struct{ k, v []byte }
		pairs := make([]kv, 0, n)
		for range n {
			after, err := msgp.Skip(rest)
			if err != nil {
				return out, b, err
			}
			k := rest[:len(rest)-len(after)]
			var v []byte
			if v, rest, err = canonicalValue(nil, after); err != nil {
				return out, b, err
			}
			pairs = append(pairs, kv{k, v})
		}
		slices.SortStableFunc(pairs, func(a, c kv) int { return bytes.Compare(a.k, c.k) })
		for _, p := range pairs {
			out = append(append(out, p.k...), p.v...)
		}
		return out, rest, nil
	case msgp.ArrayType:
		n, rest, err := msgp.ReadArrayHeaderBytes(b)
		if err != nil {
			return out, b, err
		}
		out = append(out, b[:len(b)-len(rest)]...)
		for range n {
			if out, rest, err = canonicalValue(out, rest); err != nil {
				return out, b, err
			}
		}
		return out, rest, nil
	}
	rest, err := msgp.Skip(b)
	if err != nil {
		return out, b, err
	}
	return append(out, b[:len(b)-len(rest)]...), rest, nil
}

// TestTranscoderMatchesBaseline checks that the transcoder's records are
// byte for byte the baseline's, once map order (which a Go map does not
// keep) is set aside: same types, same integer and float encodings, same
// strings after unescaping, same headers.
func TestTranscoderMatchesBaseline(t *testing.T) {
	bodies := [][]byte{page(1000), []byte(`{"value":[` + sample + `]}`)}
	for i, body := range bodies {
		want, n, err := baselineDecode(body, nil)
		if err != nil {
			t.Fatal(err)
		}
		d := Decoder{TimeField: "createdDateTime"}
		var p Page
		if err := d.DecodePage(body, &p); err != nil || len(p.Records) != n {
			t.Fatalf("page %d: %d records, baseline %d: %v", i, len(p.Records), n, err)
		}
		if got, w := canonical(t, p.Buf), canonical(t, want); !bytes.Equal(got, w) {
			at := 0
			for at < min(len(got), len(w)) && got[at] == w[at] {
				at++
			}
			t.Fatalf("page %d: output differs from the baseline at byte %d of %d/%d", i, at, len(got), len(w))
		}
	}
}

// TestTranscoderAllocations guards the transcoder's cost: decoding a page
// into a reused Page allocates nothing in steady state, whatever the number
// of records (an allocation count is stable where a time is not).
func TestTranscoderAllocations(t *testing.T) {
	body := page(1000)
	d := Decoder{TimeField: "createdDateTime"}
	var p Page
	if err := d.DecodePage(body, &p); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		if err := d.DecodePage(body, &p); err != nil || len(p.Records) != 1000 {
			t.Fatal(err)
		}
	})
	if perRecord := allocs / 1000; perRecord > 0.01 {
		t.Fatalf("%.0f allocations per page of 1000 records (%.3f per record); steady state must allocate nothing", allocs, perRecord)
	}
}

// BenchmarkDecodePage is the transcoder on a page of 1000 simulator
// sign-ins; MB/s is of input JSON.
func BenchmarkDecodePage(b *testing.B) {
	body := page(1000)
	d := Decoder{TimeField: "createdDateTime"}
	var p Page
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := d.DecodePage(body, &p); err != nil || len(p.Records) != 1000 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/record")
	b.ReportMetric(float64(len(body))/1000, "B/record")
}

// BenchmarkDecodePageBaseline is the same page through encoding/json and a
// msgpack encoder.
func BenchmarkDecodePageBaseline(b *testing.B) {
	body := page(1000)
	var out []byte
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var n int
		var err error
		if out, n, err = baselineDecode(body, out[:0]); err != nil || n != 1000 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/record")
}
