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

// rig is a host whose instances read one simulator on one clock.
type rig struct {
	t   *testing.T
	clk *graphsim.Clock
	sim *graphsim.Server
	h   *host.Host
	dir string

	mu    sync.Mutex
	names []string // instance names, in the order NewOptions saw them
}

func newRig(t *testing.T) *rig {
	t.Helper()
	clk := graphsim.NewClock(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
	sim := graphsim.Start(t, graphsim.Options{Now: clk.Now, Seed: 1})
	rng := rand2.New(rand2.NewPCG(1, 2))
	sim.Add(graphsim.Generate(rng, clk.Now().Add(-10*time.Minute), clk.Now().Add(-time.Minute), events, nil)...)
	r := &rig{t: t, clk: clk, sim: sim, h: host.New(), dir: t.TempDir()}
	r.h.NewOptions = func(name string) input.Options {
		r.mu.Lock()
		r.names = append(r.names, name)
		r.mu.Unlock()
		log := logging.New(name, logging.Debug)
		log.SetOutput(io.Discard)
		return input.Options{
			Now:    clk.Now,
			Rand:   rand.New(rand.NewSource(1)),
			Logger: log,
			// A budget per instance: the process-wide one would couple
			// tests that happen to share a simulator address.
			Budget: budget.New(budget.Requests, budget.Window),
		}
	}
	// Instances hold state files open; close them before TempDir goes.
	t.Cleanup(func() {
		if err := r.h.StopAll(); err != nil {
			t.Error(err)
		}
	})
	return r
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

func (r *rig) init(g config.Getter, perInstance bool) host.Handle {
	r.t.Helper()
	h, err := r.h.Init(g, perInstance)
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

// collect runs collect/commit rounds for handle, a second of clock apart,
// and returns the ids of the sign-ins delivered.
func (r *rig) collect(handle host.Handle, rounds int) []string {
	r.t.Helper()
	var ids []string
	for range rounds {
		r.clk.Advance(time.Second)
		b := r.h.Collect(handle)
		if b == nil {
			continue
		}
		ids = append(ids, signInIDs(r.t, b)...)
		r.h.Committed(handle)
	}
	return ids
}

// signInIDs decodes a batch and returns its sign-in ids, leaving out
// health records.
func signInIDs(t testing.TB, b []byte) []string {
	evs, err := records.DecodeEvents(b)
	if err != nil {
		t.Errorf("batch is not valid msgpack records: %v", err)
		return nil
	}
	var ids []string
	for _, e := range evs {
		if id, ok := e.Fields["id"].(string); ok {
			ids = append(ids, id)
		}
	}
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
				h, err := r.h.Init(g, perInstance)
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
				r.init(r.props("state.db"), perInstance)
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
		h, err := r.h.Init(g, false)
		if err == nil || !strings.Contains(err.Error(), "missing.pem") || h != 0 || r.h.Len() != 0 {
			t.Fatalf("Init = %d, %v; %d instances", h, err, r.h.Len())
		}
		r.init(r.props("state.db"), false)
	})
	t.Run("db shared by two instances", func(t *testing.T) {
		r := newRig(t)
		r.init(r.props("state.db"), true)
		h, err := r.h.Init(r.props("state.db"), true)
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
	first := r.init(r.props("a.db"), false)
	h, err := r.h.Init(r.props("b.db"), false)
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
		r.init(r.props("a.db"), true),
		r.init(r.props("b.db", "alias", "signins-eu"), true),
		r.init(r.props("c.db", "alias", "  "), true),
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
	if b := r.h.Collect(0); b != nil {
		t.Error("handle 0 delivered in per-instance mode")
	}
	for i, h := range handles {
		r.checkAll(r.collect(h, 10), r.seenNames()[i])
	}
}

func TestCollectUnknownHandle(t *testing.T) {
	r := newRig(t)
	r.init(r.props("a.db"), true)
	stopped := r.init(r.props("b.db"), true)
	if err := r.h.StopAll(); err != nil {
		t.Fatal(err)
	}
	known := r.init(r.props("a.db"), true)
	tests := []struct {
		name   string
		handle host.Handle
	}{
		{"zero without a legacy instance", 0},
		{"never issued", known + 1000},
		{"stopped by StopAll", stopped},
		{"largest", ^host.Handle(0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := r.sim.Stats().Requests
			for range 5 {
				r.clk.Advance(time.Second)
				if b := r.h.Collect(tt.handle); b != nil {
					t.Fatalf("Collect(%d) delivered %d bytes", tt.handle, len(b))
				}
				r.h.Committed(tt.handle) // must not panic
			}
			if after := r.sim.Stats().Requests; after != before {
				t.Errorf("%d requests sent for an unknown handle", after-before)
			}
		})
	}
}

func TestPauseStopsEveryInstance(t *testing.T) {
	r := newRig(t)
	a := r.init(r.props("a.db"), true)
	b := r.init(r.props("b.db"), true)
	r.h.Pause()
	if !r.h.Paused() {
		t.Fatal("Paused() is false after Pause")
	}
	for _, h := range []host.Handle{a, b, 0, 12345} {
		if ids := r.collect(h, 10); len(ids) != 0 {
			t.Errorf("handle %d delivered %d sign-ins while paused", h, len(ids))
		}
	}
	if n := r.sim.Stats().Requests; n != 0 {
		t.Errorf("%d requests sent while paused", n)
	}
	r.h.Resume()
	if r.h.Paused() {
		t.Fatal("Paused() is true after Resume")
	}
	r.checkAll(r.collect(a, 10), "a")
	r.checkAll(r.collect(b, 10), "b")
}

// TestStopAllAndHotReload follows Fluent Bit's hot reload: exit is called
// once per instance without saying which, then every instance is
// initialised again with the same state files.
func TestStopAllAndHotReload(t *testing.T) {
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
			for _, db := range dbs {
				h := r.init(r.props(db), perInstance)
				r.checkAll(r.collect(h, 10), db)
				old = append(old, h)
			}
			r.h.Pause()
			for range dbs {
				if err := r.h.StopAll(); err != nil {
					t.Fatalf("StopAll: %v", err)
				}
				if r.h.Len() != 0 {
					t.Fatalf("%d instances after StopAll", r.h.Len())
				}
			}
			if r.h.Paused() {
				t.Error("a reload starts paused")
			}
			// The state files were closed: the same files open again, and
			// what was committed before the reload is not delivered again.
			var fresh []host.Handle
			for _, db := range dbs {
				h := r.init(r.props(db), perInstance)
				if slices.Contains(old, h) {
					t.Errorf("handle %d reused after a reload", h)
				}
				fresh = append(fresh, h)
			}
			if r.h.Len() != len(dbs) {
				t.Fatalf("%d instances after the reload", r.h.Len())
			}
			for _, h := range old {
				if b := r.h.Collect(h); b != nil {
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

// TestStopAllOnEmptyHost checks that exit callbacks beyond the first, or
// one before any init, are harmless.
func TestStopAllOnEmptyHost(t *testing.T) {
	h := host.New()
	for range 3 {
		if err := h.StopAll(); err != nil {
			t.Fatal(err)
		}
	}
	if h.Len() != 0 || h.Collect(0) != nil || h.Paused() {
		t.Fatal("an empty host is not empty")
	}
	h.Committed(0)
}

// TestConcurrentCallbacks runs each instance's callbacks on its own
// goroutine, as Fluent Bit's threaded inputs do, while pause and resume
// arrive from another; the race detector checks the registry's locking.
func TestConcurrentCallbacks(t *testing.T) {
	r := newRig(t)
	dbs := []string{"a.db", "b.db", "c.db"}
	var handles []host.Handle
	for _, db := range dbs {
		handles = append(handles, r.init(r.props(db), true))
	}
	delivered := make([][]string, len(handles))
	var wg sync.WaitGroup
	for i, h := range handles {
		wg.Go(func() {
			for range 200 {
				r.clk.Advance(100 * time.Millisecond)
				if b := r.h.Collect(h); b != nil {
					delivered[i] = append(delivered[i], signInIDs(t, b)...)
					r.h.Committed(h)
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 200 {
			if i%2 == 0 {
				r.h.Pause()
			} else {
				r.h.Resume()
			}
			_ = r.h.Len()
			_ = r.h.Paused()
		}
	})
	wg.Wait()
	r.h.Resume()
	for i, h := range handles {
		delivered[i] = append(delivered[i], r.collect(h, 30)...)
		r.checkAll(delivered[i], dbs[i])
	}
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
			nestedHandle, nestedErr = r.h.Init(r.props("b.db"), false)
		}
		return build(name)
	}
	r.init(r.props("a.db"), false)
	if !errors.Is(nestedErr, host.ErrLegacyMulti) || r.h.Len() != 1 {
		t.Fatalf("overlapping legacy Init = %d, %v; %d instances registered, want ErrLegacyMulti and 1", nestedHandle, nestedErr, r.h.Len())
	}
}
