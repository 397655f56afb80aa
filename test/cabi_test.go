package test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/records"
)

// cHost compiles test/cabi/host.c once per test.
func cHost(t *testing.T) string {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Fatalf("the C-ABI test needs a C compiler (%s): %v", cc, err)
	}
	bin := filepath.Join(t.TempDir(), "host")
	out, err := exec.Command(cc, "-Wall", "-Wextra", "-Werror", "-o", bin, filepath.Join(repoRoot(), "test", "cabi", "host.c"), "-ldl").CombinedOutput()
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

func runHost(t *testing.T, env []string, args ...string) (map[uint32][]records.Event, string) {
	t.Helper()
	cmd := exec.Command(cHost(t), append([]string{plugin(t), "8"}, args...)...)
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

func TestCABILegacyFluentBit(t *testing.T) {
	sim := liveSim(t, graphsim.Options{Seed: 12}, 300, 5*60e9)
	dir := t.TempDir()
	args := instanceArgs(sim, filepath.Join(dir, "a.db"))
	args = append(args, "--")
	args = append(args, instanceArgs(sim, filepath.Join(dir, "b.db"))...)
	batches, log := runHost(t, []string{"LEGACY=1"}, args...)
	wantLines(t, log,
		"init 0 ret=1 remote_context=null",
		"cannot run more than one msgraph input",
		"init 1 ret=0",
		"paused batches=0",
		"done",
	)
	checkDelivered(t, sim, batches[0])
}
