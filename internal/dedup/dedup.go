// Package dedup holds the set of events already delivered, keyed by a
// 16-byte identity, each with its event time. An entry is kept until its
// event time falls behind the oldest time any future query can reach, so the
// set is bounded by that horizon. Expiry walks time buckets, so its cost is
// proportional to what expires, not to the size of the set.
//
// A busy tenant keeps millions of ids for a day, so the layout is chosen for
// size. The ids live in one open-addressing table in the style of a Swiss
// table: groups of eight 20-byte slots (the key and the low 32 bits of the
// event time's offset within its minute) with one control byte each, which
// a lookup compares eight at a time. The table grows by a quarter at a time
// (its number of groups need not be a power of two), so its load stays high.
// Each minute bucket lists its slots in chunks of a shared arena, four bytes
// a key (the slot index and the offset's top bits), which an expiry walks
// without chasing one pointer per key. That is 31 to 37 bytes per id in all,
// where a Go map plus per-minute key lists took 75.
package dedup

import (
	"encoding/binary"
	"math/bits"
	"sort"
	"unsafe"

	"github.com/in-msgraph/in_msgraph/internal/records"
)

// bucketNanos is the width of an expiry bucket: one minute.
const bucketNanos = int64(60e9)

// A ref is a bucket's pointer to a slot: the slot index in the low 28 bits
// and bits 32 to 35 of the event time's offset within its minute (below
// 60e9 < 2^36) in the high 4.
type ref uint32

const (
	refBits = 28
	refMask = 1<<refBits - 1
	// maxGroups keeps every slot index within refBits.
	maxGroups = (1 << refBits) / groupSize
)

// Control bytes: a full slot holds the low 7 bits of its key's hash.
const (
	groupSize = 8
	ctrlEmpty = 0x80
	ctrlGone  = 0xfe // deleted: a probe must go on past it
	lsb       = 0x0101010101010101
	msb       = 0x8080808080808080
	allEmpty  = ctrlEmpty * lsb
)

// The table is rebuilt when 7/8 of its slots are taken, live or deleted: at
// its size when deleted slots made up much of that, else a quarter larger.
// A table that only fills is 0.7 to 0.875 full; one whose ids come and go
// settles near 0.65, where deleted slots accumulate slowly enough that
// rebuilds are rare.
const maxLoadNum, maxLoadDen = 7, 8

// Arena chunks: word 0 links to the next chunk of the bucket (its number
// plus one, 0 at the end), the other words are refs.
const (
	chunkWords = 16
	chunkRefs  = chunkWords - 1
)

type slot struct {
	key records.Key
	lo  uint32 // low 32 bits of the event time's offset within its minute
}

type bucket struct {
	minute      int64  // event time / bucketNanos, rounded down
	first, last uint32 // its first and last chunks
	n           uint32 // keys in the bucket
}

// Set is a de-duplication set. It is not safe for concurrent use.
type Set struct {
	ctrl   []uint64 // one word of eight control bytes per group
	slots  []slot   // groupSize per group
	used   int      // live keys
	left   int      // empty slots that may still be filled before a rehash
	order  []bucket // non-empty minute buckets, ascending: buf[lo:lo+len(order)]
	buf    []bucket
	lo     int
	recent int      // index in order of the bucket last added to
	arena  []uint32 // chunks of refs
	free   uint32   // first free chunk plus one, linked through word 0
}

// New returns an empty set.
func New() *Set { return &Set{} }

// Len is the number of keys held.
func (s *Set) Len() int { return s.used }

// Bytes is the memory the set's tables hold (their capacity, whatever is
// used of it).
func (s *Set) Bytes() int {
	return cap(s.ctrl)*8 + cap(s.slots)*int(unsafe.Sizeof(slot{})) + cap(s.buf)*int(unsafe.Sizeof(bucket{})) + cap(s.arena)*4
}

// hash mixes the key's two halves: GUIDs are random but for a few fixed
// bits, hashed ids are random, and small test keys are not random at all.
func hash(k *records.Key) uint64 {
	a := binary.LittleEndian.Uint64(k[:8])
	b := binary.LittleEndian.Uint64(k[8:])
	hi, lo := bits.Mul64(a^0x243f6a8885a308d3, b^0x13198a2e03707344)
	hi, lo = bits.Mul64(hi^lo^0xa4093822299f31d0, 0x082efa98ec4e6c89)
	return hi ^ lo
}

// matchByte has the top bit set in each byte of w equal to c (and possibly
// in a byte just above a match, which the key comparison rules out).
func matchByte(w uint64, c byte) uint64 {
	x := w ^ (lsb * uint64(c))
	return (x - lsb) &^ x & msb
}

// matchEmpty has the top bit set in each empty byte of w: the top bit set
// and bit 1 clear (a deleted byte has both).
func matchEmpty(w uint64) uint64 { return w &^ (w << 6) & msb }

// start is the first group a hash probes; the number of groups need not be
// a power of two, which lets the table grow by a quarter.
func (s *Set) start(h uint64) int {
	g, _ := bits.Mul64(h, uint64(len(s.ctrl)))
	return int(g)
}

// find returns the slot holding k, or -1.
func (s *Set) find(k *records.Key, h uint64) int {
	n := len(s.ctrl)
	if n == 0 {
		return -1
	}
	h2 := byte(h & 0x7f)
	for g, probes := s.start(h), 0; probes < n; probes++ {
		w := s.ctrl[g]
		for m := matchByte(w, h2); m != 0; m &= m - 1 {
			i := g*groupSize + bits.TrailingZeros64(m)>>3
			if s.slots[i].key == *k {
				return i
			}
		}
		if matchEmpty(w) != 0 {
			return -1
		}
		if g++; g == n {
			g = 0
		}
	}
	return -1
}

// Has reports whether k was delivered.
func (s *Set) Has(k records.Key) bool { return s.find(&k, hash(&k)) >= 0 }

// Add records k with its event time; adding a key twice keeps the first.
func (s *Set) Add(k records.Key, t int64) {
	h := hash(&k)
	if s.find(&k, h) >= 0 {
		return
	}
	if s.left == 0 {
		s.rehash()
	}
	minute := floorDiv(t, bucketNanos)
	off := uint64(t - minute*bucketNanos)
	i := s.insert(k, h)
	s.slots[i].lo = uint32(off)
	s.push(s.bucket(minute), ref(uint32(i)|uint32(off>>32)<<refBits))
	s.used++
}

// insert puts k into the first free slot of its probe sequence and returns
// the slot; the caller makes sure one is left.
func (s *Set) insert(k records.Key, h uint64) int {
	n := len(s.ctrl)
	for g := s.start(h); ; {
		w := s.ctrl[g]
		if m := w & msb; m != 0 { // empty or deleted
			j := bits.TrailingZeros64(m) >> 3
			if byte(w>>(8*j)) == ctrlEmpty {
				s.left--
			}
			s.ctrl[g] = w&^(0xff<<(8*j)) | (h&0x7f)<<(8*j)
			i := g*groupSize + j
			s.slots[i].key = k
			return i
		}
		if g++; g == n {
			g = 0
		}
	}
}

// rehash makes room: a table whose free slots went to deleted ones is
// rebuilt at its size, a nearly full one grows by a quarter. The buckets'
// refs are translated to the new slots afterwards.
func (s *Set) rehash() {
	groups := len(s.ctrl)
	if c := capacity(groups); s.used >= c-c/8 {
		groups = max(groups+groups/4, groups+1)
	}
	if groups > maxGroups {
		panic("dedup: the set cannot hold more than 234 million ids")
	}
	oldCtrl, oldSlots := s.ctrl, s.slots
	s.ctrl = make([]uint64, groups)
	for i := range s.ctrl {
		s.ctrl[i] = allEmpty
	}
	s.slots = make([]slot, groups*groupSize)
	s.left = capacity(groups)
	moved := make([]uint32, len(oldSlots)) // old slot -> new slot
	for g, w := range oldCtrl {
		for m := ^w & msb; m != 0; m &= m - 1 {
			i := g*groupSize + bits.TrailingZeros64(m)>>3
			e := &oldSlots[i]
			j := s.insert(e.key, hash(&e.key))
			s.slots[j].lo = e.lo
			moved[i] = uint32(j)
		}
	}
	for bi := range s.order {
		s.eachRef(&s.order[bi], func(r *uint32) {
			*r = *r&^refMask | moved[*r&refMask]
		})
	}
}

// capacity is how many slots of a table may be taken before it is rebuilt.
func capacity(groups int) int { return groups * groupSize * maxLoadNum / maxLoadDen }

// bucket returns the bucket of minute, adding it in order if missing.
// Events arrive roughly in time order, so the last bucket used is tried
// first.
func (s *Set) bucket(minute int64) *bucket {
	if s.recent < len(s.order) && s.order[s.recent].minute == minute {
		return &s.order[s.recent]
	}
	i := sort.Search(len(s.order), func(i int) bool { return s.order[i].minute >= minute })
	if i == len(s.order) || s.order[i].minute != minute {
		s.insertBucket(i, bucket{minute: minute})
	}
	s.recent = i
	return &s.order[i]
}

// insertBucket puts b at index i of order. order is a window of buf with
// room on both sides, and the buckets on the shorter side of i move: a
// backlog read newest first adds each minute before all the others, live
// polls add after them, and neither shifts every bucket. When that side
// has no room, buf is remade with the room split again.
func (s *Set) insertBucket(i int, b bucket) {
	n := len(s.order)
	switch {
	case i <= n-i && s.lo > 0:
		s.lo--
		s.order = s.buf[s.lo : s.lo+n+1]
		copy(s.order[:i], s.order[1:i+1])
	case i > n-i && s.lo+n < len(s.buf):
		s.order = s.buf[s.lo : s.lo+n+1]
		copy(s.order[i+1:], s.order[i:n])
	default:
		size := 2*n + 16
		buf := make([]bucket, size)
		lo := (size - n - 1) / 2
		copy(buf[lo:], s.order[:i])
		copy(buf[lo+i+1:], s.order[i:])
		s.buf, s.lo = buf, lo
		s.order = buf[lo : lo+n+1]
	}
	s.order[i] = b
}

// push appends r to bucket b, taking a new chunk when its last is full.
func (s *Set) push(b *bucket, r ref) {
	at := b.n % chunkRefs
	if at == 0 {
		c := s.newChunk()
		if b.n == 0 {
			b.first = c
		} else {
			s.arena[b.last*chunkWords] = c + 1
		}
		b.last = c
	}
	s.arena[b.last*chunkWords+1+at] = uint32(r)
	b.n++
}

func (s *Set) newChunk() uint32 {
	if s.free != 0 {
		c := s.free - 1
		s.free = s.arena[c*chunkWords]
		s.arena[c*chunkWords] = 0
		return c
	}
	c := uint32(len(s.arena) / chunkWords)
	s.arena = append(s.arena, make([]uint32, chunkWords)...)
	return c
}

// eachRef calls fn with each ref of b, in the order they were added; fn
// may change the ref.
func (s *Set) eachRef(b *bucket, fn func(r *uint32)) {
	left := b.n
	for c := b.first; left > 0; {
		words := s.arena[c*chunkWords : (c+1)*chunkWords]
		n := left
		if n > chunkRefs {
			n = chunkRefs
		}
		for i := range words[1 : 1+n] {
			fn(&words[1+i])
		}
		left -= n
		c = words[0] - 1
	}
}

// timeOf is the event time of ref r of b.
func (s *Set) timeOf(b *bucket, r uint32) int64 {
	off := int64(r>>refBits)<<32 | int64(s.slots[r&refMask].lo)
	return b.minute*bucketNanos + off
}

// erase frees slot i. A group that still has an empty slot never made a
// probe go on to the next group, so the slot can become empty again;
// otherwise it is marked deleted.
func (s *Set) erase(i int) {
	g, j := i/groupSize, i%groupSize
	w := s.ctrl[g]
	c := uint64(ctrlGone)
	if matchEmpty(w) != 0 {
		c = ctrlEmpty
		s.left++
	}
	s.ctrl[g] = w&^(0xff<<(8*j)) | c<<(8*j)
	s.used--
}

// Expire removes every key whose event time is before cutoff and calls fn
// (if not nil) for each. Keys in the bucket that straddles cutoff stay until
// the whole bucket is older, which errs on the side of keeping.
func (s *Set) Expire(cutoff int64, fn func(records.Key)) int {
	n := 0
	limit := floorDiv(cutoff, bucketNanos) // buckets strictly below are wholly older
	i := 0
	for ; i < len(s.order) && s.order[i].minute < limit; i++ {
		b := &s.order[i]
		s.eachRef(b, func(r *uint32) {
			at := int(*r & refMask)
			if fn != nil {
				fn(s.slots[at].key)
			}
			s.erase(at)
		})
		n += int(b.n)
		// Give the bucket's chunks back.
		s.arena[b.last*chunkWords] = s.free
		s.free = b.first + 1
	}
	s.order = s.order[i:]
	s.lo += i
	s.recent = 0
	if len(s.order) == 0 {
		s.order, s.buf, s.lo = nil, nil, 0
	}
	return n
}

// each calls fn for every key of b with its event time.
func (s *Set) each(b *bucket, fn func(k records.Key, t int64)) {
	s.eachRef(b, func(r *uint32) {
		fn(s.slots[*r&refMask].key, s.timeOf(b, *r))
	})
}

// CountRange counts keys whose event time is within [from, to].
func (s *Set) CountRange(from, to int64) int {
	n := 0
	lo, hi := floorDiv(from, bucketNanos), floorDiv(to, bucketNanos)
	i := sort.Search(len(s.order), func(i int) bool { return s.order[i].minute >= lo })
	for ; i < len(s.order) && s.order[i].minute <= hi; i++ {
		b := &s.order[i]
		if b.minute > lo && b.minute < hi {
			n += int(b.n)
			continue
		}
		s.eachRef(b, func(r *uint32) {
			if t := s.timeOf(b, *r); t >= from && t <= to {
				n++
			}
		})
	}
	return n
}

// Oldest is the smallest event time held, or 0 when empty.
func (s *Set) Oldest() int64 {
	if len(s.order) == 0 {
		return 0
	}
	b := &s.order[0]
	oldest, first := int64(0), true
	s.eachRef(b, func(r *uint32) {
		if t := s.timeOf(b, *r); first || t < oldest {
			oldest, first = t, false
		}
	})
	return oldest
}

// Each calls fn for every key, oldest minute first.
func (s *Set) Each(fn func(k records.Key, t int64)) {
	for i := range s.order {
		s.each(&s.order[i], fn)
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
