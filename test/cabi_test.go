package test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/records"
)

// cHost compiles test/cabi/host.c once per test. With exports, the host
// exports its flb_input_log_append and flb_input_name, as Fluent Bit does,
// and the plugin appends its batches itself; without, the host appends
// what the collect callback returns, as Fluent Bit's Go proxy does.
// defines are passed to the compiler (-DSINCE_403: the host exports the
// functions that came with Fluent Bit 4.0.3 too).
func cHost(t *testing.T, exports bool, defines ...string) string {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Fatalf("the C-ABI test needs a C compiler (%s): %v", cc, err)
	}
	bin := filepath.Join(t.TempDir(), "host")
	args := []string{"-Wall", "-Wextra", "-Werror", "-o", bin}
	if exports {
		args = append(args, "-rdynamic")
	}
	args = append(args, defines...)
	args = append(args, filepath.Join(repoRoot(), "test", "cabi", "host.c"), "-ldl", "-lpthread")
	out, err := exec.Command(cc, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("compiling the C host: %v\n%s", err, out)
	}
	return bin
}

func instanceArgs(sim *graphsim.Server, db string, extra ...string) []string {
	return append([]string{
		"tenant_id=" + graphsim.DefaultTenantID, "client_id=" + graphsim.DefaultClientID,
		"client_secret=" + graphsim.DefaultClientSecret, "authority_host=" + sim.URL(), "graph_host=" + sim.URL(),
		"poll_interval=2s", "lookback=5s", "reconcile=20s", "initial_lookback=10m", "db=" + db,
	}, extra...)
}

// setArgs replaces the key=value pairs of args whose keys kv names.
func setArgs(args []string, kv ...string) []string {
	out := slices.Clone(args)
	for _, p := range kv {
		key, _, _ := strings.Cut(p, "=")
		i := slices.IndexFunc(out, func(a string) bool { return strings.HasPrefix(a, key+"=") })
		if i < 0 {
			out = append(out, p)
		} else {
			out[i] = p
		}
	}
	return out
}

func runHost(t *testing.T, env []string, args ...string) (map[uint32][]records.Event, string) {
	t.Helper()
	return runHostFor(t, cHost(t, false), 8, env, args...)
}

// runHostFor runs the C host bin for seconds.
func runHostFor(t *testing.T, bin string, seconds int, env []string, args ...string) (map[uint32][]records.Event, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{plugin(t), strconv.Itoa(seconds)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("C host: %v\n%s", err, stderr.String())
	}
	return frames(t, &stdout), stderr.String()
}

func wantLines(t *testing.T, log string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(log, l) {
			t.Errorf("C host output lacks %q:\n%s", l, log)
		}
	}
}

func checkDelivered(t *testing.T, sim *graphsim.Server, got []records.Event) {
	t.Helper()
	want := map[string]graphsim.Event{}
	for _, e := range sim.Events() {
		want[e.ID] = e
	}
	seen := map[string]int{}
	for _, e := range got {
		if _, health := e.Fields["msgraph_warning"]; health {
			continue
		}
		id, _ := e.Fields["id"].(string)
		seen[id]++
		w, ok := want[id]
		switch {
		case !ok:
			t.Errorf("unknown id %q", id)
		case !e.Time.Equal(w.Created):
			t.Errorf("%s: time %v, want %v", id, e.Time, w.Created)
		case e.Fields["createdDateTime"] != w.Created.UTC().Format(graphsim.DateTimeLayout):
			t.Errorf("%s: createdDateTime %v", id, e.Fields["createdDateTime"])
		}
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("%s delivered %d times", id, seen[id])
		}
	}
}

func TestCABI(t *testing.T) {
	sim := liveSim(t, graphsim.Options{Seed: 11}, 500, 5*60e9)
	dir := t.TempDir()
	args := instanceArgs(sim, filepath.Join(dir, "a.db"))
	args = append(args, "--")
	args = append(args, instanceArgs(sim, filepath.Join(dir, "b.db"), "page_size=200")...)
	args = append(args, "--", "tenant_id=x", "client_id=y", "client_secret=z", "page_size=5000")
	batches, log := runHost(t, nil, args...)
	wantLines(t, log,
		"registered name=msgraph type=1 proxy=11",
		// The plugin logs through Fluent Bit's logger, which filters by
		// level: info lines arrive, debug lines do not.
		"flb-log level=3 [input:msgraph:msgraph.0] configuration: source=signins",
		"init 0 ret=1 remote_context=set",
		"init 1 ret=1 remote_context=set",
		`config: page_size = "5000" is invalid: a whole number from 1 to 1000`,
		"init 2 ret=0 remote_context=null",
		"paused batches=0",
		"exit 0 ret=1",
		"after exit size=0",
		"done",
	)
	if strings.Contains(log, "appended ") {
		t.Error("the plugin appended batches itself to a Fluent Bit that exports no flb_input_log_append")
	}
	// Each instance keeps its own de-dup state: both deliver every event
	// once, the second in pages of 200.
	checkDelivered(t, sim, batches[0])
	checkDelivered(t, sim, batches[1])
	if strings.Contains(log, "flb-log level=4") {
		t.Error("a debug line passed an info log level")
	}
	if len(batches[2]) != 0 {
		t.Fatal("an instance that failed to initialise delivered")
	}
	if t.Failed() {
		t.Log(log)
	}
}

// TestCABILegacyFluentBit lays the structures out as Fluent Bit before 4.1
// does, with no per-instance callbacks, where one msgraph input runs.
// Before 4.0.3 (no flb_engine_stop_ingestion exported) Fluent Bit runs on
// without an input whose init failed and crashes at exit, so the plugin
// ends the process itself with status 255 when a second input is refused;
// so it does when Fluent Bit exports nothing and the release cannot be
// told. From 4.0.3 the refusal is returned and Fluent Bit stops by itself.
func TestCABILegacyFluentBit(t *testing.T) {
	sim := liveSim(t, graphsim.Options{Seed: 12}, 300, 5*60e9)
	for _, tt := range []struct {
		name    string
		exports bool
		defines []string
		warn    []string // logged at the first init
		exit    string   // the plugin ends the process on a second input, saying so
	}{
		{"2.1 to 4.0.2", true, nil, []string{"this Fluent Bit is older than 4.0.3: at a stop"}, "Fluent Bit older than 4.0.3 runs on without it"},
		{"4.0.3 to 4.0.x", true, []string{"-DSINCE_403"}, nil, ""},
		{"no symbols exported", false, nil, []string{"does not export flb_input_log_append", "cannot tell whether it is 4.0.3 or later"}, "cannot tell its release"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bin := cHost(t, tt.exports, tt.defines...)
			dir := t.TempDir()
			one := instanceArgs(sim, filepath.Join(dir, "a.db"))
			two := append(append(slices.Clone(one), "--"), instanceArgs(sim, filepath.Join(dir, "b.db"))...)

			// Two inputs: the second is refused.
			batches, log, status := runHostStatus(t, bin, 8, []string{"LEGACY=1"}, two...)
			wantLines(t, log, "init 0 ret=1 remote_context=null", "cannot run more than one msgraph input")
			if tt.exit != "" {
				wantLines(t, log, tt.exit, "exit status 255",
					"the plugin stops Fluent Bit (exit status 255): this Fluent Bit is older than 4.1 and cannot run more than one msgraph input")
				if status != 255 || strings.Contains(log, "init 1 ret=") || strings.Contains(log, "done") {
					t.Errorf("exit status %d: the process did not end inside the second init", status)
				}
				if len(batches[0]) != 0 {
					t.Errorf("the first input delivered %d records before the process ended", len(batches[0]))
				}
			} else {
				wantLines(t, log, "init 1 ret=0", "paused batches=0", "done")
				if status != 0 || strings.Contains(log, "the plugin stops Fluent Bit") {
					t.Errorf("exit status %d: the plugin ended a Fluent Bit that stops by itself", status)
				}
				checkDelivered(t, sim, batches[0])
			}

			// One input runs, and warns of what this Fluent Bit drops.
			batches, log, status = runHostStatus(t, bin, 8, []string{"LEGACY=1"}, setArgs(one, "db="+filepath.Join(dir, "c.db"))...)
			wantLines(t, log, "init 0 ret=1 remote_context=null", "paused batches=0", "done")
			wantLines(t, log, tt.warn...)
			if status != 0 {
				t.Errorf("exit status %d", status)
			}
			if len(tt.warn) == 0 && strings.Contains(log, "4.0.3 or later") {
				t.Error("a Fluent Bit that flushes at a stop was warned that it does not")
			}
			for _, w := range tt.warn {
				if n := strings.Count(log, w); n != 1 {
					t.Errorf("%q logged %d times", w, n)
				}
			}
			checkDelivered(t, sim, batches[0])
			if t.Failed() {
				t.Log(log)
			}
		})
	}
}

// runHostStatus runs the C host bin for seconds and returns its exit status
// as well.
func runHostStatus(t *testing.T, bin string, seconds int, env []string, args ...string) (map[uint32][]records.Event, string, int) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{plugin(t), strconv.Itoa(seconds)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("C host: %v\n%s", err, stderr.String())
	}
	return frames(t, &stdout), stderr.String(), cmd.ProcessState.ExitCode()
}

// TestCABIThreads runs three inputs as Fluent Bit 4.1+ does, each on a
// thread of its own, with a Fluent Bit that exports flb_input_log_append
// and refuses every fourth batch (a full ring buffer). Input 0 is paused
// while 1 delivers, then 1 is paused twice and 0 resumed: a paused input
// delivers nothing. The inputs are stopped (each exit on its thread,
// latest first, while the others keep collecting) in the middle of their
// backlog and started again on the same state files: each delivers every
// event exactly once over both runs, refused batches included.
func TestCABIThreads(t *testing.T) {
	// One tenant (by three names) per input, so that each has its own
	// share of Graph's budget.
	tenants := []string{graphsim.DefaultTenantID, "contoso.onmicrosoft.com", "fabrikam.onmicrosoft.com"}
	sim := liveSim(t, graphsim.Options{Seed: 13, TenantAliases: tenants[1:]}, 100, 5*60e9)
	dir := t.TempDir()
	var args []string
	for i, db := range []string{"a.db", "b.db", "c.db"} {
		if i > 0 {
			args = append(args, "--")
		}
		extra := []string{"page_size=10"}
		if i == 1 {
			extra = append(extra, "alias=eu-signins")
		}
		in := setArgs(instanceArgs(sim, filepath.Join(dir, db), extra...),
			"tenant_id="+tenants[i], "poll_interval=5s", "lookback=12s", "reconcile=40s")
		args = append(args, in...)
	}
	bin := cHost(t, true)
	env := []string{"THREADS=1", "REFUSE=4"}
	first, log1 := runHostFor(t, bin, 4, env, args...)
	wantLines(t, log1,
		"init 0 ret=1 remote_context=set",
		"init 2 ret=1 remote_context=set",
		"paused batches inst0=0 inst1=0",
		// Fluent Bit's name for the instance, its alias here.
		"flb-log level=3 [input:msgraph:eu-signins] configuration: source=signins",
		"exit 2 ret=1", "exit 1 ret=1", "exit 0 ret=1",
		"done",
	)
	for i := range 3 {
		if len(first[uint32(i)]) == 0 || len(first[uint32(i)]) >= 100 {
			t.Fatalf("input %d delivered %d records in the first run: the stop must come mid-backlog", i, len(first[uint32(i)]))
		}
	}
	second, log2 := runHostFor(t, bin, 30, env, args...)
	for i := range 3 {
		all := append(first[uint32(i)], second[uint32(i)]...)
		checkDelivered(t, sim, all)
		refused := false
		for _, e := range all {
			if e.Fields["msgraph_warning"] == "ingest_refused" {
				refused = true
			}
		}
		if !refused {
			t.Errorf("input %d reported no ingest_refused", i)
		}
	}
	if !strings.Contains(log1+log2, "refused=") || strings.Contains(log1+log2, "refused=0\n") {
		t.Error("the host refused no batch")
	}
	if t.Failed() {
		t.Log(log1, log2)
	}
}
