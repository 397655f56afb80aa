package dedup

import (
	"encoding/binary"
	"testing"

	"github.com/in-msgraph/in_msgraph/internal/records"
)

func key(i int) records.Key {
	var k records.Key
	binary.BigEndian.PutUint64(k[8:], uint64(i))
	return k
}

const min = int64(60e9)

func TestAddHasExpire(t *testing.T) {
	s := New()
	for i := range 100 {
		s.Add(key(i), int64(i)*min) // one per minute
	}
	s.Add(key(5), 99*min) // a second add keeps the first time
	if s.Len() != 100 || !s.Has(key(0)) || !s.Has(key(99)) || s.Has(key(100)) {
		t.Fatal("membership")
	}
	var gone []records.Key
	n := s.Expire(50*min+1, func(k records.Key) { gone = append(gone, k) })
	if n != 50 || len(gone) != 50 || s.Has(key(49)) || !s.Has(key(50)) || s.Len() != 50 {
		t.Fatalf("expired %d, len %d", n, s.Len())
	}
	if s.Oldest() != 50*min {
		t.Fatalf("oldest %d", s.Oldest())
	}
	if n := s.Expire(0, nil); n != 0 {
		t.Fatal("expiring the past removed keys")
	}
}

func TestExpireKeepsStraddlingBucket(t *testing.T) {
	s := New()
	s.Add(key(1), 10*min+1)
	s.Add(key(2), 10*min+min/2)
	s.Expire(10*min+min/4, nil) // cutoff inside the bucket: keep both
	if s.Len() != 2 {
		t.Fatal("a key newer than the cutoff was expired")
	}
	s.Expire(11*min, nil)
	if s.Len() != 0 {
		t.Fatal("bucket wholly older was kept")
	}
}

func TestNegativeTimes(t *testing.T) {
	s := New()
	s.Add(key(1), -min/2)
	s.Add(key(2), min/2)
	s.Expire(0, nil)
	if s.Has(key(1)) != false || !s.Has(key(2)) {
		t.Fatal("floor division of negative times")
	}
}

func TestCountRange(t *testing.T) {
	s := New()
	for i := range 600 {
		s.Add(key(i), int64(i)*1e9*10) // one per 10 s over 100 min
	}
	rows := []struct {
		from, to int64
		want     int
	}{
		{0, 599 * 10e9, 600},
		{5e9, 15e9, 1},
		{10e9, 20e9, 2},
		{30 * min, 60*min - 1, 180},
		{-min, -1, 0},
		{200 * min, 300 * min, 0},
	}
	for _, r := range rows {
		if got := s.CountRange(r.from, r.to); got != r.want {
			t.Errorf("CountRange(%d,%d) = %d, want %d", r.from, r.to, got, r.want)
		}
	}
}

func TestExpiryIsProportionalToWhatExpires(t *testing.T) {
	s := New()
	for i := range 10000 {
		s.Add(key(i), int64(i)*1e9) // ~167 minutes
	}
	calls := 0
	s.Expire(2*min, func(records.Key) { calls++ })
	if calls != 120 || s.Len() != 10000-120 || len(s.order) != 165 {
		t.Fatalf("calls %d len %d buckets %d", calls, s.Len(), len(s.order))
	}
}

// Bytes follows what the tables hold: about the measured bytes per id.
func TestBytesFollowsTheTables(t *testing.T) {
	s := New()
	if s.Bytes() != 0 {
		t.Fatalf("empty set holds %d bytes", s.Bytes())
	}
	for i := range 100_000 {
		s.Add(key(i), int64(i)*1e9)
	}
	if per := float64(s.Bytes()) / float64(s.Len()); per < 20 || per > 45 {
		t.Fatalf("%.1f bytes per id", per)
	}
}
