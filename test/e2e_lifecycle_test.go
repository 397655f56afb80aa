package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
)

// slowGraph sits between the plugin and the simulator: Graph's list
// requests take up to a second, and while it holds them they do not
// answer at all, so a stop or a reload meets requests in flight.
type slowGraph struct {
	proxy *httputil.ReverseProxy
	srv   *httptest.Server
	mu    sync.Mutex
	rng   *rand.Rand
	hold  chan struct{} // non-nil: list requests wait until it is closed
	held  atomic.Int32  // list requests waiting now
}

func startSlowGraph(t *testing.T, target string) *slowGraph {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	s := &slowGraph{proxy: httputil.NewSingleHostReverseProxy(u), rng: rand.New(rand.NewPCG(80, 81))}
	// The simulator builds nextLinks (and checks the token scope) from
	// the Host header, which the proxy passes on: they name the proxy.
	s.srv = httptest.NewServer(s)
	t.Cleanup(func() {
		s.release()
		s.srv.Close()
	})
	return s
}

func (s *slowGraph) URL() string { return s.srv.URL }

func (s *slowGraph) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.URL.Path, "/auditLogs/") {
		s.mu.Lock()
		delay := time.Duration(100+s.rng.IntN(900)) * time.Millisecond
		hold := s.hold
		s.mu.Unlock()
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		if hold != nil {
			s.held.Add(1)
			defer s.held.Add(-1)
			select {
			case <-hold:
			case <-r.Context().Done():
				return // the plugin gave the request up
			}
		}
	}
	s.proxy.ServeHTTP(w, r)
}

// holdRequests makes list requests hang and waits until one does.
func (s *slowGraph) holdRequests(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	s.hold = make(chan struct{})
	s.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for s.held.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no list request reached the proxy in 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *slowGraph) release() {
	s.mu.Lock()
	if s.hold != nil {
		close(s.hold)
		s.hold = nil
	}
	s.mu.Unlock()
}

// signal sends sig to Fluent Bit and, for a stop, waits for it to exit.
func (p *fbProc) signalStop(t *testing.T, sig os.Signal) {
	t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("fluent-bit exited with %v after %v\n%s", err, sig, p.out.String())
		}
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("fluent-bit did not stop within 60s of %v\n%s", sig, p.out.String())
	}
}

// waitFor waits until Fluent Bit's output contains s.
func (p *fbProc) waitFor(t *testing.T, s string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !strings.Contains(p.out.String(), s) {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("fluent-bit exited (%v) before %q\n%s", err, s, p.out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("fluent-bit did not log %q within %v\n%s", s, limit, p.out.String())
		}
	}
}

// TestEndToEndStopAndReload runs three msgraph inputs in one Fluent Bit
// (sign-ins of two tenants, directory audits of a third) behind a Graph
// whose pages take up to a second. It stops Fluent Bit with SIGTERM in the
// middle of the backlog while list requests hang, starts it again on the
// same db files, hot-reloads it (SIGHUP with hot_reload on) while requests
// hang again, and checks that each input delivered each of its events
// exactly once over it all. http_timeout is 10 minutes: the stop and the
// reload must not wait for the requests that hang.
func TestEndToEndStopAndReload(t *testing.T) {
	bin := fluentBit(t)
	so := plugin(t)
	tenants := []string{graphsim.DefaultTenantID, "contoso.onmicrosoft.com", "fabrikam.onmicrosoft.com"}
	sim := graphsim.Start(t, graphsim.Options{Seed: 80, TenantAliases: tenants[1:]})
	rng := rand.New(rand.NewPCG(80, 1))
	now := time.Now()
	none := func(*rand.Rand) time.Duration { return 0 }
	const backlog = 200 // events of each source visible at start
	sim.Add(graphsim.Generate(rng, now.Add(-10*time.Minute), now, backlog, none)...)
	sim.Add(graphsim.GenerateSource(rng, graphsim.SourceDirectoryAudits, now.Add(-10*time.Minute), now, backlog, none)...)
	slow := startSlowGraph(t, sim.URL())
	recv := startReceiver(t)
	dir := t.TempDir()

	inputs := []struct{ tag, source, tenant string }{
		{"entra.a", graphsim.SourceSignIns, tenants[0]},
		{"entra.b", graphsim.SourceSignIns, tenants[1]},
		{"entra.c", graphsim.SourceDirectoryAudits, tenants[2]},
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, `service:
  flush: 1
  grace: 5
  hot_reload: on
  log_level: info
plugins:
  - %s
pipeline:
  inputs:
`, so)
	for i, in := range inputs {
		fmt.Fprintf(&conf, `    - name: msgraph
      tag: %s
      source: %s
      tenant_id: %s
      client_id: %s
      client_secret: %s
      authority_host: %s
      graph_host: %s
      poll_interval: 10s
      lookback: 40s
      reconcile: 90s
      initial_lookback: 15m
      page_size: 25
      http_timeout: 10m
      db: %s
`, in.tag, in.source, in.tenant, graphsim.DefaultClientID, graphsim.DefaultClientSecret, slow.URL(), slow.URL(), filepath.Join(dir, fmt.Sprintf("%d.db", i)))
	}
	fmt.Fprintf(&conf, `  outputs:
    - name: forward
      match: '*'
      host: 127.0.0.1
      port: %d
`, recv.port())
	path := writeFile(t, filepath.Join(dir, "fluent-bit.yaml"), conf.String())

	// New events keep arriving, each visible after Graph's kind of delay.
	stopGen, genDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(genDone)
		rng := rand.New(rand.NewPCG(80, 2))
		late := graphsim.RealisticLateness(300 * time.Millisecond)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopGen:
				return
			case <-tick.C:
			}
			now := time.Now()
			sim.Add(graphsim.Generate(rng, now.Add(-250*time.Millisecond), now, 1, late)...)
			if i%2 == 0 {
				sim.Add(graphsim.GenerateSource(rng, graphsim.SourceDirectoryAudits, now.Add(-500*time.Millisecond), now, 1, late)...)
			}
		}
	}()

	var logs strings.Builder
	// Run 1: SIGTERM in the middle of the backlog, list requests hanging.
	fb := startFluentBit(t, bin, "-c", path)
	fb.run(t, 8*time.Second)
	slow.holdRequests(t)
	counts := recv.byTag()
	for _, in := range inputs {
		if n := len(counts[in.tag]); n == 0 || n >= backlog {
			t.Fatalf("%s delivered %d records before the stop: it must come mid-backlog", in.tag, n)
		}
	}
	fb.signalStop(t, syscall.SIGTERM)
	slow.release()
	logs.WriteString(fb.out.String())

	// Run 2: the same db files; a hot reload while requests hang.
	fb = startFluentBit(t, bin, "-c", path)
	fb.run(t, 6*time.Second)
	slow.holdRequests(t)
	fb.cmd.Process.Signal(syscall.SIGHUP)
	fb.waitFor(t, "[reload] successful reload done", 60*time.Second)
	slow.release()
	fb.run(t, 4*time.Second)
	close(stopGen)
	<-genDone

	want := map[string]map[string]bool{}
	for _, e := range sim.Events() {
		src := e.Source
		if src == "" {
			src = graphsim.SourceSignIns
		}
		for _, in := range inputs {
			if in.source == src {
				if want[in.tag] == nil {
					want[in.tag] = map[string]bool{}
				}
				want[in.tag][e.ID] = true
			}
		}
	}
	deadline := time.Now().Add(150 * time.Second)
	for !deliveredAll(recv, want) && time.Now().Before(deadline) {
		fb.run(t, time.Second)
	}
	fb.run(t, 5*time.Second) // a duplicate would show now
	fb.signalStop(t, syscall.SIGTERM)
	logs.WriteString(fb.out.String())

	got := recv.byTag()
	for _, in := range inputs {
		seen := map[string]int{}
		for _, e := range got[in.tag] {
			if _, health := e.Fields["msgraph_warning"]; health {
				continue
			}
			id, _ := e.Fields["id"].(string)
			seen[id]++
			if !want[in.tag][id] {
				t.Errorf("%s: delivered %s, which is not one of its events", in.tag, id)
			}
		}
		dups, missed := 0, 0
		for id := range want[in.tag] {
			switch n := seen[id]; {
			case n == 0:
				missed++
			case n > 1:
				dups += n - 1
			}
		}
		t.Logf("%s (%s, tenant %s): %d events, %d duplicates, %d missed", in.tag, in.source, in.tenant, len(want[in.tag]), dups, missed)
		if dups != 0 || missed != 0 {
			t.Errorf("%s: not exactly once", in.tag)
		}
	}
	all := logs.String()
	for _, bad := range []string{"panic", "SIGSEGV", "fatal error", "internal error", "did not end within"} {
		if strings.Contains(all, bad) {
			t.Errorf("Fluent Bit's output contains %q", bad)
		}
	}
	if t.Failed() {
		for _, l := range strings.Split(all, "\n") {
			if strings.Contains(l, "[ warn]") || strings.Contains(l, "[error]") || strings.Contains(l, "reload") || strings.Contains(l, "signal") {
				t.Log(l)
			}
		}
	}
}

// deliveredAll reports whether every wanted id of every tag has arrived.
func deliveredAll(recv *receiver, want map[string]map[string]bool) bool {
	got := recv.byTag()
	for tag, ids := range want {
		have := map[string]bool{}
		for _, e := range got[tag] {
			if id, ok := e.Fields["id"].(string); ok {
				have[id] = true
			}
		}
		for id := range ids {
			if !have[id] {
				return false
			}
		}
	}
	return true
}

// slowOutput is an HTTP endpoint for Fluent Bit's http output that takes
// its time over each request, so that the inputs' mem_buf_limit fills
// and Fluent Bit pauses them. It records the event ids by tag.
type slowOutput struct {
	srv *httptest.Server
	mu  sync.Mutex
	ids map[string][]string // tag -> ids, in arrival order
	bad []string
}

func startSlowOutput(t *testing.T, delay time.Duration) *slowOutput {
	t.Helper()
	o := &slowOutput{ids: map[string][]string{}}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		body, err := io.ReadAll(r.Body)
		tag := r.Header.Get("X-Tag")
		o.mu.Lock()
		defer o.mu.Unlock()
		if err != nil {
			o.bad = append(o.bad, err.Error())
			return
		}
		for _, line := range bytes.Split(body, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			var rec map[string]any
			if err := json.Unmarshal(line, &rec); err != nil {
				o.bad = append(o.bad, fmt.Sprintf("%s: %v", line, err))
				continue
			}
			if _, health := rec["msgraph_warning"]; health {
				continue
			}
			id, _ := rec["id"].(string)
			o.ids[tag] = append(o.ids[tag], id)
		}
	}))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *slowOutput) port() string { return o.srv.Listener.Addr().(*net.TCPAddr).AddrPort().String() }

// snapshot returns the ids received by tag.
func (o *slowOutput) snapshot() map[string][]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string][]string{}
	for k, v := range o.ids {
		out[k] = slices.Clone(v)
	}
	return out
}

// TestEndToEndBackPressure runs three msgraph inputs with a small
// mem_buf_limit into outputs that answer slowly (the first input's) and
// very slowly (the others'), so that Fluent Bit pauses and resumes each of
// them again and again, at different times (and, through its Go proxy,
// stops the collector of the last one whenever any is paused).
// Fluent Bit does not read a paused input's ring buffer, here two batches
// deep: an input that went on delivering while paused would fill it and
// have batches dropped. Every input must deliver every event exactly
// once, and Fluent Bit must never have had to drop a batch.
func TestEndToEndBackPressure(t *testing.T) {
	bin := fluentBit(t)
	so := plugin(t)
	tenants := []string{graphsim.DefaultTenantID, "contoso.onmicrosoft.com", "fabrikam.onmicrosoft.com"}
	sim := liveSim(t, graphsim.Options{Seed: 81, TenantAliases: tenants[1:]}, 250, 10*60e9)
	out := startSlowOutput(t, 300*time.Millisecond)
	slower := startSlowOutput(t, 4*time.Second)
	dir := t.TempDir()
	var conf strings.Builder
	fmt.Fprintf(&conf, `service:
  flush: 1
  grace: 5
  log_level: info
plugins:
  - %s
pipeline:
  inputs:
`, so)
	for i, tenant := range tenants {
		fmt.Fprintf(&conf, `    - name: msgraph
      tag: entra.%d
      mem_buf_limit: %s
      thread.ring_buffer.capacity: 2
      tenant_id: %s
      client_id: %s
      client_secret: %s
      authority_host: %s
      graph_host: %s
      poll_interval: 10s
      lookback: 40s
      reconcile: 90s
      initial_lookback: 15m
      page_size: 25
      db: %s
`, i, []string{"48k", "48k", "96k"}[i], tenant, graphsim.DefaultClientID, graphsim.DefaultClientSecret, sim.URL(), sim.URL(), filepath.Join(dir, fmt.Sprintf("%d.db", i)))
	}
	host, port, _ := strings.Cut(out.port(), ":")
	slowHost, slowPort, _ := strings.Cut(slower.port(), ":")
	fmt.Fprintf(&conf, `  outputs:
    - name: http
      match: entra.0
      host: %s
      port: %s
      uri: /
      format: json_lines
      header_tag: X-Tag
      retry_limit: no_limits
    - name: http
      match_regex: entra\.[12]
      host: %s
      port: %s
      uri: /
      format: json_lines
      header_tag: X-Tag
      retry_limit: no_limits
`, host, port, slowHost, slowPort)
	fb := startFluentBit(t, bin, "-c", writeFile(t, filepath.Join(dir, "fluent-bit.yaml"), conf.String()))

	want := map[string]bool{}
	for _, e := range sim.Events() {
		want[e.ID] = true
	}
	snapshot := func() map[string][]string {
		got := out.snapshot()
		for tag, ids := range slower.snapshot() {
			got[tag] = append(got[tag], ids...)
		}
		return got
	}
	complete := func() bool {
		got := snapshot()
		for i := range tenants {
			have := map[string]bool{}
			for _, id := range got[fmt.Sprintf("entra.%d", i)] {
				have[id] = true
			}
			if len(have) < len(want) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(180 * time.Second)
	for !complete() && time.Now().Before(deadline) {
		fb.run(t, time.Second)
	}
	fb.run(t, 5*time.Second) // a duplicate would show now
	fb.signalStop(t, syscall.SIGTERM)

	log := fb.out.String()
	got := snapshot()
	for i := range tenants {
		tag := fmt.Sprintf("entra.%d", i)
		seen := map[string]int{}
		for _, id := range got[tag] {
			seen[id]++
		}
		dups, missed := 0, 0
		for id := range want {
			switch n := seen[id]; {
			case n == 0:
				missed++
			case n > 1:
				dups += n - 1
			}
		}
		t.Logf("%s: %d events, %d duplicates, %d missed; paused %d times", tag, len(want), dups, missed,
			strings.Count(log, fmt.Sprintf("[input] msgraph.%d paused", i)))
		if dups != 0 || missed != 0 || len(seen) != len(want) {
			t.Errorf("%s: not exactly once", tag)
		}
	}
	for _, b := range append(out.bad, slower.bad...) {
		t.Errorf("output received %s", b)
	}
	if !strings.Contains(log, "paused (mem buf overlimit") || !strings.Contains(log, "resume (mem buf overlimit") {
		t.Error("Fluent Bit never paused and resumed an input: the test did not exercise back-pressure")
	}
	for _, bad := range []string{"could not enqueue records into the ring buffer", "panic", "SIGSEGV", "internal error"} {
		if strings.Contains(log, bad) {
			t.Errorf("Fluent Bit's output contains %q", bad)
		}
	}
	if t.Failed() {
		t.Log(log)
	}
}
