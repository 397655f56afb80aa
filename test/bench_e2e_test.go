package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/records"
	"github.com/in-msgraph/in_msgraph/internal/state"
)

// benchE2EEnv turns on TestFluentBitCost (make bench-e2e): it runs for
// minutes and measures, so plain go test skips it.
const benchE2EEnv = "MSGRAPH_BENCH_E2E"

// TestFluentBitCost measures a real Fluent Bit: its CPU seconds per million
// events and its peak memory, with msgraph inputs reading the simulator
// (msgraph → null), next to the same events POSTed as JSON arrays of 1000
// to Fluent Bit's own http input (http → null, its C JSON parser); then
// its peak memory with a de-dup horizon of a million ids, next to an idle
// Fluent Bit.
//
// Fluent Bit ticks a Go input once a second and the plugin keeps to
// Graph's budget (5 requests per 10 s per app and tenant), so one input
// takes about 500 events/s. To push half a million events through in under
// two minutes, MSGRAPH_BENCH_INPUTS inputs (default 10) each read the
// simulator's MSGRAPH_BENCH_EVENTS sign-ins (default 50 000), each as a
// tenant of its own (a domain alias of the simulator's tenant) so each has
// its own budget.
func TestFluentBitCost(t *testing.T) {
	if os.Getenv(benchE2EEnv) == "" {
		t.Skip("set " + benchE2EEnv + "=1 (make bench-e2e) to measure Fluent Bit's CPU and memory with the plugin")
	}
	bin := benchFluentBitBinary(t)
	so := plugin(t)
	inputs := benchEnvInt(t, "MSGRAPH_BENCH_INPUTS", 10)
	perInput := benchEnvInt(t, "MSGRAPH_BENCH_EVENTS", 50_000)
	total := inputs * perInput

	aliases := make([]string, inputs)
	for i := range aliases {
		aliases[i] = fmt.Sprintf("bench%d.onmicrosoft.com", i)
	}
	opts := graphsim.Options{Seed: 11, TenantAliases: aliases}

	// Idle: the same inputs with nothing to read.
	empty := liveSim(t, opts, 0, time.Hour)
	idle := benchRun(t, bin, so, benchMsgraphConfig(t, empty.URL(), aliases, nil), func(fb *benchFB) {
		time.Sleep(15 * time.Second)
	})
	t.Logf("idle Fluent Bit with %d msgraph inputs: %.3f CPU-s over %s, peak RSS %.1f MB", inputs, idle.cpu.Seconds(), idle.wall.Round(time.Second), idle.hwmMB())

	// msgraph → null.
	sim := liveSim(t, opts, perInput, 20*time.Hour)
	events := sim.Events()
	msgraph := benchRun(t, bin, so, benchMsgraphConfig(t, sim.URL(), aliases, nil), func(fb *benchFB) {
		fb.waitRecords(t, total, 10*time.Minute)
	})
	st := sim.Stats()
	t.Logf("msgraph → null: %d events (%d inputs × %d) in %s; %d Graph pages", msgraph.records, inputs, perInput, msgraph.wall.Round(time.Second), st.Pages)

	// http → null, the same events as JSON arrays of 1000.
	var bodies [][]byte
	for i := 0; i < len(events); i += 1000 {
		var b bytes.Buffer
		b.WriteByte('[')
		for j, e := range events[i:min(i+1000, len(events))] {
			if j > 0 {
				b.WriteByte(',')
			}
			b.Write(e.JSON)
		}
		b.WriteByte(']')
		bodies = append(bodies, b.Bytes())
	}
	httpPort := benchFreePort(t)
	native := benchRun(t, bin, "", benchHTTPConfig(t, httpPort), func(fb *benchFB) {
		client := &http.Client{Timeout: time.Minute}
		for range inputs {
			for _, body := range bodies {
				resp, err := client.Post(fmt.Sprintf("http://127.0.0.1:%d/", httpPort), "application/json", bytes.NewReader(body))
				if err != nil {
					t.Fatalf("POST to the http input: %v", err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					t.Fatalf("the http input answered %s", resp.Status)
				}
			}
		}
		fb.waitRecords(t, total, 10*time.Minute)
	})

	jsonBytes := 0
	for _, e := range events {
		jsonBytes += len(e.JSON)
	}
	perMillion := func(r benchResult) float64 { return r.cpu.Seconds() / float64(r.records) * 1e6 }
	t.Logf("events: %d sign-ins of %.0f bytes on average, each delivered %d times", len(events), float64(jsonBytes)/float64(len(events)), inputs)
	t.Logf("%-27s %9s %8s %8s %16s %10s", "path", "records", "wall", "CPU-s", "CPU-s/1M events", "peak RSS")
	for _, row := range []struct {
		name string
		r    benchResult
	}{{"msgraph → null (plugin)", msgraph}, {"http → null (native JSON)", native}} {
		t.Logf("%-27s %9d %8s %8.2f %16.2f %7.1f MB", row.name, row.r.records, row.r.wall.Round(time.Second), row.r.cpu.Seconds(), perMillion(row.r), row.r.hwmMB())
	}
	// The inputs cost something even with nothing to read (a collect
	// call per input per second): net of that, what the events cost.
	idleCPU := idle.cpuPerSecond() * msgraph.wall.Seconds()
	t.Logf("msgraph net of its idle cost (%.3f CPU-s/s): %.2f CPU-s/1M events", idle.cpuPerSecond(), (msgraph.cpu.Seconds()-idleCPU)/float64(msgraph.records)*1e6)
	ratio := perMillion(msgraph) / perMillion(native)
	t.Logf("plugin / native CPU per event: %.2f (target ≤ 0.5)", ratio)

	// Peak memory with a de-dup horizon of a million ids: a state file
	// holding them (event times over the last 23 hours, all inside the
	// horizon), one input, against an idle one on an empty state.
	const horizon = 1_000_000
	dir := t.TempDir()
	db := filepath.Join(dir, "horizon.db")
	benchFillState(t, db, horizon)
	one := aliases[:1]
	idleOne := benchRun(t, bin, so, benchMsgraphConfig(t, empty.URL(), one, nil), func(fb *benchFB) {
		time.Sleep(20 * time.Second)
	})
	opts.Seed = 13
	fresh := liveSim(t, opts, 10_000, time.Hour)
	withHorizon := benchRun(t, bin, so, benchMsgraphConfig(t, fresh.URL(), one, []string{db}), func(fb *benchFB) {
		fb.waitRecords(t, 10_000, 5*time.Minute)
		time.Sleep(5 * time.Second)
	})
	t.Logf("peak RSS: idle (1 input, empty state) %.1f MB; with %d ids held %.1f MB: %.1f MB above idle (target ≤ 150)",
		idleOne.hwmMB(), horizon, withHorizon.hwmMB(), withHorizon.hwmMB()-idleOne.hwmMB())
	for _, line := range strings.Split(withHorizon.log, "\n") {
		if strings.Contains(line, "delivered ids") {
			t.Logf("with the horizon: %s", line)
		}
	}
}

type benchResult struct {
	records int
	cpu     time.Duration // utime+stime from ready to done
	wall    time.Duration
	hwm     int // VmHWM, kB
	log     string
}

func (r benchResult) hwmMB() float64 { return float64(r.hwm) / 1024 }

func (r benchResult) cpuPerSecond() float64 { return r.cpu.Seconds() / r.wall.Seconds() }

type benchFB struct {
	cmd  *exec.Cmd
	port int
}

// benchRun starts Fluent Bit with conf (and the plugin, if so is set),
// waits until its HTTP server answers, runs work, and reports the records
// its null output processed, the CPU time Fluent Bit spent from ready to
// the end of work, and its peak RSS.
func benchRun(t *testing.T, bin, so, conf string, work func(fb *benchFB)) benchResult {
	t.Helper()
	dir := t.TempDir()
	port := benchFreePort(t)
	conf = strings.ReplaceAll(conf, "HTTP_PORT", strconv.Itoa(port))
	path := filepath.Join(dir, "fluent-bit.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-c", path}
	if so != "" {
		args = append([]string{"-e", so}, args...)
	}
	logPath := filepath.Join(dir, "fluent-bit.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fb := &benchFB{cmd: cmd, port: port}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	defer stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := fb.metrics(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logPath)
			t.Fatalf("Fluent Bit did not start:\n%s", benchTail(string(out), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	m0, _ := fb.metrics()
	cpu0, _ := benchProcStat(cmd.Process.Pid)
	start := time.Now()
	work(fb)
	wall := time.Since(start)
	cpu1, hwm := benchProcStat(cmd.Process.Pid)
	m, _ := fb.metrics()
	stop()
	out, _ := os.ReadFile(logPath)
	if strings.Contains(string(out), "[error]") {
		t.Logf("Fluent Bit logged errors:\n%s", benchTail(string(out), 20))
	}
	return benchResult{records: m.out() - m0.out(), cpu: cpu1 - cpu0, wall: wall, hwm: hwm, log: string(out)}
}

type benchMetrics struct {
	Input  map[string]struct{ Records int } `json:"input"`
	Output map[string]struct {
		ProcRecords int `json:"proc_records"`
	} `json:"output"`
}

func (m benchMetrics) out() int {
	n := 0
	for _, o := range m.Output {
		n += o.ProcRecords
	}
	return n
}

func (fb *benchFB) metrics() (benchMetrics, error) {
	var m benchMetrics
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/metrics", fb.port))
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m, fmt.Errorf("metrics: %s", resp.Status)
	}
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

// waitRecords waits until the null output has processed n records in all.
func (fb *benchFB) waitRecords(t *testing.T, n int, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	last := 0
	for time.Now().Before(deadline) {
		m, err := fb.metrics()
		if err == nil {
			if last = m.out(); last >= n {
				return
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("only %d of %d records reached the output within %s", last, n, limit)
}

// benchProcStat reads a process's CPU time (utime+stime) and peak RSS (kB).
func benchProcStat(pid int) (time.Duration, int) {
	var cpu time.Duration
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name, which is in parentheses and may
		// hold spaces: state is the first, utime the 12th, stime the 13th.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 12 {
			ut, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			cpu = time.Duration(ut+st) * time.Second / benchClockTicks
		}
	}
	hwm := 0
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				hwm, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			}
		}
	}
	return cpu, hwm
}

// benchClockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on
// every Linux architecture Fluent Bit ships for.
const benchClockTicks = 100

// benchMsgraphConfig is a Fluent Bit configuration with one msgraph input
// per tenant, each with its own state file (dbs[i], or a new one), and a
// null output.
func benchMsgraphConfig(t *testing.T, url string, tenants, dbs []string) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString(`service:
  flush: 1
  log_level: info
  http_server: on
  http_listen: 127.0.0.1
  http_port: HTTP_PORT
pipeline:
  inputs:
`)
	for i, tenant := range tenants {
		db := filepath.Join(dir, fmt.Sprintf("state%d.db", i))
		if i < len(dbs) {
			db = dbs[i]
		}
		fmt.Fprintf(&b, `    - name: msgraph
      tag: bench.%d
      tenant_id: %s
      client_id: %s
      client_secret: %s
      authority_host: %s
      graph_host: %s
      initial_lookback: 2d
      db: %s
`, i, tenant, graphsim.DefaultClientID, graphsim.DefaultClientSecret, url, url, db)
	}
	b.WriteString(`  outputs:
    - name: 'null'
      match: '*'
`)
	return b.String()
}

func benchHTTPConfig(t *testing.T, port int) string {
	t.Helper()
	return fmt.Sprintf(`service:
  flush: 1
  log_level: info
  http_server: on
  http_listen: 127.0.0.1
  http_port: HTTP_PORT
pipeline:
  inputs:
    - name: http
      listen: 127.0.0.1
      port: %d
      tag: native
      buffer_max_size: 16M
      buffer_chunk_size: 4M
  outputs:
    - name: 'null'
      match: '*'
`, port)
}

// benchFillState writes a state file holding n ids with event times over
// the last 23 hours.
func benchFillState(t *testing.T, path string, n int) {
	t.Helper()
	d, err := state.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r := rand.New(rand.NewPCG(12, 12))
	from := time.Now().Add(-23 * time.Hour).UnixNano()
	step := int64(22*time.Hour) / int64(n)
	batch := make([]state.Entry, 0, 100_000)
	for i := range n {
		var k records.Key
		for j := range k {
			k[j] = byte(r.Uint32())
		}
		batch = append(batch, state.Entry{Key: k, Time: from + int64(i)*step})
		if len(batch) == cap(batch) || i == n-1 {
			if err := d.Commit(batch, nil, nil); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

func benchFluentBitBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FLUENT_BIT"); p != "" {
		return p
	}
	p, err := exec.LookPath("fluent-bit")
	if err != nil {
		t.Skip("no Fluent Bit: set FLUENT_BIT or put fluent-bit on PATH")
	}
	return p
}

func benchEnvInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: a positive whole number", name, v)
	}
	return n
}

func benchFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func benchTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
