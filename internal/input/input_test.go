package input

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand"
	rand2 "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/budget"
	"github.com/in-msgraph/in_msgraph/internal/config"
	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/logging"
	"github.com/in-msgraph/in_msgraph/internal/records"
	"github.com/in-msgraph/in_msgraph/internal/state"
)

// rig is a simulator, a clock and an input wired together, with everything
// the input delivered.
type rig struct {
	t      *testing.T
	clk    *graphsim.Clock
	sim    *graphsim.Server
	cfg    config.Config
	in     *Instance
	logs   *bytes.Buffer
	events []records.Event // sign-in records delivered
	health []records.Event // health records delivered
	byID   map[string]int
	budget *budget.Budget
	// extra are ids delivered besides the simulator's (injected by a
	// test); altered skips the field comparison for objects a test edits.
	extra   map[string]bool
	altered bool
}

func newRig(t *testing.T, simOpts graphsim.Options, kv ...string) *rig {
	return newRigFront(t, simOpts, nil, kv...)
}

// newRigFront is newRig with a handler in front of the simulator, which
// may answer a request itself (to serve what the simulator would not).
func newRigFront(t *testing.T, simOpts graphsim.Options, front func(sim *graphsim.Server) http.Handler, kv ...string) *rig {
	t.Helper()
	return newRigClock(t, graphsim.NewClock(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)), simOpts, front, kv...)
}

// newRigClock is newRigFront on a clock of the test's (which its front
// handler may read).
func newRigClock(t *testing.T, clk *graphsim.Clock, simOpts graphsim.Options, front func(sim *graphsim.Server) http.Handler, kv ...string) *rig {
	t.Helper()
	simOpts.Now = clk.Now
	sim := graphsim.Start(t, simOpts)
	base := sim.URL()
	if front != nil {
		srv := httptest.NewServer(front(sim))
		t.Cleanup(srv.Close)
		base = srv.URL
	}
	props := config.MapGetter{
		"tenant_id": "11111111-2222-3333-4444-555555555555", "client_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
		"client_secret": "sim-secret", "authority_host": base, "graph_host": base,
		"db": filepath.Join(t.TempDir(), "state.db"),
	}
	for i := 0; i < len(kv); i += 2 {
		props[kv[i]] = kv[i+1]
	}
	cfg, err := config.Parse(props)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, clk: clk, sim: sim, cfg: cfg, logs: &bytes.Buffer{}, byID: map[string]int{}, budget: budget.New(budget.Requests, budget.Window)}
	r.start()
	t.Cleanup(func() { r.in.Close() })
	return r
}

func (r *rig) start() {
	r.t.Helper()
	log := logging.New("test", logging.Debug)
	log.SetOutput(r.logs)
	in, err := New(r.cfg, Options{Name: "test", Now: r.clk.Now, Rand: rand.New(rand.NewSource(1)), Logger: log, Budget: r.budget})
	if err != nil {
		r.t.Fatal(err)
	}
	r.in = in
}

// restart closes the input and opens a new one on the same state file.
func (r *rig) restart() {
	r.in.Close()
	r.start()
}

// tick advances the clock and runs one collect with its commit.
func (r *rig) tick(d time.Duration) {
	r.clk.Advance(d)
	b := r.in.Collect()
	if b == nil {
		return
	}
	r.take(b)
	r.in.Commit()
}

func (r *rig) take(b []byte) {
	evs, err := records.DecodeEvents(b)
	if err != nil {
		r.t.Fatalf("batch is not valid msgpack records: %v", err)
	}
	for _, e := range evs {
		if _, ok := e.Fields["msgraph_warning"]; ok {
			r.health = append(r.health, e)
			continue
		}
		r.events = append(r.events, e)
		r.byID[e.Fields["id"].(string)]++
	}
}

func (r *rig) run(d, step time.Duration) {
	for end := r.clk.Now().Add(d); r.clk.Now().Before(end); {
		r.tick(step)
	}
}

func (r *rig) healthCodes() map[string]int {
	m := map[string]int{}
	for _, h := range r.health {
		m[h.Fields["msgraph_warning"].(string)+"/"+h.Fields["status"].(string)]++
	}
	return m
}

// verify checks that every event visible at least `settle` ago was
// delivered exactly once, field for field, with its createdDateTime as the
// record time, and that nothing else was delivered.
func (r *rig) verify(settle time.Duration) (delivered, dups, missed int) {
	r.t.Helper()
	want := map[string]graphsim.Event{}
	for _, e := range r.sim.Events() {
		want[e.ID] = e
	}
	got := map[string]records.Event{}
	for _, e := range r.events {
		got[e.Fields["id"].(string)] = e
	}
	cutoff := r.clk.Now().Add(-settle)
	// Events from initial_lookback on are due; query bounds widen to whole
	// seconds (one more with gt and lt), so up to 2 s before may come too.
	scope := r.in.sched.State().Started.Add(-r.cfg.InitialLookback)
	for id, n := range r.byID {
		if n > 1 {
			dups += n - 1
		}
		if e, ok := want[id]; !ok {
			if !r.extra[id] {
				r.t.Errorf("delivered an id the simulator never had: %s", id)
			}
		} else if e.Created.Before(scope.Add(-2 * time.Second)) {
			r.t.Errorf("delivered %s from before initial_lookback", id)
		}
	}
	for id, e := range want {
		g, ok := got[id]
		if !ok {
			if e.Visible.Before(cutoff) && !e.Created.Before(scope) {
				missed++
				if missed < 5 {
					r.t.Errorf("missed %s created %v visible %v (%v late)", id, e.Created, e.Visible, e.Visible.Sub(e.Created))
				}
			}
			continue
		}
		if !g.Time.Equal(e.Created) {
			r.t.Errorf("%s: record time %v, want %v", id, g.Time, e.Created)
		}
		if !r.altered && !sameFields(r.t, e.JSON, g.Fields) {
			r.t.Errorf("%s: fields differ from Graph's object", id)
		}
	}
	return len(got), dups, missed
}

func sameFields(t *testing.T, raw []byte, fields map[string]any) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var want map[string]any
	if err := dec.Decode(&want); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(norm(want), norm(fields))
}

func norm(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = norm(e)
		}
	case []any:
		for i, e := range x {
			x[i] = norm(e)
		}
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return float64(i)
		}
		f, _ := x.Float64()
		return f
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	case float64:
		if math.IsNaN(x) {
			return "NaN"
		}
	}
	return v
}

// addEvents adds n sign-ins created in [from, to) with the given lateness.
func addEvents(sim *graphsim.Server, seed int64, from, to time.Time, n int, late graphsim.Lateness) {
	rng := rand2.New(rand2.NewPCG(uint64(seed), 1))
	sim.Add(graphsim.Generate(rng, from, to, n, late)...)
}

func fixedLateness(d time.Duration) graphsim.Lateness {
	return func(*rand2.Rand) time.Duration { return d }
}

func TestExactlyOnceWithLateEventsAndReconcile(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates 27 hours")
	}
	r := newRig(t, graphsim.Options{Throttle: true, Seed: 1})
	start := r.clk.Now()
	// Steady traffic with Graph's lateness (P95 2 min, P99 5 min, a tail of
	// about an hour), and stragglers hours late that only reconcile finds.
	addEvents(r.sim, 1, start.Add(-20*time.Minute), start.Add(3*time.Hour), 3000, graphsim.RealisticLateness(time.Minute))
	addEvents(r.sim, 2, start.Add(10*time.Minute), start.Add(40*time.Minute), 20, fixedLateness(90*time.Minute))
	addEvents(r.sim, 3, start.Add(20*time.Minute), start.Add(30*time.Minute), 10, fixedLateness(5*time.Hour))
	addEvents(r.sim, 4, start.Add(30*time.Minute), start.Add(35*time.Minute), 5, fixedLateness(20*time.Hour))
	// Events older than initial_lookback are out of scope.
	addEvents(r.sim, 5, start.Add(-3*time.Hour), start.Add(-2*time.Hour), 50, fixedLateness(time.Minute))
	r.run(27*time.Hour, 2*time.Second)

	delivered, dups, missed := r.verify(0)
	inScope := 0
	for _, e := range r.sim.Events() {
		if !e.Created.Before(start.Add(-30 * time.Minute)) {
			inScope++
		}
	}
	t.Logf("delivered %d of %d in-scope events, %d duplicates, %d missed; %d requests, %d pages; late arrivals %d; health %v",
		delivered, inScope, dups, missed, r.in.Stats.Requests, r.in.Stats.Pages, r.in.Stats.LateArrivals, r.healthCodes())
	if dups != 0 || missed != 0 || delivered != inScope {
		t.Fatalf("not exactly once: delivered %d/%d, %d duplicates, %d missed", delivered, inScope, dups, missed)
	}
	if r.in.Stats.LateArrivals < 35 || r.healthCodes()["late_arrivals/event"] == 0 || r.healthCodes()["lookback_widened/event"] == 0 {
		t.Fatalf("stragglers not reported: %d late arrivals, health %v", r.in.Stats.LateArrivals, r.healthCodes())
	}
	if r.in.sched.Lookback() <= 30*time.Minute {
		t.Fatal("lookback not widened")
	}
	if st := r.sim.Stats(); st.ByStatus[429] != 0 {
		t.Fatalf("pacing let %d requests be throttled", st.ByStatus[429])
	}
	// The de-dup set holds only what the horizon (largest reconcile delay
	// plus a sweep) still reaches.
	recent := 0
	for _, e := range r.sim.Events() {
		if e.Created.After(r.clk.Now().Add(-25 * time.Hour)) {
			recent++
		}
	}
	if n := r.in.seen.Len(); n > recent || n == 0 {
		t.Fatalf("%d ids held, %d events are younger than 25h", n, recent)
	}
}

func TestExactlyOnceUnderFaultsAndRestarts(t *testing.T) {
	r := newRig(t, graphsim.Options{Throttle: true, Seed: 2, TokenLifetime: 5 * time.Minute,
		Faults: graphsim.Faults{Rate429: 0.05, Rate503: 0.05, Rate500: 0.05, Rate504: 0.03, RateTruncated: 0.05}},
		"page_size", "50", "lookback", "10m", "reconcile", "20m,40m")
	start := r.clk.Now()
	addEvents(r.sim, 7, start.Add(-5*time.Minute), start.Add(100*time.Minute), 2500, graphsim.RealisticLateness(30*time.Second))
	r.run(40*time.Minute, time.Second)
	r.restart()
	r.run(20*time.Minute, time.Second)
	// A crash between Fluent Bit taking a batch and the commit: that one
	// batch is delivered again, nothing is skipped.
	var lost []byte
	for lost == nil {
		r.clk.Advance(time.Second)
		lost = r.in.Collect()
	}
	r.take(lost)
	r.in.Close()
	r.start()
	r.run(90*time.Minute, time.Second)
	delivered, dups, missed := r.verify(0)
	st := r.sim.Stats()
	t.Logf("delivered %d, duplicates %d (one batch replayed after the crash), missed %d; requests %d, by status %v, truncated %d, tokens %d, 401s %d; health %v",
		delivered, dups, missed, r.in.Stats.Requests, st.ByStatus, st.Truncated, st.Tokens, st.Unauthorized, r.healthCodes())
	lostEvents, _ := records.DecodeEvents(lost)
	if missed != 0 || dups > len(lostEvents) {
		t.Fatalf("%d missed, %d duplicates (allowed: the %d records of the uncommitted batch)", missed, dups, len(lostEvents))
	}
	if st.Truncated == 0 || st.ByStatus[503] == 0 || st.ByStatus[500] == 0 || st.Unauthorized == 0 || st.Tokens < 3 {
		t.Fatalf("faults were not exercised: %+v", st)
	}
}

func TestCommitProtocol(t *testing.T) {
	r := newRig(t, graphsim.Options{Seed: 3}, "page_size", "10")
	addEvents(r.sim, 8, r.clk.Now().Add(-10*time.Minute), r.clk.Now().Add(-9*time.Minute), 25, fixedLateness(0))
	r.clk.Advance(time.Second)
	first := r.in.Collect()
	evs, _ := records.DecodeEvents(first)
	if len(evs) != 10 {
		t.Fatalf("first page: %d records", len(evs))
	}
	// Fluent Bit did not call cleanup and the process stops: nothing of
	// the batch is committed, so the restarted input delivers it again.
	r.restart()
	r.run(10*time.Second, time.Second)
	if len(r.events) != 25 {
		t.Fatalf("after restart: %d events, want all 25", len(r.events))
	}
	// Fluent Bit called collect again without cleanup: the batch was
	// appended, so it counts as delivered.
	addEvents(r.sim, 9, r.clk.Now().Add(-time.Minute), r.clk.Now(), 5, fixedLateness(0))
	r.clk.Advance(time.Minute)
	b := r.in.Collect()
	r.take(b)
	r.clk.Advance(time.Second)
	if b2 := r.in.Collect(); b2 != nil {
		r.take(b2)
		r.in.Commit()
	}
	r.run(5*time.Minute, time.Second)
	if _, dups, missed := r.verify(0); dups != 0 || missed != 0 {
		t.Fatalf("dups %d missed %d", dups, missed)
	}
}

func TestWrongSecretRaisesAuthFailedAndNeverLeaks(t *testing.T) {
	const secret = "Wr0ng~Secret.Value_123"
	r := newRig(t, graphsim.Options{Seed: 5}, "client_secret", secret)
	r.run(5*time.Minute, time.Second)
	codes := r.healthCodes()
	if codes["auth_failed/firing"] != 1 {
		t.Fatalf("health %v", codes)
	}
	msg := r.health[0].Fields["message"].(string)
	if !strings.Contains(msg, "AADSTS7000215") || !strings.Contains(msg, "use the secret's Value") || r.health[0].Fields["aadsts_code"] != "AADSTS7000215" {
		t.Fatalf("message: %s", msg)
	}
	// Retries back off: a few token requests in five minutes, not 300.
	if n := r.sim.Stats().TokenErrors; n < 2 || n > 8 {
		t.Fatalf("%d token requests in 5 minutes", n)
	}
	all := r.logs.String()
	for _, h := range r.health {
		all += h.Fields["message"].(string)
	}
	if strings.Contains(all, secret) {
		t.Fatal("the secret appears in logs or records")
	}
	if !strings.Contains(r.logs.String(), "client_secret=(redacted)") {
		t.Fatal("the configuration line does not show the secret redacted")
	}
}

func TestLicenceErrorSaysWhatToFix(t *testing.T) {
	r := newRig(t, graphsim.Options{Seed: 6, Faults: graphsim.Faults{Licence403: true}})
	r.run(30*time.Minute, 5*time.Second)
	codes := r.healthCodes()
	if codes["api_error/firing"] == 0 {
		t.Fatalf("health %v", codes)
	}
	h := r.health[0].Fields
	if h["http_status"] != int64(403) || h["graph_error_code"] != "Authentication_RequestFromNonPremiumTenantOrB2CTenant" || !strings.Contains(h["message"].(string), "P1 or P2") || h["request_id"] == "" {
		t.Fatalf("record %v", h)
	}
	// Retried slowly, not hammered.
	if n := r.in.Stats.Requests; n > 8 {
		t.Fatalf("%d requests in 30 minutes against a licence error", n)
	}
	r.sim.SetFaults(graphsim.Faults{})
	r.run(20*time.Minute, 5*time.Second)
	if r.healthCodes()["api_error/resolved"] != 1 {
		t.Fatalf("no recovery record: %v", r.healthCodes())
	}
}

func TestDriftWarningAndRecovery(t *testing.T) {
	r := newRig(t, graphsim.Options{Seed: 7}, "drift_warning", "10m")
	addEvents(r.sim, 11, r.clk.Now().Add(-5*time.Minute), r.clk.Now(), 10, fixedLateness(0))
	r.run(20*time.Minute, 5*time.Second)
	if r.healthCodes()["drift_exceeded/firing"] != 1 {
		t.Fatalf("health %v", r.healthCodes())
	}
	addEvents(r.sim, 12, r.clk.Now().Add(-time.Minute), r.clk.Now(), 3, fixedLateness(0))
	r.run(3*time.Minute, 5*time.Second)
	if r.healthCodes()["drift_exceeded/resolved"] != 1 {
		t.Fatalf("health %v", r.healthCodes())
	}
}

func TestHealthRecordsOff(t *testing.T) {
	r := newRig(t, graphsim.Options{Seed: 8, Faults: graphsim.Faults{Permission403: true}}, "health_records", "off")
	r.run(5*time.Minute, 5*time.Second)
	if len(r.health) != 0 {
		t.Fatal("health records emitted with health_records off")
	}
	if !strings.Contains(r.logs.String(), "AuditLog.Read.All") {
		t.Fatal("the permission error is not logged")
	}
}

func TestHistogram(t *testing.T) {
	var h Histogram
	for i := range 100 {
		h.Add(time.Duration(i) * time.Second)
	}
	if h.Quantile(0.5) != 64*time.Second || h.Quantile(0.99) != 128*time.Second || h.max != 99*time.Second {
		t.Fatalf("%s", h.String())
	}
}

// TestOverBudgetScheduleStillFindsStragglers polls every second, which
// needs more requests than Graph's budget gives, with faults, expiring
// tokens and two restarts: live work never runs out, yet the reconcile
// sweeps still run and find events 20 s late (past lookback).
func TestOverBudgetScheduleStillFindsStragglers(t *testing.T) {
	for seed := int64(1); seed <= 3; seed++ {
		r := newRig(t, graphsim.Options{Throttle: true, Seed: seed, TokenLifetime: 3 * time.Second,
			Faults: graphsim.Faults{Rate429: 0.05, Rate503: 0.03, Rate500: 0.03, Rate504: 0.02, RateTruncated: 0.03}},
			"poll_interval", "1s", "lookback", "4s", "reconcile", "12s,30s", "initial_lookback", "1m")
		for i := range 450 {
			now := r.clk.Now()
			addEvents(r.sim, seed*1000+int64(i), now.Add(-100*time.Millisecond), now, 3, graphsim.RealisticLateness(400*time.Millisecond))
			if i%50 == 0 {
				addEvents(r.sim, seed*1000+int64(i)+500, now.Add(-time.Second), now, 1, fixedLateness(20*time.Second))
			}
			r.tick(100 * time.Millisecond)
			if i == 150 || i == 300 {
				r.restart()
			}
		}
		r.run(90*time.Second, 100*time.Millisecond)
		if _, dups, missed := r.verify(0); dups+missed > 0 {
			t.Fatalf("seed %d: %d duplicates, %d missed", seed, dups, missed)
		}
	}
}

// BenchmarkCollect measures the whole core per event: an HTTP request to
// the simulator over loopback, transcoding, de-duplication and the bbolt
// commit, with pages of 1000 new events.
func BenchmarkCollect(b *testing.B) {
	clk := graphsim.NewClock(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
	sim := graphsim.Start(b, graphsim.Options{Now: clk.Now, Seed: 1})
	cfg, err := config.Parse(config.MapGetter{
		"tenant_id": graphsim.DefaultTenantID, "client_id": graphsim.DefaultClientID, "client_secret": graphsim.DefaultClientSecret,
		"authority_host": sim.URL(), "graph_host": sim.URL(), "initial_lookback": "30d", "lookback": "1h",
		"db": filepath.Join(b.TempDir(), "state.db"),
	})
	if err != nil {
		b.Fatal(err)
	}
	n := b.N * 1000
	rng := rand2.New(rand2.NewPCG(1, 1))
	sim.Add(graphsim.Generate(rng, clk.Now().Add(-29*24*time.Hour), clk.Now(), min(n, 200000), fixedLateness(0))...)
	log := logging.New("bench", logging.Error)
	in, err := New(cfg, Options{Now: clk.Now, Logger: log, Budget: budget.New(1<<30, time.Second)})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	b.ReportAllocs()
	b.ResetTimer()
	events := 0
	for events < min(n, 200000) {
		clk.Advance(time.Millisecond)
		if batch := in.Collect(); batch != nil {
			in.Commit()
		}
		events = in.Stats.Delivered
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

func TestEmptyResultWarnsWhenGraphLosesEvents(t *testing.T) {
	r := newRig(t, graphsim.Options{Seed: 9})
	addEvents(r.sim, 13, r.clk.Now().Add(-10*time.Minute), r.clk.Now().Add(10*time.Minute), 200, fixedLateness(0))
	r.run(12*time.Minute, 5*time.Second)
	if len(r.events) == 0 {
		t.Fatal("nothing delivered")
	}
	// Graph drops what it had: the next re-read of those ranges is empty.
	r.sim.Remove(r.clk.Now())
	r.run(40*time.Minute, 5*time.Second)
	var rec *records.Event
	for i, h := range r.health {
		if h.Fields["msgraph_warning"] == "empty_result" {
			rec = &r.health[i]
			break
		}
	}
	if rec == nil {
		t.Fatalf("no empty_result record: %v", r.healthCodes())
	}
	if n, _ := rec.Fields["delivered_before"].(int64); n <= 0 || !strings.Contains(rec.Fields["message"].(string), "were delivered from that range before") {
		t.Fatalf("record %v", rec.Fields)
	}
	addEvents(r.sim, 14, r.clk.Now().Add(-time.Minute), r.clk.Now(), 5, fixedLateness(0))
	r.run(5*time.Minute, 5*time.Second)
	if r.healthCodes()["empty_result/resolved"] != 1 {
		t.Fatalf("no recovery: %v", r.healthCodes())
	}
}

func TestSustained429sRaiseThrottled(t *testing.T) {
	r := newRig(t, graphsim.Options{Seed: 10, Faults: graphsim.Faults{Rate429: 1}})
	addEvents(r.sim, 15, r.clk.Now().Add(-5*time.Minute), r.clk.Now(), 20, fixedLateness(0))
	r.run(time.Minute, time.Second)
	h := r.healthCodes()
	if h["throttled/firing"] != 1 {
		t.Fatalf("health %v", h)
	}
	for _, e := range r.health {
		if e.Fields["msgraph_warning"] == "throttled" {
			if n, _ := e.Fields["consecutive_429"].(int64); n < 3 {
				t.Fatalf("record %v", e.Fields)
			}
		}
	}
	// Retry-After is honoured: requests are spaced, not hammered.
	if n := r.sim.Stats().ByStatus[429]; n > 40 {
		t.Fatalf("%d requests in a minute of 429s", n)
	}
	r.sim.SetFaults(graphsim.Faults{})
	r.run(time.Minute, time.Second)
	if r.healthCodes()["throttled/resolved"] != 1 || len(r.events) != 20 {
		t.Fatalf("after 429s stop: %v, %d events", r.healthCodes(), len(r.events))
	}
}

func stateErrors(r *rig) []records.Event {
	var out []records.Event
	for _, h := range r.health {
		if h.Fields["msgraph_warning"] == "state_error" {
			out = append(out, h)
		}
	}
	return out
}

func TestUnreadableStateFileIsKeptAndReplaced(t *testing.T) {
	for _, tc := range []struct{ name, content, reason string }{
		{"garbage", strings.Repeat("not a bbolt file ", 1000), "cannot be read"},
		{"empty schedule json", "", "unreadable schedule"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db := filepath.Join(dir, "state.db")
			if tc.content != "" {
				os.WriteFile(db, []byte(tc.content), 0o600)
			} else {
				// A valid file whose schedule record is damaged.
				d, err := state.Open(db)
				if err != nil {
					t.Fatal(err)
				}
				d.Commit(nil, nil, []byte(`{"level_runs":`))
				d.Close()
			}
			r := newRig(t, graphsim.Options{Seed: 16}, "db", db)
			addEvents(r.sim, 17, r.clk.Now().Add(-5*time.Minute), r.clk.Now(), 10, fixedLateness(0))
			r.run(10*time.Second, time.Second)
			se := stateErrors(r)
			if len(se) != 1 || se[0].Fields["status"] != "event" || !strings.Contains(se[0].Fields["message"].(string), tc.reason) ||
				!strings.Contains(se[0].Fields["message"].(string), "it was moved to "+db+".unreadable-") {
				t.Fatalf("state_error records: %v", se)
			}
			kept, _ := filepath.Glob(db + ".unreadable-*")
			if len(kept) != 1 || len(r.events) != 10 {
				t.Fatalf("kept %v, delivered %d", kept, len(r.events))
			}
			// The new file works: a restart repeats nothing.
			r.restart()
			r.run(10*time.Second, time.Second)
			if len(r.events) != 10 {
				t.Fatalf("after restart: %d events", len(r.events))
			}
		})
	}
}

// flakyStore fails commits while broken is set, like a full disk.
type flakyStore struct {
	store
	broken bool
}

func (f *flakyStore) Commit(add []state.Entry, del []records.Key, sched []byte) error {
	if f.broken {
		return errors.New("db state.db: commit failed: write state.db: no space left on device")
	}
	return f.store.Commit(add, del, sched)
}

func TestFailedCommitsAreRetriedAndReported(t *testing.T) {
	r := newRig(t, graphsim.Options{Seed: 20}, "page_size", "5")
	flaky := &flakyStore{store: r.in.db, broken: true}
	r.in.db = flaky
	addEvents(r.sim, 21, r.clk.Now().Add(-5*time.Minute), r.clk.Now(), 20, fixedLateness(0))
	r.run(20*time.Second, time.Second)
	if len(r.events) != 20 || len(stateErrors(r)) != 1 || stateErrors(r)[0].Fields["unsaved_ids"] == nil {
		t.Fatalf("while the disk is full: %d events, %v", len(r.events), stateErrors(r))
	}
	flaky.broken = false
	r.run(70*time.Second, time.Second)
	if se := stateErrors(r); len(se) != 2 || se[1].Fields["status"] != "resolved" {
		t.Fatalf("no recovery: %v", se)
	}
	// Everything delivered while the disk was full reached the file: a
	// restart delivers nothing again.
	r.restart()
	r.run(2*time.Minute, time.Second)
	if _, dups, missed := r.verify(0); dups != 0 || missed != 0 {
		t.Fatalf("after restart: %d duplicates, %d missed", dups, missed)
	}
}
