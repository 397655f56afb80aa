package tenants

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/config"
	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/input"
	"github.com/in-msgraph/in_msgraph/internal/logging"
	"github.com/in-msgraph/in_msgraph/internal/metrics"
	"github.com/in-msgraph/in_msgraph/internal/records"
)

type rig struct {
	t    *testing.T
	clk  *graphsim.Clock
	sim  *graphsim.Server
	list string
	db   string
	f    *Input
	seen map[string][]string // id -> tenants it was delivered with
	warn map[string]int      // health codes
	last map[string]records.Event
}

func newRig(t *testing.T, tenants int) *rig {
	clk := graphsim.NewClock(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
	var ts []graphsim.Tenant
	for i := range tenants {
		ts = append(ts, graphsim.Tenant{ID: tenantID(i), Aliases: []string{fmt.Sprintf("t%d.example.com", i)}})
	}
	dir := t.TempDir()
	r := &rig{t: t, clk: clk, sim: graphsim.Start(t, graphsim.Options{Now: clk.Now, Throttle: true, Tenants: ts}),
		list: filepath.Join(dir, "tenants"), db: filepath.Join(dir, "state.db"),
		seen: map[string][]string{}, warn: map[string]int{}, last: map[string]records.Event{}}
	t.Cleanup(func() {
		if r.f != nil {
			r.f.Close()
		}
	})
	return r
}

func (r *rig) writeList(lines ...string) {
	r.t.Helper()
	if err := os.WriteFile(r.list, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) start(extra ...string) {
	r.t.Helper()
	props := config.MapGetter{
		"tenants_file": r.list, "tenants_refresh": "10s", "client_id": graphsim.DefaultClientID, "client_secret": graphsim.DefaultClientSecret,
		"authority_host": r.sim.URL(), "graph_host": r.sim.URL(), "db": r.db, "initial_lookback": "1h",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		props[extra[i]] = extra[i+1]
	}
	cfg, err := config.Parse(props)
	if err != nil {
		r.t.Fatal(err)
	}
	log := logging.New("many", logging.Error)
	log.SetOutput(testWriter{T: r.t})
	f, err := New(cfg, Options{Sync: true, Instance: input.Options{Name: "many", Now: r.clk.Now, Logger: log}})
	if err != nil {
		r.t.Fatal(err)
	}
	r.f = f
}

// run collects for d of simulated time, a collect a second.
func (r *rig) run(d time.Duration) {
	r.t.Helper()
	for end := r.clk.Now().Add(d); r.clk.Now().Before(end); r.clk.Advance(time.Second) {
		b := r.f.Collect()
		if b == nil {
			continue
		}
		evs, err := records.DecodeEvents(b)
		if err != nil {
			r.t.Fatal(err)
		}
		for _, e := range evs {
			if code, ok := e.Fields["msgraph_warning"].(string); ok {
				r.warn[code]++
				r.last[code] = e
				continue
			}
			id, _ := e.Fields["id"].(string)
			tn, _ := e.Fields["msgraph_tenant"].(string)
			r.seen[id] = append(r.seen[id], tn)
		}
		r.f.Commit()
	}
}

// add gives tenant i n sign-ins an hour old, visible now.
func (r *rig) add(i, n int, tag string) {
	now := r.clk.Now()
	for k := range n {
		r.sim.Add(graphsim.Event{ID: fmt.Sprintf("%s-%d-%d", tag, i, k), Tenant: tenantID(i), Created: now.Add(-time.Duration(k+1) * time.Second), Visible: now})
	}
}

// Tenants added to and removed from tenants_file while the input runs: each
// tenant's events once, with its tenant as listed; a removed tenant stops
// and, listed again, resumes from its state without a duplicate; a file
// that cannot be read keeps the last list, said once in a
// tenants_file_error record, cleared when it reads again.
func TestTenantsFileChangesWhileRunning(t *testing.T) {
	r := newRig(t, 4)
	r.writeList("# customers", tenantID(0), "t1.example.com  # by domain", "", tenantID(2))
	for i := range 4 {
		r.add(i, 3, "a")
	}
	r.start()
	r.run(2 * time.Minute)
	want := map[string]string{}
	for k := range 3 {
		want[fmt.Sprintf("a-0-%d", k)] = tenantID(0)
		want[fmt.Sprintf("a-1-%d", k)] = "t1.example.com"
		want[fmt.Sprintf("a-2-%d", k)] = tenantID(2)
	}
	check := func(stage string) {
		t.Helper()
		for id, tn := range want {
			if got := r.seen[id]; len(got) != 1 || got[0] != tn {
				t.Fatalf("%s: %s delivered with %v, want once with %s", stage, id, got, tn)
			}
		}
		for id := range r.seen {
			if _, ok := want[id]; !ok {
				t.Fatalf("%s: %s delivered, not expected", stage, id)
			}
		}
	}
	check("start")

	// Tenant 3 added, tenant 2 removed.
	r.writeList(tenantID(0), "t1.example.com", tenantID(3))
	r.run(time.Minute)
	for k := range 3 {
		want[fmt.Sprintf("a-3-%d", k)] = tenantID(3)
	}
	r.add(2, 2, "b") // while unlisted
	r.add(3, 1, "b")
	want["b-3-0"] = tenantID(3)
	r.run(2 * time.Minute)
	check("after the change")
	if got := r.f.Tenants(); len(got) != 3 || got[2] != tenantID(3) {
		t.Fatalf("tenants %v", got)
	}

	// Unreadable: the last list goes on, one record says so.
	os.Remove(r.list)
	r.add(0, 1, "c")
	want["c-0-0"] = tenantID(0)
	r.run(time.Minute)
	check("file gone")
	if r.warn["tenants_file_error"] != 1 || r.last["tenants_file_error"].Fields["status"] != "firing" || r.last["tenants_file_error"].Fields["tenant_id"] != "*" {
		t.Fatalf("tenants_file_error records %d, last %v", r.warn["tenants_file_error"], r.last["tenants_file_error"].Fields)
	}
	if msg, _ := r.last["tenants_file_error"].Fields["message"].(string); !strings.Contains(msg, r.list) || !strings.Contains(msg, "3 tenants of the last list") {
		t.Fatalf("message %q does not name the file and the list kept", msg)
	}

	// Back, with tenant 2 again: it resumes (its b events are new, its a
	// events are not delivered again).
	r.writeList(tenantID(0), "t1.example.com", tenantID(3), tenantID(2))
	r.run(2 * time.Minute)
	want["b-2-0"], want["b-2-1"] = tenantID(2), tenantID(2)
	check("tenant 2 listed again")
	if r.warn["tenants_file_error"] != 2 || r.last["tenants_file_error"].Fields["status"] != "resolved" {
		t.Fatalf("tenants_file_error not resolved: %d records, last %v", r.warn["tenants_file_error"], r.last["tenants_file_error"].Fields)
	}

	// A restart resumes every tenant from the one state file.
	r.f.Close()
	r.add(1, 1, "d")
	want["d-1-0"] = "t1.example.com"
	r.start()
	r.run(2 * time.Minute)
	check("after a restart")
}

// metrics_tenant_label on labels each tenant's series with its tenant;
// off, the input's series carry no tenant and count every tenant.
func TestMetricsTenantLabel(t *testing.T) {
	count := func(input string) (tenants map[string]bool, plain float64) {
		tenants = map[string]bool{}
		mfs, err := metrics.TenantRegistry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "msgraph_events_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, p := range m.GetLabel() {
					l[p.GetName()] = p.GetValue()
				}
				if l["input"] == input {
					tenants[l["tenant"]] = true
				}
			}
		}
		mfs, err = metrics.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "msgraph_events_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, p := range m.GetLabel() {
					if p.GetName() == "input" && p.GetValue() == input {
						plain += m.GetCounter().GetValue()
					}
				}
			}
		}
		return tenants, plain
	}
	for _, on := range []bool{true, false} {
		r := newRig(t, 3)
		r.writeList(tenantID(0), tenantID(1), tenantID(2))
		for i := range 3 {
			r.add(i, 2, "m")
		}
		r.start("metrics_tenant_label", map[bool]string{true: "on", false: "off"}[on])
		r.run(time.Minute)
		tenants, plain := count("many")
		if on && (len(tenants) != 3 || !tenants[tenantID(1)] || plain != 0) {
			t.Fatalf("label on: tenant series %v, unlabelled events %v", tenants, plain)
		}
		if !on && (len(tenants) != 0 || plain != 6) {
			t.Fatalf("label off: tenant series %v, unlabelled events %v (want 6)", tenants, plain)
		}
		r.f.Close()
		r.f = nil
		if tenants, plain := count("many"); len(tenants) != 0 || plain != 0 {
			t.Fatalf("series outlived the input: %v, %v", tenants, plain)
		}
	}
}
