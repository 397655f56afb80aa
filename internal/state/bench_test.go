package state

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/dedup"
	"github.com/in-msgraph/in_msgraph/internal/records"
)

// A busy tenant: one million sign-ins a day, a 24 h de-dup horizon.
const (
	horizonIDs = 1_000_000
	pageIDs    = 1000
)

var (
	t0   = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	step = int64(24 * time.Hour / horizonIDs)
)

func guid(r *rand.Rand) records.Key {
	var k records.Key
	binary.LittleEndian.PutUint64(k[:8], r.Uint64())
	binary.LittleEndian.PutUint64(k[8:], r.Uint64())
	k[6] = k[6]&0x0f | 0x40
	k[8] = k[8]&0x3f | 0x80
	return k
}

// schedule is a persisted schedule of the usual size.
var schedule = []byte(`{"lookback":1800000000000,"started":"2026-03-01T00:00:00Z","level_runs":[` +
	strings.Repeat(`"2026-03-01T00:00:00Z",`, 5) + `"2026-03-01T00:00:00Z"],"reconcile_cursors":["2026-03-01T00:00:00Z","2026-03-01T00:00:00Z","2026-03-01T00:00:00Z"],"pending":[],"next_id":1}`)

// busyFile writes a state file holding n ids, one every step from t0, in
// commits of a page each, and returns the ids in order.
func busyFile(tb testing.TB, path string, n int) []Entry {
	tb.Helper()
	d, err := Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer d.Close()
	r := rand.New(rand.NewPCG(1, 1))
	all := make([]Entry, n)
	for i := range all {
		all[i] = Entry{guid(r), t0 + int64(i)*step}
	}
	// Large commits keep the set-up short; the benchmarks then commit
	// page by page.
	for i := 0; i < n; i += 100_000 {
		if err := d.Commit(all[i:min(i+100_000, n)], nil, schedule); err != nil {
			tb.Fatal(err)
		}
	}
	return all
}

// BenchmarkCommit is the state write of one page as a busy tenant makes it
// at its steady state: a page of new ids added, as many expired ids
// removed, and the schedule replaced, in one transaction (fsync included).
// ns/op is wall time, mostly the disk's; cpu-ns/id is the process's CPU
// time.
func BenchmarkCommit(b *testing.B) {
	path := filepath.Join(b.TempDir(), "state.db")
	held := busyFile(b, path, horizonIDs) // a ring: oldest at held[first]
	first := 0
	d, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	r := rand.New(rand.NewPCG(2, 2))
	next := t0 + horizonIDs*step
	add := make([]Entry, pageIDs)
	del := make([]records.Key, pageIDs)
	b.ReportAllocs()
	pages := 0
	cpu0 := cpuTime()
	for b.Loop() {
		// A page is sorted newest first, as Graph sends it.
		for i := range add {
			add[len(add)-1-i] = Entry{guid(r), next}
			next += step
		}
		for i := range del {
			del[i] = held[first].Key
			held[first] = add[i]
			first = (first + 1) % len(held)
		}
		if err := d.Commit(add, del, schedule); err != nil {
			b.Fatal(err)
		}
		pages++
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pages*pageIDs), "ns/id")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(pages*pageIDs), "cpu-ns/id")
	b.ReportMetric(float64(cpu.Microseconds())/float64(pages), "cpu-µs/page")
	if fi, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(fi.Size())/horizonIDs, "file-B/id")
	}
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLoad is the start of a busy tenant's input: open the state file
// and load its million ids into the de-dup set.
func BenchmarkLoad(b *testing.B) {
	path := filepath.Join(b.TempDir(), "state.db")
	busyFile(b, path, horizonIDs)
	for b.Loop() {
		d, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		set := dedup.New()
		if _, err := d.Load(set.Add); err != nil || set.Len() != horizonIDs {
			b.Fatalf("%v: %d ids loaded", err, set.Len())
		}
		d.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e9, "s/load")
}
