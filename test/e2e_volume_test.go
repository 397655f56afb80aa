package test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/budget"
	"github.com/in-msgraph/in_msgraph/internal/graphsim"
)

// The volume run: a backlog of volumeBacklog sign-ins over volumeSpan,
// read in pages of volumePage, while volumeRate new sign-ins a second
// happen for volumeLive.
const (
	volumeBacklog = 20_000
	volumeSpan    = 4 * time.Hour
	volumePage    = 100
	volumeRate    = 2
	volumeLive    = 150 * time.Second
	// volumeLate scales Graph's reporting latency (P95 2 min, P99 5 min
	// and a tail to an hour in production) down: P95 3 s, P99 7.5 s,
	// stragglers up to 90 s, past the input's lookback of 1 minute.
	volumeLate = 1500 * time.Millisecond
	// Fluent Bit is stopped once volumeRestartAt backlog events have
	// arrived, or after volumeRestartBy.
	volumeRestartAt = volumeBacklog * 2 / 5
	volumeRestartBy = 2 * time.Minute
	// volumeScale compresses Graph's throttle windows, in the simulator and
	// in the plugin's pacing alike (budget.ScaleEnv): 5 requests per 2.5 s.
	volumeScale = 0.25
	// volumeLimit bounds the run: the backlog alone takes
	// volumeBacklog/volumePage requests, at least 100 s at that pace.
	volumeLimit = 6 * time.Minute
)

var stateLoaded = regexp.MustCompile(`state loaded from \S+: (\d+) delivered ids, (\d+) queries pending`)

// TestEndToEndVolumeBacklogAndRestart runs a real Fluent Bit through a
// backlog of 20 000 sign-ins spread over four hours, in pages of 100, with
// Graph's throttle enforced, while new sign-ins keep surfacing late and out
// of order; Fluent Bit is stopped with SIGTERM part-way through the backlog
// and a new one started on the same db. Every event must arrive exactly
// once, field for field, with its createdDateTime as the record time.
//
// Graph's throttle is enforced with its documented counts in windows a
// quarter as long, and the plugin's pacing is compressed alike
// (budget.ScaleEnv), so the run takes minutes, not a quarter of an hour,
// while every request still meets a throttle it must respect.
func TestEndToEndVolumeBacklogAndRestart(t *testing.T) {
	bin := fluentBit(t)
	so := plugin(t)
	const secret = "volume~Secret.Value-7"
	began := time.Now()
	sim := graphsim.Start(t, graphsim.Options{Seed: 31, Throttle: true, ThrottleWindowScale: volumeScale, ClientSecret: secret})
	scaleEnv := []string{fmt.Sprintf("%s=%g", budget.ScaleEnv, volumeScale)}
	rng := rand.New(rand.NewPCG(31, 32))
	late := graphsim.RealisticLateness(volumeLate)
	now := time.Now()
	sim.Add(graphsim.Generate(rng, now.Add(-volumeSpan), now, volumeBacklog, late)...)
	backlog := map[string]bool{}
	for _, e := range sim.Events() {
		backlog[e.ID] = true
	}

	recv := startAckReceiver(t)
	dir := t.TempDir()
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	conf := writeFile(t, filepath.Join(dir, "fluent-bit.yaml"), fmt.Sprintf(`service:
  flush: 1
  grace: 10
  log_level: info
plugins:
  - %s
pipeline:
  inputs:
    - name: msgraph
      tag: entra.signins
      tenant_id: %s
      client_id: %s
      client_secret: %s
      authority_host: %s
      graph_host: %s
      poll_interval: 20s
      lookback: 1m
      reconcile: 2m
      initial_lookback: 5h
      page_size: %d
      db: %s
      metrics_listen: %s
  outputs:
    - name: forward
      match: '*'
      host: 127.0.0.1
      port: %d
      require_ack_response: true
      retry_limit: no_limits
`, so, graphsim.DefaultTenantID, graphsim.DefaultClientID, secret, sim.URL(), sim.URL(), volumePage,
		filepath.Join(dir, "state.db"), metricsAddr, recv.port()))

	// Live traffic while Fluent Bit runs: sign-ins created now, each
	// surfacing after Graph's kind of delay.
	genDone := liveTraffic(sim, rand.New(rand.NewPCG(31, 33)), volumeRate, late, began, volumeLive)

	metricsURL := "http://" + metricsAddr + "/metrics"
	var logs strings.Builder
	var runs []map[string]float64
	deadline := began.Add(volumeLimit)
	backlogIn := func() int {
		n := 0
		for id := range recv.ids() {
			if backlog[id] {
				n++
			}
		}
		return n
	}

	// First Fluent Bit, until part of the backlog is through.
	fb := startFluentBitEnv(t, bin, scaleEnv, "-c", conf)
	sc := startScraper(metricsURL, time.Second)
	for backlogIn() < volumeRestartAt && time.Since(began) < volumeRestartBy {
		fb.run(t, time.Second)
	}
	restartedAt, atRestart := time.Since(began), backlogIn()
	fb.stopTERM(t)
	runs = append(runs, sc.finish(metricsURL))
	logs.WriteString(fb.out.String())
	t.Logf("SIGTERM after %s with %d of %d backlog events delivered", restartedAt.Round(time.Second), atRestart, volumeBacklog)

	// Second Fluent Bit on the same db, until every event is in (or the
	// time is up).
	recv.setEpoch(1)
	fb = startFluentBitEnv(t, bin, scaleEnv, "-c", conf)
	sc = startScraper(metricsURL, time.Second)
	second := fb
	<-genDone
	runUntilAll(t, fb, recv, sim, deadline)
	completedAt := time.Since(began)
	fb.run(t, 5*time.Second) // a duplicate would show now
	fb.stopTERM(t)
	runs = append(runs, sc.finish(metricsURL))
	logs.WriteString(fb.out.String())

	got, errs := recv.snapshot()
	for _, err := range errs {
		t.Errorf("forward receiver: %v", err)
	}
	// An event is owed once it has been visible for a reconcile delay,
	// plus the lookback and two polls, whatever its lateness.
	c := check(t, sim.Events(), got, time.Now().Add(-(2*time.Minute + time.Minute + 40*time.Second)))
	st := sim.Stats()
	t.Logf("%s; health records: %s", c, healthTimeline(got, began))
	t.Logf("Graph: %d sign-in requests, %d answered 429 (%d by the throttle), %d pages, %d tokens",
		st.ByPath["/v1.0/auditLogs/signIns"], st.ByStatus[429], st.Throttled, st.Pages, st.Tokens)
	for i, m := range runs {
		t.Logf("Fluent Bit %d: the plugin delivered %.0f events, dropped %.0f duplicates, saw %.0f 429s, %.0f late arrivals",
			i+1, m["msgraph_events_total"], m["msgraph_duplicates_total"], m["msgraph_throttled_total"], m["msgraph_late_arrivals_total"])
	}
	t.Logf("wall time: %s to deliver everything (%s in all), restart after %s", completedAt.Round(time.Second), time.Since(began).Round(time.Second), restartedAt.Round(time.Second))
	if c.dups != 0 || c.missed != 0 {
		t.Errorf("not exactly once: %d duplicates, %d missed", c.dups, c.missed)
	}
	if c.resent != 0 {
		t.Logf("Fluent Bit sent %d records again (a chunk whose acknowledgement it did not read)", c.resent)
	}
	if st.Pages < volumeBacklog/volumePage {
		t.Errorf("only %d pages for %d events in pages of %d", st.Pages, volumeBacklog, volumePage)
	}
	all := logs.String()
	t.Logf("Fluent Bit's warnings and errors: %v", logSummary(all))
	// The plugin's own count: the ids the first Fluent Bit committed (as
	// the second one loads them, none expired yet as the backlog query
	// still reaches back) and the events the second one delivered.
	if m := stateLoaded.FindStringSubmatch(second.out.String()); m == nil || m[1] == "0" {
		t.Errorf("the second Fluent Bit did not resume from the db")
	} else {
		committed, _ := strconv.Atoi(m[1])
		t.Logf("the second Fluent Bit resumed with %d delivered ids and %s queries pending", committed, m[2])
		t.Logf("the plugin counts %d events delivered (%d committed before the restart, %.0f after); the receiver %d distinct and %d duplicates",
			committed+int(runs[1]["msgraph_events_total"]), committed, runs[1]["msgraph_events_total"], c.delivered, c.dups)
	}
	checkLog(t, all, secret, "gsim.")
	for _, a := range got {
		if strings.Contains(fmt.Sprint(a.Fields), secret) {
			t.Errorf("a secret appears in a record")
			break
		}
	}
	if t.Failed() {
		t.Log(all)
	}
}
