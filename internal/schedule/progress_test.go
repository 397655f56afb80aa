package schedule

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// graphModel answers queries the way Graph's audit lists do: the events
// whose time lies in whole-second bounds and that are visible now, newest
// first, in pages of top, each page but the last with a nextLink into a
// result frozen by the first page. Links expire at random, and when they
// are not followed for linkIdle, as Graph's do after a pause between pages.
type graphModel struct {
	events []modelEvent // ascending by time, then id
	snaps  map[string]snap
	next   int
}

type snap struct {
	rest []modelEvent
	used time.Time
}

const linkIdle = 20 * time.Second

type modelEvent struct {
	id      int
	t, seen time.Time // event time, visible from
}

// newGraphModel draws events over [from, to): a steady rate, late by up
// to an hour, plus bursts that put several pages' worth of events into one
// second, some at the very same instant.
func newGraphModel(r *rand.Rand, from, to time.Time, perSecond float64, top int) *graphModel {
	m := &graphModel{snaps: map[string]snap{}}
	id := 0
	add := func(t time.Time) {
		late := time.Duration(r.ExpFloat64() * float64(time.Minute))
		if r.IntN(100) == 0 {
			late = time.Duration(r.Int64N(int64(time.Hour)))
		}
		id++
		m.events = append(m.events, modelEvent{id: id, t: t, seen: t.Add(late)})
	}
	span := to.Sub(from)
	for range int(perSecond * span.Seconds()) {
		add(from.Add(time.Duration(r.Int64N(int64(span)))).Truncate(100 * time.Nanosecond))
	}
	for range 40 {
		sec := from.Add(time.Duration(r.Int64N(int64(span)))).Truncate(time.Second)
		same := sec.Add(time.Duration(r.Int64N(int64(time.Second)))).Truncate(100 * time.Nanosecond)
		for range top + r.IntN(3*top) {
			t := sec.Add(time.Duration(r.Int64N(int64(time.Second)))).Truncate(100 * time.Nanosecond)
			if r.IntN(3) == 0 {
				t = same
			}
			add(t)
		}
	}
	slices.SortFunc(m.events, func(a, b modelEvent) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return a.id - b.id
	})
	return m
}

// query is the first page of [from, to] with the bounds widened to whole
// seconds, as the plugin's URLs are.
func (m *graphModel) query(from, to, now time.Time, top int) ([]modelEvent, string) {
	lo := from.Truncate(time.Second)
	hi := to.Truncate(time.Second)
	if hi.Before(to) {
		hi = hi.Add(time.Second)
	}
	var hits []modelEvent
	for i := len(m.events) - 1; i >= 0; i-- {
		e := m.events[i]
		if !e.t.Before(lo) && !e.t.After(hi) && !e.seen.After(now) {
			hits = append(hits, e)
		}
	}
	return m.page(hits, top, now)
}

// follow is the page behind link, or false when Graph refuses it.
func (m *graphModel) follow(link string, now time.Time, top int) ([]modelEvent, string, bool) {
	sn, ok := m.snaps[link]
	if !ok || now.Sub(sn.used) > linkIdle {
		return nil, "", false
	}
	page, next := m.page(sn.rest, top, now)
	return page, next, true
}

func (m *graphModel) page(hits []modelEvent, top int, now time.Time) ([]modelEvent, string) {
	if len(hits) <= top {
		return hits, ""
	}
	m.next++
	link := fmt.Sprintf("link-%d", m.next)
	m.snaps[link] = snap{rest: hits[top:], used: now}
	return hits[:top], link
}

func result(page []modelEvent, next string, fresh bool) PageResult {
	r := PageResult{Count: len(page), Next: next, Fresh: fresh}
	for _, e := range page {
		if r.Oldest.IsZero() || e.t.Before(r.Oldest) {
			r.Oldest = e.t
		}
		if e.t.After(r.Newest) {
			r.Newest = e.t
		}
	}
	return r
}

// chunkLog is what the test saw of one chunk.
type chunkLog struct {
	first     time.Time // the first request
	requests  int
	failed    int // requests that failed, links refused included
	refused   int // chains lost: refused links and restarts
	returned  map[int]bool
	from, to  time.Time
	maxSecond int
}

// TestEveryChunkFinishesWithinItsBound drives the schedule the way the
// input does, over random interleavings: random turns for reconcile work,
// pages that take seconds, failed requests, nextLinks that expire, and
// restarts from the persisted state, with bursts of more than a page in
// one second. In odd seeds Graph is harsh: every other chunk's request in
// between makes it refuse a chain's link, and other work is always served
// in between when the schedule allows. Every chunk must finish within the
// package comment's bound and return every event of its range that was
// visible when it started.
func TestEveryChunkFinishesWithinItsBound(t *testing.T) {
	const top = 50
	for seed := range uint64(12) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			p := defaults()
			p.InitialLookback = 6 * time.Hour
			m := newGraphModel(r, t0.Add(-7*time.Hour), t0.Add(6*time.Hour), 0.5, top)
			s := New(p)
			logs := map[uint64]*chunkLog{}
			now := t0
			maxRequests, done := 0, 0
			harsh := seed%2 == 1
			var prev uint64
			for step := 0; ; step++ {
				if step > 150_000 {
					t.Fatalf("%d chunks still pending after %d steps", len(s.Pending()), step)
				}
				if now.Before(t0.Add(4 * time.Hour)) {
					s.Plan(now)
				} else if len(s.Pending()) == 0 {
					break
				}
				now = now.Add(time.Duration(r.IntN(3000)) * time.Millisecond)
				c, ok := s.Next(r.IntN(ReconcileShare) == 0)
				if !ok {
					now = now.Add(time.Second)
					continue
				}
				if p := s.Pending(); !c.Pinned && harsh && len(p) > 1 && c.ID == prev {
					for c.ID == prev {
						c = p[r.IntN(len(p))]
					}
				} else if !c.Pinned && r.IntN(3) == 0 {
					// Any other chunk may be served in between, and a
					// throttled app may pause for a while.
					p := s.Pending()
					c = p[r.IntN(len(p))]
					if r.IntN(10) == 0 {
						now = now.Add(time.Duration(r.IntN(40)) * time.Second)
					}
				}
				interrupted := prev != c.ID
				prev = c.ID
				l := logs[c.ID]
				if l == nil {
					l = &chunkLog{first: now, returned: map[int]bool{}, from: c.From, to: c.OrigTo}
					logs[c.ID] = l
				}
				l.requests++
				if r.IntN(20) == 0 {
					l.failed++ // a 5xx or a timeout: nothing changes
					continue
				}
				var page []modelEvent
				var next string
				if c.Link != "" {
					var ok bool
					page, next, ok = m.follow(c.Link, now, top)
					if !ok || r.IntN(10) == 0 || (harsh && interrupted) {
						l.failed++
						l.refused++
						s.Restart(c.ID)
						continue
					}
				} else {
					page, next = m.query(c.From, c.To, now, top)
				}
				for _, e := range page {
					l.returned[e.id] = true
				}
				got, fin, err := s.PageDone(c.ID, result(page, next, c.Link == ""))
				if err != nil {
					t.Fatal(err)
				}
				if fin {
					done++
					maxRequests = max(maxRequests, l.requests)
					checkChunk(t, m, got, l, now, top)
				}
				if r.IntN(200) == 0 {
					// A restart: the state goes through the file.
					raw, err := json.Marshal(s.State())
					if err != nil {
						t.Fatal(err)
					}
					st, err := DecodeState(raw)
					if err != nil {
						t.Fatal(err)
					}
					for _, pc := range s.Pending() {
						if pc.Link != "" && logs[pc.ID] != nil {
							logs[pc.ID].refused++
						}
					}
					s = Restore(p, st, now)
				}
			}
			t.Logf("%d events, %d chunks finished, the longest took %d requests", len(m.events), done, maxRequests)
		})
	}
}

func checkChunk(t *testing.T, m *graphModel, c Chunk, l *chunkLog, now time.Time, top int) {
	t.Helper()
	// N: what the chunk's range holds by its end (an upper bound of what
	// its queries returned); S: the most events in one second of it.
	lo, hi := l.from.Truncate(time.Second), l.to.Truncate(time.Second).Add(time.Second)
	n, perSecond := 0, map[int64]int{}
	for _, e := range m.events {
		if !e.t.Before(lo) && !e.t.After(hi) && !e.seen.After(now) {
			n++
			perSecond[e.t.Unix()]++
		}
	}
	sec := 0
	for _, k := range perSecond {
		sec = max(sec, k)
	}
	ceil := func(a int) int { return (a + top - 1) / top }
	bound := ceil(n) + 1 + l.refused*(2+ceil(sec)) + l.failed
	if l.requests > bound {
		t.Errorf("chunk %v..%v: %d requests, bound %d (N %d, S %d, %d chains lost, %d failed)",
			l.from, l.to, l.requests, bound, n, sec, l.refused, l.failed)
	}
	for _, e := range m.events {
		if !e.t.Before(l.from) && !e.t.After(l.to) && !e.seen.After(l.first) && !l.returned[e.id] {
			t.Fatalf("chunk %v..%v (id %d) never returned event %d at %v, visible %v before it started",
				l.from, l.to, c.ID, e.id, e.t, e.seen)
		}
	}
}
