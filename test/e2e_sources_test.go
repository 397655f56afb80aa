package test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/source"
)

// TestEndToEndAllSourcesInOneFluentBit runs one msgraph input per source,
// eight in one Fluent Bit, against one simulator with Graph's throttles
// on: each input has its own context, schedule, db and tag, the reporting
// sources share one app's budget, and every event and every update of
// every source arrives exactly once, under its own tag.
func TestEndToEndAllSourcesInOneFluentBit(t *testing.T) {
	bin := fluentBit(t)
	so := plugin(t)
	sim := graphsim.Start(t, graphsim.Options{Seed: 70, Throttle: true})
	recv := startReceiver(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(70, 1))
	now := time.Now()
	var inputs strings.Builder
	for _, p := range source.Profiles {
		if p.IsActivity() {
			continue // the Management Activity API has tests of its own
		}
		evs := graphsim.GenerateSource(rng, p.Name, now.Add(-3*time.Minute), now.Add(20*time.Second), 80, graphsim.RealisticLateness(time.Second))
		sim.Add(evs...)
		if graphsim.Versioned(p.Name) {
			// Updates happen while Fluent Bit runs, 45 s from now, so the
			// first version of each object is current long enough to be
			// read; an object updated twice before anyone looks shows only
			// its last state, in Graph as here.
			for i, e := range evs[:20] {
				at := now.Add(45*time.Second + time.Duration(i)*100*time.Millisecond)
				sim.Add(graphsim.Update(rng, e, at, func(*rand.Rand) time.Duration { return time.Second }))
			}
		}
		fmt.Fprintf(&inputs, `    - name: msgraph
      tag: entra.%s
      source: %s
      tenant_id: %s
      client_id: %s
      client_secret: %s
      authority_host: %s
      graph_host: %s
      poll_interval: 2s
      lookback: 10s
      reconcile: 40s
      initial_lookback: 10m
      db: %s
`, p.Name, p.Name, graphsim.DefaultTenantID, graphsim.DefaultClientID, graphsim.DefaultClientSecret, sim.URL(), sim.URL(), filepath.Join(dir, p.Name+".db"))
	}
	conf := writeFile(t, filepath.Join(dir, "fluent-bit.yaml"), fmt.Sprintf(`service:
  flush: 1
  grace: 3
plugins:
  - %s
pipeline:
  inputs:
%s  outputs:
    - name: forward
      match: '*'
      host: 127.0.0.1
      port: %d
`, so, inputs.String(), recv.port()))
	fb := startFluentBit(t, bin, "-c", conf)

	want := map[string]map[string]graphsim.Event{} // source -> version -> event
	deadline := time.Now().Add(150 * time.Second)
	for {
		fb.run(t, 2*time.Second)
		for _, e := range sim.Events() {
			src := e.Source
			if src == "" {
				src = "signins"
			}
			if want[src] == nil {
				want[src] = map[string]graphsim.Event{}
			}
			want[src][version(e.ID, e.Created)] = e
		}
		if complete(recv, want) || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(3 * time.Second) // a duplicate would show now
	fb.stop(t)

	got := recv.byTag()
	total := 0
	for _, p := range source.Profiles {
		if p.IsActivity() {
			continue // the Management Activity API has tests of its own
		}
		seen := map[string]int{}
		for _, e := range got["entra."+p.Name] {
			if _, health := e.Fields["msgraph_warning"]; health {
				continue
			}
			k := version(e.Fields["id"].(string), e.Time)
			seen[k]++
			if w, ok := want[p.Name][k]; !ok {
				t.Errorf("%s: delivered %s, which is not one of its events", p.Name, k)
			} else if seen[k] == 1 && !sameJSON(t, w.JSON, e.Fields) {
				t.Errorf("%s: %s differs from Graph's object", p.Name, k)
			}
		}
		dups, missed := 0, 0
		for k := range want[p.Name] {
			switch seen[k] {
			case 0:
				missed++
			case 1:
			default:
				dups += seen[k] - 1
			}
		}
		total += len(seen)
		t.Logf("%-26s %3d events and updates, %d duplicates, %d missed", p.Name, len(seen), dups, missed)
		if dups != 0 || missed != 0 {
			t.Errorf("%s: not exactly once", p.Name)
		}
	}
	st := sim.Stats()
	t.Logf("%d versions in all; Graph answered %v", total, st.ByStatus)
	if t.Failed() {
		t.Log(fb.out.String())
	}
}

func version(id string, at time.Time) string { return fmt.Sprintf("%s@%d", id, at.UnixNano()) }

func complete(recv *receiver, want map[string]map[string]graphsim.Event) bool {
	got := recv.byTag()
	for src, versions := range want {
		have := map[string]bool{}
		for _, e := range got["entra."+src] {
			if id, ok := e.Fields["id"].(string); ok {
				have[version(id, e.Time)] = true
			}
		}
		for k := range versions {
			if !have[k] {
				return false
			}
		}
	}
	return true
}
