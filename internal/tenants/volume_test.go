package tenants

import (
	"fmt"
	"math"
	"math/rand"
	rand2 "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/in-msgraph/in_msgraph/internal/config"
	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/input"
	"github.com/in-msgraph/in_msgraph/internal/logging"
)

// A fleet run is one multi-tenant input against the simulator's many
// tenants behind one application, in simulated time, as Fluent Bit drives
// it: a collect every second, each batch committed. Graph's limits are
// enforced (5 requests per 10 s per tenant, 122 per 10 s for the
// application), events are late as Entra's are, and each page takes
// simulated time: a collect's reads run together, and the clock moves on
// by the slowest of them.
type fleetRun struct {
	Tenants  int
	Busy     []float64 // sign-ins a day of the first len(Busy) tenants
	IdleRate float64   // sign-ins a day of every other tenant
	Silent   int       // the last Silent tenants have none at all
	Duration time.Duration
	// Join adds one more tenant, with initial_lookback 7d and JoinPerDay
	// sign-ins a day over the week before, this long after the start.
	Join       time.Duration
	JoinPerDay float64
	Seed       uint64
}

type fleetResult struct {
	Events, Delivered, Duplicates, Missed int
	Requests, Throttled, ThrottledApp     int
	// ByTenant: requests of the busiest tenant, and per idle tenant an
	// hour (median and most).
	BusiestRequests             int
	IdlePerHourP50, IdlePerHour float64
	SilentPerHour               float64 // requests an hour of a tenant without events (the most)
	// WorstPollDelay is the longest any tenant's newest live query waited
	// (after the first ten minutes); WorstPollDelayBeforeJoin the same
	// before the new tenant joined, WorstPollDelayAfterJoin of the other
	// tenants while its backlog was read.
	WorstPollDelay, WorstPollDelayBeforeJoin, WorstPollDelayAfterJoin time.Duration
	JoinDrained                                                       time.Duration
	PeakHeap                                                          uint64
	HeapPerIdle                                                       float64
	StartTook                                                         time.Duration
	PeakTokens                                                        int // token requests in the busiest simulated second
}

func (r fleetResult) String() string {
	return fmt.Sprintf("%d events, %d delivered, %d duplicates, %d missed; %d requests (%d throttled, %d by the app limit); busiest tenant %d requests; tenant of a sign-in an hour %.1f requests/h (median), %.1f (most), tenant without sign-ins %.1f; worst live-poll delay %s (%s before the join, %s of the others while its backlog was read); joined backlog read in %s; peak heap %.0f MB, %.0f KB per idle tenant; start %s; at most %d token requests in one second",
		r.Events, r.Delivered, r.Duplicates, r.Missed, r.Requests, r.Throttled, r.ThrottledApp, r.BusiestRequests, r.IdlePerHourP50, r.IdlePerHour, r.SilentPerHour,
		r.WorstPollDelay.Round(time.Second), r.WorstPollDelayBeforeJoin.Round(time.Second), r.WorstPollDelayAfterJoin.Round(time.Second), r.JoinDrained.Round(time.Minute),
		float64(r.PeakHeap)/1e6, r.HeapPerIdle/1e3, r.StartTook.Round(time.Millisecond), r.PeakTokens)
}

func tenantID(i int) string { return fmt.Sprintf("%08x-aaaa-4bbb-8ccc-%012x", 0x7e000000+i, i) }

func eventID(tenant, i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", tenant, i) }

// events draws a tenant's sign-ins over [from, to), oldest first, with
// Entra's lateness.
func events(r *rand2.Rand, tenant int, perDay float64, from, to time.Time) []graphsim.Event {
	late := graphsim.RealisticLateness(time.Minute)
	n := int(perDay * to.Sub(from).Hours() / 24)
	times := make([]time.Time, n)
	for i := range times {
		times[i] = from.Add(time.Duration(r.Int64N(int64(to.Sub(from))))).Truncate(100 * time.Nanosecond)
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	evs := make([]graphsim.Event, n)
	for i, t := range times {
		evs[i] = graphsim.Event{ID: eventID(tenant, i), Tenant: tenantID(tenant), Created: t, Visible: t.Add(late(r))}
	}
	return evs
}

// pageTime draws how long each Graph answer takes in simulated time
// (log-normal, median 0.8 s, one in fifty 5 to 20 s): the stream waits
// that long for it (Options.Latency) while the others go on. It counts the
// token requests of each collect.
type pageTime struct {
	mu     sync.Mutex
	rng    *rand2.Rand
	next   http.RoundTripper
	tokens int
}

func (p *pageTime) latency() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := time.Duration(0.8 * float64(time.Second) * math.Exp(0.5*p.rng.NormFloat64()))
	if p.rng.IntN(50) == 0 {
		d = 5*time.Second + time.Duration(p.rng.Int64N(int64(15*time.Second)))
	}
	return d
}

func (p *pageTime) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.Contains(req.URL.Path, "/oauth2/") {
		p.mu.Lock()
		p.tokens++
		p.mu.Unlock()
	}
	return p.next.RoundTrip(req)
}

func (p *pageTime) round() (tokens int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tokens, p.tokens = p.tokens, 0
	return tokens
}

func runFleet(t *testing.T, v fleetRun) fleetResult {
	t.Helper()
	start := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	clk := graphsim.NewClock(start)
	n := v.Tenants
	if v.Join > 0 {
		n++
	}
	extra := make([]graphsim.Tenant, n)
	for i := range extra {
		extra[i] = graphsim.Tenant{ID: tenantID(i)}
	}
	sim := graphsim.Start(t, graphsim.Options{Now: clk.Now, Seed: int64(v.Seed), Throttle: true, LinkIdle: time.Minute, Tenants: extra})
	r := rand2.New(rand2.NewPCG(v.Seed, 0xfeed))
	end := start.Add(v.Duration)
	var evs []graphsim.Event
	// off[k] is where tenant k's events start in evs.
	off := make([]int, v.Tenants+1)
	// The first query reaches back 30 minutes (initial_lookback).
	from := start.Add(-30 * time.Minute)
	for i := range v.Tenants {
		rate := v.IdleRate
		switch {
		case i < len(v.Busy):
			rate = v.Busy[i]
		case i >= v.Tenants-v.Silent:
			rate = 0
		}
		off[i] = len(evs)
		evs = append(evs, events(r, i, rate, from, end)...)
	}
	off[v.Tenants] = len(evs)
	join := start.Add(v.Join)
	if v.Join > 0 {
		// (Its stream starts within a tenants_refresh of the join, and
		// reads back 7 days from then.)
		evs = append(evs, events(r, v.Tenants, v.JoinPerDay, join.Add(-7*24*time.Hour+2*time.Minute), end)...)
	}
	sim.Add(evs...)
	index := func(id string) (int, bool) {
		if len(id) != 36 {
			return 0, false
		}
		k, err1 := strconv.ParseUint(id[:8], 16, 32)
		i, err2 := strconv.ParseUint(id[24:], 16, 64)
		if err1 != nil || err2 != nil || int(k) >= len(off) {
			return 0, false
		}
		j := off[k] + int(i)
		return j, j < len(evs) && evs[j].ID == id
	}

	dir := t.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		// The state file in memory: this run measures the plugin, not
		// the disk's fsync (tens of thousands of commits).
		if dir, err = os.MkdirTemp("/dev/shm", "msgraph-volume-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	list := filepath.Join(dir, "tenants")
	writeList := func(k int) {
		var b strings.Builder
		for i := range k {
			fmt.Fprintf(&b, "%s\n", tenantID(i))
		}
		if err := os.WriteFile(list, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeList(v.Tenants)
	props := config.MapGetter{
		"tenants_file": list, "tenants_refresh": "1m", "client_id": graphsim.DefaultClientID, "client_secret": graphsim.DefaultClientSecret,
		"authority_host": sim.URL(), "graph_host": sim.URL(), "db": filepath.Join(dir, "state.db"),
		"initial_lookback": "30m", "health_records": "on",
	}
	cfg, err := config.Parse(props)
	if err != nil {
		t.Fatal(err)
	}
	pt := &pageTime{rng: rand2.New(rand2.NewPCG(v.Seed, 3)), next: http.DefaultTransport}
	log := logging.New("fleet", logging.Error)
	log.SetOutput(testWriter{T: t})
	t0 := time.Now()
	f, err := New(cfg, Options{Sync: true, Latency: pt.latency, Instance: input.Options{Name: "fleet", Now: clk.Now, Rand: rand.New(rand.NewSource(int64(v.Seed))), Logger: log, Transport: pt}})
	if err != nil {
		t.Fatal(err)
	}
	res := fleetResult{Events: len(evs), StartTook: time.Since(t0)}
	defer func() { f.Close() }()
	counts := make([]uint8, len(evs))
	restarted, joined := false, false
	for tick := 0; clk.Now().Before(end); tick++ {
		now := clk.Now()
		if v.Join > 0 && !restarted && !now.Before(join.Add(-5*time.Minute)) {
			// initial_lookback 7d from now on, for tenants added later: a
			// restart with the new configuration (the tenants there
			// resume from their state), then the tenant is added to the
			// file while the input runs.
			restarted = true
			f.Close()
			props["initial_lookback"] = "7d"
			cfg, err := config.Parse(props)
			if err != nil {
				t.Fatal(err)
			}
			if f, err = New(cfg, Options{Sync: true, Latency: pt.latency, Instance: input.Options{Name: "fleet", Now: clk.Now, Rand: rand.New(rand.NewSource(int64(v.Seed))), Logger: log, Transport: pt}}); err != nil {
				t.Fatal(err)
			}
		}
		if v.Join > 0 && !joined && !now.Before(join) {
			joined = true
			writeList(v.Tenants + 1)
		}
		if b := f.Collect(); b != nil {
			if err := scanBatch(b, func(id, tenant, code string) {
				if code != "" {
					return
				}
				i, ok := index(id)
				if !ok {
					t.Fatalf("delivered an id the simulator never had: %q", id)
				}
				if evs[i].Tenant != tenant {
					t.Fatalf("%s of tenant %s delivered with msgraph_tenant %q", id, evs[i].Tenant, tenant)
				}
				counts[i]++
			}); err != nil {
				t.Fatalf("batch is not valid msgpack records: %v", err)
			}
			f.Commit()
		}
		tokens := pt.round()
		res.PeakTokens = max(res.PeakTokens, tokens)
		if now.Sub(start) > 10*time.Minute && tick%10 == 0 {
			for _, tn := range f.Tenants() {
				in := f.Stream(tn)
				fresh, _, _ := in.Behind(clk.Now())
				if in.Quiet(clk.Now()) {
					continue // polled every idle_poll_interval by design
				}
				if fresh > res.WorstPollDelay && fresh > 3*time.Minute && os.Getenv("MSGRAPH_VOLUME_DEBUG") != "" {
					c, ok := in.Due(clk.Now())
					t.Logf("at %s tenant %s: newest live query waited %s; due %v %v; stats %+v; fleet %+v, app waiting %d; pending %+v", clk.Now().Sub(start), tn, fresh, c, ok, in.Stats, f.Stats, f.app.Waiting(), in.Pending())
				}
				res.WorstPollDelay = max(res.WorstPollDelay, fresh)
				switch {
				case joined && res.JoinDrained == 0 && tn != tenantID(v.Tenants):
					// While the new tenant's backlog is read.
					res.WorstPollDelayAfterJoin = max(res.WorstPollDelayAfterJoin, fresh)
				case !joined:
					res.WorstPollDelayBeforeJoin = max(res.WorstPollDelayBeforeJoin, fresh)
				}
			}
		}
		if joined && res.JoinDrained == 0 {
			if in := f.Stream(tenantID(v.Tenants)); in != nil && in.Stats.Pages > 0 && !in.Backlogged() {
				res.JoinDrained = clk.Now().Sub(join)
			}
		}
		if tick%3600 == 0 {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			res.PeakHeap = max(res.PeakHeap, ms.HeapAlloc)
		}
		clk.Advance(time.Second)
	}
	// Every event visible three hours before the end and created within
	// its tenant's initial_lookback is due.
	cutoff := end.Add(-3 * time.Hour)
	for i, e := range evs {
		c := counts[i]
		switch {
		case c > 1:
			res.Duplicates += int(c) - 1
		case c == 0 && e.Visible.Before(cutoff):
			if res.Missed < 5 {
				t.Errorf("missed %s of tenant %s created %v visible %v", e.ID, e.Tenant, e.Created, e.Visible)
			}
			res.Missed++
		}
		if c > 0 {
			res.Delivered++
		}
	}
	if in := f.Stream(tenantID(v.Tenants)); v.Join > 0 && in == nil {
		t.Errorf("the joined tenant is not collected: %+v", f.Stats)
	} else if in != nil {
		t.Logf("joined tenant: %+v", in.Stats)
	}
	st := sim.Stats()
	res.Requests = st.ByPath["/v1.0/auditLogs/signIns"]
	res.Throttled = st.ByStatus[http.StatusTooManyRequests]
	res.ThrottledApp = st.ThrottledApp
	hours := v.Duration.Hours()
	var idle []float64
	for i := range v.Tenants {
		req := st.ByTenant[tenantID(i)]
		switch {
		case i < len(v.Busy):
			res.BusiestRequests = max(res.BusiestRequests, req)
		case i >= v.Tenants-v.Silent:
			res.SilentPerHour = max(res.SilentPerHour, float64(req)/hours)
		default:
			idle = append(idle, float64(req)/hours)
		}
	}
	if len(idle) > 0 {
		slices.Sort(idle)
		res.IdlePerHourP50, res.IdlePerHour = idle[len(idle)/2], idle[len(idle)-1]
	}
	// Memory per idle tenant: the heap with every stream open, against
	// the same input once the idle tenants are taken off the list.
	runtime.GC()
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	var b strings.Builder
	for i := range len(v.Busy) {
		fmt.Fprintf(&b, "%s\n", tenantID(i))
	}
	if err := os.WriteFile(list, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	f.refresh = time.Time{}
	if b := f.Collect(); b != nil {
		f.Commit()
	}
	if got := len(f.Tenants()); got != len(v.Busy) {
		t.Fatalf("%d tenants after the list was cut to %d", got, len(v.Busy))
	}
	runtime.GC()
	var ms2 runtime.MemStats
	runtime.ReadMemStats(&ms2)
	if k := v.Tenants - len(v.Busy); k > 0 && ms1.HeapAlloc > ms2.HeapAlloc {
		res.HeapPerIdle = float64(ms1.HeapAlloc-ms2.HeapAlloc) / float64(k)
	}
	if res.Duplicates > 0 || res.Missed > 0 {
		t.Errorf("%d duplicates, %d missed", res.Duplicates, res.Missed)
	}
	return res
}

// scanBatch calls fn with the id, the tenant_key and the warning code of
// each record of a msgpack batch.
func scanBatch(b []byte, fn func(id, tenant, code string)) error {
	for len(b) > 0 {
		n, rest, err := msgp.ReadArrayHeaderBytes(b)
		if err != nil || n != 2 {
			return fmt.Errorf("record is not [time, map]: %v", err)
		}
		if rest, err = msgp.Skip(rest); err != nil {
			return err
		}
		sz, rest, err := msgp.ReadMapHeaderBytes(rest)
		if err != nil {
			return err
		}
		var id, tenant, code, last string
		for range sz {
			var k []byte
			if k, rest, err = msgp.ReadStringZC(rest); err != nil {
				return err
			}
			last = string(k)
			switch last {
			case "id", "msgraph_warning", "msgraph_tenant":
				var v []byte
				if v, rest, err = msgp.ReadStringZC(rest); err != nil {
					return err
				}
				switch last {
				case "id":
					id = string(v)
				case "msgraph_tenant":
					tenant = string(v)
				default:
					code = string(v)
				}
			default:
				if rest, err = msgp.Skip(rest); err != nil {
					return err
				}
			}
		}
		if code == "" && last != "msgraph_tenant" {
			return fmt.Errorf("record %s: the last key is %q, not msgraph_tenant", id, last)
		}
		fn(id, tenant, code)
		b = rest
	}
	return nil
}

type testWriter = graphsim.LogWriter

// TestVolumeTenants: 500 tenants of one application for 3 days: one of
// 1 M sign-ins a day, nine of 20 000 to 100 000, the rest idle (a sign-in
// an hour, 40 of them none); a day and a half in, a new tenant joins with
// initial_lookback 7d and a week of 50 000 a day behind it. Every tenant's events exactly once,
// within both of Graph's limits, and the new tenant's backlog does not
// delay the others' live polls.
func TestVolumeTenants(t *testing.T) {
	if testing.Short() {
		t.Skip("minutes of simulated days")
	}
	if raceEnabled {
		t.Skip("volume runs take minutes under the race detector; make test runs them without it")
	}
	v := fleetRun{Tenants: 500, Busy: []float64{1e6, 1e5, 8e4, 6e4, 5e4, 4e4, 3e4, 3e4, 2e4, 2e4}, IdleRate: 24, Silent: 40,
		Duration: 72 * time.Hour, Join: 36 * time.Hour, JoinPerDay: 5e4}
	if d := os.Getenv("MSGRAPH_FLEET_HOURS"); d != "" {
		// A shorter run, to try a change.
		h, _ := strconv.Atoi(d)
		v.Duration, v.Join = time.Duration(h)*time.Hour, time.Duration(h)*time.Hour/2
	}
	for _, seed := range graphsim.Seeds(t, 1) {
		v.Seed = seed
		r := runFleet(t, v)
		t.Logf("seed %d: %s", seed, r)
		if r.ThrottledApp > 0 || r.Throttled > 0 {
			t.Errorf("%d requests throttled (%d by the application's limit): the budgets let through more than Graph allows", r.Throttled, r.ThrottledApp)
		}
		// The new tenant's week of backlog delays no other tenant's live
		// poll by more than a poll_interval: the worst wait while it is
		// read is at most the worst before it joined, plus one
		// poll_interval.
		if r.WorstPollDelayAfterJoin > r.WorstPollDelayBeforeJoin+time.Minute {
			t.Errorf("a tenant's live poll waited %s while a joined tenant's backlog was read, %s at worst before", r.WorstPollDelayAfterJoin, r.WorstPollDelayBeforeJoin)
		}
		// And none waits long: a few polls' time at most.
		if r.WorstPollDelay > 5*time.Minute {
			t.Errorf("a tenant's live poll waited %s", r.WorstPollDelay)
		}
		if r.JoinDrained == 0 {
			t.Errorf("the joined tenant's week was not read by the end")
		}
		if r.HeapPerIdle > 200e3 {
			t.Errorf("%.0f KB per idle tenant, above 200 KB", r.HeapPerIdle/1e3)
		}
		if r.StartTook > 10*time.Second {
			t.Errorf("starting 500 tenants took %s", r.StartTook)
		}
	}
}
