package input

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/budget"
	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/logging"
	"github.com/in-msgraph/in_msgraph/internal/metrics"
	"github.com/in-msgraph/in_msgraph/internal/records"
	"github.com/in-msgraph/in_msgraph/internal/state"
)

// startWith is rig.start with options of the test's own.
func (r *rig) startWith(o Options) {
	r.t.Helper()
	log := logging.New("test", logging.Debug)
	log.SetOutput(r.logs)
	o.Name, o.Now, o.Rand, o.Logger = "test", r.clk.Now, rand.New(rand.NewSource(1)), log
	if o.Budget == nil {
		o.Budget = r.budget
	}
	in, err := New(r.cfg, o)
	if err != nil {
		r.t.Fatal(err)
	}
	r.in = in
}

// failingOpen opens the state file with state.Open once fail is false,
// and until then fails as state.Open does when the system refuses.
type failingOpen struct {
	errno syscall.Errno
	fail  bool
	calls int
}

func (f *failingOpen) open(path string) (*state.DB, error) {
	f.calls++
	if f.fail {
		return nil, &state.OpenError{Path: path, Err: &os.PathError{Op: "open", Path: path, Err: f.errno}}
	}
	return state.Open(path)
}

// TestSystemErrorsNeverMoveTheStateFile: a state file the system will not
// open for now (open files, memory, I/O, space, permissions) is kept as it
// is; nothing is delivered until it opens, and then delivery carries on
// from it as if it had opened at start: nothing delivered before is
// delivered again and nothing is missed.
func TestSystemErrorsNeverMoveTheStateFile(t *testing.T) {
	for _, tc := range []struct {
		errno syscall.Errno
		fix   string
	}{
		{syscall.EMFILE, "open-files limit"},
		{syscall.ENOMEM, "more memory"},
		{syscall.EIO, "I/O error"},
		{syscall.ENOSPC, "free space"},
		{syscall.EACCES, "read and write the file"},
	} {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			r := newRig(t, graphsim.Options{Seed: 30}, "page_size", "20")
			addEvents(r.sim, 31, r.clk.Now().Add(-5*time.Minute), r.clk.Now(), 30, fixedLateness(0))
			r.run(30*time.Second, time.Second)
			if len(r.events) != 30 {
				t.Fatalf("first run: %d events", len(r.events))
			}
			r.in.Close()
			before, _ := os.ReadFile(r.cfg.DB)

			addEvents(r.sim, 32, r.clk.Now(), r.clk.Now().Add(2*time.Minute), 30, fixedLateness(0))
			f := &failingOpen{errno: tc.errno, fail: true}
			r.startWith(Options{OpenState: f.open})
			r.run(3*time.Minute, time.Second)
			if len(r.events) != 30 {
				t.Fatalf("delivered %d events while the state file did not open", len(r.events)-30)
			}
			se := stateErrors(r)
			if len(se) != 1 || se[0].Fields["status"] != "firing" {
				t.Fatalf("state_error records: %v", se)
			}
			msg := se[0].Fields["message"].(string)
			for _, want := range []string{"db " + r.cfg.DB + " cannot be opened", tc.errno.Error(), tc.fix, "no events are delivered until it opens"} {
				if !strings.Contains(msg, want) {
					t.Errorf("state_error message lacks %q: %s", want, msg)
				}
			}
			if f.calls < 3 {
				t.Fatalf("opened %d times in 3 minutes", f.calls)
			}
			if kept, _ := filepath.Glob(r.cfg.DB + ".unreadable-*"); len(kept) != 0 {
				t.Fatalf("the file was moved aside: %v", kept)
			}
			if after, _ := os.ReadFile(r.cfg.DB); !bytes.Equal(before, after) {
				t.Fatal("the state file changed while it could not be opened")
			}

			f.fail = false
			r.run(2*time.Minute, time.Second)
			se = stateErrors(r)
			if len(se) != 2 || se[1].Fields["status"] != "resolved" {
				t.Fatalf("after the file opened: %v", se)
			}
			if delivered, dups, missed := r.verify(0); delivered != 60 || dups != 0 || missed != 0 {
				t.Fatalf("after the file opened: %d delivered, %d duplicates, %d missed", delivered, dups, missed)
			}
		})
	}
}

// TestStateFileThatCannotBeOpenedIsRetried: a db under a plain file is
// reported with the fix, nothing is delivered and nothing is created; once
// the path is fixed the new file opens and the first query reaches as far
// back as it would have at start.
func TestStateFileThatCannotBeOpenedIsRetried(t *testing.T) {
	plain := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(plain, []byte("x"), 0o600)
	db := filepath.Join(plain, "state.db")
	r := newRig(t, graphsim.Options{Seed: 18}, "db", db, "initial_lookback", "10m")
	addEvents(r.sim, 19, r.clk.Now().Add(-9*time.Minute), r.clk.Now().Add(10*time.Minute), 40, fixedLateness(0))
	r.run(10*time.Minute, time.Second)
	se := stateErrors(r)
	if len(se) != 1 || se[0].Fields["status"] != "firing" || len(r.events) != 0 {
		t.Fatalf("state_error %v, %d events", se, len(r.events))
	}
	msg := se[0].Fields["message"].(string)
	for _, want := range []string{"db " + db + " cannot be opened", "not a directory", "set db to a path whose parents are directories"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
	os.Remove(plain)
	os.Mkdir(plain, 0o700)
	r.run(2*time.Minute, time.Second)
	if se := stateErrors(r); len(se) != 2 || se[1].Fields["status"] != "resolved" || !strings.Contains(se[1].Fields["message"].(string), "opened") {
		t.Fatalf("after the path was fixed: %v", se)
	}
	if len(r.events) != 40 || len(r.byID) != 40 {
		t.Fatalf("after the path was fixed: %d events (%d ids), want all 40 since initial_lookback before the start", len(r.events), len(r.byID))
	}
	if _, err := os.Stat(db); err != nil {
		t.Fatal(err)
	}
}

// fullDisk fails commits as bbolt does on a full volume, while full is set.
type fullDisk struct {
	store
	full bool
}

func (f *fullDisk) Commit(add []state.Entry, del []records.Key, sched []byte) error {
	if f.full {
		return fmt.Errorf("db state.db: commit failed: %w", &os.PathError{Op: "write", Path: "state.db", Err: syscall.ENOSPC})
	}
	return f.store.Commit(add, del, sched)
}

// TestUnsavedIdsAreBounded: while commits fail, at most the limit of ids
// wait in memory; then no page is read until the file takes them, and
// reading resumes by itself once it does.
func TestUnsavedIdsAreBounded(t *testing.T) {
	r := newRig(t, graphsim.Options{Seed: 22}, "page_size", "5")
	r.in.st.maxUnsaved = 20
	flaky := &fullDisk{store: r.in.db, full: true}
	r.in.db = flaky
	addEvents(r.sim, 23, r.clk.Now().Add(-5*time.Minute), r.clk.Now(), 100, fixedLateness(0))
	r.run(time.Minute, time.Second)
	if len(r.events) != 20 || len(r.in.unsavedAdd) != 20 {
		t.Fatalf("while the disk is full: %d delivered, %d unsaved, want the limit of 20", len(r.events), len(r.in.unsavedAdd))
	}
	requests := r.in.Stats.Requests
	r.run(10*time.Minute, time.Second)
	if len(r.events) != 20 || r.in.Stats.Requests != requests {
		t.Fatalf("reading went on at the limit: %d delivered, %d requests", len(r.events), r.in.Stats.Requests-requests)
	}
	se := stateErrors(r)
	if len(se) != 2 || se[0].Fields["status"] != "firing" || se[1].Fields["status"] != "event" ||
		!strings.Contains(se[1].Fields["message"].(string), "no new events are read until the file accepts them") ||
		!strings.Contains(se[1].Fields["message"].(string), "free space") {
		t.Fatalf("state_error records: %v", se)
	}
	flaky.full = false
	r.run(2*time.Minute, time.Second)
	se = stateErrors(r)
	if len(se) != 3 || se[2].Fields["status"] != "resolved" || !strings.Contains(se[2].Fields["message"].(string), "new events are read again") {
		t.Fatalf("no recovery: %v", se)
	}
	if len(r.events) != 100 || len(r.in.unsavedAdd) != 0 {
		t.Fatalf("after recovery: %d delivered, %d unsaved", len(r.events), len(r.in.unsavedAdd))
	}
	r.restart()
	r.run(2*time.Minute, time.Second)
	if _, dups, missed := r.verify(0); dups != 0 || missed != 0 {
		t.Fatalf("after restart: %d duplicates, %d missed", dups, missed)
	}
}

// closeCounter records CloseIdleConnections.
type closeCounter struct {
	http.RoundTripper
	closed int
}

func (c *closeCounter) CloseIdleConnections() { c.closed++ }

// TestFailedNewReleasesEverything: a New that fails after metrics_listen
// was bound releases the listener and the connections; the next New on
// the same address and file works.
func TestFailedNewReleasesEverything(t *testing.T) {
	const addr = "127.0.0.1:0"
	r := newRig(t, graphsim.Options{Seed: 24})
	r.in.Close()
	r.cfg.MetricsListen = addr
	held, err := state.Open(r.cfg.DB)
	if err != nil {
		t.Fatal(err)
	}
	tr := &closeCounter{RoundTripper: http.DefaultTransport}
	in, err := New(r.cfg, Options{Name: "test", Now: r.clk.Now, Transport: tr, Budget: r.budget, Logger: logging.New("test", logging.Error)})
	if !errors.Is(err, state.ErrInUse) || in != nil {
		t.Fatalf("New on a file in use: %v", err)
	}
	if a := metrics.Addr(addr); a != "" {
		t.Fatalf("the failed input still serves metrics on %s", a)
	}
	if tr.closed == 0 {
		t.Fatal("the failed input kept its connections")
	}
	held.Close()
	r.start()
	if metrics.Addr(addr) == "" {
		t.Fatal("the next input does not serve metrics")
	}
	r.in.Close()
	if metrics.Addr(addr) != "" {
		t.Fatal("the listener outlived its input")
	}
}

// TestCloseLeavesTheBudget: a closed input is no longer waiting in the
// budget, which lives as long as the process (a reload starts new inputs
// beside it).
func TestCloseLeavesTheBudget(t *testing.T) {
	r := newRig(t, graphsim.Options{Seed: 25})
	for range budget.Requests {
		r.budget.TryTake(r.clk.Now(), "another input")
	}
	r.tick(time.Second)
	if n := r.budget.Waiting(); n != 1 {
		t.Fatalf("%d waiting before Close, want the input", n)
	}
	r.in.Close()
	if n := r.budget.Waiting(); n != 0 {
		t.Fatalf("%d waiting after Close", n)
	}
}

// TestRestartAfterABurstIsNotThrottled: the first requests after a restart
// respect Graph's budget of 5 requests per 10 s, although the new process
// starts with a new budget: the state file keeps the recent requests. A
// stop that did not close the input (a crash) waits a whole window.
func TestRestartAfterABurstIsNotThrottled(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := "restart"
		if crash {
			name = "crash"
		}
		t.Run(name, func(t *testing.T) {
			r := newRig(t, graphsim.Options{Seed: 26, Throttle: true}, "page_size", "10")
			addEvents(r.sim, 27, r.clk.Now().Add(-10*time.Minute), r.clk.Now(), 400, fixedLateness(0))
			// Two windows' worth: 5 requests at the start of each 10 s,
			// the last ones 2 s before the restart.
			r.run(12*time.Second, 100*time.Millisecond)
			var copied []byte
			if crash {
				// Requests that fail commit nothing: the file as a crash
				// leaves it does not know of the one at the start of the
				// next window.
				r.sim.SetFaults(graphsim.Faults{Rate500: 1})
				r.run(8600*time.Millisecond, 100*time.Millisecond)
				r.sim.SetFaults(graphsim.Faults{})
				copied, _ = os.ReadFile(r.cfg.DB)
			}
			requests := r.in.Stats.Requests
			if requests < 8 || r.sim.Stats().Throttled != 0 {
				t.Fatalf("the burst: %d requests, %d answered 429", requests, r.sim.Stats().Throttled)
			}
			r.in.Close()
			if crash {
				os.WriteFile(r.cfg.DB, copied, 0o600)
			}
			r.budget = budget.New(budget.Requests, budget.Window) // a new process
			r.start()
			r.run(40*time.Second, 100*time.Millisecond)
			if n := r.sim.Stats().Throttled; n != 0 {
				t.Fatalf("%d requests after the restart were answered 429", n)
			}
			if r.in.Stats.Requests < 15 {
				t.Fatalf("%d requests in 40 s after the restart", r.in.Stats.Requests)
			}
			r.run(10*time.Minute, time.Second)
			if delivered, dups, missed := r.verify(0); delivered != 400 || dups != 0 || missed != 0 || r.sim.Stats().Throttled != 0 {
				t.Fatalf("%d delivered, %d duplicates, %d missed, %d answered 429", delivered, dups, missed, r.sim.Stats().Throttled)
			}
		})
	}
}
