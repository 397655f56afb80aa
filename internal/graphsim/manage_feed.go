package graphsim

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// FeedSpec describes a generated Management Activity API feed: the content
// blobs of one content type over a time range, holding millions of audit
// records as the service delivers them: out of order, some late, some
// twice.
type FeedSpec struct {
	ContentType string
	Seed        uint64
	From, To    time.Time // contentCreated range of the generated blobs
	// PerDay is the number of unique records per day on average, with a
	// day/night rhythm: the rate peaks at 14:00 UTC at 1.5 times the mean
	// and falls to half of it at 02:00.
	PerDay float64
	// BlobRecords is the mean number of records per blob (default 1000);
	// blob sizes vary around it (log-normal, from 1 to 5 times the mean).
	BlobRecords int
	// DupRate is the fraction of records sent again in a later blob with
	// their keys reordered. A blob's duplicates are a contiguous run of its
	// records, as when a batch is retried.
	DupRate float64
	// DupGap bounds how much later the blob holding a duplicate is created.
	DupGap time.Duration
	// ListLateMax bounds Listed - Created: 90% of the blobs are listed
	// within 5 minutes, 9% up to a third of ListLateMax, 1% up to it.
	ListLateMax time.Duration
	// RecordLateMax bounds Created - CreationTime. Most records are 1-90
	// minutes late, 1% from 90 minutes to 3 days, and 1e-5 of them from 3
	// days up to RecordLateMax. Zero keeps every record within 90 minutes.
	RecordLateMax time.Duration
	// OutOfOrder draws each record's lateness independently, so that blobs
	// hold records older than records of earlier blobs, as the service's
	// do. Without it CreationTime grows with the record index.
	OutOfOrder bool
	// Compact renders records with only Id, CreationTime, Operation,
	// RecordType, Workload and UserId, for volume tests.
	Compact bool
	// Tenant is the records' OrganizationId ("" is DefaultTenantID).
	Tenant string
}

// Feed is a generated feed. Its blobs generate their bodies on each fetch
// from the layout, which is all the feed stores: a few dozen bytes per
// blob, however many records they hold.
type Feed struct {
	// Blobs are the feed's blobs in contentCreated order, with Body and N
	// set; pass them to Server.AddBlobs.
	Blobs []Blob
	// Records is the number of unique records; record i has the ID
	// FeedRecordID(spec.Seed, i).
	Records int

	spec   FeedSpec
	kind   int
	tenant string
	// Per blob: contentCreated and Listed in Unix milliseconds, and the
	// first of its own records (first has one more entry: Records).
	created, listed, first []int64
	// Per blob: the run of its records sent again, at offsets
	// [runOff, runOff+runLen) of its own, in blob runTo (-1: none).
	runOff, runLen, runTo []int32
	// The runs blob k holds are those of blobs inFrom[inStart[k]:inStart[k+1]].
	inStart, inFrom []int32
}

const feedMaxRecords = 1 << 47

// NewFeed lays out the feed spec describes. It panics on a spec that
// describes no feed.
func NewFeed(spec FeedSpec) *Feed {
	switch {
	case !validContentType(spec.ContentType):
		panic(fmt.Sprintf("graphsim: NewFeed: unknown content type %q", spec.ContentType))
	case !spec.From.Before(spec.To):
		panic("graphsim: NewFeed: From must be before To")
	case !(spec.PerDay > 0) || spec.BlobRecords < 0:
		panic("graphsim: NewFeed: PerDay must be positive and BlobRecords not negative")
	case spec.DupRate < 0 || spec.DupRate > 0.5:
		panic("graphsim: NewFeed: DupRate must be within [0, 0.5]")
	}
	f := &Feed{spec: spec, kind: auditKind(spec.ContentType), tenant: tenantOr(spec.Tenant)}
	mean := cmp.Or(spec.BlobRecords, 1000)
	perMs := spec.PerDay / 86400e3
	end := spec.To.UnixMilli()
	t := float64(spec.From.UnixMilli())
	prev := int64(math.MinInt64)
	var total int64
	for k := 0; ; k++ {
		n := blobSize(mean, f.blobHash(k, 1))
		t += float64(n) / (perMs * dayRhythm(int64(t)))
		c := max(int64(t), prev+1)
		if c >= end {
			break
		}
		if total+n > feedMaxRecords {
			panic("graphsim: NewFeed: too many records")
		}
		prev = c
		f.created = append(f.created, c)
		f.listed = append(f.listed, c+listLateness(spec.ListLateMax, f.blobHash(k, 2)))
		f.first = append(f.first, total)
		total += n
	}
	f.first = append(f.first, total)
	f.Records = int(total)
	nb := len(f.created)
	f.layDuplicates()

	f.Blobs = make([]Blob, nb)
	for k := range nb {
		n := f.first[k+1] - f.first[k]
		for _, j := range f.inFrom[f.inStart[k]:f.inStart[k+1]] {
			n += int64(f.runLen[j])
		}
		created := time.UnixMilli(f.created[k]).UTC()
		f.Blobs[k] = Blob{
			ContentType: spec.ContentType,
			ID:          ContentID(spec.ContentType, created, uint64(k)%1e6+1+spec.Seed%100*1e6),
			Created:     created,
			Listed:      time.UnixMilli(f.listed[k]).UTC(),
			Body:        func() []byte { return f.body(k) },
			N:           int(n),
		}
	}
	return f
}

// layDuplicates draws each blob's run of records sent again and the later
// blob, within DupGap, that holds it.
func (f *Feed) layDuplicates() {
	nb := len(f.created)
	f.runOff, f.runLen, f.runTo = make([]int32, nb), make([]int32, nb), make([]int32, nb)
	f.inStart = make([]int32, nb+1)
	gap := f.spec.DupGap.Milliseconds()
	for j := range nb {
		f.runTo[j] = -1
		if f.spec.DupRate == 0 || gap <= 0 {
			continue
		}
		n := f.first[j+1] - f.first[j]
		h := f.blobHash(j, 3)
		// Uniform in [0, 2 DupRate n], so DupRate n on average.
		d := min(int64(math.Round(2*f.spec.DupRate*float64(n)*unit(h))), n)
		later, _ := slices.BinarySearch(f.created, f.created[j]+gap+1)
		if d == 0 || later <= j+1 {
			continue
		}
		f.runTo[j] = int32(j + 1 + int(mix64(h)%uint64(later-j-1)))
		f.runOff[j] = int32(mix64(h^1) % uint64(n-d+1))
		f.runLen[j] = int32(d)
		f.inStart[f.runTo[j]+1]++
	}
	for k := range nb {
		f.inStart[k+1] += f.inStart[k]
	}
	f.inFrom = make([]int32, f.inStart[nb])
	fill := slices.Clone(f.inStart[:nb])
	for j := range nb {
		if t := f.runTo[j]; t >= 0 {
			f.inFrom[fill[t]] = int32(j)
			fill[t]++
		}
	}
}

func (f *Feed) blobHash(k int, salt uint64) uint64 {
	return mix64(f.spec.Seed ^ mix64(uint64(k)<<3|salt))
}

func (f *Feed) recordHash(i int64, salt uint64) uint64 {
	return mix64(f.spec.Seed*0x2545f4914f6cdd1d ^ mix64(uint64(i)<<2|salt))
}

// unit maps h to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// blobSize draws a blob's record count: log-normal around mean, within
// [1, 5 mean].
func blobSize(mean int, h uint64) int64 {
	u1, u2 := unit(h), unit(mix64(h))
	z := math.Sqrt(-2*math.Log(1-u1)) * math.Cos(2*math.Pi*u2)
	n := math.Round(float64(mean) * math.Exp(0.5*z-0.125))
	return int64(min(max(n, 1), 5*float64(mean)))
}

// dayRhythm is the record rate at Unix millisecond ms relative to the
// daily mean: 1.5 at 14:00 UTC, 0.5 at 02:00.
func dayRhythm(ms int64) float64 {
	hour := float64(((ms%86400e3)+86400e3)%86400e3) / 3600e3
	return 1 + 0.5*math.Cos(2*math.Pi*(hour-14)/24)
}

func listLateness(maxLate time.Duration, h uint64) int64 {
	if maxLate <= 0 {
		return 0
	}
	m := float64(maxLate.Milliseconds())
	five := min(float64(5*time.Minute/time.Millisecond), m)
	switch u, v := unit(h), unit(mix64(h)); {
	case u < 0.9:
		return int64(v * five)
	case u < 0.99:
		return int64(five + v*max(m/3-five, 0))
	default:
		return int64(m/3 + v*m*2/3)
	}
}

func recordLateness(maxLate time.Duration, h uint64) time.Duration {
	u, v := unit(h), unit(mix64(h))
	const day = 24 * time.Hour
	span := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(v*float64(hi-lo)) }
	switch {
	case u < 1e-5 && maxLate > 3*day:
		return span(3*day, maxLate)
	case u < 0.01+1e-5 && maxLate > 90*time.Minute:
		return span(90*time.Minute, min(3*day, maxLate))
	}
	return time.Minute + time.Duration(v*v*float64(89*time.Minute))
}

// Holders returns the index in Blobs of record i's home blob, the first
// one to hold it, and of the later blob that holds it again (-1: none).
func (f *Feed) Holders(i int) (home, dup int) {
	if i < 0 || i >= f.Records {
		panic(fmt.Sprintf("graphsim: record %d of a feed of %d", i, f.Records))
	}
	j := sort.Search(len(f.created), func(k int) bool { return f.first[k+1] > int64(i) })
	if t := f.runTo[j]; t >= 0 {
		if off := int64(i) - f.first[j]; off >= int64(f.runOff[j]) && off < int64(f.runOff[j]+f.runLen[j]) {
			return j, int(t)
		}
	}
	return j, -1
}

// Home returns the contentCreated and Listed of the earliest-listed blob
// holding record i (of the home blob on a tie).
func (f *Feed) Home(i int) (created, listed time.Time) {
	k, d := f.Holders(i)
	if d >= 0 && f.listed[d] < f.listed[k] {
		k = d
	}
	return time.UnixMilli(f.created[k]).UTC(), time.UnixMilli(f.listed[k]).UTC()
}

// CreationTime returns record i's CreationTime, as its body renders it.
func (f *Feed) CreationTime(i int) time.Time {
	j, _ := f.Holders(i)
	return time.Unix(f.creation(int64(i), j), 0).UTC()
}

// Record returns record i as its home blob renders it.
func (f *Feed) Record(i int) []byte {
	j, _ := f.Holders(i)
	var g feedGen
	return f.appendRecord(nil, &g, int64(i), j, -1)
}

// creation is record i's CreationTime in Unix seconds; j is its home blob.
func (f *Feed) creation(i int64, j int) int64 {
	c := f.created[j]
	var ms int64
	if f.spec.OutOfOrder {
		ms = c - recordLateness(f.spec.RecordLateMax, f.recordHash(i, 1)).Milliseconds()
	} else {
		// Spread the blob's records over the time since the blob before.
		prev := c - 60e3
		if j > 0 {
			prev = f.created[j-1]
		}
		n := f.first[j+1] - f.first[j]
		ms = prev + (c-prev)*(i-f.first[j]+1)/n
	}
	sec := ms / 1000
	if ms < 0 && ms%1000 != 0 {
		sec--
	}
	return sec
}

// feedGen is the scratch space of one body's generation.
type feedGen struct {
	fb, dup auditFields
	sc      auditScratch
	id      []byte
	perm    []int
}

// appendRecord appends record i, whose home blob is j; dupIn ≥ 0 is the
// later blob it is sent again in, with its keys in another order.
func (f *Feed) appendRecord(out []byte, g *feedGen, i int64, j, dupIn int) []byte {
	g.id = appendFeedID(g.id[:0], f.spec.Seed, uint64(i))
	fb := &g.fb
	if dupIn < 0 {
		fb.begin(out)
	} else {
		fb = &g.dup
		fb.begin(fb.b[:0])
	}
	writeAuditRecord(fb, &g.sc, f.kind, f.recordHash(i, 0), g.id, f.creation(i, j), f.tenant, f.spec.Compact)
	if dupIn < 0 {
		return fb.end()
	}
	fb.end()
	// A Fisher-Yates shuffle drawn from the record and the blob, never the
	// identity.
	n := len(fb.offs)
	g.perm = g.perm[:0]
	for k := range n {
		g.perm = append(g.perm, k)
	}
	d := draws(f.recordHash(i, 2) ^ uint64(dupIn))
	for k := n - 1; k > 0; k-- {
		l := d.n(k + 1)
		g.perm[k], g.perm[l] = g.perm[l], g.perm[k]
	}
	if slices.IsSorted(g.perm) {
		g.perm = append(g.perm[1:], g.perm[0])
	}
	return fb.permuted(out, g.perm)
}

// body generates blob k's body: its own records in index order with the
// runs of earlier blobs it holds again inserted at drawn positions.
func (f *Feed) body(k int) []byte {
	lo, hi := f.first[k], f.first[k+1]
	n := hi - lo
	type insert struct {
		at int64
		j  int32
	}
	srcs := f.inFrom[f.inStart[k]:f.inStart[k+1]]
	runs := make([]insert, len(srcs))
	total := n
	for x, j := range srcs {
		runs[x] = insert{int64(mix64(f.blobHash(k, 4)^uint64(j)) % uint64(n+1)), j}
		total += int64(f.runLen[j])
	}
	slices.SortFunc(runs, func(a, b insert) int { return cmp.Compare(a.at, b.at) })
	size := int64(1500)
	if f.spec.Compact {
		size = 200
	}
	out := make([]byte, 0, total*size+2)
	out = append(out, '[')
	var g feedGen
	sep := false
	emit := func(i int64, j, dupIn int) {
		if sep {
			out = append(out, ',')
		}
		sep = true
		out = f.appendRecord(out, &g, i, j, dupIn)
	}
	r := 0
	for p := int64(0); p <= n; p++ {
		for ; r < len(runs) && runs[r].at == p; r++ {
			j := int(runs[r].j)
			from := f.first[j] + int64(f.runOff[j])
			for i := from; i < from+int64(f.runLen[j]); i++ {
				emit(i, j, k)
			}
		}
		if p < n {
			emit(lo+p, k, -1)
		}
	}
	return append(out, ']')
}

// Record IDs encode the record's index under a key drawn from the seed, so
// that FeedRecordIndex needs no table: the GUID's last 48 bits are a
// bijection of the index, the rest a check of it.
const (
	feedMask48 = 1<<48 - 1
	feedMul    = 0x5deece66d // odd, so invertible modulo 2^48
)

var feedMulInv = func() uint64 {
	inv := uint64(feedMul)
	for range 6 {
		inv *= 2 - feedMul*inv
	}
	return inv & feedMask48
}()

func feedKey(seed uint64) uint64 { return mix64(seed^0x8cb92ba72f3d8dd7) & feedMask48 }

func feedCheck(seed, i uint64) (hi uint64, clock uint64) {
	hi = mix64(seed*0x9fb21c651e98df25 + i)
	return hi, mix64(hi) >> 48
}

func appendFeedID(b []byte, seed, i uint64) []byte {
	y := (i ^ feedKey(seed)) * feedMul & feedMask48
	y ^= y >> 24
	hi, clock := feedCheck(seed, i)
	return appendGUID(b, hi, clock<<48|y)
}

// FeedRecordID returns the GUID of record i of the feeds of seed.
func FeedRecordID(seed uint64, i int) string {
	return string(appendFeedID(nil, seed, uint64(i)))
}

// FeedRecordIndex is the inverse of FeedRecordID: the index of the record
// of the feeds of seed whose GUID is id, and whether id is one.
func FeedRecordIndex(seed uint64, id string) (int, bool) {
	if !isGUID(id) {
		return 0, false
	}
	var hi, lo uint64
	n := 0
	for x := range len(id) {
		c := id[x]
		var v uint64
		switch {
		case c == '-':
			continue
		case c <= '9':
			v = uint64(c - '0')
		case c >= 'a':
			v = uint64(c-'a') + 10
		default:
			v = uint64(c-'A') + 10
		}
		if n < 16 {
			hi = hi<<4 | v
		} else {
			lo = lo<<4 | v
		}
		n++
	}
	y := lo & feedMask48
	x := y ^ y>>24
	i := (x*feedMulInv)&feedMask48 ^ feedKey(seed)
	wantHi, clock := feedCheck(seed, i)
	const version, variant = 0xf << 12, 0x3 << 62
	if hi&^version != wantHi&^version || (lo>>48)&^(variant>>48) != clock&^(variant>>48) || i >= feedMaxRecords {
		return 0, false
	}
	return int(i), true
}
