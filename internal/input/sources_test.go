package input

import (
	"fmt"
	rand2 "math/rand/v2"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/budget"
	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/source"
)

// versionKey names one version of an object: its id and its time.
func versionKey(id string, t time.Time) string { return fmt.Sprintf("%s@%d", id, t.UnixNano()) }

// verifyVersions checks that every version of every object the simulator
// served was delivered exactly once, field for field, with its time.
func (r *rig) verifyVersions() (delivered, dups, missed int) {
	r.t.Helper()
	want := map[string]graphsim.Event{}
	for _, e := range r.sim.Events() {
		want[versionKey(e.ID, e.Created)] = e
	}
	got := map[string]int{}
	for _, e := range r.events {
		k := versionKey(e.Fields["id"].(string), e.Time)
		got[k]++
		w, ok := want[k]
		switch {
		case !ok:
			r.t.Errorf("delivered a version the simulator never had: %s", k)
		case got[k] == 1 && !sameFields(r.t, w.JSON, e.Fields):
			r.t.Errorf("%s: fields differ from Graph's object", k)
		}
	}
	for k := range want {
		switch n := got[k]; {
		case n == 0:
			missed++
			if missed < 5 {
				r.t.Errorf("missed %s", k)
			}
		case n > 1:
			dups += n - 1
		}
	}
	return len(got), dups, missed
}

// TestEverySourceExactlyOnce runs each source against the simulator's
// endpoint for it (its operators, page limit, throttle, API version),
// with late and out-of-order events, events on the whole-second bounds the
// queries use, and, for risk detections and alerts, objects updated over
// their life: every event, and every update, arrives exactly once.
func TestEverySourceExactlyOnce(t *testing.T) {
	for i, p := range source.Profiles {
		if p.IsActivity() {
			continue // the Management Activity API has tests of its own
		}
		t.Run(p.Name, func(t *testing.T) {
			r := newRig(t, graphsim.Options{Throttle: true, Seed: int64(50 + i)}, "source", p.Name, "page_size", "100")
			start := r.clk.Now()
			rng := rand2.New(rand2.NewPCG(uint64(i), 9))
			evs := graphsim.GenerateSource(rng, p.Name, start.Add(-20*time.Minute), start.Add(2*time.Hour), 600, graphsim.RealisticLateness(30*time.Second))
			// Events exactly on the whole seconds where one query ends and
			// the next begins.
			for k := 1; k <= 5; k++ {
				at := start.Add(time.Duration(k) * time.Minute)
				e := graphsim.GenerateSource(rng, p.Name, at, at.Add(time.Nanosecond), 1, fixedLateness(time.Second))[0]
				evs = append(evs, e)
			}
			r.sim.Add(evs...)
			if graphsim.Versioned(p.Name) {
				// Each object changes twice, 30 and 70 minutes after it
				// was last updated; every version stays current long
				// enough to be seen.
				var ups []graphsim.Event
				for _, e := range evs[:200] {
					u1 := graphsim.Update(rng, e, e.Created.Add(30*time.Minute), fixedLateness(time.Minute))
					u2 := graphsim.Update(rng, u1, u1.Created.Add(40*time.Minute), fixedLateness(2*time.Minute))
					ups = append(ups, u1, u2)
				}
				r.sim.Add(ups...)
			}
			r.run(4*time.Hour, 2*time.Second)
			delivered, dups, missed := r.verifyVersions()
			st := r.sim.Stats()
			t.Logf("%s: %d versions delivered, %d duplicates, %d missed; %d requests, 429s %d; health %v",
				p.Name, delivered, dups, missed, r.in.Stats.Requests, st.ByStatus[429], r.healthCodes())
			if dups != 0 || missed != 0 {
				t.Fatal("not exactly once")
			}
			if p.Budget.RetryAfter && st.ByStatus[429] != 0 {
				t.Fatalf("pacing let %d requests be throttled", st.ByStatus[429])
			}
		})
	}
}

// TestAlertsWithoutNextLink: alerts_v2 answers at most $top and no
// nextLink; a backlog larger than a page is read by splitting the range.
func TestAlertsWithoutNextLink(t *testing.T) {
	r := newRig(t, graphsim.Options{Seed: 60}, "source", "security_alerts", "page_size", "20", "initial_lookback", "1h")
	rng := rand2.New(rand2.NewPCG(60, 1))
	r.sim.Add(graphsim.GenerateSource(rng, "security_alerts", r.clk.Now().Add(-50*time.Minute), r.clk.Now(), 500, fixedLateness(0))...)
	r.run(10*time.Minute, time.Second)
	if _, dups, missed := r.verifyVersions(); dups != 0 || missed != 0 {
		t.Fatalf("%d duplicates, %d missed", dups, missed)
	}
}

// TestSourcesShareTheReportingBudget runs two sources of one app and
// tenant in one process: they share Graph's 5 requests per 10 s, so
// neither is throttled, and both deliver everything.
func TestSourcesShareTheReportingBudget(t *testing.T) {
	shared := budget.New(budget.Requests, budget.Window)
	a := newRig(t, graphsim.Options{Throttle: true, Seed: 61}, "source", "signins", "poll_interval", "1s", "lookback", "10s", "reconcile", "off", "initial_lookback", "10m")
	b := &rig{t: t, clk: a.clk, sim: a.sim, logs: a.logs, byID: map[string]int{}, budget: shared}
	a.budget = shared
	a.in.Close()
	a.start()
	cfgB := a.cfg
	cfgB.Source = "directory_audits"
	cfgB.DB = t.TempDir() + "/b.db"
	b.cfg = cfgB
	b.start()
	t.Cleanup(func() { b.in.Close() })
	rng := rand2.New(rand2.NewPCG(61, 1))
	now := a.clk.Now()
	a.sim.Add(graphsim.GenerateSource(rng, "signins", now.Add(-5*time.Minute), now.Add(5*time.Minute), 300, fixedLateness(time.Second))...)
	a.sim.Add(graphsim.GenerateSource(rng, "directory_audits", now.Add(-5*time.Minute), now.Add(5*time.Minute), 300, fixedLateness(time.Second))...)
	for range 900 {
		a.tick(time.Second)
		b.tick(0)
	}
	if n := a.sim.Stats().ByStatus[429]; n != 0 {
		t.Fatalf("%d requests throttled although the budget is shared", n)
	}
	if len(a.events) != 300 || len(b.events) != 300 {
		t.Fatalf("signins %d, directory audits %d", len(a.events), len(b.events))
	}
}
