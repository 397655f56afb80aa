package schedule

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestConfigurationChangesBetweenRuns runs the schedule with the defaults
// for 30 hours, restarts it from its persisted state with other settings
// (and once with a lookback widened to max_lookback) and runs 40 hours
// more, with a de-dup set that drops ids at the horizon as the input's
// does. Across every change no event is delivered again after its id was
// dropped, and none is skipped: an event late by at most 8 minutes (within
// every lookback here) is always delivered, and one late by up to 90
// minutes is delivered whenever both runs sweep after 2 hours.
func TestConfigurationChangesBetweenRuns(t *testing.T) {
	base := defaults()
	changes := []struct {
		name  string
		edit  func(p *Params)
		widen bool
		sweep bool // both runs sweep at 2h
	}{
		{name: "unchanged", edit: func(*Params) {}, sweep: true},
		{name: "poll_interval 2m", edit: func(p *Params) { p.PollInterval = 2 * time.Minute }, sweep: true},
		{name: "poll_interval 20s", edit: func(p *Params) { p.PollInterval = 20 * time.Second }, sweep: true},
		{name: "lookback 1h", edit: func(p *Params) { p.Lookback = time.Hour }, sweep: true},
		{name: "lookback 10m", edit: func(p *Params) { p.Lookback = 10 * time.Minute }, sweep: true},
		{name: "max_lookback 2h", edit: func(p *Params) { p.MaxLookback = 2 * time.Hour }, sweep: true},
		{name: "reconcile added", edit: func(p *Params) {
			p.Reconcile = []time.Duration{2 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour}
		}, sweep: true},
		{name: "reconcile removed", edit: func(p *Params) { p.Reconcile = []time.Duration{2 * time.Hour} }, sweep: true},
		{name: "reconcile changed", edit: func(p *Params) { p.Reconcile = []time.Duration{3 * time.Hour, 48 * time.Hour} }},
		{name: "reconcile off", edit: func(p *Params) { p.Reconcile = nil }},
		{name: "initial_lookback 7d", edit: func(p *Params) { p.InitialLookback = 7 * 24 * time.Hour }, sweep: true},
		{name: "widened, then defaults", edit: func(*Params) {}, widen: true, sweep: true},
		{name: "widened, then max_lookback 2h", edit: func(p *Params) { p.MaxLookback = 2 * time.Hour }, widen: true, sweep: true},
	}
	for i, ch := range changes {
		t.Run(ch.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(i), 11))
			next := base
			ch.edit(&next)
			events := changeEvents(r, t0.Add(-time.Hour), t0.Add(80*time.Hour))
			held := map[int]time.Time{}
			ever := map[int]bool{}
			redelivered, now := 0, t0
			s := New(base)
			run := func(p Params, d time.Duration) {
				for end := now.Add(d); now.Before(end); now = now.Add(time.Second) {
					s.Plan(now)
					for {
						c, ok := s.Next(false)
						if !ok {
							break
						}
						for _, e := range events {
							if e.t.Before(c.From) || e.t.After(c.To) || e.seen.After(now) {
								continue
							}
							if _, ok := held[e.id]; ok {
								continue
							}
							if ever[e.id] {
								redelivered++
								if redelivered < 4 {
									t.Errorf("event %d at %v delivered again by %v..%v (%s)", e.id, e.t.Sub(t0), c.From.Sub(t0), c.To.Sub(t0), c.Class)
								}
							}
							ever[e.id], held[e.id] = true, e.t
						}
						s.PageDone(c.ID, PageResult{})
					}
					if now.Second() == 0 {
						h := s.Horizon(now)
						for id, tm := range held {
							if tm.Before(h) {
								delete(held, id)
							}
						}
						s.Forget(h)
					}
				}
			}
			run(base, 30*time.Hour)
			if ch.widen {
				for range 8 {
					s.Widen(now)
				}
				run(base, 3*time.Hour)
			}
			raw, err := json.Marshal(s.State())
			if err != nil {
				t.Fatal(err)
			}
			st, err := DecodeState(raw)
			if err != nil {
				t.Fatal(err)
			}
			s = Restore(next, st, now)
			run(next, 40*time.Hour)
			missed := 0
			for _, e := range events {
				late := e.seen.Sub(e.t)
				due := late <= 8*time.Minute || (ch.sweep && late <= 90*time.Minute)
				if due && !e.t.Before(t0) && e.seen.Before(now.Add(-3*time.Hour)) && !ever[e.id] {
					missed++
					if missed < 4 {
						t.Errorf("event %d at %v (late %v) never delivered", e.id, e.t.Sub(t0), late)
					}
				}
			}
			if redelivered > 0 || missed > 0 {
				t.Errorf("%d delivered again, %d missed", redelivered, missed)
			}
		})
	}
}

// changeEvents draws one event every 40 s on average over [from, to):
// most late by up to 8 minutes, one in ten by up to 90.
func changeEvents(r *rand.Rand, from, to time.Time) []modelEvent {
	var out []modelEvent
	for t := from; t.Before(to); t = t.Add(time.Duration(r.Int64N(int64(80 * time.Second)))) {
		late := time.Duration(r.Int64N(int64(8 * time.Minute)))
		if r.IntN(10) == 0 {
			late = time.Duration(r.Int64N(int64(90 * time.Minute)))
		}
		out = append(out, modelEvent{id: len(out), t: t, seen: t.Add(late)})
	}
	slices.SortFunc(out, func(a, b modelEvent) int { return a.t.Compare(b.t) })
	return out
}

// TestDamagedStatesAreRefusedOrRepaired: a state file that a bug or a
// damaged disk wrote is refused (the file is then moved aside) or
// repaired on Restore, never resumed into a query that cannot finish.
func TestDamagedStatesAreRefusedOrRepaired(t *testing.T) {
	const level = `"levels":[{"period":60000000000,"reach":60000000000,"run":"2026-03-02T07:59:00Z"}]`
	refused := map[string]string{
		"a level that never ran":  `{"lookback":1800000000000,"started":"2026-03-01T00:00:00Z","levels":[{"period":60000000000,"reach":60000000000,"run":"0001-01-01T00:00:00Z"}],"pending":[],"next_id":1}`,
		"a query from year 1":     `{"lookback":1800000000000,"started":"2026-03-01T00:00:00Z",` + level + `,"pending":[{"id":1,"from":"0001-01-01T00:00:00Z","to":"2026-03-02T07:00:00Z","class":0,"orig_to":"2026-03-02T07:00:00Z"}],"next_id":1}`,
		"a sweep that never ran":  `{"lookback":1800000000000,"started":"2026-03-01T00:00:00Z",` + level + `,"sweeps":[{"delay":7200000000000,"cursor":"0001-01-01T00:00:00Z"}],"pending":[],"next_id":1}`,
		"a lookback of 292 years": `{"lookback":9223372036854775807,"started":"2026-03-01T00:00:00Z","level_runs":["2026-03-02T07:59:00Z"],"pending":[],"next_id":1}`,
	}
	for name, raw := range refused {
		if _, err := DecodeState([]byte(raw)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Repeated ids are numbered afresh, so a page of one chunk cannot
	// finish another.
	raw := `{"lookback":1800000000000,"started":"2026-03-01T00:00:00Z",` + level + `,"pending":[` +
		`{"id":1,"from":"2026-03-02T04:00:00Z","to":"2026-03-02T05:00:00Z","class":1,"orig_to":"2026-03-02T05:00:00Z"},` +
		`{"id":1,"from":"2026-03-02T06:00:00Z","to":"2026-03-02T07:00:00Z","class":1,"orig_to":"2026-03-02T07:00:00Z"}],"next_id":0}`
	st, err := DecodeState([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	s := Restore(defaults(), st, now)
	s.Plan(now)
	ids := map[uint64]bool{}
	for _, c := range s.Pending() {
		if ids[c.ID] {
			t.Fatalf("id %d repeated after Restore: %+v", c.ID, s.Pending())
		}
		ids[c.ID] = true
	}
}
