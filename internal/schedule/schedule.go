// Package schedule decides which stretches of event time to query, and when,
// so that events that Graph publishes late are still found, while each
// moment is read only a handful of times.
//
// Live levels. Level k has a period P(k) and a reach D(k): P(k) = D(k) =
// poll_interval·2^k, up to the first that reaches lookback (with the
// defaults, 1m, 2m, 4m, 8m, 16m and 32m): powers of two keep the levels
// nested, so merged queries never overlap more than they must. Level k last ran at r(k). When level k is due (now-r(k) >=
// P(k)), the query [r(k)-D(k), now] finds every event whose lateness is at
// most D(k) and that became visible in (r(k), now], whatever the timing of
// the polls: consecutive runs of a level partition visibility time. Levels
// that are due together are merged into one query from the earliest start
// to now, and any level whose own range that query covers is reset too, so
// the levels stay aligned and each tick sends one query. An event that
// becomes visible L late (L <= lookback) is delivered by the lowest level
// with D >= L, within about max(poll_interval, 2L) of becoming visible, and
// each moment is read about once per level plus once more at the top.
//
// Reconcile levels. Level i sweeps, once, every stretch of time that has
// aged reconcile[i] since the last sweep: [c(i), now-reconcile[i]]. It finds
// every event whose lateness is at most reconcile[i]; an event found only
// this way is a late arrival, which widens the lookback.
//
// Work is a list of pending chunks (time ranges to read), persisted with the
// de-dup set, so a restart resumes exactly. Live chunks are read newest
// first and before reconcile sweeps, which run in the order they fell due
// and get a share of the requests even when live work never runs out. A
// chunk shrinks after each page (Graph returns events newest first), so it
// can be interrupted and resumed cheaply.
package schedule

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// Class orders the work.
type Class int

// Chunk classes, in order of priority.
const (
	Live Class = iota
	Reconcile
)

func (c Class) String() string {
	if c == Live {
		return "live"
	}
	return "reconcile"
}

// Chunk is a time range to read, bounds inclusive (Graph's ge and le).
type Chunk struct {
	ID      uint64    `json:"id"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Class   Class     `json:"class"`
	Planned time.Time `json:"planned"`
	// Returned counts the events the chunk's pages returned so far, and
	// Unordered is set once a page broke Graph's newest-first order, after
	// which the chunk no longer shrinks.
	Returned  int  `json:"returned"`
	Unordered bool `json:"unordered,omitempty"`
	// OrigFrom and OrigTo keep the range as planned, for reports.
	OrigTo time.Time `json:"orig_to"`
}

// State is everything the schedule persists.
type State struct {
	Lookback  time.Duration `json:"lookback"`
	Started   time.Time     `json:"started"`
	LevelRuns []time.Time   `json:"level_runs"`
	Cursors   []time.Time   `json:"reconcile_cursors"`
	Pending   []Chunk       `json:"pending"`
	NextID    uint64        `json:"next_id"`
}

// DecodeState reads a persisted state and checks that it can be resumed.
func DecodeState(raw []byte) (State, error) {
	var st State
	if err := json.Unmarshal(raw, &st); err != nil {
		return State{}, fmt.Errorf("unreadable schedule: %w", err)
	}
	ok := func(t time.Time) bool { return t.IsZero() || (t.Year() >= 1970 && t.Year() <= 9999) }
	switch {
	case st.Lookback < 0:
		return State{}, fmt.Errorf("schedule has a negative lookback")
	case len(st.LevelRuns) > 64 || len(st.Cursors) > 64:
		return State{}, fmt.Errorf("schedule has too many levels")
	case !ok(st.Started):
		return State{}, fmt.Errorf("schedule start out of range")
	}
	for _, t := range append(append([]time.Time(nil), st.LevelRuns...), st.Cursors...) {
		if !ok(t) {
			return State{}, fmt.Errorf("schedule time out of range")
		}
	}
	for _, c := range st.Pending {
		if !ok(c.From) || !ok(c.To) || !ok(c.Planned) || !ok(c.OrigTo) || c.To.Before(c.From) || (c.Class != Live && c.Class != Reconcile) || c.Returned < 0 {
			return State{}, fmt.Errorf("schedule has a damaged pending query")
		}
	}
	if !st.Started.IsZero() && len(st.LevelRuns) == 0 {
		return State{}, fmt.Errorf("schedule has started but has no levels")
	}
	return st, nil
}

// Params are the settings the schedule follows.
type Params struct {
	PollInterval    time.Duration
	Lookback        time.Duration
	MaxLookback     time.Duration
	Reconcile       []time.Duration
	InitialLookback time.Duration
}

// Schedule plans chunks. It is not safe for concurrent use.
type Schedule struct {
	p  Params
	st State
}

// New returns a schedule that starts afresh.
func New(p Params) *Schedule {
	return &Schedule{p: p, st: State{Lookback: p.Lookback}}
}

// Restore returns a schedule that continues from a persisted state. A state
// from a configuration with a different reconcile list or a longer lookback
// is adapted: new levels take responsibility from now on.
func Restore(p Params, st State, now time.Time) *Schedule {
	s := &Schedule{p: p, st: st}
	if s.st.Lookback < p.Lookback || s.st.Lookback > p.MaxLookback {
		s.st.Lookback = p.Lookback
	}
	if !s.st.Started.IsZero() {
		s.fitLevels(now)
		for len(s.st.Cursors) < len(p.Reconcile) {
			s.st.Cursors = append(s.st.Cursors, now.Add(-p.Reconcile[len(s.st.Cursors)]))
		}
		s.st.Cursors = s.st.Cursors[:len(p.Reconcile)]
	}
	return s
}

// State returns a copy of the state to persist.
func (s *Schedule) State() State {
	st := s.st
	st.LevelRuns = append([]time.Time(nil), s.st.LevelRuns...)
	st.Cursors = append([]time.Time(nil), s.st.Cursors...)
	st.Pending = append([]Chunk(nil), s.st.Pending...)
	return st
}

// Started is when the schedule first ran (zero before).
func (s *Schedule) Started() time.Time { return s.st.Started }

// Lookback is the current lookback (it may have been widened).
func (s *Schedule) Lookback() time.Duration { return s.st.Lookback }

// Level is one live level.
type Level struct{ Period, Reach time.Duration }

// Levels lists the live levels for the current lookback.
func (s *Schedule) Levels() []Level { return levels(s.p.PollInterval, s.st.Lookback) }

func levels(p, lookback time.Duration) []Level {
	var out []Level
	d := p
	for ; d < lookback; d *= 2 {
		out = append(out, Level{d, d})
	}
	return append(out, Level{d, d})
}

// fitLevels resizes LevelRuns to the current levels; new levels start now.
func (s *Schedule) fitLevels(now time.Time) {
	n := len(s.Levels())
	for len(s.st.LevelRuns) < n {
		s.st.LevelRuns = append(s.st.LevelRuns, now)
	}
	s.st.LevelRuns = s.st.LevelRuns[:n]
}

// Plan adds the chunks that are due at now and reports whether it added any.
func (s *Schedule) Plan(now time.Time) bool {
	if s.st.Started.IsZero() {
		s.st.Started = now
		s.fitLevels(now)
		start := now.Add(-s.p.InitialLookback)
		s.add(Chunk{From: start, To: now, Class: Live, Planned: now})
		s.st.Cursors = make([]time.Time, len(s.p.Reconcile))
		for i, d := range s.p.Reconcile {
			// Events older than now-d had their whole lateness allowance
			// before this first query, so the first query finds them.
			c := now.Add(-d)
			if c.Before(start) {
				c = start
			}
			s.st.Cursors[i] = c
		}
		return true
	}
	added := false
	lv := s.Levels()
	if now.Sub(s.st.LevelRuns[0]) >= lv[0].Period {
		start := now
		for k, l := range lv {
			if r := s.st.LevelRuns[k]; now.Sub(r) >= l.Period {
				if st := r.Add(-l.Reach); st.Before(start) {
					start = st
				}
			}
		}
		for k, l := range lv {
			if !s.st.LevelRuns[k].Add(-l.Reach).Before(start) {
				s.st.LevelRuns[k] = now
			}
		}
		s.add(Chunk{From: start, To: now, Class: Live, Planned: now})
		added = true
	}
	for i, d := range s.p.Reconcile {
		// Sweeps advance in steps of the configured lookback: a widened
		// lookback must not delay them.
		end := now.Add(-d)
		if end.Sub(s.st.Cursors[i]) >= s.p.Lookback {
			s.add(Chunk{From: s.st.Cursors[i], To: end, Class: Reconcile, Planned: now})
			s.st.Cursors[i] = end
			added = true
		}
	}
	return added
}

// add queues c, merging it with pending chunks of its class that it
// overlaps or touches and that have not started (see Begin).
func (s *Schedule) add(c Chunk) {
	c.OrigTo = c.To
	for i := 0; i < len(s.st.Pending); {
		o := s.st.Pending[i]
		if o.Class == c.Class && o.Returned == 0 && o.To.Equal(o.OrigTo) && !o.From.After(c.To) && !c.From.After(o.To) {
			if o.From.Before(c.From) {
				c.From = o.From
			}
			if o.To.After(c.To) {
				c.To, c.OrigTo = o.To, o.To
			}
			if o.Planned.Before(c.Planned) {
				c.Planned = o.Planned
			}
			s.st.Pending = append(s.st.Pending[:i], s.st.Pending[i+1:]...)
			continue
		}
		i++
	}
	s.st.NextID++
	c.ID = s.st.NextID
	s.st.Pending = append(s.st.Pending, c)
	s.sortPending()
}

func (s *Schedule) sortPending() {
	sort.SliceStable(s.st.Pending, func(i, j int) bool {
		a, b := s.st.Pending[i], s.st.Pending[j]
		switch {
		case a.Class != b.Class:
			return a.Class < b.Class
		case a.Class == Live:
			// The newest events first.
			return a.To.After(b.To)
		}
		// Sweeps in the order they became due, so that a busy short
		// delay cannot starve a longer one.
		return a.Planned.Before(b.Planned)
	})
}

// Next returns the chunk to read now, or false when there is none. Live
// work comes first, except that with reconcile set a queued reconcile chunk
// is served: the caller sets it for one request in ReconcileShare, so
// sweeps progress even when live polls use the whole budget.
func (s *Schedule) Next(reconcile bool) (Chunk, bool) {
	if len(s.st.Pending) == 0 {
		return Chunk{}, false
	}
	if reconcile {
		for _, c := range s.st.Pending {
			if c.Class == Reconcile {
				return c, true
			}
		}
	}
	return s.st.Pending[0], true
}

// ReconcileShare: one request in this many may go to reconcile work while
// live work is queued.
const ReconcileShare = 4

// Pending returns the queued chunks, highest priority first.
func (s *Schedule) Pending() []Chunk { return append([]Chunk(nil), s.st.Pending...) }

// PageResult is what one committed page of a chunk showed.
type PageResult struct {
	Count  int       // events on the page (new or not)
	Oldest time.Time // oldest event time on the page (zero if none)
	Newest time.Time
	More   bool // Graph returned a nextLink
	// OutOfOrder is set when the page itself was not sorted newest first.
	OutOfOrder bool
}

// PageDone records a page of chunk id as delivered. It reports whether the
// chunk is complete, with the chunk as it stood.
func (s *Schedule) PageDone(id uint64, r PageResult) (Chunk, bool, error) {
	i := s.find(id)
	if i < 0 {
		return Chunk{}, false, fmt.Errorf("chunk %d is not pending", id)
	}
	c := &s.st.Pending[i]
	if r.Count > 0 {
		// Graph sorts newest first; a page newer than the last one read
		// means the order cannot be relied on to shrink the range.
		if r.OutOfOrder || (c.Returned > 0 && r.Newest.After(c.To)) {
			c.Unordered = true
		}
		c.Returned += r.Count
	}
	if !r.More {
		done := *c
		s.st.Pending = append(s.st.Pending[:i], s.st.Pending[i+1:]...)
		return done, true, nil
	}
	if r.Count > 0 && !c.Unordered && r.Oldest.Before(c.To) && !r.Oldest.Before(c.From) {
		// Everything newer than the oldest event seen has been read; the
		// boundary itself stays (events may share the timestamp).
		c.To = r.Oldest
	}
	return *c, false, nil
}

// Split replaces chunk id by its two halves, for a service that answered
// a full page without a nextLink: each half is read on its own until the
// answers fit a page. A range of two seconds or less cannot be split (the
// queries' bounds are whole seconds); Split then reports false and the
// chunk counts as done.
func (s *Schedule) Split(id uint64) bool {
	i := s.find(id)
	if i < 0 {
		return false
	}
	c := s.st.Pending[i]
	s.st.Pending = append(s.st.Pending[:i], s.st.Pending[i+1:]...)
	if c.To.Sub(c.From) <= 2*time.Second {
		return false
	}
	mid := c.From.Add(c.To.Sub(c.From) / 2)
	for _, h := range []Chunk{{From: c.From, To: mid}, {From: mid, To: c.To}} {
		h.Class, h.Planned = c.Class, c.Planned
		h.OrigTo = h.To
		s.st.NextID++
		h.ID = s.st.NextID
		s.st.Pending = append(s.st.Pending, h)
	}
	s.sortPending()
	return true
}

func (s *Schedule) find(id uint64) int {
	for i := range s.st.Pending {
		if s.st.Pending[i].ID == id {
			return i
		}
	}
	return -1
}

// Horizon is the oldest event time any future query can reach, including a
// lookback widened up to max_lookback. Keys of older events can be dropped
// from the de-dup set.
func (s *Schedule) Horizon(now time.Time) time.Time {
	h := now.Add(-s.p.MaxLookback - s.p.PollInterval)
	lv := s.Levels()
	for k, r := range s.st.LevelRuns {
		if t := r.Add(-lv[k].Reach); t.Before(h) {
			h = t
		}
	}
	for _, c := range s.st.Cursors {
		if c.Before(h) {
			h = c
		}
	}
	for _, c := range s.st.Pending {
		if c.From.Before(h) {
			h = c.From
		}
	}
	return h.Add(-s.p.PollInterval)
}

// Widen doubles the lookback, up to max_lookback, after events were found
// later than it covers. It reports the new value and whether it changed.
func (s *Schedule) Widen(now time.Time) (time.Duration, bool) {
	if s.st.Lookback >= s.p.MaxLookback {
		return s.st.Lookback, false
	}
	nl := 2 * s.st.Lookback
	if nl > s.p.MaxLookback {
		nl = s.p.MaxLookback
	}
	s.st.Lookback = nl
	s.fitLevels(now)
	return nl, true
}

// Backlog says how long the oldest pending chunk of each class has waited
// (zero when none is queued) and how many chunks are queued.
func (s *Schedule) Backlog(now time.Time) (live, reconcile time.Duration, chunks int) {
	for _, c := range s.st.Pending {
		w := now.Sub(c.Planned)
		if c.Class == Live && w > live {
			live = w
		}
		if c.Class == Reconcile && w > reconcile {
			reconcile = w
		}
	}
	return live, reconcile, len(s.st.Pending)
}
