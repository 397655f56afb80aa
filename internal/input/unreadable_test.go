package input

import (
	"bytes"
	"fmt"
	rand2 "math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
)

// runPoison runs a sign-in tenant (an event every ~2 s, up to a minute
// late) with one object that makes every page holding it unreadable, for
// the given duration, and returns the rig, the poison's time and the
// events' delivery.
func runPoison(t *testing.T, seed uint64, run time.Duration, kv ...string) (*rig, time.Time) {
	return runPoisonHeal(t, seed, run, 1000*time.Hour, kv...)
}

// runPoisonHeal is runPoison with Graph's answers readable again
// heal after the start.
func runPoisonHeal(t *testing.T, seed uint64, run, heal time.Duration, kv ...string) (*rig, time.Time) {
	clk := graphsim.NewClock(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
	start := clk.Now()
	r := newRigClock(t, clk, graphsim.Options{Seed: int64(seed)}, breakPages(clk, "poison", start.Add(heal)),
		append([]string{"page_size", "50"}, kv...)...)
	rng := rand2.New(rand2.NewPCG(seed, 1))
	var evs []graphsim.Event
	for _, e := range graphsim.Generate(rng, start.Add(-10*time.Minute), start.Add(run), int(run/(2*time.Second)), upTo(time.Minute)) {
		e.JSON = nil
		e.JSON = e.Body()
		evs = append(evs, e)
	}
	bad := start.Add(5 * time.Minute).Truncate(100 * time.Nanosecond)
	poison := graphsim.Event{ID: "poison", Created: bad, Visible: bad.Add(5 * time.Second)}
	poison.JSON = poison.Body()
	r.sim.Add(append(evs, poison)...)
	for end := start.Add(run); clk.Now().Before(end); {
		r.tick(time.Second)
	}
	return r, bad
}

// missedOutside counts the events visible 5 minutes before the end, not in
// a stretch, that were never delivered.
func missedOutside(r *rig) (missed int, first string) {
	cutoff := r.clk.Now().Add(-5 * time.Minute)
	scope := r.in.sched.State().Started.Add(-r.cfg.InitialLookback)
	for _, e := range r.sim.Events() {
		if e.ID == "poison" || e.Created.Before(scope) || e.Visible.After(cutoff) || r.byID[e.ID] > 0 {
			continue
		}
		in := false
		for _, u := range r.in.sched.Stretches() {
			in = in || (!e.Created.Before(u.From) && !e.Created.After(u.To))
		}
		if !in {
			if missed++; missed == 1 {
				first = fmt.Sprintf("%s at %v", e.ID, e.Created)
			}
		}
	}
	return missed, first
}

// TestShortPollIntervalIsolates: with a poll_interval of seconds, new live
// chunks come faster than Graph's budget serves them; a chunk whose page
// failed is not merged with them (it keeps its count of unreadable
// answers) and is served before them, so it is isolated all the same and
// nothing newer than the bad object stops.
func TestShortPollIntervalIsolates(t *testing.T) {
	for _, pi := range []string{"1s", "2s", "3s", "5s"} {
		t.Run(pi, func(t *testing.T) {
			r, bad := runPoison(t, 21, 30*time.Minute, "poll_interval", pi, "lookback", "1m", "reconcile", "off", "page_size", "1000")
			missed, first := missedOutside(r)
			t.Logf("poison at %v; stretches %d, unreadable pages %d, requests %d, delivered %d, missed outside stretches %d",
				bad, r.in.Stats.Stretches, r.in.Stats.Unreadable, r.in.Stats.Requests, r.in.Stats.Delivered, missed)
			if r.in.Stats.Stretches == 0 || missed > 0 {
				t.Fatalf("the poison page was never isolated (%d stretches, %d unreadable answers); %d events outside any stretch never delivered, first %s; health %v",
					r.in.Stats.Stretches, r.in.Stats.Unreadable, missed, first, r.healthCodes())
			}
		})
	}
}

// TestAbandonedStretchIsNotFoundAgain: with reconcile delays up to
// max_lookback (as the defaults 2h,6h,24h with max_lookback 24h), a
// stretch is given up only once the longest sweep has passed it, so the
// bad page is not isolated and reported again.
func TestAbandonedStretchIsNotFoundAgain(t *testing.T) {
	r, _ := runPoison(t, 22, 150*time.Minute, "lookback", "10m", "max_lookback", "1h", "reconcile", "20m,1h")
	codes := r.healthCodes()
	t.Logf("health %v", codes)
	if codes["unreadable_page/event"] != 1 || codes["unreadable_page/abandoned"] != 1 {
		t.Fatalf("one bad object: %d unreadable_page events and %d abandoned records; health %v",
			codes["unreadable_page/event"], codes["unreadable_page/abandoned"], codes)
	}
}

// TestStretchIsRetriedBeforeItIsGivenUp: with a first reconcile delay
// (1h) longer than max_lookback (30m), which the configuration allows, a
// stretch is retried every max_lookback/2: Graph heals some 25 minutes
// after it was found, and it is read then (resolved, not abandoned), its
// events not counted as late arrivals.
func TestStretchIsRetriedBeforeItIsGivenUp(t *testing.T) {
	r, _ := runPoisonHeal(t, 23, 120*time.Minute, 30*time.Minute, "lookback", "10m", "max_lookback", "30m", "reconcile", "1h")
	codes := r.healthCodes()
	t.Logf("health %v; poison delivered %d times", codes, r.byID["poison"])
	if codes["unreadable_page/abandoned"] != 0 || codes["unreadable_page/resolved"] != 1 || codes["late_arrivals/event"] != 0 || r.byID["poison"] != 1 {
		t.Fatalf("Graph healed 25 minutes after the stretch was found: %d abandoned, %d resolved records (poison delivered %d times); health %v",
			codes["unreadable_page/abandoned"], codes["unreadable_page/resolved"], r.byID["poison"], codes)
	}
}

// breakAll answers every page with a body that cannot be read between from
// and to (Graph or a proxy sending broken JSON for a while), and the
// simulator's own answers otherwise.
func breakAll(clk *graphsim.Clock, from, to time.Time) func(sim *graphsim.Server) http.Handler {
	return editPages(func(code int, body []byte) []byte {
		if now := clk.Now(); !now.Before(from) && now.Before(to) && code == 200 {
			return bytes.Replace(body, []byte(`"value":[`), []byte(`"value":[{"id":"x",`), 1)
		}
		return body
	})
}

// TestUnreadableEpisodeIsNoStretch: minutes in which every answer is
// unreadable (nothing is wrong with the data: Graph, or a proxy, sends
// broken JSON for a while) are not taken for bad pages, since no page is
// readable meanwhile: no stretch, every event delivered once it ends. An
// episode of 3 minutes is not reported; one of 10 minutes is (api_error),
// once, and resolved.
func TestUnreadableEpisodeIsNoStretch(t *testing.T) {
	for _, episode := range []time.Duration{3 * time.Minute, 10 * time.Minute} {
		t.Run(episode.String(), func(t *testing.T) {
			clk := graphsim.NewClock(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
			start := clk.Now()
			r := newRigClock(t, clk, graphsim.Options{Seed: 5}, breakAll(clk, start.Add(20*time.Minute), start.Add(20*time.Minute+episode)),
				"page_size", "50")
			rng := rand2.New(rand2.NewPCG(5, 1))
			r.sim.Add(graphsim.Generate(rng, start.Add(-30*time.Minute), start.Add(60*time.Minute), 3000, upTo(time.Minute))...)
			r.run(70*time.Minute, time.Second)
			codes := r.healthCodes()
			t.Logf("stretches %d, unreadable answers %d; health %v", r.in.Stats.Stretches, r.in.Stats.Unreadable, codes)
			if r.in.Stats.Stretches > 0 || r.in.Stats.Unreadable == 0 {
				t.Fatalf("an episode of unreadable answers made %d stretches (%d unreadable answers)", r.in.Stats.Stretches, r.in.Stats.Unreadable)
			}
			if want := map[bool]int{false: 0, true: 1}[episode > unreadableAlarm]; codes["api_error/firing"] != want || codes["api_error/resolved"] != want {
				t.Fatalf("health %v, want %d api_error", codes, want)
			}
			if _, dups, missed := r.verify(5 * time.Minute); dups > 0 || missed > 0 {
				t.Fatalf("%d duplicates, %d missed", dups, missed)
			}
		})
	}
}

// TestTruncatedBodiesAreNoStretch: graphsim's truncated bodies (a declared
// Content-Length cut short) are transport errors, never unreadable pages:
// no stretch at a high truncation rate.
func TestTruncatedBodiesAreNoStretch(t *testing.T) {
	r := newRig(t, graphsim.Options{Seed: 6, Faults: graphsim.Faults{RateTruncated: 0.5}}, "page_size", "50")
	rng := rand2.New(rand2.NewPCG(6, 1))
	now := r.clk.Now()
	r.sim.Add(graphsim.Generate(rng, now.Add(-30*time.Minute), now.Add(30*time.Minute), 2000, upTo(time.Minute))...)
	r.run(40*time.Minute, time.Second)
	if r.in.Stats.Unreadable > 0 || r.in.Stats.Stretches > 0 {
		t.Fatalf("%d unreadable, %d stretches from truncated bodies", r.in.Stats.Unreadable, r.in.Stats.Stretches)
	}
	if _, dups, missed := r.verify(5 * time.Minute); dups > 0 || missed > 0 {
		t.Fatalf("dups %d missed %d", dups, missed)
	}
}
