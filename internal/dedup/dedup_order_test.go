package dedup

import (
	"math/rand/v2"
	"testing"
)

// TestBucketOrder adds minutes newest first (a backlog), oldest first
// (live polls) and at random, and checks the buckets stay sorted and
// complete, and that the cheap side of the window is the one that moves.
func TestBucketOrder(t *testing.T) {
	s := New()
	r := rand.New(rand.NewPCG(1, 1))
	var want int
	add := func(m int64) {
		s.Add(key(want), m*min+1)
		want++
	}
	for m := int64(1000); m > 0; m-- {
		add(m)
	}
	for m := int64(2000); m < 3000; m++ {
		add(m)
	}
	for range 1000 {
		add(1000 + r.Int64N(1000))
	}
	if s.Len() != want {
		t.Fatalf("%d keys, want %d", s.Len(), want)
	}
	total := 0
	for i, b := range s.order {
		if i > 0 && b.minute <= s.order[i-1].minute {
			t.Fatalf("bucket %d (minute %d) after minute %d", i, b.minute, s.order[i-1].minute)
		}
		total += int(b.n)
	}
	if total != want || s.CountRange(0, 3000*min) != want {
		t.Fatalf("buckets hold %d keys, CountRange %d, want %d", total, s.CountRange(0, 3000*min), want)
	}
	if len(s.buf) > 4*len(s.order)+16 {
		t.Fatalf("the bucket window takes %d slots for %d buckets", len(s.buf), len(s.order))
	}
}
