package host_test

import (
	"errors"
	"io"
	"math/rand"
	rand2 "math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/budget"
	"github.com/in-msgraph/in_msgraph/internal/config"
	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/host"
	"github.com/in-msgraph/in_msgraph/internal/input"
	"github.com/in-msgraph/in_msgraph/internal/logging"
	"github.com/in-msgraph/in_msgraph/internal/records"
)

const events = 30

// rig is a host whose instances read one simulator on one clock. Its
// Collect reads pages itself and waits for them (host.Wait), so the
// test clock decides what each read sees, except where a test sets Wait
// to 0 as in production.
type rig struct {
	t   *testing.T
	clk *graphsim.Clock
	sim *graphsim.Server
	h   *host.Host
	dir string

	mu    sync.Mutex
	names []string // instance names, in the order NewOptions saw them
	// tweak, when set, changes the options of each new instance.
	tweak func(name string, o *input.Options)
}

func newRig(t *testing.T) *rig {
	t.Helper()
	clk := graphsim.NewClock(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
	sim := graphsim.Start(t, graphsim.Options{Now: clk.Now, Seed: 1})
	rng := rand2.New(rand2.NewPCG(1, 2))
	sim.Add(graphsim.Generate(rng, clk.Now().Add(-10*time.Minute), clk.Now().Add(-time.Minute), events, nil)...)
	r := &rig{t: t, clk: clk, sim: sim, h: host.New(), dir: t.TempDir()}
	r.h.Wait = time.Minute
	r.h.NewOptions = func(name string) input.Options {
		r.mu.Lock()
		r.names = append(r.names, name)
		tweak := r.tweak
		r.mu.Unlock()
		log := logging.New(name, logging.Debug)
		log.SetOutput(io.Discard)
		o := input.Options{
			Now:    clk.Now,
			Rand:   rand.New(rand.NewSource(1)),
			Logger: log,
			// A budget per instance: the process-wide one would couple
			// tests that happen to share a simulator address.
			Budget: budget.New(budget.Requests, budget.Window),
		}
		if tweak != nil {
			tweak(name, &o)
		}
		return o
	}
	// Instances hold state files open; close them before TempDir goes.
	t.Cleanup(func() { r.exitAll() })
	return r
}

// exitAll calls exit until no instance is left, as Fluent Bit does once
// per input.
func (r *rig) exitAll() {
	r.t.Helper()
	for r.h.Len() > 0 {
		if _, err := r.h.Exit(0); err != nil {
			r.t.Error(err)
		}
	}
}

// props is a valid configuration for the simulator with its own state
// file, changed by kv pairs (an empty value deletes the key).
func (r *rig) props(db string, kv ...string) config.MapGetter {
	g := config.MapGetter{
		"tenant_id":      graphsim.DefaultTenantID,
		"client_id":      graphsim.DefaultClientID,
		"client_secret":  graphsim.DefaultClientSecret,
		"authority_host": r.sim.URL(),
		"graph_host":     r.sim.URL(),
		"poll_interval":  "5s",
		"db":             filepath.Join(r.dir, db),
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(g, kv[i])
		} else {
			g[kv[i]] = kv[i+1]
		}
	}
	return g
}

// init creates an instance as Fluent Bit 4.1+ does (perInstance) or an
// older one, its callbacks on thread.
func (r *rig) init(g config.Getter, perInstance bool, thread host.Thread) host.Handle {
	r.t.Helper()
	h, err := r.h.Init(g, host.Caller{PerInstance: perInstance, Thread: thread})
	if err != nil {
		r.t.Fatal(err)
	}
	if h == 0 {
		r.t.Fatal("Init returned the zero handle without an error")
	}
	return h
}

func (r *rig) seenNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.names)
}

// collect runs collect/accept rounds for handle, a second of clock apart,
// and returns the ids of the sign-ins delivered.
func (r *rig) collect(handle host.Handle, rounds int) []string {
	r.t.Helper()
	ids, _ := r.collectAll(handle, rounds)
	return ids
}

// collectAll is collect that also returns the health records.
func (r *rig) collectAll(handle host.Handle, rounds int) (ids []string, health []records.Event) {
	r.t.Helper()
	for range rounds {
		r.clk.Advance(time.Second)
		b, _ := r.h.Collect(handle)
		if b == nil {
			continue
		}
		i, hr := decode(r.t, b)
		ids, health = append(ids, i...), append(health, hr...)
		r.h.Handed(handle, true)
	}
	return ids, health
}

// decode returns a batch's sign-in ids and its health records.
func decode(t testing.TB, b []byte) (ids []string, health []records.Event) {
	evs, err := records.DecodeEvents(b)
	if err != nil {
		t.Errorf("batch is not valid msgpack records: %v", err)
		return nil, nil
	}
	for _, e := range evs {
		if _, ok := e.Fields["msgraph_warning"]; ok {
			health = append(health, e)
		} else if id, ok := e.Fields["id"].(string); ok {
			ids = append(ids, id)
		}
	}
	return ids, health
}

func signInIDs(t testing.TB, b []byte) []string {
	ids, _ := decode(t, b)
	return ids
}

// checkAll asserts that ids are every simulated sign-in, each once.
func (r *rig) checkAll(ids []string, who string) {
	r.t.Helper()
	var want []string
	for _, e := range r.sim.Events() {
		want = append(want, e.ID)
	}
	slices.Sort(want)
	got := slices.Clone(ids)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		r.t.Errorf("%s delivered %d sign-ins (%d distinct), want the %d simulated ones once each", who, len(got), len(slices.Compact(got)), len(want))
	}
}

func healthCodes(hr []records.Event) map[string]int {
	m := map[string]int{}
	for _, e := range hr {
		m[e.Fields["msgraph_warning"].(string)+"/"+e.Fields["status"].(string)]++
	}
	return m
}

func TestInitConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		kv   []string
	}{
		{"missing tenant_id", []string{"tenant_id", ""}},
		{"missing secret", []string{"client_secret", ""}},
		{"secret and secret file", []string{"client_secret_file", "/run/secrets/graph"}},
		{"bad poll_interval", []string{"poll_interval", "fast"}},
		{"plain http to a remote graph_host", []string{"graph_host", "http://graph.microsoft.com"}},
		{"lookback not above poll_interval", []string{"lookback", "5s"}},
	}
	for _, tt := range tests {
		for _, perInstance := range []bool{false, true} {
			name := tt.name + "/legacy"
			if perInstance {
				name = tt.name + "/per-instance"
			}
			t.Run(name, func(t *testing.T) {
				r := newRig(t)
				g := r.props("state.db", tt.kv...)
				_, want := config.Parse(g)
				if want == nil {
					t.Fatal("the case is not a configuration error")
				}
				h, err := r.h.Init(g, host.Caller{PerInstance: perInstance, Thread: 1})
				if err == nil || err.Error() != want.Error() {
					t.Fatalf("Init error %v, want %v", err, want)
				}
				var ce *config.Error
				if !errors.As(err, &ce) {
					t.Errorf("error %T is not a *config.Error", err)
				}
				if h != 0 || r.h.Len() != 0 || len(r.seenNames()) != 0 {
					t.Errorf("a failed Init left handle %d, %d instances, options built for %v", h, r.h.Len(), r.seenNames())
				}
				// A failed Init does not take the single legacy slot.
				r.init(r.props("state.db"), perInstance, 1)
				if r.h.Len() != 1 {
					t.Errorf("%d instances", r.h.Len())
				}
			})
		}
	}
}

// TestInitInputErrors covers configurations that parse but cannot start:
// their error is returned and nothing is registered.
func TestInitInputErrors(t *testing.T) {
	t.Run("bad certificate file", func(t *testing.T) {
		r := newRig(t)
		g := r.props("state.db", "client_secret", "", "auth", "certificate", "certificate_file", filepath.Join(r.dir, "missing.pem"))
		h, err := r.h.Init(g, host.Caller{Thread: 1})
		if err == nil || !strings.Contains(err.Error(), "missing.pem") || h != 0 || r.h.Len() != 0 {
			t.Fatalf("Init = %d, %v; %d instances", h, err, r.h.Len())
		}
		r.init(r.props("state.db"), false, 1)
	})
	t.Run("db shared by two instances", func(t *testing.T) {
		r := newRig(t)
		r.init(r.props("state.db"), true, 1)
		h, err := r.h.Init(r.props("state.db"), host.Caller{PerInstance: true, Thread: 2})
		if err == nil || !strings.Contains(err.Error(), "already used by another msgraph input") || h != 0 {
			t.Fatalf("Init = %d, %v", h, err)
		}
		if r.h.Len() != 1 {
			t.Errorf("%d instances", r.h.Len())
		}
	})
}

func TestLegacyModeAllowsOneInstance(t *testing.T) {
	r := newRig(t)
	first := r.init(r.props("a.db"), false, 1)
	h, err := r.h.Init(r.props("b.db"), host.Caller{Thread: 2})
	if !errors.Is(err, host.ErrLegacyMulti) || h != 0 {
		t.Fatalf("second legacy Init = %d, %v; want ErrLegacyMulti", h, err)
	}
	if r.h.Len() != 1 || !slices.Equal(r.seenNames(), []string{"msgraph.0"}) {
		t.Errorf("%d instances, options built for %v", r.h.Len(), r.seenNames())
	}
	// Fluent Bit before 4.1 passes no context: handle 0 means the legacy
	// instance, and so does its own handle.
	ids := r.collect(0, 10)
	ids = append(ids, r.collect(first, 10)...)
	r.checkAll(ids, "the legacy instance")
}

func TestPerInstanceModeAllowsSeveral(t *testing.T) {
	r := newRig(t)
	handles := []host.Handle{
		r.init(r.props("a.db"), true, 1),
		r.init(r.props("b.db", "alias", "signins-eu"), true, 2),
		r.init(r.props("c.db", "alias", "  "), true, 3),
	}
	if r.h.Len() != 3 {
		t.Fatalf("%d instances", r.h.Len())
	}
	if len(slices.Compact(slices.Sorted(slices.Values(handles)))) != 3 {
		t.Fatalf("handles are not distinct: %v", handles)
	}
	if want := []string{"msgraph.0", "signins-eu", "msgraph.2"}; !slices.Equal(r.seenNames(), want) {
		t.Errorf("names %v, want %v", r.seenNames(), want)
	}
	// Without a legacy instance handle 0 is nobody.
	if b, _ := r.h.Collect(0); b != nil {
		t.Error("handle 0 delivered in per-instance mode")
	}
	for i, h := range handles {
		r.checkAll(r.collect(h, 10), r.seenNames()[i])
	}
}

// TestFluentBitNamesTheInstance: the name Fluent Bit gives an instance
// (its alias, or msgraph.N) is the one the plugin logs and labels with.
func TestFluentBitNamesTheInstance(t *testing.T) {
	r := newRig(t)
	for i, name := range []string{"msgraph.0", "eu-signins"} {
		if _, err := r.h.Init(r.props(name+".db"), host.Caller{PerInstance: true, Thread: host.Thread(i + 1), Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"msgraph.0", "eu-signins"}; !slices.Equal(r.seenNames(), want) {
		t.Errorf("names %v, want %v", r.seenNames(), want)
	}
}

func TestCollectUnknownHandle(t *testing.T) {
	r := newRig(t)
	r.init(r.props("a.db"), true, 1)
	stopped := r.init(r.props("b.db"), true, 2)
	r.exitAll()
	known := r.init(r.props("a.db"), true, 1)
	tests := []struct {
		name   string
		handle host.Handle
	}{
		{"zero without a legacy instance", 0},
		{"never issued", known + 1000},
		{"stopped by exit", stopped},
		{"largest", ^host.Handle(0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := r.sim.Stats().Requests
			for range 5 {
				r.clk.Advance(time.Second)
				if b, ref := r.h.Collect(tt.handle); b != nil || ref != nil {
					t.Fatalf("Collect(%d) delivered %d bytes", tt.handle, len(b))
				}
				r.h.Handed(tt.handle, true) // must not panic
				r.h.Handed(tt.handle, false)
			}
			if after := r.sim.Stats().Requests; after != before {
				t.Errorf("%d requests sent for an unknown handle", after-before)
			}
		})
	}
}

// TestPauseIsPerInstance: Fluent Bit pauses and resumes an input on its
// own thread. A resume of one input must not let another, still paused,
// deliver; a paused input sends no request at all.
func TestPauseIsPerInstance(t *testing.T) {
	r := newRig(t)
	a := r.init(r.props("a.db"), true, 1)
	b := r.init(r.props("b.db"), true, 2)
	r.h.Pause(1)
	if !r.h.Paused(a) || r.h.Paused(b) {
		t.Fatalf("after pausing thread 1: a paused %t, b paused %t", r.h.Paused(a), r.h.Paused(b))
	}
	if ids := r.collect(a, 10); len(ids) != 0 {
		t.Errorf("a delivered %d sign-ins while paused", len(ids))
	}
	if n := r.sim.Stats().Requests; n != 0 {
		t.Errorf("%d requests sent by a paused input", n)
	}
	r.h.Pause(2)
	r.h.Resume(1)
	if ids := r.collect(b, 10); len(ids) != 0 {
		t.Errorf("b delivered %d sign-ins while paused, after a resumed", len(ids))
	}
	r.checkAll(r.collect(a, 10), "a")
	r.h.Resume(2)
	r.checkAll(r.collect(b, 10), "b")
}

// TestPauseResumeDoNotPair follows what Fluent Bit's code does: a second
// pause for another reason without a resume in between, a resume with
// no pause before it, and two pauses at shutdown. The latest call wins.
func TestPauseResumeDoNotPair(t *testing.T) {
	r := newRig(t)
	a := r.init(r.props("a.db"), true, 1)
	r.h.Resume(1) // before any pause: harmless
	r.h.Pause(1)
	r.h.Pause(1)
	if ids := r.collect(a, 5); len(ids) != 0 {
		t.Errorf("delivered %d sign-ins while paused", len(ids))
	}
	r.h.Resume(1) // one resume lifts both pauses
	if r.h.Paused(a) {
		t.Fatal("still paused after the resume")
	}
	r.checkAll(r.collect(a, 10), "a")
}

// TestPauseFromAnotherThread: a pause from a thread that runs no instance
// cannot be told apart, so it stops every instance until a resume from
// such a thread.
func TestPauseFromAnotherThread(t *testing.T) {
	r := newRig(t)
	a := r.init(r.props("a.db"), true, 1)
	b := r.init(r.props("b.db"), true, 2)
	r.h.Pause(99)
	for _, h := range []host.Handle{a, b} {
		if ids := r.collect(h, 5); len(ids) != 0 || !r.h.Paused(h) {
			t.Errorf("handle %d delivered %d sign-ins while paused", h, len(ids))
		}
	}
	r.h.Resume(1) // a's own resume does not lift it
	if ids := r.collect(a, 5); len(ids) != 0 {
		t.Errorf("a delivered %d sign-ins", len(ids))
	}
	r.h.Resume(0)
	r.checkAll(r.collect(a, 10), "a")
	r.checkAll(r.collect(b, 10), "b")
}

// TestSharedThread: with threaded off every input runs on Fluent Bit's
// main thread; a pause there pauses them all, and exits, which come in
// reverse order of initialisation, stop the latest first.
func TestSharedThread(t *testing.T) {
	r := newRig(t)
	a := r.init(r.props("a.db"), true, 7)
	b := r.init(r.props("b.db"), true, 7)
	r.h.Pause(7)
	if !r.h.Paused(a) || !r.h.Paused(b) {
		t.Fatal("a pause on the shared thread did not pause both")
	}
	r.h.Resume(7)
	r.checkAll(r.collect(a, 10), "a")
	if got, err := r.h.Exit(7); got != b || err != nil {
		t.Fatalf("first exit stopped %d (%v), want b = %d", got, err, b)
	}
	if got, err := r.h.Exit(7); got != a || err != nil {
		t.Fatalf("second exit stopped %d (%v), want a = %d", got, err, a)
	}
}

// TestExitStopsTheCallingThreadsInstance: each exit stops the instance of
// its thread and leaves the others registered (their state files open)
// until their own exit; the first exit stops all delivery.
func TestExitStopsTheCallingThreadsInstance(t *testing.T) {
	r := newRig(t)
	a := r.init(r.props("a.db"), true, 1)
	b := r.init(r.props("b.db"), true, 2)
	c := r.init(r.props("c.db"), true, 3)
	if got, err := r.h.Exit(2); got != b || err != nil {
		t.Fatalf("exit on thread 2 stopped %d (%v), want %d", got, err, b)
	}
	if r.h.Len() != 2 {
		t.Fatalf("%d instances left", r.h.Len())
	}
	for _, h := range []host.Handle{a, b, c} {
		if ids := r.collect(h, 5); len(ids) != 0 {
			t.Errorf("handle %d delivered %d sign-ins after Fluent Bit began to stop", h, len(ids))
		}
	}
	// An exit from a thread that runs no instance stops the latest one.
	if got, _ := r.h.Exit(0); got != c {
		t.Errorf("exit from an unknown thread stopped %d, want %d", got, c)
	}
	if got, _ := r.h.Exit(1); got != a || r.h.Len() != 0 {
		t.Errorf("exit on thread 1 stopped %d; %d left", got, r.h.Len())
	}
	// Extra exits, or exits before any init, are harmless.
	if got, err := r.h.Exit(1); got != 0 || err != nil {
		t.Errorf("an extra exit = %d, %v", got, err)
	}
}

// TestHotReload follows Fluent Bit's hot reload: exit once per instance,
// on its thread, then every instance initialised again on new threads
// with the same state files.
func TestHotReload(t *testing.T) {
	for _, perInstance := range []bool{false, true} {
		name := "legacy"
		if perInstance {
			name = "per-instance"
		}
		t.Run(name, func(t *testing.T) {
			r := newRig(t)
			dbs := []string{"a.db"}
			if perInstance {
				dbs = append(dbs, "b.db")
			}
			var old []host.Handle
			for i, db := range dbs {
				h := r.init(r.props(db), perInstance, host.Thread(10+i))
				r.checkAll(r.collect(h, 10), db)
				old = append(old, h)
			}
			// Fluent Bit pauses every input before it stops them.
			for i := range dbs {
				r.h.Pause(host.Thread(10 + i))
			}
			for i := len(dbs) - 1; i >= 0; i-- {
				if got, err := r.h.Exit(host.Thread(10 + i)); err != nil || got != old[i] {
					t.Fatalf("Exit = %d, %v; want %d", got, err, old[i])
				}
			}
			if r.h.Len() != 0 {
				t.Fatalf("%d instances after every exit", r.h.Len())
			}
			// The state files were closed: the same files open again, and
			// what was committed before the reload is not delivered again.
			var fresh []host.Handle
			for i, db := range dbs {
				h := r.init(r.props(db), perInstance, host.Thread(20+i))
				if slices.Contains(old, h) {
					t.Errorf("handle %d reused after a reload", h)
				}
				if r.h.Paused(h) {
					t.Error("a reload starts paused")
				}
				fresh = append(fresh, h)
			}
			if want := []string{"msgraph.0", "msgraph.1"}[:len(dbs)]; !slices.Equal(r.seenNames()[len(dbs):], want) {
				t.Errorf("names after the reload %v, want %v", r.seenNames()[len(dbs):], want)
			}
			for _, h := range old {
				if b, _ := r.h.Collect(h); b != nil {
					t.Errorf("a handle from before the reload delivered %d bytes", len(b))
				}
			}
			for i, h := range fresh {
				if ids := r.collect(h, 30); len(ids) != 0 {
					t.Errorf("%s delivered %d sign-ins again after the reload", dbs[i], len(ids))
				}
			}
		})
	}
}

// TestIngestRefused: a batch Fluent Bit does not accept is not committed
// and is offered again as it is, without reading Graph again; the
// condition is reported and resolved.
func TestIngestRefused(t *testing.T) {
	r := newRig(t)
	h := r.init(r.props("a.db"), true, 1)
	var first []byte
	for first == nil {
		r.clk.Advance(time.Second)
		first, _ = r.h.Collect(h)
	}
	first = slices.Clone(first)
	requests := r.sim.Stats().Requests
	for range 3 {
		r.h.Handed(h, false)
		r.clk.Advance(time.Second)
		again, _ := r.h.Collect(h)
		if !slices.Equal(again, first) {
			t.Fatalf("the refused batch was not offered again as it was (%d bytes, then %d)", len(first), len(again))
		}
	}
	if n := r.sim.Stats().Requests - requests; n != 0 {
		t.Errorf("%d requests sent to offer a refused batch again", n)
	}
	r.h.Handed(h, true)
	ids, hr := r.collectAll(h, 20)
	ids = append(signInIDs(t, first), ids...)
	r.checkAll(ids, "a")
	if c := healthCodes(hr); c["ingest_refused/firing"] != 1 || c["ingest_refused/resolved"] != 1 {
		t.Errorf("health records %v, want ingest_refused firing and resolved once each", c)
	}
}

// panicky is a clock that panics once when armed.
type panicky struct {
	clk   *graphsim.Clock
	mu    sync.Mutex
	armed int // panics left
}

func (p *panicky) arm(n int) { p.mu.Lock(); p.armed = n; p.mu.Unlock() }

func (p *panicky) Now() time.Time {
	p.mu.Lock()
	armed := p.armed > 0
	if armed {
		p.armed--
	}
	p.mu.Unlock()
	if armed {
		panic("a deterministic bug")
	}
	return p.clk.Now()
}

// TestCommitPanicTwice: a commit that panics every time it is given a
// batch must not have that page delivered in a loop. The first panic
// reads the page again (its events are delivered a second time); the
// second commits the page's place without its ids and says so with an
// internal_error record; delivery then goes on.
func TestCommitPanicTwice(t *testing.T) {
	r := newRig(t)
	clock := &panicky{clk: r.clk}
	r.tweak = func(_ string, o *input.Options) { o.Now = clock.Now }
	h := r.init(r.props("a.db", "page_size", "10"), true, 1)
	var batches [][]string
	for len(batches) < 2 {
		r.clk.Advance(time.Second)
		b, _ := r.h.Collect(h)
		if b == nil {
			continue
		}
		batches = append(batches, signInIDs(t, b))
		clock.arm(1) // Commit asks the clock first: it panics there
		r.h.Handed(h, true)
	}
	if len(batches[0]) != 10 || !slices.Equal(batches[0], batches[1]) {
		t.Fatalf("the page whose commit panicked was not read again as it was: %v, then %v", batches[0], batches[1])
	}
	// Long enough for the schedule to read the page's range again.
	ids, hr := r.collectAll(h, 1300)
	if c := healthCodes(hr); c["internal_error/event"] != 1 {
		t.Errorf("health records %v, want one internal_error event", c)
	}
	for _, e := range hr {
		if e.Fields["msgraph_warning"] == "internal_error" && !strings.Contains(e.Fields["message"].(string), "10 events were delivered twice") {
			t.Errorf("internal_error message: %s", e.Fields["message"])
		}
	}
	count := map[string]int{}
	for _, id := range append(slices.Concat(batches...), ids...) {
		count[id]++
	}
	for _, e := range r.sim.Events() {
		n, want := count[e.ID], 1
		if slices.Contains(batches[0], e.ID) {
			// Not remembered, so the schedule's next read of the range
			// delivers them once more.
			want = 3
		}
		if n != want {
			t.Errorf("%s delivered %d times, want %d", e.ID, n, want)
		}
	}
}

// TestCollectPanicDoesNotWedge: a panic while a page is read delivers
// nothing of it; the instance waits a moment and goes on.
func TestCollectPanicDoesNotWedge(t *testing.T) {
	r := newRig(t)
	clock := &panicky{clk: r.clk}
	r.tweak = func(_ string, o *input.Options) { o.Now = clock.Now }
	h := r.init(r.props("a.db"), true, 1)
	clock.arm(1)
	r.clk.Advance(time.Second)
	if b, _ := r.h.Collect(h); b != nil {
		t.Fatalf("a read that panicked delivered %d bytes", len(b))
	}
	ids, hr := r.collectAll(h, 20)
	r.checkAll(ids, "a")
	if c := healthCodes(hr); c["internal_error/event"] != 1 {
		t.Errorf("health records %v, want one internal_error event", c)
	}
}

// TestConcurrentCallbacks runs each instance's callbacks on its own
// goroutine, as Fluent Bit's threaded inputs do, each pausing and resuming
// itself now and then, while another goroutine pauses and resumes from a
// thread of its own; the race detector checks the locking.
func TestConcurrentCallbacks(t *testing.T) {
	r := newRig(t)
	r.h.Wait = 0
	dbs := []string{"a.db", "b.db", "c.db"}
	var handles []host.Handle
	for i, db := range dbs {
		handles = append(handles, r.init(r.props(db), true, host.Thread(i+1)))
	}
	delivered := make([][]string, len(handles))
	var wg sync.WaitGroup
	for i, h := range handles {
		wg.Go(func() {
			for n := range 300 {
				r.clk.Advance(100 * time.Millisecond)
				switch n % 50 {
				case 10:
					r.h.Pause(host.Thread(i + 1))
				case 20:
					r.h.Resume(host.Thread(i + 1))
				}
				if b, _ := r.h.Collect(h); b != nil {
					// Every seventh batch is refused, as by a full ring
					// buffer: it is not delivered and comes again.
					accept := n%7 != 0
					if accept {
						delivered[i] = append(delivered[i], signInIDs(t, b)...)
					}
					r.h.Handed(h, accept)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Go(func() {
		for i := range 200 {
			if i%2 == 0 {
				r.h.Pause(99)
			} else {
				r.h.Resume(99)
			}
			_ = r.h.Len()
			_ = r.h.Paused(handles[i%3])
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
	r.h.Resume(99)
	for i, h := range handles {
		r.h.Resume(host.Thread(i + 1))
		delivered[i] = append(delivered[i], r.drain(h, delivered[i], 30*time.Second)...)
		r.checkAll(delivered[i], dbs[i])
	}
}

// drain collects from handle, as production does (host.Wait 0), until
// the instance has delivered (before, then now) every simulated sign-in
// or limit passes (a guard against a hang, not a measure).
func (r *rig) drain(handle host.Handle, before []string, limit time.Duration) []string {
	r.t.Helper()
	want := len(r.sim.Events())
	var ids []string
	seen := map[string]bool{}
	for _, id := range before {
		seen[id] = true
	}
	deadline := time.Now().Add(limit)
	quiet := 0
	for time.Now().Before(deadline) && quiet < 30 {
		r.clk.Advance(time.Second)
		b, _ := r.h.Collect(handle)
		if b != nil {
			for _, id := range signInIDs(r.t, b) {
				ids = append(ids, id)
				seen[id] = true
			}
			r.h.Handed(handle, true)
		}
		if len(seen) >= want {
			quiet++ // a few more rounds, so that a duplicate would show
		}
		time.Sleep(2 * time.Millisecond)
	}
	return ids
}

// TestLegacySlotIsTakenAtomically starts a second legacy Init while the
// first is still building its instance (from inside NewOptions, which runs
// in that window), standing in for two init callbacks that overlap.
func TestLegacySlotIsTakenAtomically(t *testing.T) {
	r := newRig(t)
	build := r.h.NewOptions
	var nestedHandle host.Handle
	var nestedErr error
	nested := false
	r.h.NewOptions = func(name string) input.Options {
		if !nested {
			nested = true
			nestedHandle, nestedErr = r.h.Init(r.props("b.db"), host.Caller{Thread: 2})
		}
		return build(name)
	}
	r.init(r.props("a.db"), false, 1)
	if !errors.Is(nestedErr, host.ErrLegacyMulti) || r.h.Len() != 1 {
		t.Fatalf("overlapping legacy Init = %d, %v; %d instances registered, want ErrLegacyMulti and 1", nestedHandle, nestedErr, r.h.Len())
	}
}
