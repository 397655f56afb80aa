package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
)

// TestEndToEndO365 runs examples/o365.yaml in a real Fluent Bit: five
// inputs, one per content type of the Management Activity API, none of
// them subscribed yet. Blobs are listed late and out of order and repeat
// records of other blobs with their keys reordered; Fluent Bit is stopped
// and started again on the same state files while more blobs arrive.
// Every record comes out exactly once, field for field and in its key
// order, timestamped with its CreationTime.
func TestEndToEndO365(t *testing.T) {
	fluentBit(t)
	sim := graphsim.Start(t, graphsim.Options{Seed: 90, Throttle: true})
	r := prepareExample(t, "o365.yaml", sim)
	rng := mrand.New(mrand.NewPCG(90, 1))
	want := map[string][][]byte{} // Id -> the forms it was sent in
	created := map[string]time.Time{}
	sent := map[string][][]byte{} // per content type: the records sent
	add := func(n int, from, to time.Time, listedLate time.Duration) {
		for _, ct := range graphsim.ContentTypes {
			for k := 0; k < n; k++ {
				at := from.Add(time.Duration(rng.Int64N(int64(to.Sub(from)))))
				b := graphsim.Blob{ContentType: ct, Created: at}
				if k%3 == 0 {
					b.Listed = at.Add(listedLate)
				}
				for range 5 + rng.IntN(20) {
					id := graphsim.NewID(rng)
					when := at.Add(-time.Duration(rng.Int64N(int64(3 * time.Hour)))).Truncate(time.Second)
					rec := graphsim.AuditRecord(ct, id, when, graphsim.DefaultTenantID)
					want[id], created[id] = [][]byte{rec}, when
					b.Records = append(b.Records, rec)
				}
				// Records of earlier blobs of the type again, reordered.
				for range 3 {
					if len(sent[ct]) == 0 {
						break
					}
					orig := sent[ct][rng.IntN(len(sent[ct]))]
					var id struct{ Id string }
					json.Unmarshal(orig, &id)
					again := graphsim.ReorderKeys(orig, rng.Uint64())
					want[id.Id] = append(want[id.Id], again)
					b.Records = append(b.Records, again)
				}
				for _, rec := range b.Records {
					sent[ct] = append(sent[ct], rec)
				}
				sim.AddBlobs(b)
			}
		}
	}
	now := time.Now()
	add(6, now.Add(-10*time.Minute), now, 3*time.Second)
	count := func(out string) (events []map[string]any, health []map[string]any) {
		return splitHealth(jsonObjects(t, out))
	}
	fb, stdout := r.start("-e", plugin(t))
	first := len(want)
	waitFor(t, fb, 90*time.Second, fmt.Sprintf("%d records on stdout", first), func() bool {
		ev, _ := count(stdout.String())
		return len(ev) >= first
	})
	fb.stop(t)
	out1 := stdout.String()
	_, health1 := count(out1)
	started := 0
	for _, h := range health1 {
		if h["msgraph_warning"] == "subscription_started" {
			started++
		}
	}
	for _, ct := range graphsim.ContentTypes {
		if !sim.Subscribed(ct) {
			t.Errorf("%s is not subscribed", ct)
		}
	}
	if started != 5 {
		t.Errorf("%d subscription_started records, want 5", started)
	}

	// More blobs, created while Fluent Bit starts again and after.
	now = time.Now()
	add(4, now, now.Add(15*time.Second), 2*time.Second)
	fb, stdout = r.start("-e", plugin(t))
	waitFor(t, fb, 90*time.Second, fmt.Sprintf("%d records on stdout in all", len(want)), func() bool {
		ev, _ := count(stdout.String())
		ev1, _ := count(out1)
		return len(ev)+len(ev1) >= len(want)
	})
	time.Sleep(3 * time.Second) // a duplicate would show now
	fb.stop(t)
	out := out1 + stdout.String()

	seen := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") || strings.Contains(line, `"msgraph_warning"`) {
			continue
		}
		var rec map[string]any
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		if err := dec.Decode(&rec); err != nil {
			t.Fatalf("%v: %.200s", err, line)
		}
		id, _ := rec["Id"].(string)
		forms, ok := want[id]
		if !ok {
			t.Fatalf("a record no blob held: %.200s", line)
		}
		if seen[id]++; seen[id] > 1 {
			continue
		}
		date, _ := rec["date"].(json.Number).Float64()
		if got := time.Unix(0, int64(date*1e9)).UTC(); got.Sub(created[id]).Abs() > time.Millisecond {
			t.Errorf("%s: record time %v, want its CreationTime %v", id, got, created[id])
		}
		delete(rec, "date")
		keys := jsonKeyOrder(t, line)
		if keys[0] != "date" {
			t.Errorf("%s: json_lines did not put date first: %v", id, keys)
		}
		match := false
		for _, f := range forms {
			var w map[string]any
			dec := json.NewDecoder(bytes.NewReader(f))
			dec.UseNumber()
			dec.Decode(&w)
			match = match || reflect.DeepEqual(w, rec) && slices.Equal(jsonKeyOrder(t, string(f)), keys[1:])
		}
		if !match {
			t.Errorf("%s: delivered %.300s, sent %.300s", id, line, forms[0])
		}
	}
	missing, doubled := 0, 0
	for id := range want {
		switch n := seen[id]; {
		case n == 0:
			missing++
		case n > 1:
			doubled += n - 1
		}
	}
	t.Logf("%d records in %d blobs of 5 content types: %d delivered, %d missing, %d doubled across a restart", len(want), 50, len(seen), missing, doubled)
	if missing+doubled > 0 {
		t.Fatalf("%d missing, %d doubled", missing, doubled)
	}
}

// jsonKeyOrder is the top-level keys of one JSON object, in order.
func jsonKeyOrder(t *testing.T, obj string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(obj))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}
