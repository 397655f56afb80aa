package schedule

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// reach is the time a query of c reads, by the filter source.Profile
// builds: whole-second bounds, ge/le ([floor From, ceil To]) or, with a
// grain of 2s, gt/lt one second further out on each side (open).
func reach(c Chunk, grain time.Duration) (lo, hi time.Time, open bool) {
	lo, hi = c.From.Truncate(time.Second), ceilSecond(c.To)
	if grain == 2*time.Second {
		return lo.Add(-time.Second), hi.Add(time.Second), true
	}
	return lo, hi, false
}

func reads(c Chunk, grain time.Duration, t time.Time) bool {
	lo, hi, open := reach(c, grain)
	if open {
		return t.After(lo) && t.Before(hi)
	}
	return !t.Before(lo) && !t.After(hi)
}

// TestIsolationLeavesNoGapAndNoBadPage: a range holding bad objects at
// random instants (a page that holds one cannot be read) is read by
// isolating whatever fails. Every request that succeeds reads no bad
// object; every instant of the range is read by a successful request or
// lies in an unreadable stretch; each stretch is at most a few seconds;
// live work planned later is carved around the stretches; and a stretch
// that becomes readable is read once, on the reconcile schedule, and
// dropped.
func TestIsolationLeavesNoGapAndNoBadPage(t *testing.T) {
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 7))
		grain := time.Second
		if seed%2 == 1 {
			grain = 2 * time.Second
		}
		now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
		p := Params{PollInterval: time.Minute, Lookback: 30 * time.Minute, MaxLookback: 24 * time.Hour,
			Reconcile: []time.Duration{2 * time.Hour}, InitialLookback: 6 * time.Hour, Grain: grain}
		s := New(p)
		s.Plan(now)
		from := now.Add(-p.InitialLookback)
		var bad []time.Time
		for range 1 + r.IntN(5) {
			b := from.Add(time.Duration(r.Int64N(int64(now.Sub(from))))).Truncate(100 * time.Nanosecond)
			if r.IntN(3) == 0 {
				b = b.Truncate(time.Second) // at a second's very start
			}
			bad = append(bad, b)
		}
		var read []Chunk
		requests := 0
		for ; requests < 10000; requests++ {
			c, ok := s.Next(false)
			if !ok {
				break
			}
			failed := false
			for _, b := range bad {
				failed = failed || reads(c, grain, b)
			}
			if !failed {
				read = append(read, c)
				if _, done, err := s.PageDone(c.ID, PageResult{Fresh: true}); err != nil || !done {
					t.Fatalf("seed %d: page of %d: %v %t", seed, c.ID, err, done)
				}
				continue
			}
			if s.Carve(c.ID) {
				continue
			}
			if _, what := s.Isolate(c.ID, now, "req"); what == Refused {
				t.Fatalf("seed %d: isolation refused with %d stretches", seed, len(s.Stretches()))
			}
		}
		if requests == 10000 {
			t.Fatalf("seed %d: isolation does not end", seed)
		}
		st := s.Stretches()
		if len(st) == 0 || len(st) > len(bad) {
			t.Fatalf("seed %d: %d stretches for %d bad objects", seed, len(st), len(bad))
		}
		for _, u := range st {
			if w := u.To.Sub(u.From); w > 3*time.Second+2*grain {
				t.Errorf("seed %d: stretch %v..%v is %s wide", seed, u.From, u.To, w)
			}
		}
		// Every instant of the range is read or in a stretch: checked
		// each second, and in steps of 50 ms around each bad instant and
		// stretch.
		check := func(tm time.Time) {
			for _, u := range st {
				if !tm.Before(u.From) && !tm.After(u.To) {
					return
				}
			}
			for _, c := range read {
				if reads(c, grain, tm) {
					return
				}
			}
			t.Fatalf("seed %d: %v is neither read nor in a stretch", seed, tm)
		}
		for tm := from.Add(time.Duration(r.Int64N(int64(time.Second)))); tm.Before(now); tm = tm.Add(time.Second) {
			check(tm)
		}
		near := append([]time.Time(nil), bad...)
		for _, u := range st {
			near = append(near, u.From, u.To)
		}
		for _, b := range near {
			for d := -10 * time.Second; d <= 10*time.Second; d += 50 * time.Millisecond {
				if tm := b.Add(d); !tm.Before(from) && !tm.After(now) {
					check(tm)
				}
			}
		}

		// Live work planned later does not reach into a stretch.
		later := now.Add(time.Minute)
		s.Plan(later)
		for _, c := range s.Pending() {
			for _, b := range bad {
				if reads(c, grain, b) {
					t.Fatalf("seed %d: planned chunk %v..%v reads bad %v", seed, c.From, c.To, b)
				}
			}
		}
		// The stretches are retried after the first reconcile delay; once
		// readable, each is read and dropped.
		for _, c := range s.Pending() {
			s.PageDone(c.ID, PageResult{Fresh: true})
		}
		s.Plan(now.Add(p.Reconcile[0] - time.Second))
		for _, c := range s.Pending() {
			if c.Stretch {
				t.Fatalf("seed %d: stretch retried before the reconcile delay", seed)
			}
		}
		s.Plan(now.Add(p.Reconcile[0]))
		retries := 0
		for _, c := range s.Pending() {
			if c.Stretch {
				retries++
				s.PageDone(c.ID, PageResult{Fresh: true})
			}
		}
		if retries != len(st) || len(s.Stretches()) != 0 {
			t.Fatalf("seed %d: %d retries for %d stretches, %d left", seed, retries, len(st), len(s.Stretches()))
		}
	}
}

// TestStretchesHoldTheHorizonAndAreGivenUp: the ids of an unreadable
// stretch's time are kept while it is retried, a stretch survives a
// restart, and it is given up (once) when no query can reach it any more.
func TestStretchesHoldTheHorizonAndAreGivenUp(t *testing.T) {
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	p := Params{PollInterval: time.Minute, Lookback: 10 * time.Minute, MaxLookback: 3 * time.Hour, InitialLookback: time.Hour}
	s := New(p)
	s.Plan(now)
	bad := now.Add(-30*time.Minute + 300*time.Millisecond)
	var u Stretch
	for what := Halved; what == Halved; {
		var c Chunk
		for _, q := range s.Pending() {
			if reads(q, time.Second, bad) {
				c = q
			}
		}
		if c.ID == 0 {
			t.Fatal("no chunk holds the bad time")
		}
		u, what = s.Isolate(c.ID, now, "r1")
		if what != Halved && what != Quarantined {
			t.Fatalf("isolate: %v", what)
		}
	}
	if h := s.Horizon(now.Add(2 * time.Hour)); h.After(u.From) {
		t.Fatalf("horizon %v passes the stretch at %v", h, u.From)
	}
	raw, _ := jsonState(s)
	st, err := DecodeState(raw)
	if err != nil {
		t.Fatal(err)
	}
	s = Restore(p, st, now.Add(time.Minute))
	if got := s.Stretches(); len(got) != 1 || !got[0].From.Equal(u.From) || got[0].RequestID != "r1" {
		t.Fatalf("after a restart: %+v", got)
	}
	// Without reconcile, it is retried every lookback; a failed retry
	// counts a try.
	s.Plan(now.Add(p.Lookback))
	var retry Chunk
	for _, q := range s.Pending() {
		if q.Stretch {
			retry = q
		}
	}
	if !retry.Stretch {
		t.Fatal("no retry after lookback")
	}
	if v, what := s.Isolate(retry.ID, now.Add(p.Lookback), "r2"); what != Failed || v.Tries != 2 {
		t.Fatalf("failed retry: %v %+v", what, v)
	}
	// Served minute by minute, every retry failing: it is given up once,
	// when no level, sweep or queued query (its own retry included) can
	// reach it and it is older than max_lookback, and never queried after.
	var abandoned []Stretch
	var at time.Time
	for tm := now.Add(p.Lookback); tm.Before(u.To.Add(p.MaxLookback + 2*time.Hour)); tm = tm.Add(time.Minute) {
		s.Plan(tm)
		if a := s.TakeAbandoned(); len(a) > 0 {
			abandoned, at = append(abandoned, a...), tm
		}
		for _, q := range s.Pending() {
			if q.Stretch {
				if len(abandoned) > 0 {
					t.Fatalf("a retry of %v..%v queued at %v, after it was given up", q.From, q.To, tm)
				}
				s.Isolate(q.ID, tm, "r3")
				continue
			}
			s.PageDone(q.ID, PageResult{Fresh: true})
		}
	}
	if len(abandoned) != 1 || abandoned[0].Tries < 3 || len(s.Stretches()) != 0 {
		t.Fatalf("given up: %+v, left %d", abandoned, len(s.Stretches()))
	}
	if late := at.Sub(u.To.Add(p.MaxLookback)); late < 0 || late > p.Lookback+2*p.PollInterval {
		t.Fatalf("given up %s after it was max_lookback old", late)
	}
}

func jsonState(s *Schedule) ([]byte, error) { return json.Marshal(s.State()) }
