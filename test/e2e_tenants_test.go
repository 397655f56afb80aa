package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/budget"
	"github.com/in-msgraph/in_msgraph/internal/config"
	"github.com/in-msgraph/in_msgraph/internal/graphsim"
)

func manyTenantID(i int) string { return fmt.Sprintf("%08x-bbbb-4ccc-8ddd-%012x", 0x5e000000+i, i) }

// procStatus reads VmHWM (peak RSS, kB) and Threads of a process.
func procStatus(pid int) (peakKB, threads int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmHWM:":
			peakKB, _ = strconv.Atoi(f[1])
		case "Threads:":
			threads, _ = strconv.Atoi(f[1])
		}
	}
	return peakKB, threads
}

// TestEndToEndManyTenants runs a real Fluent Bit with one msgraph input
// collecting 100 tenants from a tenants_file, behind one application,
// under Graph's per-tenant and per-application limits (their windows
// shortened tenfold on both sides). While it runs, a tenant is added to
// the file and one is removed. Every listed tenant's events reach the
// forward receiver exactly once, each record's last key the tenant as
// listed; the removed tenant's events after its removal do not; the added
// one's do. Fluent Bit's peak RSS and threads are reported.
func TestEndToEndManyTenants(t *testing.T) {
	bin := fluentBit(t)
	so := plugin(t)
	const n = 100
	var ts []graphsim.Tenant
	for i := range n + 1 {
		ts = append(ts, graphsim.Tenant{ID: manyTenantID(i), Aliases: []string{fmt.Sprintf("tenant%d.example.com", i)}})
	}
	sim := graphsim.Start(t, graphsim.Options{Seed: 41, Throttle: true, ThrottleWindowScale: 0.1, Tenants: ts})
	recv := startReceiver(t)
	dir := t.TempDir()
	list := filepath.Join(dir, "tenants.txt")
	writeList := func(skip int, upto int) {
		var b strings.Builder
		b.WriteString("# customers of one application\n")
		for i := range upto {
			if i == skip {
				continue
			}
			if i%10 == 3 {
				fmt.Fprintf(&b, "tenant%d.example.com\n", i) // by domain
			} else {
				fmt.Fprintf(&b, "%s\n", manyTenantID(i))
			}
		}
		writeFile(t, list, b.String())
	}
	listed := func(i int) string {
		if i%10 == 3 {
			return fmt.Sprintf("tenant%d.example.com", i)
		}
		return manyTenantID(i)
	}
	writeList(-1, n)
	// The example list is a valid tenants_file.
	if ex, err := config.ReadTenants(filepath.Join(repoRoot(), "examples", "tenants.txt"), false); err != nil || len(ex) != 3 {
		t.Fatalf("examples/tenants.txt: %v (%d tenants)", err, len(ex))
	}
	// Ten sign-ins per tenant from the last minute, visible now, and more
	// while Fluent Bit runs.
	add := func(round, per int) {
		now := time.Now()
		var evs []graphsim.Event
		for i := range n + 1 {
			for k := range per {
				evs = append(evs, graphsim.Event{ID: fmt.Sprintf("r%d-t%d-%d", round, i, k), Tenant: manyTenantID(i),
					Created: now.Add(-time.Duration(k+1) * time.Second).UTC().Truncate(100 * time.Nanosecond), Visible: now})
			}
		}
		sim.Add(evs...)
	}
	add(0, 10)
	conf := writeFile(t, filepath.Join(dir, "fluent-bit.yaml"), fmt.Sprintf(`service:
  flush: 1
  grace: 5
  log_level: info
plugins:
  - %s
pipeline:
  inputs:
    - name: msgraph
      tag: entra.signins
      tenants_file: %s
      tenants_refresh: 10s
      client_id: %s
      client_secret: %s
      authority_host: %s
      graph_host: %s
      poll_interval: 1s
      lookback: 8s
      reconcile: 30s
      initial_lookback: 5m
      db: %s
  outputs:
    - name: forward
      match: '*'
      host: 127.0.0.1
      port: %d
`, so, list, graphsim.DefaultClientID, graphsim.DefaultClientSecret, sim.URL(), sim.URL(), filepath.Join(dir, "state.db"), recv.port()))
	fb := startFluentBitEnv(t, bin, []string{budget.ScaleEnv + "=0.1"}, "-c", conf)
	fb.run(t, 15*time.Second)
	// Tenant 5 leaves, tenant 100 joins; new events for all.
	const gone = 5
	writeList(gone, n+1)
	fb.run(t, 12*time.Second) // a tenants_refresh
	removedAt := time.Now()
	add(1, 3)
	fb.run(t, 20*time.Second)
	peakKB, threads := procStatus(fb.cmd.Process.Pid)
	fb.stop(t)
	got, errs := recv.snapshot()
	for _, err := range errs {
		t.Errorf("forward receiver: %v", err)
	}
	count := map[string]int{}
	tenantOf := map[string]string{}
	health := map[string]int{}
	for _, e := range got {
		if code, ok := e.Fields["msgraph_warning"].(string); ok {
			health[code+"/"+fmt.Sprint(e.Fields["status"])]++
			continue
		}
		id, _ := e.Fields["id"].(string)
		count[id]++
		tenantOf[id], _ = e.Fields["msgraph_tenant"].(string)
	}
	missed, dups, wrong := 0, 0, 0
	for i := range n + 1 {
		for round, per := range []int{10, 3} {
			for k := range per {
				id := fmt.Sprintf("r%d-t%d-%d", round, i, k)
				due := i < n && !(i == gone && round == 1) || i == n && round == 1 || i == n && round == 0
				switch c := count[id]; {
				case !due && c > 0:
					t.Errorf("%s delivered although its tenant was not listed (removed at %s)", id, removedAt.Format(time.TimeOnly))
				case due && c == 0:
					missed++
				case c > 1:
					dups += c - 1
				}
				if count[id] > 0 && tenantOf[id] != listed(i) {
					wrong++
					if wrong < 4 {
						t.Errorf("%s delivered with msgraph_tenant %q, want %q", id, tenantOf[id], listed(i))
					}
				}
			}
		}
	}
	st := sim.Stats()
	t.Logf("%d records from %d tenants (one added, one removed while running): %d missed, %d duplicates, %d with a wrong tenant; health %v; Graph: %d requests (%d throttled, %d by the application's limit), %d tokens; Fluent Bit peak RSS %d MB, %d threads",
		len(count), len(st.ByTenant), missed, dups, wrong, health, st.ByPath["/v1.0/auditLogs/signIns"], st.Throttled, st.ThrottledApp, st.Tokens, peakKB/1024, threads)
	if missed > 0 || dups > 0 {
		t.Errorf("not exactly once: %d missed, %d duplicates", missed, dups)
	}
	if st.ThrottledApp > 0 {
		t.Errorf("%d requests refused by the application's limit: app_budget did not hold", st.ThrottledApp)
	}
	if t.Failed() {
		t.Log(fb.out.String())
	}
}

// TestBadConfigManyTenants: a multi-tenant configuration that cannot work
// stops Fluent Bit at start with a line naming the key and the cause.
func TestBadConfigManyTenants(t *testing.T) {
	bin := fluentBit(t)
	so := plugin(t)
	dir := t.TempDir()
	dup := writeFile(t, filepath.Join(dir, "dup.txt"), "contoso.onmicrosoft.com\n# again\nCONTOSO.onmicrosoft.com\n")
	empty := writeFile(t, filepath.Join(dir, "empty.txt"), "# nobody yet\n\n")
	missing := filepath.Join(dir, "missing.txt")
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"tenant_id and tenants", []string{"-p", "tenant_id=contoso.onmicrosoft.com", "-p", "tenants=fabrikam.com"}, []string{"tenant_id", "tenants"}},
		{"missing file", []string{"-p", "tenants_file=" + missing}, []string{"tenants_file", missing}},
		{"empty file", []string{"-p", "tenants_file=" + empty}, []string{"tenants_file", empty, "no tenant"}},
		{"duplicate", []string{"-p", "tenants_file=" + dup}, []string{dup, "lines 1 and 3", "list each tenant once"}},
		{"bad shard", []string{"-p", "tenants=a.example.com,b.example.com", "-p", "shard=2/2"}, []string{"shard", "2/2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"-e", so, "-i", "msgraph", "-p", "client_id=c", "-p", "client_secret=s3cr3t-value-long"}, c.args...)
			args = append(args, "-o", "null")
			out := mustFailAtStart(t, exec.Command(bin, args...))
			for _, w := range c.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), "s3cr3t-value-long") {
				t.Error("the secret was printed")
			}
		})
	}
}
