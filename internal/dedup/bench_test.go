package dedup

import (
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/records"
)

// guid returns a random key as a sign-in id gives it.
func guid(r *rand.Rand) records.Key {
	var k records.Key
	binary.LittleEndian.PutUint64(k[:8], r.Uint64())
	binary.LittleEndian.PutUint64(k[8:], r.Uint64())
	k[6] = k[6]&0x0f | 0x40
	k[8] = k[8]&0x3f | 0x80
	return k
}

// counterKey is a distinct random-looking key for each n, cheaper to make
// than a random one (splitmix64 is a bijection).
func counterKey(n uint64) records.Key {
	var k records.Key
	z := n*0x9e3779b97f4a7c15 + 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	binary.LittleEndian.PutUint64(k[:8], z^z>>31)
	binary.LittleEndian.PutUint64(k[8:], n)
	return k
}

// busyTenant is a set holding a 24 h horizon of a tenant of n sign-ins a
// day, and the time of the newest.
func busyTenant(r *rand.Rand, n int) (*Set, int64, time.Duration) {
	s := New()
	step := 24 * time.Hour / time.Duration(n)
	t := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for range n {
		s.Add(guid(r), t)
		t += int64(step)
	}
	return s, t, step
}

// heapBytes is the live heap after a collection.
func heapBytes() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestBytesPerID guards the set's size: a 24 h horizon of one million ids
// must stay within 40 bytes per id of live heap, both when filled and once
// a day of ids has come and gone (deleted slots then make the table grow
// once). A size is a property of the layout, stable from run to run,
// unlike a time.
func TestBytesPerID(t *testing.T) {
	if raceEnabled {
		t.Skip("a size check, not a concurrency one, and a million inserts take seconds under the race detector: make test runs it without -race")
	}
	n := 1_000_000
	r := rand.New(rand.NewPCG(1, 1))
	before := heapBytes()
	s, tm, step := busyTenant(r, n)
	filled := float64(heapBytes()-before) / float64(n)
	for i := range n {
		s.Add(guid(r), tm)
		tm += int64(step)
		if i%1000 == 999 {
			s.Expire(tm-int64(24*time.Hour), nil)
		}
	}
	steady := float64(heapBytes()-before) / float64(s.Len())
	runtime.KeepAlive(s)
	t.Logf("bytes per id at %d ids: %.1f filled, %.1f after a day of churn (load %.2f)", s.Len(), filled, steady, float64(s.Len())/float64(len(s.slots)))
	if s.Len() < n-n/500 || s.Len() > n+n/500 {
		t.Fatalf("%d ids held, want about %d", s.Len(), n)
	}
	if filled > 40 || steady > 40 {
		t.Fatalf("%.1f bytes per id filled, %.1f after churn, at %d ids; the budget is 40", filled, steady, n)
	}
}

// BenchmarkAddHas grows a set from empty: every key is new.
func BenchmarkAddHas(b *testing.B) {
	s := New()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := key(i)
		if !s.Has(k) {
			s.Add(k, int64(i)*1e6)
		}
		i++
	}
}

// BenchmarkSteadyState is the set as a busy tenant runs it: one million ids
// over a 24 h horizon; per iteration one new id looked up and added, one id
// already held looked up (each event is read about ten times), and every
// thousand ids (a page) the expiry of what fell out of the horizon. The
// held id is one of the last 32 768 added (the re-reads of the last
// lookback, mostly in cache), or, for "cold", any id of the horizon.
// Mops/s counts the three lookups and inserts of an iteration.
func BenchmarkSteadyState(b *testing.B) {
	for _, cold := range []bool{false, true} {
		name := "recent"
		if cold {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(2, 2))
			const n = 1_000_000
			s, t, step := busyTenant(r, n)
			// held is the horizon, oldest first from head: every id in it
			// is in the set.
			held := make([]records.Key, 0, n)
			s.Each(func(k records.Key, _ int64) { held = append(held, k) })
			head := 0
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				k := counterKey(uint64(i) + 1<<40)
				if !s.Has(k) {
					s.Add(k, t)
				}
				held[head] = k
				if head++; head == n {
					head = 0
				}
				var back int
				if cold {
					back = 1 + int(uint32(i)*2654435761%(n-2000))
				} else {
					back = 1 + (i*7919)%(1<<15)
				}
				if !s.Has(held[(head-back+n)%n]) {
					b.Fatal("an id of the horizon was not found")
				}
				t += int64(step)
				if i++; i%1000 == 0 {
					s.Expire(t-int64(24*time.Hour), nil)
				}
			}
			b.ReportMetric(float64(b.N)*3/b.Elapsed().Seconds()/1e6, "Mops/s")
		})
	}
}

// BenchmarkExpire measures expiry per expired id at two set sizes: the
// cost must not depend on how many ids stay. Each iteration adds a minute
// of ids and expires one; ns/expired-id times the expiry alone.
func BenchmarkExpire(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(strconv.Itoa(n/1000)+"k", func(b *testing.B) {
			r := rand.New(rand.NewPCG(3, 3))
			s, t, step := busyTenant(r, n)
			expired := 0
			var spent time.Duration
			for b.Loop() {
				for range int(time.Minute / step) {
					s.Add(guid(r), t)
					t += int64(step)
				}
				start := time.Now()
				expired += s.Expire(t-int64(24*time.Hour), nil)
				spent += time.Since(start)
			}
			b.ReportMetric(float64(spent.Nanoseconds())/float64(max(expired, 1)), "ns/expired-id")
		})
	}
}

// BenchmarkBytesPerID reports the live heap per id at one million ids.
func BenchmarkBytesPerID(b *testing.B) {
	var perID float64
	for b.Loop() {
		before := heapBytes()
		s, _, _ := busyTenant(rand.New(rand.NewPCG(4, 4)), 1_000_000)
		perID = float64(heapBytes()-before) / 1e6
		runtime.KeepAlive(s)
	}
	b.ReportMetric(perID, "B/id")
}
