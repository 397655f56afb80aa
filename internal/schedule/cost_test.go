package schedule

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
)

// The cost of the schedule for tenants of several sizes, against the
// classic design that queries the whole lookback at every poll. Neither
// depends on the data, so the cost is computed, not measured: each planned
// query returns the events created in its range that are visible when it
// runs (Graph's lateness: P95 2 min, P99 5 min, 0.3% up to an hour), and
// costs ceil(events/1000) requests, at least one.

// graphBudgetPerDay is Graph's limit for the reporting APIs: 5 requests per
// 10 s per app and tenant.
const graphBudgetPerDay = 5 * 86400 / 10

var tenantSizes = []int{10_000, 100_000, 1_000_000, 10_000_000}

// simulated covers the day costOf looks at, [26 h, 50 h], and the reconcile
// sweeps of its events, which end a day and a lookback later.
const simulated = 76 * time.Hour

type plannedRun struct {
	from, to, at time.Time
}

// defaultRuns is what the schedule with the default settings asks over d,
// polled every second (reading each chunk whole when it is planned).
func defaultRuns(d time.Duration) []plannedRun {
	s := New(defaults())
	var out []plannedRun
	for now := t0; now.Before(t0.Add(d)); now = now.Add(time.Second) {
		s.Plan(now)
		for {
			c, ok := s.Next(false)
			if !ok {
				break
			}
			s.PageDone(c.ID, PageResult{})
			out = append(out, plannedRun{c.From, c.To, now})
		}
	}
	return out
}

// classicRuns is the classic design: at every poll, the whole lookback.
func classicRuns(d time.Duration) []plannedRun {
	p := defaults()
	var out []plannedRun
	for now := t0; now.Before(t0.Add(d)); now = now.Add(p.PollInterval) {
		out = append(out, plannedRun{now.Add(-p.Lookback), now, now})
	}
	return out
}

// visible holds, for x whole seconds, the integral of P(lateness <= y) for
// y in [0, x), up to the longest lateness the model draws (an hour): the
// expected share of a second of events x seconds old that a query sees is
// visible[x+1]-visible[x].
func visible() []float64 {
	late := graphsim.RealisticLateness(time.Minute)
	r := rand.New(rand.NewPCG(9, 9))
	samples := make([]time.Duration, 400_000)
	for i := range samples {
		samples[i] = late(r)
	}
	slices.Sort(samples)
	integral := make([]float64, 3601)
	j := 0
	for x := 1; x < len(integral); x++ {
		// Events x-1 to x seconds old: count those whose lateness is at
		// most the middle of that second.
		for j < len(samples) && samples[j] <= time.Duration(x)*time.Second-time.Second/2 {
			j++
		}
		integral[x] = integral[x-1] + float64(j)/float64(len(samples))
	}
	return integral
}

// seen is the expected number of seconds' worth of events of [from, to],
// clipped to [w0, w1], that a query at `at` returns (to <= at). Bounds are
// whole seconds.
func seen(vis []float64, from, to, at, w0, w1 time.Time) float64 {
	if from.Before(w0) {
		from = w0
	}
	if to.After(w1) {
		to = w1
	}
	if !to.After(from) {
		return 0
	}
	a0, a1 := int(at.Sub(to)/time.Second), int(at.Sub(from)/time.Second) // ages
	n := len(vis) - 1
	switch {
	case a1 <= n:
		return vis[a1] - vis[a0]
	case a0 >= n:
		return float64(a1 - a0)
	}
	return vis[n] - vis[a0] + float64(a1-n)
}

// runCost is what a run returns, whatever the tenant's rate: seconds' worth
// of events in all, and of events of the day costOf looks at.
type runCost struct {
	all, day float64
	inDay    bool // the run happens during that day
}

// steadyDay is the day costOf looks at: after the 24 h sweep has started.
var steadyDay = [2]time.Time{t0.Add(26 * time.Hour), t0.Add(50 * time.Hour)}

func runCosts(runs []plannedRun, vis []float64) []runCost {
	out := make([]runCost, len(runs))
	for i, r := range runs {
		out[i] = runCost{
			all:   seen(vis, r.from, r.to, r.at, time.Time{}, r.at),
			day:   seen(vis, r.from, r.to, r.at, steadyDay[0], steadyDay[1]),
			inDay: r.at.After(steadyDay[0]) && !r.at.After(steadyDay[1]),
		}
	}
	return out
}

type cost struct {
	readsPerEvent float64 // mean times an event is returned
	requests      float64 // per day
	budget        float64 // share of Graph's budget
}

// costOf applies a tenant of perDay events to the runs, over the steady day.
func costOf(runs []runCost, perDay int) cost {
	rate := float64(perDay) / 86400
	var reads, requests float64
	for _, r := range runs {
		if r.inDay {
			requests += math.Max(1, math.Ceil(rate*r.all/1000))
		}
		reads += r.day
	}
	return cost{readsPerEvent: reads / steadyDay[1].Sub(steadyDay[0]).Seconds(), requests: requests, budget: requests / graphBudgetPerDay}
}

// largestSustained is the largest tenant (events a day, to 1%) whose
// requests fit Graph's budget.
func largestSustained(runs []runCost) int {
	lo, hi := 1_000, 1_000_000_000
	for hi-lo > lo/100 {
		mid := (lo + hi) / 2
		if costOf(runs, mid).budget <= 1 {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// TestScheduleCostModel is the model's view of the schedule: each planned
// query read whole when planned. With the defaults an event is read at
// most 10 times on average, and a tenant of a million sign-ins a day uses
// at most a quarter of Graph's budget. The measured figures, with real
// paging against the simulator, are internal/input's TestScheduleCost.
func TestScheduleCostModel(t *testing.T) {
	vis := visible()
	designs := []struct {
		name string
		runs []runCost
	}{{"defaults", runCosts(defaultRuns(simulated), vis)}, {"classic", runCosts(classicRuns(simulated), vis)}}
	for _, d := range designs {
		for _, n := range tenantSizes {
			c := costOf(d.runs, n)
			t.Logf("%-8s %10d events/day: %5.2f reads/event, %7.0f requests/day, %6.1f%% of Graph's budget", d.name, n, c.readsPerEvent, c.requests, 100*c.budget)
		}
		t.Logf("%-8s largest tenant within Graph's budget: %d events/day", d.name, largestSustained(d.runs))
	}
	def := costOf(designs[0].runs, 1_000_000)
	if def.readsPerEvent > 10 {
		t.Errorf("with the defaults an event is read %.2f times on average; the promise is at most 10", def.readsPerEvent)
	}
	if def.budget > 0.25 {
		t.Errorf("a tenant of 1M events a day takes %.1f%% of Graph's budget; the promise is at most 25%%", 100*def.budget)
	}
}

// BenchmarkScheduleCostModel reports the same figures as metrics (make bench).
func BenchmarkScheduleCostModel(b *testing.B) {
	vis := visible()
	for _, d := range []struct {
		name string
		runs func(time.Duration) []plannedRun
	}{{"defaults", defaultRuns}, {"classic", classicRuns}} {
		runs := runCosts(d.runs(simulated), vis)
		for _, n := range tenantSizes {
			b.Run(d.name+"/"+perDay(n), func(b *testing.B) {
				var c cost
				for b.Loop() {
					c = costOf(runs, n)
				}
				b.ReportMetric(c.readsPerEvent, "reads/event")
				b.ReportMetric(c.requests, "requests/day")
				b.ReportMetric(100*c.budget, "pct-of-budget")
			})
		}
		b.Run(d.name+"/largest", func(b *testing.B) {
			var n int
			for b.Loop() {
				n = largestSustained(runs)
			}
			b.ReportMetric(float64(n), "events/day")
		})
	}
}

func perDay(n int) string {
	if n >= 1_000_000 {
		return strconv.Itoa(n/1_000_000) + "M-per-day"
	}
	return strconv.Itoa(n/1000) + "k-per-day"
}
