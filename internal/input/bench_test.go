package input

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"math/rand"
	rand2 "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/budget"
	"github.com/in-msgraph/in_msgraph/internal/config"
	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/logging"
)

// simEnv makes the test binary serve the simulator instead of testing (see
// TestSimulatorProcess); its value is the number of sign-ins to hold.
const simEnv = "MSGRAPH_BENCH_SIMULATOR_EVENTS"

// TestSimulatorProcess is not a test: BenchmarkCore runs the test binary
// again with simEnv set, to serve the simulator from a process of its own,
// so that the benchmark's CPU time is the input's alone. It serves until
// its standard input closes.
func TestSimulatorProcess(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv(simEnv))
	if err != nil {
		t.Skip("the simulator process of BenchmarkCore")
	}
	sim := graphsim.New(graphsim.Options{Seed: 1})
	now := time.Now()
	sim.Add(graphsim.Generate(rand2.New(rand2.NewPCG(1, 1)), now.Add(-29*24*time.Hour), now, n, nil)...)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: sim.Handler()}
	go srv.Serve(l)
	fmt.Printf("URL=http://%s\n", l.Addr())
	io.Copy(io.Discard, os.Stdin)
	srv.Close()
}

// startSimulatorProcess runs TestSimulatorProcess with n sign-ins and
// returns its URL.
func startSimulatorProcess(b *testing.B, n int) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSimulatorProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), simEnv+"="+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if url, ok := strings.CutPrefix(sc.Text(), "URL="); ok {
			go io.Copy(io.Discard, stdout)
			return url
		}
	}
	b.Fatalf("the simulator process did not start: %v", sc.Err())
	return ""
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCore is the whole input per event, from the HTTP request to the
// msgpack batch, de-duplication and the state commit (bbolt, fsync
// included), against the simulator over loopback HTTP in a process of its
// own, without throttling: 100 000 sign-ins of a 29-day backlog read in
// pages of 1000, every one new. events/cpu-s is what one core of the
// input's own CPU delivers; events/s is the wall rate on this machine
// (the simulator shares its cores).
func BenchmarkCore(b *testing.B) {
	const n = 100_000
	url := startSimulatorProcess(b, n)
	log := logging.New("bench", logging.Error)
	var events int
	var cpu time.Duration
	for b.Loop() {
		cfg, err := config.Parse(config.MapGetter{
			"tenant_id": graphsim.DefaultTenantID, "client_id": graphsim.DefaultClientID, "client_secret": graphsim.DefaultClientSecret,
			"authority_host": url, "graph_host": url, "initial_lookback": "30d", "lookback": "1h",
			"db": filepath.Join(b.TempDir(), "state.db"),
		})
		if err != nil {
			b.Fatal(err)
		}
		in, err := New(cfg, Options{Logger: log, Budget: budget.New(1<<30, time.Second)})
		if err != nil {
			b.Fatal(err)
		}
		cpu0 := cpuTime()
		for in.Stats.Delivered < n {
			if batch := in.Collect(); batch != nil {
				in.Commit()
			} else if in.Stats.Errors > 0 {
				b.Fatalf("requests fail: %d errors", in.Stats.Errors)
			}
		}
		cpu += cpuTime() - cpu0
		events += in.Stats.Delivered
		in.Close()
	}
	b.ReportMetric(float64(events)/cpu.Seconds(), "events/cpu-s")
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(events), "cpu-ns/event")
}

// BenchmarkPacing drains a backlog of 200 000 sign-ins from the simulator
// with Graph's budget enforced (5 requests per 10 s per app and tenant),
// with the default settings, collect called once a second as Fluent Bit
// does, all on the test clock, over five seeds (the data, the simulator's
// answers, the input's jitter). Live polls interrupt the backlog's query
// every minute. The budget's maximum is 500 events/s (pages of 1000);
// events/s and pct-of-max are the worst seed's drain rate, and pct-429 the
// worst seed's share of requests Graph refused.
func BenchmarkPacing(b *testing.B) {
	const n = 200_000
	for b.Loop() {
		worstRate, worst429, worstTook := math.Inf(1), 0.0, 0.0
		for seed := int64(1); seed <= 5; seed++ {
			start := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
			clk := graphsim.NewClock(start)
			sim := graphsim.Start(b, graphsim.Options{Now: clk.Now, Seed: seed, Throttle: true})
			// A backlog of two days, visible at once.
			sim.Add(graphsim.Generate(rand2.New(rand2.NewPCG(uint64(seed), uint64(seed))), start.Add(-48*time.Hour), start, n, nil)...)
			cfg, err := config.Parse(config.MapGetter{
				"tenant_id": graphsim.DefaultTenantID, "client_id": graphsim.DefaultClientID, "client_secret": graphsim.DefaultClientSecret,
				"authority_host": sim.URL(), "graph_host": sim.URL(), "initial_lookback": "49h",
				"db": filepath.Join(b.TempDir(), "state.db"),
			})
			if err != nil {
				b.Fatal(err)
			}
			in, err := New(cfg, Options{Now: clk.Now, Rand: rand.New(rand.NewSource(seed)), Logger: logging.New("bench", logging.Error), Budget: budget.New(budget.Requests, budget.Paced(budget.Window))})
			if err != nil {
				b.Fatal(err)
			}
			for in.Stats.Delivered < n && clk.Now().Sub(start) < 2*time.Hour {
				clk.Advance(time.Second)
				if batch := in.Collect(); batch != nil {
					in.Commit()
				}
			}
			took := clk.Now().Sub(start)
			st := sim.Stats()
			in.Close()
			if in.Stats.Delivered < n {
				b.Fatalf("seed %d: %d of %d events in %s", seed, in.Stats.Delivered, n, took)
			}
			rate := float64(in.Stats.Delivered) / took.Seconds()
			graphRequests := st.ByPath["/v1.0/auditLogs/signIns"]
			if rate < worstRate {
				worstRate, worstTook = rate, took.Seconds()
			}
			worst429 = max(worst429, 100*float64(st.ByStatus[http.StatusTooManyRequests])/float64(max(graphRequests, 1)))
		}
		b.ReportMetric(worstRate, "events/s")
		b.ReportMetric(100*worstRate/500, "pct-of-max")
		b.ReportMetric(worstTook, "sim-s")
		b.ReportMetric(worst429, "pct-429")
	}
}
