package schedule

import (
	"encoding/json"
	"math/rand"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func defaults() Params {
	return Params{
		PollInterval: time.Minute, Lookback: 30 * time.Minute, MaxLookback: 24 * time.Hour,
		Reconcile:       []time.Duration{2 * time.Hour, 6 * time.Hour, 24 * time.Hour},
		InitialLookback: 30 * time.Minute,
	}
}

type run struct {
	Chunk
	at time.Time
}

// simulate ticks once a second (with up to jitter extra delay per poll),
// reading every planned chunk at once, and returns what was read.
func simulate(t *testing.T, p Params, d time.Duration, jitter time.Duration, seed int64) []run {
	t.Helper()
	s := New(p)
	rng := rand.New(rand.NewSource(seed))
	var out []run
	now := t0
	for now.Before(t0.Add(d)) {
		s.Plan(now)
		for {
			c, ok := s.Next(false)
			if !ok {
				break
			}
			if _, done, err := s.PageDone(c.ID, PageResult{}); err != nil || !done {
				t.Fatal("chunk not done")
			}
			out = append(out, run{c, now})
		}
		now = now.Add(time.Second)
		if jitter > 0 {
			now = now.Add(time.Duration(rng.Int63n(int64(jitter))))
		}
	}
	return out
}

func readsAt(runs []run, tm time.Time) int {
	n := 0
	for _, r := range runs {
		if !r.From.After(tm) && !r.To.Before(tm) {
			n++
		}
	}
	return n
}

func TestReadsPerEventWithDefaults(t *testing.T) {
	runs := simulate(t, defaults(), 3*24*time.Hour, 0, 1)
	total, worst := 0, 0
	n := 0
	// Moments off the whole-second grid: a moment exactly on a chunk bound
	// is read by both neighbours (bounds are inclusive), which events with
	// Graph's 100 ns timestamps practically never are.
	for tm := t0.Add(26*time.Hour + 123456789); tm.Before(t0.Add(48 * time.Hour)); tm = tm.Add(7*time.Second + 300*time.Millisecond) {
		r := readsAt(runs, tm)
		total += r
		n++
		if r > worst {
			worst = r
		}
	}
	mean := float64(total) / float64(n)
	t.Logf("reads per event with defaults: mean %.2f, worst %d; queries per hour %.1f", mean, worst, float64(len(runs))/72)
	if worst > 10 {
		t.Fatalf("an event is read %d times; the defaults promise at most 10", worst)
	}
	if mean > 10 || mean < 7 {
		t.Fatalf("mean reads %.2f: fewer than one per level, the schedule leaves holes", mean)
	}
}

func TestEveryMomentIsCoveredAtEveryLevel(t *testing.T) {
	p := defaults()
	runs := simulate(t, p, 30*time.Hour, 1500*time.Millisecond, 2)
	// Live chunks tile time without gaps from the initial start onwards,
	// and so do the sweeps of each reconcile level once it has started.
	for tm := t0.Add(-p.InitialLookback); tm.Before(t0.Add(29 * time.Hour)); tm = tm.Add(997 * time.Millisecond) {
		live, rec := 0, 0
		for _, r := range runs {
			if !r.From.After(tm) && !r.To.Before(tm) {
				if r.Class == Live {
					live++
				} else {
					rec++
				}
			}
		}
		if live == 0 {
			t.Fatalf("moment %v never read by a live query", tm)
		}
		if tm.After(t0.Add(-p.InitialLookback)) && tm.Before(t0.Add(29*time.Hour-p.Reconcile[2]-p.Lookback)) && rec < 3 {
			t.Fatalf("moment %v swept by %d reconcile levels, want 3", tm, rec)
		}
	}
}

// TestLateEventsAreFoundInTime checks the promise: an event that becomes
// visible L late (L <= lookback) is read within max(poll_interval, 2L) of
// becoming visible, and one up to the largest reconcile delay late is read
// by a reconcile sweep.
func TestLateEventsAreFoundInTime(t *testing.T) {
	p := defaults()
	for _, jitter := range []time.Duration{0, 2 * time.Second} {
		runs := simulate(t, p, 3*24*time.Hour, jitter, 3)
		rng := rand.New(rand.NewSource(4))
		for i := 0; i < 3000; i++ {
			created := t0.Add(time.Hour + time.Duration(rng.Int63n(int64(20*time.Hour))))
			var late time.Duration
			switch i % 3 {
			case 0:
				late = time.Duration(rng.Int63n(int64(p.Lookback)))
			case 1:
				late = time.Duration(rng.Int63n(int64(5 * time.Minute)))
			default:
				late = p.Lookback + time.Duration(rng.Int63n(int64(p.Reconcile[2]-p.Lookback)))
			}
			visible := created.Add(late)
			var found *run
			for j := range runs {
				r := &runs[j]
				if !r.at.Before(visible) && !r.From.After(created) && !r.To.Before(created) {
					found = r
					break
				}
			}
			if found == nil {
				t.Fatalf("event created %v, %v late, never found", created, late)
			}
			delay := found.at.Sub(visible)
			if late <= p.Lookback {
				bound := max(p.PollInterval, 2*late) + 2*jitter + time.Second
				if delay > bound {
					t.Fatalf("event %v late found after %v, bound %v", late, delay, bound)
				}
			}
		}
	}
}

func TestFirstRunAndReconcileStart(t *testing.T) {
	p := defaults()
	p.InitialLookback = 7 * 24 * time.Hour
	s := New(p)
	s.Plan(t0)
	c, _ := s.Next(false)
	if !c.From.Equal(t0.Add(-7*24*time.Hour)) || !c.To.Equal(t0) || c.Class != Live {
		t.Fatalf("first chunk %+v", c)
	}
	st := s.State()
	for i, d := range p.Reconcile {
		if !st.Sweeps[i].Cursor.Equal(t0.Add(-d)) || st.Sweeps[i].Delay != d {
			t.Fatalf("reconcile %d starts at %+v", i, st.Sweeps[i])
		}
	}
	// A short initial lookback bounds the reconcile cursors too.
	p.InitialLookback = time.Hour
	s = New(p)
	s.Plan(t0)
	if got := s.State().Sweeps[2].Cursor; !got.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("cursor %v", got)
	}
}

func TestPendingWorkMergesAndShrinks(t *testing.T) {
	s := New(defaults())
	s.Plan(t0)
	// Nothing read for three polls: the queued live chunks merge into one.
	s.Plan(t0.Add(time.Minute))
	s.Plan(t0.Add(2 * time.Minute))
	s.Plan(t0.Add(3 * time.Minute))
	if n := len(s.Pending()); n != 1 {
		t.Fatalf("%d pending chunks, want 1 merged", n)
	}
	c, _ := s.Next(false)
	if !c.From.Equal(t0.Add(-30*time.Minute)) || !c.To.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("merged chunk %v..%v", c.From, c.To)
	}
	// A page of newest events shrinks the chunk to the oldest one seen.
	oldest := t0.Add(-10 * time.Minute)
	got, done, err := s.PageDone(c.ID, PageResult{Count: 1000, Oldest: oldest, Newest: c.To, Next: "p2", Fresh: true})
	if err != nil || done || !got.To.Equal(oldest) {
		t.Fatalf("after page: %+v %v %v", got, done, err)
	}
	// A started chunk is not merged with new work.
	s.Plan(t0.Add(4 * time.Minute))
	if n := len(s.Pending()); n != 2 {
		t.Fatalf("%d pending, want 2", n)
	}
	next, _ := s.Next(false)
	if next.ID == c.ID {
		t.Fatal("newer live work must come first")
	}
	// A page of the same chain newer than the one before marks the chunk
	// unordered: it goes back to its planned bound and no longer shrinks.
	got, _, _ = s.PageDone(c.ID, PageResult{Count: 5, Oldest: oldest.Add(-time.Minute), Newest: oldest.Add(time.Minute), Next: "p3"})
	if !got.Unordered || !got.To.Equal(c.OrigTo) || got.Link != "p3" {
		t.Fatalf("unordered page: %+v", got)
	}
	got, done, _ = s.PageDone(c.ID, PageResult{Count: 5, Oldest: oldest.Add(-20 * time.Minute), Newest: oldest.Add(-19 * time.Minute)})
	if !done || got.Returned != 1010 {
		t.Fatalf("final page: %+v %v", got, done)
	}
	if _, _, err := s.PageDone(c.ID, PageResult{}); err == nil {
		t.Fatal("a finished chunk accepted a page")
	}
}

func TestReconcileYieldsToLive(t *testing.T) {
	s := New(defaults())
	s.Plan(t0)
	for now := t0; now.Before(t0.Add(3 * time.Hour)); now = now.Add(time.Minute) {
		s.Plan(now)
	}
	p := s.Pending()
	if p[0].Class != Live || p[len(p)-1].Class != Reconcile {
		t.Fatalf("order %v ... %v", p[0].Class, p[len(p)-1].Class)
	}
	if c, _ := s.Next(true); c.Class != Reconcile {
		t.Fatal("a reconcile turn did not get reconcile work")
	}
	live, rec, n := s.Backlog(t0.Add(3 * time.Hour))
	if live != 3*time.Hour || rec <= 0 || n != len(p) {
		t.Fatalf("backlog %v %v %d", live, rec, n)
	}
}

func TestHorizonAndWiden(t *testing.T) {
	p := defaults()
	runs := simulate(t, p, 30*time.Hour, 0, 5)
	_ = runs
	s := New(p)
	now := t0
	for ; now.Before(t0.Add(30 * time.Hour)); now = now.Add(time.Minute) {
		s.Plan(now)
		for {
			c, ok := s.Next(false)
			if !ok {
				break
			}
			s.PageDone(c.ID, PageResult{})
		}
	}
	h := s.Horizon(now)
	age := now.Sub(h)
	if age < p.Reconcile[2] || age > p.Reconcile[2]+p.Lookback+3*p.PollInterval {
		t.Fatalf("horizon %v back, want just over the 24h reconcile delay", age)
	}
	// Without reconcile the horizon still reaches max_lookback, because a
	// widened lookback can query that far.
	p2 := p
	p2.Reconcile = nil
	s2 := New(p2)
	s2.Plan(t0)
	if got := t0.Sub(s2.Horizon(t0)); got < p.MaxLookback {
		t.Fatalf("horizon %v without reconcile", got)
	}
	lb, changed := s.Widen(now)
	if !changed || lb != time.Hour || len(s.Levels()) != 7 || len(s.State().Levels) != 7 {
		t.Fatalf("widen: %v %v levels %d", lb, changed, len(s.Levels()))
	}
	for range 10 {
		lb, _ = s.Widen(now)
	}
	if lb != p.MaxLookback {
		t.Fatalf("widened to %v, capped at %v", lb, p.MaxLookback)
	}
}

func TestRestore(t *testing.T) {
	p := defaults()
	s := New(p)
	s.Plan(t0)
	s.Plan(t0.Add(time.Minute))
	st := s.State()
	r := Restore(p, st, t0.Add(2*time.Minute))
	if len(r.Pending()) != len(s.Pending()) || r.Lookback() != p.Lookback {
		t.Fatal("restore lost work")
	}
	// A configuration with a longer lookback and one reconcile delay.
	p2 := p
	p2.Lookback = time.Hour
	p2.Reconcile = []time.Duration{3 * time.Hour}
	r = Restore(p2, st, t0.Add(2*time.Minute))
	if r.Lookback() != time.Hour || len(r.State().Levels) != 7 || len(r.State().Sweeps) != 1 {
		t.Fatalf("adapted state: %+v", r.State())
	}
}

func TestLevels(t *testing.T) {
	got := levels(time.Minute, 30*time.Minute)
	want := []time.Duration{1, 2, 4, 8, 16, 32}
	if len(got) != len(want) {
		t.Fatalf("%v", got)
	}
	for i := range want {
		reach := got[i].Period
		if i == len(want)-1 {
			reach = 30 * time.Minute // the top level reaches lookback exactly
		}
		if got[i].Period != want[i]*time.Minute || got[i].Reach != reach {
			t.Fatalf("level %d: %+v", i, got[i])
		}
	}
	if l := levels(time.Minute, 2*time.Minute); len(l) != 2 {
		t.Fatalf("%v", l)
	}
}

// FuzzDecodeState checks that any persisted state the decoder accepts can
// be resumed and driven without a panic, and that the horizon never lies in
// the future.
func FuzzDecodeState(f *testing.F) {
	s := New(defaults())
	s.Plan(t0)
	s.Plan(t0.Add(3 * time.Hour))
	raw, _ := json.Marshal(s.State())
	f.Add(raw)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"lookback":1,"started":"2026-01-01T00:00:00Z","level_runs":["2026-01-01T00:00:00Z"],"pending":[{"id":1,"from":"2026-01-01T00:00:00Z","to":"2026-01-01T00:00:01Z","class":1}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		st, err := DecodeState(raw)
		if err != nil {
			return
		}
		now := t0.Add(5 * time.Hour)
		r := Restore(defaults(), st, now)
		for i := range 5 {
			now = now.Add(time.Minute)
			r.Plan(now)
			if c, ok := r.Next(i%2 == 0); ok {
				if _, _, err := r.PageDone(c.ID, PageResult{Count: 1, Oldest: c.From, Newest: c.To, Next: map[bool]string{true: "next"}[i%3 == 0], Fresh: i%2 == 0}); err != nil {
					t.Fatal(err)
				}
			}
			if h := r.Horizon(now); h.After(now) {
				t.Fatalf("horizon %v after now %v", h, now)
			}
			r.Backlog(now)
		}
		if r.Lookback() < defaults().Lookback || r.Lookback() > defaults().MaxLookback {
			t.Fatalf("lookback %v", r.Lookback())
		}
	})
}

func TestSplit(t *testing.T) {
	s := New(defaults())
	s.Plan(t0)
	c, _ := s.Next(false)
	if !s.Split(c.ID) {
		t.Fatal("a 30-minute chunk was not split")
	}
	p := s.Pending()
	if len(p) != 2 || !p[1].From.Equal(c.From) || !p[0].To.Equal(c.To) || !p[0].From.Equal(p[1].To) {
		t.Fatalf("halves %v..%v and %v..%v", p[0].From, p[0].To, p[1].From, p[1].To)
	}
	// Halving down to two seconds, then the chunk counts as done.
	n := 0
	for {
		c, ok := s.Next(false)
		if !ok {
			break
		}
		if !s.Split(c.ID) {
			s.Drop(c.ID)
			n++
		}
		if n > 5000 {
			t.Fatal("splitting does not end")
		}
	}
	if n != 1024 {
		t.Fatalf("%d two-second pieces, want 1024", n)
	}
}
