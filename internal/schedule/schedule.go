// Package schedule decides which stretches of event time to query, and when,
// so that events that Graph publishes late are still found, while each
// moment is read only a handful of times; and it keeps each query's
// position so that every query finishes, however it is interleaved with
// others, interrupted, throttled or restarted.
//
// Live levels. Level k has a period P(k) = poll_interval·2^k and a reach
// D(k) = P(k), up to the first period that reaches lookback, whose reach is
// lookback itself (with the defaults, 1m, 2m, 4m, 8m, 16m, and 32m with a
// reach of 30m): powers of two keep the levels nested, so merged queries
// never overlap more than they must. Level k last ran at r(k). When level
// k is due (now-r(k) >= P(k)), the query [r(k)-D(k), now] finds every
// event whose lateness is at most D(k) and that became visible in
// (r(k), now], whatever the timing of the polls: consecutive runs of a
// level partition visibility time. Levels that are due together are merged
// into one query from the earliest start to now, and any level whose own
// range that query covers is reset too, so the levels stay aligned and
// each tick sends one query. An event that becomes visible L late
// (L <= lookback) is delivered by the lowest level with D >= L, within
// about max(poll_interval, 2L) of becoming visible, and each moment is read
// about once per level plus once more at the top.
//
// Reconcile levels. Level i sweeps, once, every stretch of time that has
// aged reconcile[i] since the last sweep: [c(i), now-reconcile[i]]. It finds
// every event whose lateness is at most reconcile[i]; an event found only
// this way is a late arrival, which widens the lookback.
//
// Work is a list of pending chunks (time ranges to read), persisted with the
// de-dup set, so a restart resumes exactly. Live chunks are read newest
// first and before reconcile sweeps, which run in the order they fell due
// and get a share of the requests even when live work never runs out.
//
// Progress. A chunk's position is its upper bound To and, while Graph is
// paging it, the nextLink to its next page (Link), both kept in the chunk
// itself, so serving other chunks in between loses nothing. Graph returns
// a query's events newest first, so after each page every event newer
// than the oldest one seen has been read, and To shrinks to it. When a
// link fails (Graph expires them, and a restart does not keep them) the
// chunk is queried afresh as [From, To]; Graph's filter has whole seconds,
// so that query starts at the end of To's second and re-reads what it
// held. Until the new chain gets below where it resumed, the chunk is
// pinned: it is served before any other work, so an interruption cannot
// cost that ground again. Hence the invariant, which the tests check over
// random interleavings:
//
//	every request for a chunk either fails, or reads the next page of its
//	chain, or starts a chain that re-reads at most the events of one second
//	before it moves on; a chunk of N events therefore finishes within
//	⌈N/top⌉ + x·(1+⌈S/top⌉) + f requests, where x is the number of links
//	that failed, S the most events in one second and f the failed requests.
//
// The bound assumes that Graph keeps a link at least from one page of a
// pinned chain to the next (requested right after it); a link that
// expires sooner than that makes such a chain start again each time. A
// request that fails unpins its chunk (it keeps its link), so a page that
// keeps failing cannot hold up other work. A chunk whose pages break
// Graph's order is not shrunk (its chain is read to the end); if its chain
// fails, it is split in halves, which shrinks it.
//
// Unreadable stretches. A query whose page Graph keeps answering with a
// body that cannot be read (one object that breaks the JSON, which no
// retry mends) would otherwise fail forever, and with it every query that
// covers its time. Such a chunk is isolated: it is split in halves, each
// half read on its own, and a half that fails again is split again, so
// everything around the bad stretch is delivered. A chunk of two seconds
// or less cannot be split (the filter has whole seconds): it becomes an
// unreadable stretch, widened to whole seconds plus the reach of the
// filter's bounds (Grain) on each side, so that the parts of other queries
// that end or start at its bounds cannot read its bad page. Stretches are
// kept in the state, carved out of every query, retried every Retry (the
// first reconcile delay, or lookback), and given up only when older than
// max_lookback. Their time holds back the horizon, so a stretch read at
// last delivers only what was not delivered before.
//
// Configuration changes. Levels are kept with their period and reach, and
// sweeps with their delay, so a run with another poll_interval, lookback or
// reconcile list adapts them rather than reinterpreting them: a level that
// keeps its period keeps its last run, a new one starts at the oldest run
// kept (it reads a little more once), a new sweep starts at its delay. No
// query ever reaches behind Forgotten, the oldest time whose ids have been
// dropped from the de-dup set, so a change never delivers an id again.
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
	// OrigTo keeps the upper bound as planned, for reports.
	OrigTo time.Time `json:"orig_to"`
	// Link is Graph's nextLink to the next page of the chain being read;
	// empty, the next request queries [From, To] afresh.
	Link string `json:"link,omitempty"`
	// Oldest is the oldest event time the current chain returned, and
	// Resumed the To at which a chain that re-reads started (zero when the
	// chain started at the planned bound). Pinned is set while such a chain
	// has not got below Resumed.
	Oldest  time.Time `json:"chain_oldest,omitzero"`
	Resumed time.Time `json:"resumed,omitzero"`
	Pinned  bool      `json:"pinned,omitempty"`
	// Requests counts the pages read, for the progress bound and reports.
	Requests int `json:"requests,omitempty"`
	// Isolating marks a half of a chunk whose page could not be read,
	// and Stretch the retry of an unreadable stretch: neither is merged
	// with other work, so the bad page stays within as little time as
	// possible.
	Isolating bool `json:"isolating,omitempty"`
	Stretch   bool `json:"stretch,omitempty"`
	// Bad counts the unreadable answers in a row, since BadSince; Wait
	// defers the chunk while other work is served.
	Bad      int       `json:"bad,omitempty"`
	BadSince time.Time `json:"bad_since,omitzero"`
	Wait     time.Time `json:"wait,omitzero"`
}

// Stretch is a range of time whose pages Graph answered with a body that
// cannot be read, kept out of every other query and retried on its own.
type Stretch struct {
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	Found time.Time `json:"found"`
	// Retry is when it is next queried, Tries how often it failed.
	Retry     time.Time `json:"retry"`
	Tries     int       `json:"tries"`
	RequestID string    `json:"request_id,omitempty"`
}

// MaxStretches bounds the unreadable stretches kept: more than this many
// says Graph's answers are unreadable in general, not for one stretch,
// and the queries are then retried whole like any failing request.
const MaxStretches = 32

// started reports whether a page of c has been read: it is then no longer
// merged with new work.
func (c Chunk) started() bool {
	return c.Returned > 0 || c.Requests > 0 || c.Bad > 0 || !c.To.Equal(c.OrigTo)
}

// LevelRun is one live level with the time it last ran.
type LevelRun struct {
	Period time.Duration `json:"period"`
	Reach  time.Duration `json:"reach"`
	Run    time.Time     `json:"run"`
}

// Sweep is one reconcile level: everything before Cursor has been swept.
type Sweep struct {
	Delay  time.Duration `json:"delay"`
	Cursor time.Time     `json:"cursor"`
}

// State is everything the schedule persists.
type State struct {
	Lookback time.Duration `json:"lookback"`
	// Configured is the lookback the configuration asked for; another
	// one in a later run replaces a widened Lookback.
	Configured time.Duration `json:"configured_lookback,omitempty"`
	// LookbackSince is when Lookback took effect: only events after it
	// show whether it is long enough.
	LookbackSince time.Time  `json:"lookback_since,omitzero"`
	Started       time.Time  `json:"started"`
	Levels        []LevelRun `json:"levels,omitempty"`
	Sweeps        []Sweep    `json:"sweeps,omitempty"`
	// Forgotten: ids of events before it may have left the de-dup set, so
	// no query reaches behind it.
	Forgotten time.Time `json:"forgotten,omitzero"`
	Pending   []Chunk   `json:"pending"`
	NextID    uint64    `json:"next_id"`
	// Unreadable are the stretches whose pages Graph answers unreadably.
	Unreadable []Stretch `json:"unreadable,omitempty"`

	// LegacyRuns and LegacyCursors are how files written before levels
	// and sweeps carried their periods and delays held them (by index).
	LegacyRuns    []time.Time `json:"level_runs,omitempty"`
	LegacyCursors []time.Time `json:"reconcile_cursors,omitempty"`
}

// DecodeState reads a persisted state and checks that it can be resumed.
func DecodeState(raw []byte) (State, error) {
	var st State
	if err := json.Unmarshal(raw, &st); err != nil {
		return State{}, fmt.Errorf("unreadable schedule: %w", err)
	}
	ok := func(t time.Time) bool { return t.IsZero() || (t.Year() >= 1970 && t.Year() <= 9999) }
	times := []time.Time{st.Started, st.Forgotten, st.LookbackSince}
	times = append(append(times, st.LegacyRuns...), st.LegacyCursors...)
	for _, l := range st.Levels {
		if l.Period <= 0 || l.Reach <= 0 {
			return State{}, fmt.Errorf("schedule has a level without a period")
		}
		times = append(times, l.Run)
	}
	for _, w := range st.Sweeps {
		if w.Delay <= 0 {
			return State{}, fmt.Errorf("schedule has a sweep without a delay")
		}
		times = append(times, w.Cursor)
	}
	switch {
	case st.Lookback < 0 || st.Lookback > maxLookback || st.Configured < 0 || st.Configured > maxLookback:
		return State{}, fmt.Errorf("schedule has a lookback out of range")
	case len(st.Levels)+len(st.LegacyRuns) > 64 || len(st.Sweeps)+len(st.LegacyCursors) > 64:
		return State{}, fmt.Errorf("schedule has too many levels")
	}
	for _, t := range times {
		if !ok(t) {
			return State{}, fmt.Errorf("schedule time out of range")
		}
	}
	for _, c := range st.Pending {
		if !ok(c.From) || !ok(c.To) || !ok(c.Planned) || !ok(c.OrigTo) || !ok(c.Oldest) || !ok(c.Resumed) || !ok(c.BadSince) || !ok(c.Wait) || c.Bad < 0 ||
			c.From.IsZero() || c.To.Before(c.From) || c.OrigTo.Before(c.To) || (c.Class != Live && c.Class != Reconcile) || c.Returned < 0 || c.Requests < 0 {
			return State{}, fmt.Errorf("schedule has a damaged pending query")
		}
	}
	if len(st.Unreadable) > MaxStretches {
		return State{}, fmt.Errorf("schedule has too many unreadable stretches")
	}
	for _, u := range st.Unreadable {
		// Isolation makes stretches of seconds, of time before they
		// were found; merged ones stay far below an hour.
		if !ok(u.From) || !ok(u.To) || !ok(u.Found) || !ok(u.Retry) || u.From.IsZero() || u.To.Before(u.From) || u.Tries < 0 ||
			u.To.Sub(u.From) > time.Hour || u.To.After(u.Found.Add(time.Minute)) || u.Retry.After(u.Found.Add(maxLookback)) {
			return State{}, fmt.Errorf("schedule has a damaged unreadable stretch")
		}
	}
	if !st.Started.IsZero() {
		if len(st.Levels) == 0 && len(st.LegacyRuns) == 0 {
			return State{}, fmt.Errorf("schedule has started but has no levels")
		}
		zero := false
		for _, l := range st.Levels {
			zero = zero || l.Run.IsZero()
		}
		for _, w := range st.Sweeps {
			zero = zero || w.Cursor.IsZero()
		}
		for _, t := range append(append([]time.Time(nil), st.LegacyRuns...), st.LegacyCursors...) {
			zero = zero || t.IsZero()
		}
		if zero {
			return State{}, fmt.Errorf("schedule has a level or sweep that never ran")
		}
	}
	return st, nil
}

// maxLookback bounds every lookback a state may hold (the configuration
// allows far less): levels double up to it.
const maxLookback = 400 * 24 * time.Hour

// Params are the settings the schedule follows.
type Params struct {
	PollInterval    time.Duration
	Lookback        time.Duration
	MaxLookback     time.Duration
	Reconcile       []time.Duration
	InitialLookback time.Duration
	// Grain is how far a query may read past its bounds, which its
	// filter widens to whole seconds: 1s with ge/le, 2s with gt/lt.
	// Zero is 1s.
	Grain time.Duration
}

func (p Params) grain() time.Duration {
	if p.Grain <= 0 {
		return time.Second
	}
	return p.Grain
}

// Schedule plans chunks. It is not safe for concurrent use.
type Schedule struct {
	p  Params
	st State
	// abandoned are the stretches given up, until TakeAbandoned.
	abandoned []Stretch
	// now is the time of the last Plan: Next passes over chunks whose
	// Wait is after it.
	now time.Time
}

// New returns a schedule that starts afresh.
func New(p Params) *Schedule {
	return &Schedule{p: p, st: State{Lookback: p.Lookback, Configured: p.Lookback}}
}

// Restore returns a schedule that continues from a persisted state, made
// with these settings or others (see the package comment). Links of the
// previous run are not relied on: each started chunk resumes from its
// position.
func Restore(p Params, st State, now time.Time) *Schedule {
	s := &Schedule{p: p, st: st}
	changed := s.st.Configured != 0 && s.st.Configured != p.Lookback
	if changed || s.st.Lookback < p.Lookback || s.st.Lookback > p.MaxLookback {
		s.st.Lookback = p.Lookback
		s.st.LookbackSince = now
	}
	s.st.Configured = p.Lookback
	if s.st.LookbackSince.IsZero() {
		s.st.LookbackSince = s.st.Started
	}
	// An unordered chunk goes back to its planned bound. Ids that repeat,
	// or that next_id does not exceed (a damaged file), are given afresh.
	s.st.Pending = append([]Chunk(nil), st.Pending...)
	s.st.Unreadable = append([]Stretch(nil), st.Unreadable...)
	ids := map[uint64]bool{}
	for i := range s.st.Pending {
		c := &s.st.Pending[i]
		c.Link, c.Oldest, c.Resumed, c.Pinned = "", time.Time{}, time.Time{}, false
		if c.Unordered {
			c.To = c.OrigTo
		}
		if ids[c.ID] || c.ID > s.st.NextID || c.ID == 0 {
			ids = nil
		}
		if ids != nil {
			ids[c.ID] = true
		}
	}
	if ids == nil {
		s.st.NextID = 0
		for i := range s.st.Pending {
			s.st.NextID++
			s.st.Pending[i].ID = s.st.NextID
		}
	}
	if s.st.Started.IsZero() {
		return s
	}
	legacy := len(st.Levels) == 0
	if legacy {
		// Periods were poll_interval·2^k: assume this poll_interval only
		// if the count fits; otherwise every level is new.
		old := levels(p.PollInterval, s.st.Lookback)
		for k, r := range st.LegacyRuns {
			l := Level{}
			if len(st.LegacyRuns) == len(old) {
				l = old[k]
			}
			s.st.Levels = append(s.st.Levels, LevelRun{Period: l.Period, Reach: max(l.Reach, 1), Run: r})
		}
		for i, c := range st.LegacyCursors {
			w := Sweep{Cursor: c, Delay: -1}
			if len(st.LegacyCursors) == len(p.Reconcile) {
				w.Delay = p.Reconcile[i]
			}
			s.st.Sweeps = append(s.st.Sweeps, w)
		}
		s.st.LegacyRuns, s.st.LegacyCursors = nil, nil
		if s.st.Forgotten.IsZero() {
			// The ids dropped so far are older than every query the old
			// schedule still had.
			s.st.Forgotten = s.horizon(now)
		}
	}
	oldest := now
	for _, l := range s.st.Levels {
		if l.Run.Before(oldest) {
			oldest = l.Run
		}
	}
	s.fitLevels(oldest)
	sweeps := make([]Sweep, len(p.Reconcile))
	for i, d := range p.Reconcile {
		sweeps[i] = Sweep{Delay: d, Cursor: later(now.Add(-d), s.st.Forgotten)}
		for _, w := range s.st.Sweeps {
			if w.Delay == d {
				sweeps[i].Cursor = w.Cursor
			}
		}
	}
	s.st.Sweeps = sweeps
	return s
}

func later(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}

// State returns a copy of the state to persist.
func (s *Schedule) State() State {
	st := s.st
	st.Levels = append([]LevelRun(nil), s.st.Levels...)
	st.Sweeps = append([]Sweep(nil), s.st.Sweeps...)
	st.Pending = append([]Chunk(nil), s.st.Pending...)
	st.Unreadable = append([]Stretch(nil), s.st.Unreadable...)
	return st
}

// Started is when the schedule first ran (zero before).
func (s *Schedule) Started() time.Time { return s.st.Started }

// Lookback is the current lookback (it may have been widened).
func (s *Schedule) Lookback() time.Duration { return s.st.Lookback }

// LookbackSince is when the current lookback took effect.
func (s *Schedule) LookbackSince() time.Time { return s.st.LookbackSince }

// Forgotten is the time before which ids may have been dropped.
func (s *Schedule) Forgotten() time.Time { return s.st.Forgotten }

// Level is one live level.
type Level struct{ Period, Reach time.Duration }

// Levels lists the live levels for the current lookback.
func (s *Schedule) Levels() []Level { return levels(s.p.PollInterval, s.st.Lookback) }

func levels(p, lookback time.Duration) []Level {
	var out []Level
	d := p
	for ; d < lookback && len(out) < 63; d *= 2 {
		out = append(out, Level{d, d})
	}
	// The top level reaches exactly lookback: reaching further back would
	// query time whose ids may be forgotten once lookback is max_lookback.
	return append(out, Level{d, max(lookback, p)})
}

// fitLevels makes the level list match the current levels: a level whose
// period is unchanged keeps its last run, a new one is taken to have run
// at fresh.
func (s *Schedule) fitLevels(fresh time.Time) {
	want := s.Levels()
	out := make([]LevelRun, len(want))
	for k, l := range want {
		out[k] = LevelRun{Period: l.Period, Reach: l.Reach, Run: fresh}
		if k < len(s.st.Levels) && s.st.Levels[k].Period == l.Period {
			out[k].Run = s.st.Levels[k].Run
		}
	}
	s.st.Levels = out
}

// Plan adds the chunks that are due at now and reports whether it added any.
func (s *Schedule) Plan(now time.Time) bool {
	s.now = now
	if s.st.Started.IsZero() {
		s.st.Started, s.st.LookbackSince = now, now
		s.fitLevels(now)
		start := now.Add(-s.p.InitialLookback)
		s.add(Chunk{From: start, To: now, Class: Live, Planned: now})
		s.st.Sweeps = make([]Sweep, len(s.p.Reconcile))
		for i, d := range s.p.Reconcile {
			// Events older than now-d had their whole lateness allowance
			// before this first query, so the first query finds them.
			s.st.Sweeps[i] = Sweep{Delay: d, Cursor: later(now.Add(-d), start)}
		}
		return true
	}
	added := s.retryStretches(now)
	lv := s.st.Levels
	if now.Sub(lv[0].Run) >= lv[0].Period {
		start := now
		for _, l := range lv {
			if now.Sub(l.Run) >= l.Period {
				if st := l.Run.Add(-l.Reach); st.Before(start) {
					start = st
				}
			}
		}
		for k, l := range lv {
			if !l.Run.Add(-l.Reach).Before(start) {
				lv[k].Run = now
			}
		}
		s.add(Chunk{From: later(start, s.st.Forgotten), To: now, Class: Live, Planned: now})
		added = true
	}
	for i := range s.st.Sweeps {
		// Sweeps advance in steps of the configured lookback: a widened
		// lookback must not delay them.
		w := &s.st.Sweeps[i]
		end := now.Add(-w.Delay)
		if end.Sub(w.Cursor) >= s.p.Lookback {
			if from := later(w.Cursor, s.st.Forgotten); from.Before(end) {
				s.add(Chunk{From: from, To: end, Class: Reconcile, Planned: now})
				added = true
			}
			w.Cursor = end
		}
	}
	return added
}

// NextPlan is the earliest time at which Plan can add a chunk: when live
// level 0 is due, a sweep has aged a lookback, or a stretch is to be
// retried. Zero before the first Plan.
func (s *Schedule) NextPlan() time.Time {
	if s.st.Started.IsZero() || len(s.st.Levels) == 0 {
		return time.Time{}
	}
	t := s.st.Levels[0].Run.Add(s.st.Levels[0].Period)
	for _, w := range s.st.Sweeps {
		if d := w.Cursor.Add(s.p.Lookback + w.Delay); d.Before(t) {
			t = d
		}
	}
	for _, u := range s.st.Unreadable {
		if u.Retry.Before(t) {
			t = u.Retry
		}
	}
	return t
}

// add queues c, merging it with pending chunks of its class that it
// overlaps or touches and that have not started.
func (s *Schedule) add(c Chunk) {
	c.OrigTo = c.To
	for i := 0; i < len(s.st.Pending); {
		o := s.st.Pending[i]
		if o.Class == c.Class && !o.started() && !o.Isolating && !o.Stretch && !o.From.After(c.To) && !c.From.After(o.To) {
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
	s.push(s.outside(c)...)
}

// push queues new chunks, each with an id of its own.
func (s *Schedule) push(cs ...Chunk) {
	for _, c := range cs {
		s.st.NextID++
		c.ID = s.st.NextID
		s.st.Pending = append(s.st.Pending, c)
	}
	s.sortPending()
}

// replace removes the pending chunk at i and queues parts in its place.
func (s *Schedule) replace(i int, parts ...Chunk) {
	s.st.Pending = append(s.st.Pending[:i], s.st.Pending[i+1:]...)
	s.push(parts...)
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

// Next returns the chunk to read now, or false when there is none (a
// chunk waiting after unreadable answers is passed over). A pinned chunk
// comes first, then one being isolated; then live work, except that with reconcile set
// a queued reconcile chunk is served: the caller sets it for one request in
// ReconcileShare, so sweeps progress even when live polls use the whole
// budget.
func (s *Schedule) Next(reconcile bool) (Chunk, bool) {
	ready := func(c Chunk) bool { return !c.Wait.After(s.now) }
	for _, c := range s.st.Pending {
		if c.Pinned && ready(c) {
			return c, true
		}
	}
	// A chunk being isolated next: its tries are spaced by Wait, and
	// newer work must not starve it.
	for _, c := range s.st.Pending {
		if (c.Bad > 0 || c.Isolating) && ready(c) {
			return c, true
		}
	}
	if reconcile {
		for _, c := range s.st.Pending {
			if c.Class == Reconcile && ready(c) {
				return c, true
			}
		}
	}
	for _, c := range s.st.Pending {
		if ready(c) {
			return c, true
		}
	}
	return Chunk{}, false
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
	// Next is Graph's nextLink, empty on the last page.
	Next string
	// Fresh is set when the page was the first of a new query, not one
	// read through a nextLink.
	Fresh bool
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
	c.Requests++
	c.Bad, c.BadSince, c.Wait = 0, time.Time{}, time.Time{}
	if r.Fresh {
		c.Oldest, c.Resumed = time.Time{}, time.Time{}
		if c.To.Before(c.OrigTo) {
			c.Resumed = c.To
		}
	}
	if r.Count > 0 {
		// Within one chain Graph sorts newest first: a page newer than
		// the chain's oldest event breaks that order, and then the
		// position cannot be told by time.
		if r.OutOfOrder || (!r.Fresh && !c.Oldest.IsZero() && r.Newest.After(c.Oldest)) {
			if !c.Unordered {
				c.Unordered = true
				c.To = c.OrigTo
			}
		}
		c.Returned += r.Count
		if c.Oldest.IsZero() || r.Oldest.Before(c.Oldest) {
			c.Oldest = r.Oldest
		}
	}
	if r.Next == "" {
		done := *c
		s.st.Pending = append(s.st.Pending[:i], s.st.Pending[i+1:]...)
		if done.Stretch {
			s.dropStretch(done.From, done.To)
		}
		return done, true, nil
	}
	c.Link = r.Next
	if r.Count > 0 && !c.Unordered && r.Oldest.Before(c.To) && !r.Oldest.Before(c.From) {
		// Everything newer than the oldest event seen has been read; the
		// boundary itself stays (events may share the timestamp).
		c.To = r.Oldest
	}
	c.Pinned = !c.Unordered && !c.Resumed.IsZero() && !c.Oldest.Before(c.Resumed)
	return *c, false, nil
}

// Restart abandons chunk id's chain (Graph refused its nextLink, or it
// looped): the next request queries [From, To] afresh. A chunk whose order
// could not be relied on is split in halves instead, so that it shrinks.
func (s *Schedule) Restart(id uint64) {
	i := s.find(id)
	if i < 0 {
		return
	}
	c := &s.st.Pending[i]
	if c.Unordered && s.Split(id) {
		return
	}
	c.Link, c.Oldest, c.Pinned = "", time.Time{}, false
}

// Split replaces chunk id by its two halves, for a service that answered
// a full page without a nextLink: each half is read on its own until the
// answers fit a page. A range of two seconds or less cannot be split (the
// queries' bounds are whole seconds); Split then reports false and leaves
// the chunk as it is.
func (s *Schedule) Split(id uint64) bool {
	i := s.find(id)
	if i < 0 {
		return false
	}
	c := s.st.Pending[i]
	if c.To.Sub(c.From) <= 2*time.Second {
		return false
	}
	mid := c.From.Add(c.To.Sub(c.From) / 2)
	if c.Stretch {
		// The halves of a stretch's retry are the retries of its halves.
		for k, u := range s.st.Unreadable {
			if u.From.Equal(c.From) && u.To.Equal(c.To) {
				lo, hi := u, u
				lo.To, hi.From = mid, mid
				s.st.Unreadable = append(append(s.st.Unreadable[:k:k], lo, hi), s.st.Unreadable[k+1:]...)
				break
			}
		}
	}
	lo, hi := fresh(c), fresh(c)
	lo.To, lo.OrigTo = mid, mid
	hi.From = mid
	s.replace(i, lo, hi)
	return true
}

// LiveCovers reports whether live work has yet to read time t: a pending
// live chunk, or the next run of a level, whose range reaches back to
// r-D. An event found by a sweep at such a time would have been found by
// live queries too, so it is no sign that lookback is too short.
func (s *Schedule) LiveCovers(t time.Time) bool {
	for _, l := range s.st.Levels {
		if !t.Before(l.Run.Add(-l.Reach)) {
			return true
		}
	}
	for _, c := range s.st.Pending {
		if c.Class == Live && !t.Before(c.From) && !t.After(c.To) {
			return true
		}
	}
	return false
}

// Defer has Next pass over chunk id until until, while other work is
// served: its request failed, and it retries on its own back-off. Its
// next page clears it.
func (s *Schedule) Defer(id uint64, until time.Time) {
	if i := s.find(id); i >= 0 {
		s.st.Pending[i].Wait = until
		s.st.Pending[i].Pinned = false
	}
}

// Unpin lets other work be served before chunk id again, after a request
// for it failed; it keeps its link and position.
func (s *Schedule) Unpin(id uint64) {
	if i := s.find(id); i >= 0 {
		s.st.Pending[i].Pinned = false
	}
}

// Drop removes chunk id as done without reading the rest of it.
func (s *Schedule) Drop(id uint64) {
	if i := s.find(id); i >= 0 {
		s.st.Pending = append(s.st.Pending[:i], s.st.Pending[i+1:]...)
	}
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
// from the de-dup set; call Forget when they are.
func (s *Schedule) Horizon(now time.Time) time.Time {
	h := s.horizon(now)
	for _, u := range s.st.Unreadable {
		if u.From.Before(h) {
			h = u.From
		}
	}
	return later(h, s.st.Forgotten)
}

func (s *Schedule) horizon(now time.Time) time.Time {
	h := now.Add(-s.p.MaxLookback - s.p.PollInterval)
	for _, l := range s.st.Levels {
		if t := l.Run.Add(-l.Reach); t.Before(h) {
			h = t
		}
	}
	for _, w := range s.st.Sweeps {
		if w.Cursor.Before(h) {
			h = w.Cursor
		}
	}
	for _, c := range s.st.Pending {
		if c.From.Before(h) {
			h = c.From
		}
	}
	return h.Add(-s.p.PollInterval)
}

// Forget records that ids of events before h have been dropped: no query
// reaches behind h from now on.
func (s *Schedule) Forget(h time.Time) { s.st.Forgotten = later(h, s.st.Forgotten) }

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
	s.st.Lookback, s.st.LookbackSince = nl, now
	s.fitLevels(now)
	return nl, true
}

// Freshest says how long the query of the newest live poll has waited:
// zero once the newest poll's range has been read, however long a re-read
// of older time takes.
func (s *Schedule) Freshest(now time.Time) time.Duration {
	if len(s.st.Levels) == 0 {
		return 0
	}
	latest := s.st.Levels[0].Run
	for _, c := range s.st.Pending {
		if c.Class == Live && !c.OrigTo.Before(latest) {
			return now.Sub(c.Planned)
		}
	}
	return 0
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

// Stretches returns the unreadable stretches.
func (s *Schedule) Stretches() []Stretch { return append([]Stretch(nil), s.st.Unreadable...) }

// retryEvery is how often a stretch is queried again: on the reconcile
// schedule, or every lookback without one; at most half of max_lookback,
// so that it is retried before it can be given up.
func (s *Schedule) retryEvery() time.Duration {
	d := max(s.p.Lookback, s.p.PollInterval)
	if len(s.p.Reconcile) > 0 {
		d = s.p.Reconcile[0]
	}
	return max(min(d, s.p.MaxLookback/2), s.p.PollInterval)
}

// retryStretches queues the stretches that are due, and gives up those
// that no query can reach any more: behind every level, sweep and queued
// query (a retry of its own included) and older than max_lookback (see
// TakeAbandoned). It reports whether it queued any.
func (s *Schedule) retryStretches(now time.Time) bool {
	added := false
	h := s.horizon(now)
	kept := s.st.Unreadable[:0]
	for _, u := range s.st.Unreadable {
		if u.To.Before(h) {
			s.abandoned = append(s.abandoned, u)
			continue
		}
		if !now.Before(u.Retry) && !s.queued(u) {
			u.Retry = now.Add(s.retryEvery())
			s.st.NextID++
			s.st.Pending = append(s.st.Pending, Chunk{ID: s.st.NextID, From: u.From, To: u.To, OrigTo: u.To,
				Class: Reconcile, Planned: now, Stretch: true})
			added = true
		}
		kept = append(kept, u)
	}
	s.st.Unreadable = kept
	if added {
		s.sortPending()
	}
	return added
}

// TakeAbandoned returns the stretches given up since the last call: they
// stayed unreadable until older than max_lookback.
func (s *Schedule) TakeAbandoned() []Stretch {
	a := s.abandoned
	s.abandoned = nil
	return a
}

func (s *Schedule) queued(u Stretch) bool {
	for _, c := range s.st.Pending {
		if c.Stretch && c.From.Equal(u.From) && c.To.Equal(u.To) {
			return true
		}
	}
	return false
}

func (s *Schedule) dropStretch(from, to time.Time) {
	for i, u := range s.st.Unreadable {
		if u.From.Equal(from) && u.To.Equal(to) {
			s.st.Unreadable = append(s.st.Unreadable[:i], s.st.Unreadable[i+1:]...)
			return
		}
	}
}

// outside returns the parts of c outside every unreadable stretch (c
// itself when it meets none). A part ends at a stretch's From or starts at
// its To: the stretch reaches a grain beyond the time that failed, so its
// neighbours' widened bounds cannot reach its bad page.
func (s *Schedule) outside(c Chunk) []Chunk {
	parts := []Chunk{c}
	if c.Stretch {
		return parts
	}
	for _, u := range s.st.Unreadable {
		var next []Chunk
		for _, p := range parts {
			if !p.To.After(u.From) || !p.From.Before(u.To) {
				next = append(next, p)
				continue
			}
			if p.From.Before(u.From) {
				lo := fresh(p)
				lo.To, lo.OrigTo = u.From, u.From
				next = append(next, lo)
			}
			if p.To.After(u.To) {
				hi := fresh(p)
				hi.From = u.To
				next = append(next, hi)
			}
		}
		parts = next
	}
	return parts
}

// fresh is c as a new chunk of the same range, class and plan.
func fresh(c Chunk) Chunk {
	return Chunk{From: c.From, To: c.To, OrigTo: c.To, Class: c.Class, Planned: c.Planned, Isolating: c.Isolating, Stretch: c.Stretch}
}

// Carve replaces chunk id by its parts outside the unreadable stretches,
// and reports whether it met one: a query whose page failed because its
// range reaches into a stretch found since it started.
func (s *Schedule) Carve(id uint64) bool {
	i := s.find(id)
	if i < 0 || s.st.Pending[i].Stretch {
		return false
	}
	c := s.st.Pending[i]
	parts := s.outside(c)
	if len(parts) == 1 && parts[0].From.Equal(c.From) && parts[0].To.Equal(c.To) {
		return false
	}
	s.replace(i, parts...)
	return true
}

// Isolation is what Isolate did.
type Isolation int

// Isolate outcomes.
const (
	// Refused: too many stretches are kept already; the chunk stays.
	Refused Isolation = iota
	// Halved: the chunk was split in halves, each read on its own.
	Halved
	// Quarantined: the chunk became an unreadable stretch (the Stretch
	// returned), carved out of all other work.
	Quarantined
	// Failed: the chunk was the retry of a stretch, which stays
	// unreadable until its next retry.
	Failed
)

// Unreadable records that Graph answered chunk id with a page that
// cannot be read: the chunk counts it, waits until wait while other work
// is served, and is no longer merged with new work. It returns the chunk.
func (s *Schedule) Unreadable(id uint64, now, wait time.Time) Chunk {
	i := s.find(id)
	if i < 0 {
		return Chunk{}
	}
	c := &s.st.Pending[i]
	if c.Bad++; c.BadSince.IsZero() {
		c.BadSince = now
	}
	c.Wait, c.Pinned = wait, false
	return *c
}

// Isolate handles chunk id, whose page Graph keeps answering unreadably
// (see the package comment); the caller has seen that Graph's other
// answers are readable, so the fault lies in the chunk's time.
func (s *Schedule) Isolate(id uint64, now time.Time, requestID string) (Stretch, Isolation) {
	i := s.find(id)
	if i < 0 {
		return Stretch{}, Refused
	}
	c := s.st.Pending[i]
	if c.Stretch {
		s.st.Pending = append(s.st.Pending[:i], s.st.Pending[i+1:]...)
		for k := range s.st.Unreadable {
			if u := &s.st.Unreadable[k]; u.From.Equal(c.From) && u.To.Equal(c.To) {
				u.Tries++
				u.RequestID = requestID
				return *u, Failed
			}
		}
		return Stretch{}, Failed
	}
	if c.To.Sub(c.From) > 2*time.Second {
		s.st.Pending[i].Isolating = true
		s.Split(id)
		return Stretch{}, Halved
	}
	g := s.p.grain()
	// No query reaches behind Forgotten, so neither need the stretch.
	u := Stretch{From: later(c.From.Truncate(time.Second).Add(-g), s.st.Forgotten.Truncate(time.Second)), To: ceilSecond(c.To).Add(g),
		Found: now, Retry: now.Add(s.retryEvery()), Tries: 1, RequestID: requestID}
	// One stretch per bad page: overlapping ones become one, and their
	// queued retries give way to its own.
	var kept, merged []Stretch
	for _, o := range s.st.Unreadable {
		if !o.To.Before(u.From) && !o.From.After(u.To) {
			u.From, u.To = earlier(o.From, u.From), later(o.To, u.To)
			u.Found, u.Tries = earlier(o.Found, u.Found), max(o.Tries, u.Tries)
			merged = append(merged, o)
			continue
		}
		kept = append(kept, o)
	}
	if len(merged) == 0 && len(kept) >= MaxStretches {
		return Stretch{}, Refused
	}
	for _, o := range merged {
		for k := 0; k < len(s.st.Pending); k++ {
			if q := s.st.Pending[k]; q.Stretch && q.From.Equal(o.From) && q.To.Equal(o.To) {
				s.st.Pending = append(s.st.Pending[:k], s.st.Pending[k+1:]...)
				k--
			}
		}
	}
	i = s.find(id)
	s.st.Unreadable = append(kept, u)
	s.st.Pending = append(s.st.Pending[:i], s.st.Pending[i+1:]...)
	// Queued work that reaches into it is carved now; work already being
	// paged is carved if its page fails.
	for _, p := range s.Pending() {
		if !p.started() {
			s.Carve(p.ID)
		}
	}
	return u, Quarantined
}

func earlier(a, b time.Time) time.Time {
	if a.After(b) {
		return b
	}
	return a
}

func ceilSecond(t time.Time) time.Time {
	if f := t.Truncate(time.Second); f.Before(t) {
		return f.Add(time.Second)
	}
	return t
}
