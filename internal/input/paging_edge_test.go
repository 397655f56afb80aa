package input

// Regression tests for paging and expiry edge cases.

import (
	rand2 "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
)

// A chunk pinned while it re-reads one instant's events (25 of them, pages
// of 10, after a refused link) whose next page then keeps failing (a 504
// on that one nextLink) must not hold back the live polls.
func TestPinnedChunkWhoseLinkKeepsFailingDoesNotBlockLive(t *testing.T) {
	var mu sync.Mutex
	refusedOnce := false
	poison := ""
	front := func(sim *graphsim.Server) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			tok := r.URL.Query().Get("$skiptoken")
			p := poison
			first := tok != "" && !refusedOnce
			if first {
				refusedOnce = true
			}
			mu.Unlock()
			switch {
			case first:
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(400)
				w.Write([]byte(`{"error":{"code":"BadRequest","message":"Invalid skip token."}}`))
			case tok != "" && p != "" && strings.Contains(p, tok):
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(504)
				w.Write([]byte(`{"error":{"code":"UnknownError","message":""}}`))
			default:
				sim.Handler().ServeHTTP(w, r)
			}
		})
	}
	r := newRigFront(t, graphsim.Options{Seed: 80}, front, "page_size", "10", "reconcile", "off")
	start := r.clk.Now()
	rng := rand2.New(rand2.NewPCG(80, 1))
	T := start.Add(-10 * time.Minute)
	r.sim.Add(graphsim.Generate(rng, T, T.Add(time.Nanosecond), 25, fixedLateness(0))...)
	r.sim.Add(graphsim.Generate(rng, start.Add(-5*time.Minute), start.Add(-4*time.Minute), 5, fixedLateness(0))...)
	for i := 0; i < 60 && poison == ""; i++ {
		r.tick(time.Second)
		for _, c := range r.in.sched.Pending() {
			if c.Pinned {
				mu.Lock()
				poison = c.Link
				mu.Unlock()
			}
		}
	}
	if poison == "" {
		t.Fatal("never pinned")
	}
	// New sign-ins, visible at once, over the next hour.
	now := r.clk.Now()
	fresh := graphsim.Generate(rng, now, now.Add(time.Hour), 100, fixedLateness(0))
	r.sim.Add(fresh...)
	r.run(time.Hour+10*time.Minute, time.Second)
	n := 0
	for _, e := range fresh {
		if r.byID[e.ID] == 1 {
			n++
		}
	}
	if n != len(fresh) {
		t.Fatalf("%d of %d new events delivered once in the next 70 minutes (%d requests, %d errors)", n, len(fresh), r.in.Stats.Requests, r.in.Stats.Errors)
	}
}

// After a ResponseTooLarge halved $top, the 20th good page doubles it
// again; a full page without a nextLink on that request must still be
// split, against the $top it asked for.
func TestAlertsSplitAfterTopDoubles(t *testing.T) {
	r := newRig(t, graphsim.Options{Seed: 60}, "source", "security_alerts", "page_size", "100",
		"initial_lookback", "2h", "reconcile", "off")
	rng := rand2.New(rand2.NewPCG(60, 1))
	// Older than lookback: only the first (initial_lookback) query covers them.
	r.sim.Add(graphsim.GenerateSource(rng, "security_alerts", r.clk.Now().Add(-100*time.Minute), r.clk.Now().Add(-80*time.Minute), 80, fixedLateness(0))...)
	// As onError leaves it after a ResponseTooLarge, 19 pages later.
	r.in.top, r.in.topOK = 50, 19
	r.run(30*time.Minute, time.Second)
	if _, dups, missed := r.verifyVersions(); dups != 0 || missed != 0 {
		t.Fatalf("%d duplicates, %d missed", dups, missed)
	}
}

// A query whose From is exactly Forgotten, with Forgotten in the first
// second of a minute, on a strict (gt/lt) source: the query's lower bound
// is floor(From)-1s, inside the previous minute, whose ids Expire dropped.
func TestQueryAtForgottenDeliversNothingAgain(t *testing.T) {
	for _, src := range []string{"provisioning", "directory_audits"} {
		t.Run(src, func(t *testing.T) {
			r := newRig(t, graphsim.Options{Seed: 70}, "source", src, "poll_interval", "60s", "lookback", "10m",
				"max_lookback", "10m", "reconcile", "off", "initial_lookback", "10m")
			start := r.clk.Now()
			var evs []graphsim.Event
			rng := rand2.New(rand2.NewPCG(7, 7))
			for m := -10; m < 200; m++ {
				at := start.Add(time.Duration(m)*time.Minute - 300*time.Millisecond)
				evs = append(evs, graphsim.GenerateSource(rng, src, at, at.Add(time.Nanosecond), 1, fixedLateness(0))...)
			}
			r.sim.Add(evs...)
			r.clk.Advance(59500 * time.Millisecond) // collects at hh:mm:ss.5
			r.run(40*time.Minute, time.Second)
			for i := 0; i < 300; i++ {
				f := r.in.sched.Forgotten()
				if f.Second() == 0 && f.Nanosecond() == 5e8 {
					break
				}
				r.tick(time.Second)
			}
			r.in.Close()
			r.cfg.Reconcile = []time.Duration{time.Hour}
			r.start()
			r.run(90*time.Minute, time.Second)
			if _, dups, missed := r.verify(time.Minute); dups != 0 || missed != 0 {
				t.Fatalf("%s: %d duplicates, %d missed", src, dups, missed)
			}
		})
	}
}
