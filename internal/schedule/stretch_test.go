package schedule

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// quarantine isolates (or carves, as the input does) the pending chunks
// that read bad until none does, and returns the stretch that holds it.
func quarantine(t *testing.T, s *Schedule, grain time.Duration, bad, now time.Time) Stretch {
	t.Helper()
	for range 200 {
		var c Chunk
		for _, q := range s.Pending() {
			if !q.Stretch && reads(q, grain, bad) {
				c = q
			}
		}
		if c.ID == 0 {
			for _, u := range s.Stretches() {
				if !bad.Before(u.From) && !bad.After(u.To) {
					return u
				}
			}
			t.Fatal("no stretch holds the bad time")
		}
		if s.Carve(c.ID) {
			continue
		}
		if _, what := s.Isolate(c.ID, now, "r"); what != Halved && what != Quarantined {
			t.Fatalf("isolate: %v", what)
		}
	}
	t.Fatal("isolation does not end")
	return Stretch{}
}

// serveAll reads every pending chunk in one page, except those reading bad.
func serveAll(s *Schedule, grain time.Duration, bad time.Time) {
	for _, c := range s.Pending() {
		if !reads(c, grain, bad) {
			s.PageDone(c.ID, PageResult{Fresh: true})
		}
	}
}

// TestSplitStretchRetry: security_alerts (NoNextLink) answers a full page
// without a nextLink for the retry of a stretch, so Commit calls Split on
// it: the halves are the retries of the stretch's halves, and once both
// are read the stretch is gone.
func TestSplitStretchRetry(t *testing.T) {
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	p := Params{PollInterval: time.Minute, Lookback: 10 * time.Minute, MaxLookback: 3 * time.Hour,
		Reconcile: []time.Duration{time.Hour}, InitialLookback: time.Hour}
	s := New(p)
	s.Plan(now)
	bad := now.Add(-30*time.Minute + 300*time.Millisecond)
	u := quarantine(t, s, time.Second, bad, now)
	serveAll(s, time.Second, bad)
	// Graph heals; the retry is due.
	at := now.Add(time.Hour)
	s.Plan(at)
	var retry Chunk
	for _, c := range s.Pending() {
		if c.Stretch {
			retry = c
		}
	}
	if !retry.Stretch {
		t.Fatal("no retry")
	}
	// A full page without a nextLink (Instance.Commit's split path).
	if !s.Split(retry.ID) {
		t.Fatal("a stretch of whole seconds plus a grain each side cannot be split")
	}
	for _, c := range s.Pending() {
		if !c.From.Before(u.From) && !c.To.After(u.To) {
			if _, done, _ := s.PageDone(c.ID, PageResult{Fresh: true, Count: 3, Oldest: c.From, Newest: c.To}); !done {
				t.Fatal("half not done")
			}
		}
	}
	if got := s.Stretches(); len(got) != 0 {
		s.Plan(u.To.Add(p.MaxLookback + time.Second))
		t.Fatalf("the stretch was read in halves, but it is kept (%+v) and later given up as unreadable: %+v", got, s.TakeAbandoned())
	}
}

// TestDamagedStretch: a state whose stretch's "to" has one digit changed
// (2026 -> 9026) would carve every live query away: DecodeState refuses
// it, or the live queries still read the newest minute.
func TestDamagedStretch(t *testing.T) {
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	p := Params{PollInterval: time.Minute, Lookback: 10 * time.Minute, MaxLookback: 3 * time.Hour, InitialLookback: time.Hour}
	s := New(p)
	s.Plan(now)
	bad := now.Add(-30*time.Minute + 300*time.Millisecond)
	u := quarantine(t, s, time.Second, bad, now)
	serveAll(s, time.Second, bad)
	raw, _ := json.Marshal(s.State())
	to := u.To.UTC().Format(time.RFC3339Nano)
	damaged := strings.Replace(string(raw), `"to":"`+to+`"`, `"to":"9`+to[1:]+`"`, 1)
	if damaged == string(raw) {
		t.Fatal("stretch not found in the state")
	}
	st, err := DecodeState([]byte(damaged))
	if err != nil {
		return // rejected: fine
	}
	s = Restore(p, st, now.Add(time.Minute))
	later := now.Add(5 * time.Minute)
	s.Plan(later)
	covered := false
	for _, c := range s.Pending() {
		covered = covered || (c.Class == Live && !c.Stretch && reads(c, time.Second, later.Add(-30*time.Second)))
	}
	if !covered {
		t.Fatalf("DecodeState accepted a stretch %v..%v, and no live query reads the last minute any more: pending %+v", st.Unreadable[0].From, st.Unreadable[0].To, s.Pending())
	}
}

// TestStretchBehindForgotten: a sweep added after a restart with a new,
// longer reconcile delay starts at Forgotten exactly. A bad object in its
// first second, with gt/lt (grain 2s), must not make a stretch whose retry
// reads further behind Forgotten than the input keeps ids (2 s), which
// would deliver those ids again once it is readable.
func TestStretchBehindForgotten(t *testing.T) {
	const grain = 2 * time.Second
	t0 := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	p := Params{PollInterval: time.Minute, Lookback: 10 * time.Minute, MaxLookback: time.Hour, InitialLookback: 10 * time.Minute, Grain: grain}
	s := New(p)
	now := t0
	for ; now.Before(t0.Add(3 * time.Hour)); now = now.Add(time.Minute + 137*time.Millisecond) {
		s.Plan(now)
		for _, c := range s.Pending() {
			s.PageDone(c.ID, PageResult{Fresh: true})
		}
		s.Forget(s.Horizon(now))
	}
	forgotten := s.Forgotten()
	p2 := p
	p2.Reconcile = []time.Duration{3 * time.Hour}
	s = Restore(p2, s.State(), now)
	var sweep Chunk
	for ; sweep.ID == 0 && now.Before(t0.Add(6*time.Hour)); now = now.Add(time.Minute) {
		s.Plan(now)
		for _, c := range s.Pending() {
			if c.Class == Reconcile {
				sweep = c
				break
			}
			s.PageDone(c.ID, PageResult{Fresh: true})
		}
		s.Forget(s.Horizon(now))
	}
	if sweep.ID == 0 || !sweep.From.Equal(forgotten) || !s.Forgotten().Equal(forgotten) {
		t.Fatalf("sweep %v..%v, forgotten %v then %v", sweep.From, sweep.To, forgotten, s.Forgotten())
	}
	bad := forgotten.Add(100 * time.Millisecond)
	quarantine(t, s, grain, bad, now)
	for _, u := range s.Stretches() {
		lo, _, _ := reach(Chunk{From: u.From, To: u.To}, grain)
		// Ids before Forgotten-2s may have left the de-dup set; a strict
		// query reads after lo.
		if lo.Before(forgotten.Add(-2 * time.Second)) {
			t.Fatalf("the stretch %v..%v is queried after %v, %s behind Forgotten %v (ids are kept 2s behind it)",
				u.From, u.To, lo, forgotten.Sub(lo), forgotten)
		}
	}
}

// TestOneBadObjectOneReport: the input reports unreadable_page "event" for
// each Quarantined outcome; one bad object, wherever it lies, gives one
// (neither both halves of the last split nor a carved neighbour read it).
func TestOneBadObjectOneReport(t *testing.T) {
	for _, grain := range []time.Duration{time.Second, 2 * time.Second} {
		multi, runs := 0, 400
		for i := range runs {
			now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
			p := Params{PollInterval: time.Minute, Lookback: 30 * time.Minute, MaxLookback: 24 * time.Hour, InitialLookback: time.Hour, Grain: grain}
			s := New(p)
			s.Plan(now)
			bad := now.Add(-time.Hour + time.Duration(i)*7919*time.Millisecond + time.Duration(i*i%1000)*time.Millisecond)
			n := 0
			for range 200 {
				var c Chunk
				for _, q := range s.Pending() {
					if reads(q, grain, bad) {
						c = q
					}
				}
				if c.ID == 0 {
					break
				}
				if s.Carve(c.ID) {
					continue
				}
				if _, what := s.Isolate(c.ID, now, "r"); what == Quarantined {
					n++
				}
			}
			if n > 1 {
				multi++
			}
		}
		t.Logf("grain %s: %d of %d bad objects quarantined (and reported) more than once", grain, multi, runs)
		if multi > 0 {
			t.Errorf("grain %s: %d of %d single bad objects give more than one unreadable_page event", grain, multi, runs)
		}
	}
}
