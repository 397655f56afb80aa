package test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
)

// The outage run: a backlog of outageBacklog sign-ins and outageRate new
// ones a second for outageLive; the output's receiver is down from
// outageDown for outageFor.
const (
	outageBacklog = 2000
	outageRate    = 10
	outageLive    = 90 * time.Second
	outageDown    = 15 * time.Second
	outageFor     = 60 * time.Second
	outageLimit   = 4 * time.Minute
)

// TestEndToEndDownstreamOutage stops the receiver behind Fluent Bit's
// forward output for a minute while Graph keeps producing sign-ins, with a
// small mem_buf_limit on the input (memory) and with filesystem buffering
// (filesystem). Once the receiver is back every event must arrive exactly
// once. The receiver acknowledges only what it stored, so Fluent Bit may
// legitimately send a chunk again whose acknowledgement it did not read:
// such copies are counted apart from duplicates, which would be the
// plugin's. The plugin's own count of delivered events tells a record lost
// inside Fluent Bit from one the plugin never delivered.
func TestEndToEndDownstreamOutage(t *testing.T) {
	bin := fluentBit(t)
	so := plugin(t)
	for _, v := range []struct {
		name, service, input string
	}{
		{"memory", "", "      mem_buf_limit: 512KB\n"},
		{"filesystem", "  storage.path: %s\n  storage.sync: normal\n", "      mem_buf_limit: 512KB\n      storage.type: filesystem\n"},
	} {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel() // each with its own simulator, tenant and Fluent Bit
			dir := t.TempDir()
			service := v.service
			if strings.Contains(service, "%s") {
				service = fmt.Sprintf(service, filepath.Join(dir, "buffer"))
			}
			outage(t, bin, so, dir, service, v.input, v.name == "memory")
		})
	}
}

func outage(t *testing.T, bin, so, dir, service, input string, wantPause bool) {
	began := time.Now()
	sim := graphsim.Start(t, graphsim.Options{Seed: 41, Throttle: true})
	rng := rand.New(rand.NewPCG(41, 42))
	late := graphsim.RealisticLateness(500 * time.Millisecond) // P99 2.5 s, a tail to 30 s
	now := time.Now()
	sim.Add(graphsim.Generate(rng, now.Add(-time.Hour), now, outageBacklog, late)...)
	recv := startAckReceiver(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	fbPort := freePort(t)
	conf := writeFile(t, filepath.Join(dir, "fluent-bit.yaml"), fmt.Sprintf(`service:
  flush: 1
  grace: 10
  log_level: info
  scheduler.base: 2
  scheduler.cap: 10
  http_server: on
  http_listen: 127.0.0.1
  http_port: %d
%splugins:
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
      poll_interval: 5s
      lookback: 40s
      reconcile: 'off'
      initial_lookback: 2h
      page_size: 200
      db: %s
      metrics_listen: %s
%s  outputs:
    - name: forward
      match: '*'
      host: 127.0.0.1
      port: %d
      require_ack_response: true
      retry_limit: no_limits
`, fbPort, service, so, graphsim.DefaultTenantID, graphsim.DefaultClientID, graphsim.DefaultClientSecret, sim.URL(), sim.URL(),
		filepath.Join(dir, "state.db"), metricsAddr, input, recv.port()))

	genDone := liveTraffic(sim, rand.New(rand.NewPCG(41, 43)), outageRate, late, began, outageLive)

	fb := startFluentBit(t, bin, "-c", conf)
	fb.run(t, outageDown)
	before := len(recv.ids())
	recv.stop()
	fb.run(t, outageFor)
	recv.start(t)
	back := time.Now()
	t.Logf("receiver down from %s to %s; %d events had arrived", outageDown, outageDown+outageFor, before)

	<-genDone
	deadline := began.Add(outageLimit)
	runUntilAll(t, fb, recv, sim, deadline)
	completedAt, afterBack := time.Since(began), time.Since(back)
	fb.run(t, 5*time.Second) // a duplicate would show now
	plug := scrape("http://" + metricsAddr + "/metrics")
	flb := scrape(fmt.Sprintf("http://127.0.0.1:%d/api/v2/metrics/prometheus", fbPort))
	fb.stopTERM(t)
	log := fb.out.String()

	got, errs := recv.snapshot()
	for _, err := range errs {
		t.Errorf("forward receiver: %v", err)
	}
	c := check(t, sim.Events(), got, time.Now().Add(-time.Minute))
	st := sim.Stats()
	t.Logf("%s; health records %v", c, c.health)
	t.Logf("Graph: %d sign-in requests, %d answered 429; wall time %s to deliver everything, %s after the receiver came back",
		st.ByPath["/v1.0/auditLogs/signIns"], st.ByStatus[429], completedAt.Round(time.Second), afterBack.Round(time.Second))
	handed := int(plug["msgraph_events_total"])
	t.Logf("the plugin handed Fluent Bit %d events (and dropped %.0f duplicates); %d distinct events arrived",
		handed, plug["msgraph_duplicates_total"], c.delivered)
	t.Logf("Fluent Bit: input records %.0f, output records %.0f, retries %.0f, failed retries %.0f, dropped records %.0f, ring buffer retries %.0f and failures %.0f, memrb chunks dropped %.0f",
		flb["fluentbit_input_records_total"], flb["fluentbit_output_proc_records_total"], flb["fluentbit_output_retries_total"],
		flb["fluentbit_output_retries_failed_total"], flb["fluentbit_output_dropped_records_total"],
		flb["fluentbit_input_ring_buffer_retries_total"], flb["fluentbit_input_ring_buffer_retry_failures_total"], flb["fluentbit_input_memrb_dropped_chunks"])
	lines := map[string]int{}
	for _, s := range []string{"paused (mem buf overlimit", "resume (mem buf overlimit", "paused (storage buf overlimit",
		"could not enqueue records into the ring buffer", "failed to flush chunk", "succeeded at retry", "cannot be retried", "no upstream connections available"} {
		lines[s] = logCount(log, s)
	}
	t.Logf("Fluent Bit log lines: %v", lines)
	t.Logf("Fluent Bit's warnings and errors: %v", logSummary(log))
	if c.resent != 0 {
		t.Logf("Fluent Bit sent %d records again (chunks whose acknowledgement it did not read)", c.resent)
	}

	switch {
	case c.missed != 0 && handed > c.delivered:
		t.Errorf("LOST IN FLUENT BIT: the plugin handed over %d events, %d arrived, %d missed", handed, c.delivered, c.missed)
	case c.missed != 0:
		t.Errorf("missed %d events the plugin never delivered", c.missed)
	}
	if c.dups != 0 {
		t.Errorf("%d duplicates from the plugin", c.dups)
	}
	if handed < c.delivered+c.dups {
		t.Errorf("the plugin counts %d events delivered, the receiver %d distinct and %d duplicates", handed, c.delivered, c.dups)
	}
	// The outage must have happened as planned: Fluent Bit retried, and
	// with memory buffers it paused the input.
	if flb["fluentbit_output_retries_total"] == 0 && lines["failed to flush chunk"] == 0 {
		t.Errorf("Fluent Bit never retried: the outage was not felt")
	}
	if wantPause && lines["paused (mem buf overlimit"] == 0 {
		t.Errorf("Fluent Bit never paused the input: mem_buf_limit was not reached")
	}
	checkLog(t, log, "gsim.")
	if t.Failed() {
		t.Log(log)
	}
}
