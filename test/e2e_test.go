package test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/records"
)

type fbProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func startFluentBit(t *testing.T, bin string, args ...string) *fbProc {
	t.Helper()
	return startFluentBitEnv(t, bin, nil, args...)
}

// startFluentBitEnv starts Fluent Bit with extra environment variables.
func startFluentBitEnv(t *testing.T, bin string, env []string, args ...string) *fbProc {
	t.Helper()
	return launchFluentBit(t, bin, env, nil, args...)
}

// startFluentBitStdout starts Fluent Bit with what it writes on stdout
// (its stdout outputs) apart from its log (stderr, in fb.out): a record
// and a log line written at once would otherwise interleave.
func startFluentBitStdout(t *testing.T, bin string, env []string, args ...string) (fb *fbProc, stdout *syncBuffer) {
	t.Helper()
	stdout = &syncBuffer{}
	return launchFluentBit(t, bin, env, stdout, args...), stdout
}

// launchFluentBit starts Fluent Bit with extra environment variables; its
// stdout goes to stdout, or with its log to p.out when stdout is nil.
func launchFluentBit(t *testing.T, bin string, env []string, stdout io.Writer, args ...string) *fbProc {
	t.Helper()
	p := &fbProc{cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if stdout != nil {
		p.cmd.Stdout = stdout
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.cmd.Process.Kill() })
	return p
}

// run lets Fluent Bit work for d, failing at once if it exits.
func (p *fbProc) run(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		t.Fatalf("fluent-bit exited early (%v)\n%s", err, p.out.String())
	case <-time.After(d):
	}
}

// stop sends SIGINT, as an operator or systemd would, and waits.
func (p *fbProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("fluent-bit exited with %v\n%s", err, p.out.String())
		}
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("fluent-bit did not stop within 30s of SIGINT\n%s", p.out.String())
	}
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestEndToEndExactlyOnce runs a real Fluent Bit with the plugin against the
// simulator while events arrive late and out of order, Graph throttles,
// fails, cuts bodies and expires tokens every 3 seconds, and Fluent Bit is
// restarted twice with the same db. Every event must reach the forward
// receiver exactly once, field for field, with its createdDateTime as the
// record time.
func TestEndToEndExactlyOnce(t *testing.T) {
	bin := fluentBit(t)
	so := plugin(t)
	const secret = "e2e~Secret.Value-42"
	sim := graphsim.Start(t, graphsim.Options{
		Seed: 21, Throttle: true, TokenLifetime: 3 * time.Second, ClientSecret: secret,
		Faults: graphsim.Faults{Rate429: 0.05, Rate503: 0.03, Rate500: 0.03, Rate504: 0.02, RateTruncated: 0.03},
	})
	recv := startReceiver(t)
	dir := t.TempDir()
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
      tenant_id: %s
      client_id: %s
      client_secret: %s
      authority_host: %s
      graph_host: %s
      poll_interval: 1s
      lookback: 4s
      reconcile: 12s,30s
      initial_lookback: 1m
      db: %s
  outputs:
    - name: forward
      match: '*'
      host: 127.0.0.1
      port: %d
`, so, graphsim.DefaultTenantID, graphsim.DefaultClientID, secret, sim.URL(), sim.URL(), filepath.Join(dir, "state.db"), recv.port()))

	// Sign-ins keep happening for 45 s, each visible after Graph's kind of
	// delay (P95 0.8 s, P99 2 s, a tail to 24 s), so they surface out of
	// order; a few surface 20 s late, past lookback.
	stopGen := make(chan struct{})
	genDone := make(chan struct{})
	go func() {
		defer close(genDone)
		rng := rand.New(rand.NewPCG(21, 22))
		late := graphsim.RealisticLateness(400 * time.Millisecond)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopGen:
				return
			case <-tick.C:
			}
			now := time.Now()
			evs := graphsim.Generate(rng, now.Add(-100*time.Millisecond), now, 3, late)
			if i%50 == 0 {
				evs = append(evs, graphsim.Generate(rng, now.Add(-time.Second), now, 1, func(*rand.Rand) time.Duration { return 20 * time.Second })...)
			}
			sim.Add(evs...)
		}
	}()

	// On top of the random faults, bursts of each kind, so that every one
	// is met whatever the random draw: 2.5 s of truncated bodies, of 503s,
	// of 500s and of 429s in every 12.5 s.
	base := graphsim.Faults{Rate429: 0.05, Rate503: 0.03, Rate500: 0.03, Rate504: 0.02, RateTruncated: 0.03}
	go func() {
		phases := []graphsim.Faults{{RateTruncated: 1}, {Rate503: 1}, {Rate500: 1}, {Rate429: 1}, base}
		for i := 0; ; i++ {
			sim.SetFaults(phases[i%len(phases)])
			select {
			case <-genDone:
				sim.SetFaults(base)
				return
			case <-time.After(2500 * time.Millisecond):
			}
		}
	}()

	var logs strings.Builder
	for run := 0; run < 3; run++ {
		fb := startFluentBit(t, bin, "-c", conf)
		fb.run(t, 15*time.Second)
		if run == 2 {
			close(stopGen)
			<-genDone
			waitComplete(t, sim, recv, 90*time.Second)
		}
		fb.stop(t)
		logs.WriteString(fb.out.String())
	}

	got, errs := recv.snapshot()
	for _, err := range errs {
		t.Errorf("forward receiver: %v", err)
	}
	delivered, dups, missed, health := compare(t, sim, got)
	st := sim.Stats()
	t.Logf("%d events in Graph; delivered %d, duplicates %d, missed %d; health records %v; Graph answered %v, %d truncated, %d tokens, %d 401s",
		len(sim.Events()), delivered, dups, missed, health, st.ByStatus, st.Truncated, st.Tokens, st.Unauthorized)
	if dups != 0 || missed != 0 {
		t.Errorf("not exactly once")
	}
	if st.Truncated == 0 || st.ByStatus[429] == 0 || st.ByStatus[500]+st.ByStatus[503]+st.ByStatus[504] == 0 || st.Tokens < 10 {
		t.Errorf("faults were not exercised: %+v", st)
	}
	all := logs.String()
	for _, e := range got {
		all += fmt.Sprint(e.Fields)
	}
	if strings.Contains(all, secret) || strings.Contains(all, "gsim.") {
		t.Errorf("a secret or token appears in Fluent Bit's output or in a record")
	}
	for _, bad := range []string{"panic", "SIGSEGV", "fatal error"} {
		if strings.Contains(all, bad) {
			t.Errorf("Fluent Bit output contains %q", bad)
		}
	}
	if t.Failed() {
		t.Log(all)
	}
}

// waitComplete waits until every event visible by now has arrived, and a
// little longer so that a duplicate would show.
func waitComplete(t *testing.T, sim *graphsim.Server, recv *receiver, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		got, _ := recv.snapshot()
		ids := map[string]bool{}
		for _, e := range got {
			if id, ok := e.Fields["id"].(string); ok {
				ids[id] = true
			}
		}
		missing := 0
		for _, e := range sim.Events() {
			if !ids[e.ID] {
				missing++
			}
		}
		if missing == 0 {
			time.Sleep(5 * time.Second)
			return
		}
		time.Sleep(time.Second)
	}
}

func compare(t *testing.T, sim *graphsim.Server, got []records.Event) (delivered, dups, missed int, health map[string]int) {
	t.Helper()
	health = map[string]int{}
	byID := map[string]records.Event{}
	for _, e := range got {
		if code, ok := e.Fields["msgraph_warning"].(string); ok {
			health[code+"/"+e.Fields["status"].(string)]++
			continue
		}
		id, _ := e.Fields["id"].(string)
		if _, ok := byID[id]; ok {
			dups++
			continue
		}
		byID[id] = e
	}
	for _, w := range sim.Events() {
		g, ok := byID[w.ID]
		if !ok {
			missed++
			if missed <= 5 {
				t.Errorf("missed %s created %v, visible %v late", w.ID, w.Created, w.Visible.Sub(w.Created))
			}
			continue
		}
		delivered++
		if !g.Time.Equal(w.Created) {
			t.Errorf("%s: record time %v, want %v", w.ID, g.Time, w.Created)
		}
		if !sameJSON(t, w.JSON, g.Fields) {
			t.Errorf("%s: fields differ from Graph's object", w.ID)
		}
	}
	return delivered, dups, missed, health
}
