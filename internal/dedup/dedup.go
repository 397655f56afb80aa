// Package dedup holds the set of events already delivered, keyed by a
// 16-byte identity, each with its event time. An entry is kept until its
// event time falls behind the oldest time any future query can reach, so the
// set is bounded by that horizon. Expiry walks time buckets, so its cost is
// proportional to what expires, not to the size of the set.
package dedup

import (
	"sort"

	"github.com/in-msgraph/in_msgraph/internal/records"
)

// bucketNanos is the width of an expiry bucket: one minute.
const bucketNanos = int64(60e9)

// Set is a de-duplication set. It is not safe for concurrent use.
type Set struct {
	times   map[records.Key]int64 // key -> event time, Unix ns
	buckets map[int64][]records.Key
	order   []int64 // bucket ids, sorted ascending
}

// New returns an empty set.
func New() *Set {
	return &Set{times: map[records.Key]int64{}, buckets: map[int64][]records.Key{}}
}

// Len is the number of keys held.
func (s *Set) Len() int { return len(s.times) }

// Has reports whether k was delivered.
func (s *Set) Has(k records.Key) bool {
	_, ok := s.times[k]
	return ok
}

// Add records k with its event time; adding a key twice keeps the first.
func (s *Set) Add(k records.Key, t int64) {
	if _, ok := s.times[k]; ok {
		return
	}
	s.times[k] = t
	b := floorDiv(t, bucketNanos)
	keys, ok := s.buckets[b]
	if !ok {
		i := sort.Search(len(s.order), func(i int) bool { return s.order[i] >= b })
		s.order = append(s.order, 0)
		copy(s.order[i+1:], s.order[i:])
		s.order[i] = b
	}
	s.buckets[b] = append(keys, k)
}

// Expire removes every key whose event time is before cutoff and calls fn
// (if not nil) for each. Keys in the bucket that straddles cutoff stay until
// the whole bucket is older, which errs on the side of keeping.
func (s *Set) Expire(cutoff int64, fn func(records.Key)) int {
	n := 0
	limit := floorDiv(cutoff, bucketNanos) // buckets strictly below are wholly older
	i := 0
	for ; i < len(s.order) && s.order[i] < limit; i++ {
		for _, k := range s.buckets[s.order[i]] {
			delete(s.times, k)
			if fn != nil {
				fn(k)
			}
			n++
		}
		delete(s.buckets, s.order[i])
	}
	s.order = s.order[i:]
	return n
}

// CountRange counts keys whose event time is within [from, to].
func (s *Set) CountRange(from, to int64) int {
	n := 0
	lo, hi := floorDiv(from, bucketNanos), floorDiv(to, bucketNanos)
	i := sort.Search(len(s.order), func(i int) bool { return s.order[i] >= lo })
	for ; i < len(s.order) && s.order[i] <= hi; i++ {
		b := s.order[i]
		keys := s.buckets[b]
		if b > lo && b < hi {
			n += len(keys)
			continue
		}
		for _, k := range keys {
			if t := s.times[k]; t >= from && t <= to {
				n++
			}
		}
	}
	return n
}

// Oldest is the smallest event time held, or 0 when empty.
func (s *Set) Oldest() int64 {
	if len(s.order) == 0 {
		return 0
	}
	min := int64(0)
	for i, k := range s.buckets[s.order[0]] {
		if t := s.times[k]; i == 0 || t < min {
			min = t
		}
	}
	return min
}

// Each calls fn for every key, in no particular order.
func (s *Set) Each(fn func(k records.Key, t int64)) {
	for k, t := range s.times {
		fn(k, t)
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
