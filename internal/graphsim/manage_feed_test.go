package graphsim

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"
)

var feedFrom = time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)

// feedRecordFields returns a generated record's Id and CreationTime,
// which the generator writes without spaces, in any key order.
func feedRecordFields(t *testing.T, rec []byte) (id, creation string) {
	t.Helper()
	field := func(key string, n int) string {
		i := bytes.Index(rec, []byte(`"`+key+`":"`))
		if i < 0 || i+len(key)+4+n > len(rec) {
			t.Fatalf("no %s in %s", key, rec)
		}
		return string(rec[i+len(key)+4 : i+len(key)+4+n])
	}
	return field("Id", 36), field("CreationTime", len(AuditTimeLayout))
}

func feedBody(t *testing.T, b Blob) []json.RawMessage {
	t.Helper()
	var recs []json.RawMessage
	if err := json.Unmarshal(b.Body(), &recs); err != nil {
		t.Fatalf("blob %s: %v", b.ID, err)
	}
	if len(recs) != b.N {
		t.Fatalf("blob %s: %d records, N %d", b.ID, len(recs), b.N)
	}
	return recs
}

// underRace reports whether the test binary has the race detector, under
// which the volume tests check fewer records in the same ways.
func underRace() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// TestFeedLayout checks every record of a feed of 200 k (40 k under the
// race detector): each is in exactly its home blob, and again only in the
// later blob Holders names, within DupGap, with its keys reordered; Home,
// Listed and CreationTime agree with the bodies.
func TestFeedLayout(t *testing.T) {
	perDay := 100e3
	if underRace() {
		perDay = 20e3
	}
	spec := FeedSpec{
		ContentType: ContentExchange, Seed: 42, From: feedFrom, To: feedFrom.Add(48 * time.Hour),
		PerDay: perDay, BlobRecords: 400, DupRate: 0.02, DupGap: 6 * time.Hour,
		ListLateMax: 3 * time.Hour, RecordLateMax: 21 * 24 * time.Hour, OutOfOrder: true, Compact: true,
	}
	f := NewFeed(spec)
	if want := 2 * perDay; float64(f.Records) < 0.95*want || float64(f.Records) > 1.05*want {
		t.Fatalf("%d records for 2 days of %g", f.Records, perDay)
	}
	home := make([]int32, f.Records) // blob index + 1 of each record's home
	dupIn := make([]int32, f.Records)
	var dups, outOfOrder int
	var perHour [24]int
	prevMax := ""
	for k, b := range f.Blobs {
		if k > 0 && !b.Created.After(f.Blobs[k-1].Created) {
			t.Fatalf("blob %d not after blob %d", k, k-1)
		}
		if late := b.Listed.Sub(b.Created); late < 0 || late > spec.ListLateMax {
			t.Errorf("blob %d listed %v late", k, late)
		}
		minCT, maxCT := "9", ""
		for _, rec := range feedBody(t, b) {
			id, ct := feedRecordFields(t, rec)
			i, ok := FeedRecordIndex(spec.Seed, id)
			if !ok {
				t.Fatalf("blob %d: record ID %s is not the feed's", k, id)
			}
			if want := f.CreationTime(i).Format(AuditTimeLayout); ct != want {
				t.Fatalf("record %d: CreationTime %s, want %s", i, ct, want)
			}
			h, d := f.Holders(i)
			switch {
			case h == k:
				if home[i] != 0 {
					t.Fatalf("record %d twice in its home blob %d", i, k)
				}
				home[i] = int32(k + 1)
				perHour[f.Blobs[k].Created.Hour()]++
				ctTime := f.CreationTime(i)
				if late := b.Created.Sub(ctTime); late < 0 || late > spec.RecordLateMax+time.Second {
					t.Fatalf("record %d is %v late", i, late)
				}
			case d == k:
				if dupIn[i] != 0 {
					t.Fatalf("record %d sent again twice", i)
				}
				dupIn[i] = int32(k + 1)
				dups++
				if gap := b.Created.Sub(f.Blobs[h].Created); gap <= 0 || gap > spec.DupGap {
					t.Fatalf("record %d sent again %v after its home blob", i, gap)
				}
				if dups <= 500 {
					checkDuplicate(t, f.Record(i), rec)
				}
			default:
				t.Fatalf("record %d in blob %d, holders %d and %d", i, k, h, d)
			}
			minCT, maxCT = min(minCT, ct), max(maxCT, ct)
		}
		if minCT < prevMax {
			outOfOrder++
		}
		prevMax = maxCT
	}
	for i := range f.Records {
		h, d := f.Holders(i)
		if int(home[i]) != h+1 {
			t.Fatalf("record %d: home blob %d, seen in %d", i, h, home[i]-1)
		}
		if d >= 0 != (dupIn[i] != 0) || d >= 0 && int(dupIn[i]) != d+1 {
			t.Fatalf("record %d: duplicate blob %d, seen in %d", i, d, dupIn[i]-1)
		}
		created, listed := f.Home(i)
		want := f.Blobs[h]
		if d >= 0 && f.Blobs[d].Listed.Before(want.Listed) {
			want = f.Blobs[d]
		}
		if !created.Equal(want.Created) || !listed.Equal(want.Listed) {
			t.Fatalf("record %d: Home %v %v, want %v %v", i, created, listed, want.Created, want.Listed)
		}
	}
	if r := float64(dups) / float64(f.Records); r < 0.015 || r > 0.025 {
		t.Errorf("duplicate rate %.4f", r)
	}
	if outOfOrder < len(f.Blobs)/2 {
		t.Errorf("only %d of %d blobs hold records older than the blob before", outOfOrder, len(f.Blobs))
	}
	// The day/night rhythm: afternoons are busier than nights.
	if day, night := perHour[13]+perHour[14]+perHour[15], perHour[1]+perHour[2]+perHour[3]; day < 2*night {
		t.Errorf("records 13-16 h: %d, 1-4 h: %d", day, night)
	}
}

// checkDuplicate asserts that dup is rec with its keys in another order.
func checkDuplicate(t *testing.T, rec, dup []byte) {
	t.Helper()
	var a, b map[string]any
	if json.Unmarshal(rec, &a) != nil || json.Unmarshal(dup, &b) != nil || !reflect.DeepEqual(a, b) {
		t.Fatalf("duplicate differs:\n%s\n%s", rec, dup)
	}
	if slices.Equal(keysOf(t, rec), keysOf(t, dup)) {
		t.Fatalf("duplicate in the same key order: %s", dup)
	}
}

func TestFeedInOrderFullRecords(t *testing.T) {
	spec := FeedSpec{ContentType: ContentAzureActiveDirectory, Seed: 5, From: feedFrom, To: feedFrom.Add(6 * time.Hour),
		PerDay: 20e3, BlobRecords: 50, DupRate: 0.05, DupGap: time.Hour, Tenant: otherTenant}
	f := NewFeed(spec)
	prev := time.Time{}
	for i := range f.Records {
		ct := f.CreationTime(i)
		if ct.Before(prev) {
			t.Fatalf("record %d at %v before record %d at %v", i, ct, i-1, prev)
		}
		prev = ct
	}
	n := 0
	for _, b := range f.Blobs {
		for _, raw := range feedBody(t, b) {
			var rec map[string]any
			if err := json.Unmarshal(raw, &rec); err != nil {
				t.Fatal(err)
			}
			if rec["OrganizationId"] != otherTenant || rec["Workload"] != "AzureActiveDirectory" || rec["Actor"] == nil {
				t.Fatalf("record %s", raw)
			}
			n++
		}
	}
	if n <= f.Records {
		t.Errorf("%d records served for %d unique", n, f.Records)
	}
	if !bytes.Equal(f.Record(0), []byte(feedBody(t, f.Blobs[0])[0])) && !strings.Contains(string(f.Blobs[0].Body()), string(f.Record(0))) {
		t.Error("Record(0) is not in its home blob")
	}
}

func TestFeedRecordID(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, i := range []int{0, 1, 2, 1e6, 1e8, 1 << 40, feedMaxRecords - 1} {
		id := FeedRecordID(9, i)
		if !isGUID(id) || id[14] != '4' || !strings.Contains("89ab", id[19:20]) {
			t.Errorf("record %d: %s is not a version 4 GUID", i, id)
		}
		for _, v := range []string{id, strings.ToUpper(id)} {
			if got, ok := FeedRecordIndex(9, v); !ok || got != i {
				t.Errorf("FeedRecordIndex(%s) = %d, %v, want %d", v, got, ok, i)
			}
		}
		if _, ok := FeedRecordIndex(10, id); ok {
			t.Errorf("record %d of seed 9 taken for seed 10", i)
		}
	}
	if FeedRecordID(9, 1) == FeedRecordID(10, 1) {
		t.Error("seeds share IDs")
	}
	for range 1000 {
		if _, ok := FeedRecordIndex(9, NewID(r)); ok {
			t.Fatal("a random GUID taken for a feed record")
		}
	}
	for _, bad := range []string{"", "x", "80c76bd2-9d81-4c57-a97a-accfc3443dc", "80c76bd2+9d81-4c57-a97a-accfc3443dca"} {
		if _, ok := FeedRecordIndex(9, bad); ok {
			t.Errorf("%q taken for a record ID", bad)
		}
	}
}

func TestFeedSpecPanics(t *testing.T) {
	for name, spec := range map[string]FeedSpec{
		"content type": {ContentType: "Audit.Nope", From: feedFrom, To: feedFrom.Add(time.Hour), PerDay: 1},
		"range":        {ContentType: ContentGeneral, From: feedFrom, To: feedFrom, PerDay: 1},
		"rate":         {ContentType: ContentGeneral, From: feedFrom, To: feedFrom.Add(time.Hour)},
		"dup rate":     {ContentType: ContentGeneral, From: feedFrom, To: feedFrom.Add(time.Hour), PerDay: 1, DupRate: 2},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			NewFeed(spec)
		}()
	}
}

// TestFeedScale lays out 100 M records, 10 M a day for 10 days, and
// serves them from a Server: the layout costs per blob, not per record.
func TestFeedScale(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	spec := FeedSpec{ContentType: ContentSharePoint, Seed: 77, From: feedFrom, To: feedFrom.Add(10 * 24 * time.Hour),
		PerDay: 10e6, BlobRecords: 1000, DupRate: 0.02, DupGap: 6 * time.Hour, ListLateMax: 3 * time.Hour,
		RecordLateMax: 21 * 24 * time.Hour, OutOfOrder: true, Compact: true}
	f := NewFeed(spec)
	s := New(Options{Now: NewClock(feedFrom.Add(10 * 24 * time.Hour)).Now})
	s.AddBlobs(f.Blobs...)
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d records in %d blobs: %d MB held, laid out and stored in %v", f.Records, len(f.Blobs), held>>20, time.Since(start).Round(time.Millisecond))
	if f.Records < 95e6 || f.Records > 105e6 {
		t.Errorf("%d records", f.Records)
	}
	if held > 256<<20 {
		t.Errorf("%d MB held for the feed", held>>20)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 3 {
		k := r.IntN(len(f.Blobs))
		for _, rec := range feedBody(t, f.Blobs[k]) {
			id, _ := feedRecordFields(t, rec)
			i, ok := FeedRecordIndex(spec.Seed, id)
			if h, d := f.Holders(i); !ok || h != k && d != k {
				t.Fatalf("blob %d holds record %d of blobs %d and %d", k, i, h, d)
			}
		}
	}
	runtime.KeepAlive(s)
}

// TestFeedServed reads a feed back through HTTP, as a client would: the
// listings of each day and every blob.
func TestFeedServed(t *testing.T) {
	spec := FeedSpec{ContentType: ContentGeneral, Seed: 8, From: feedFrom, To: feedFrom.Add(36 * time.Hour),
		PerDay: 20e3, BlobRecords: 200, DupRate: 0.03, DupGap: 2 * time.Hour, ListLateMax: time.Hour, OutOfOrder: true, Compact: true}
	f := NewFeed(spec)
	clock := NewClock(spec.To.Add(2 * time.Hour))
	s := Start(t, Options{Now: clock.Now, ManagePageSize: 50})
	s.AddBlobs(f.Blobs...)
	s.SetSubscribed(ContentGeneral, true)
	tok := manageToken(t, s, "https://manage.office.com/.default")
	seen := make([]int, f.Records)
	blobs, served := 0, 0
	for day := spec.From; day.Before(spec.To); day = day.Add(24 * time.Hour) {
		items, _ := listAllContent(t, feedURL(s, "subscriptions/content", windowQuery(ContentGeneral, day, day.Add(24*time.Hour))), tok)
		for _, it := range items {
			r := manageDo(t, http.MethodGet, it.ContentURI, tok)
			var recs []json.RawMessage
			if r.status != http.StatusOK || json.Unmarshal(r.body, &recs) != nil {
				t.Fatalf("blob %s: %d", it.ContentID, r.status)
			}
			for _, rec := range recs {
				id, _ := feedRecordFields(t, rec)
				i, _ := FeedRecordIndex(spec.Seed, id)
				seen[i]++
			}
			blobs++
			served += len(recs)
		}
	}
	if blobs != len(f.Blobs) {
		t.Errorf("%d blobs listed of %d", blobs, len(f.Blobs))
	}
	for i, n := range seen {
		_, d := f.Holders(i)
		if want := 1 + min(d+1, 1); n != want {
			t.Fatalf("record %d served %d times, want %d", i, n, want)
		}
	}
	if st := s.Stats(); st.BlobsServed != blobs || st.ManageRecords != served {
		t.Errorf("stats: %d blobs %d records, want %d %d", st.BlobsServed, st.ManageRecords, blobs, served)
	}
}

func BenchmarkFeedBody(b *testing.B) {
	for _, compact := range []bool{true, false} {
		name := "full"
		if compact {
			name = "compact"
		}
		b.Run(name, func(b *testing.B) {
			f := NewFeed(FeedSpec{ContentType: ContentAzureActiveDirectory, Seed: 7, From: feedFrom, To: feedFrom.Add(24 * time.Hour),
				PerDay: 10e6, BlobRecords: 1000, DupRate: 0.02, DupGap: 6 * time.Hour, ListLateMax: 3 * time.Hour,
				RecordLateMax: 21 * 24 * time.Hour, OutOfOrder: true, Compact: compact})
			records, size := 0, 0
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				blob := f.Blobs[i%len(f.Blobs)]
				size += len(blob.Body())
				records += blob.N
			}
			b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(size)/float64(records), "B/record")
		})
	}
}
