package input

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/metrics"
)

func scrape(t *testing.T, addr string) string {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// TestMetrics scrapes metrics_listen after a run with late events, 429s
// and a wrong page: every figure the issue names is there, labelled with
// the instance and source.
func TestMetrics(t *testing.T) {
	r := newRig(t, graphsim.Options{Seed: 80, Faults: graphsim.Faults{Rate429: 0.2}}, "metrics_listen", "127.0.0.1:0", "page_size", "10")
	addEvents(r.sim, 81, r.clk.Now().Add(-5*time.Minute), r.clk.Now().Add(5*time.Minute), 60, fixedLateness(30*time.Second))
	r.run(15*time.Minute, time.Second)
	start := r.in.sched.Started()
	// Lateness is measured for the events that happened while the input
	// ran, not for the backlog its first query found.
	measured := 0
	for _, e := range r.sim.Events() {
		if !e.Created.Before(start) {
			measured++
		}
	}
	body := scrape(t, metrics.Addr("127.0.0.1:0"))
	want := []string{
		`msgraph_events_total{input="test",source="signins"} 60`,
		`msgraph_requests_total{code="200",endpoint="/auditLogs/signIns",input="test",source="signins"}`,
		`msgraph_requests_total{code="429",endpoint="/auditLogs/signIns",input="test",source="signins"}`,
		`msgraph_throttled_total{input="test",source="signins"}`,
		`msgraph_retry_after_seconds_total{input="test",source="signins"}`,
		`msgraph_duplicates_total{input="test",source="signins"}`,
		`msgraph_lateness_seconds_bucket{input="test",source="signins",le="60"}`,
		`msgraph_commit_duration_seconds_count{input="test",source="signins"}`,
		`msgraph_lookback_seconds{input="test",source="signins"} 1800`,
		`msgraph_last_success_timestamp_seconds{input="test",source="signins"}`,
		`msgraph_backlog_seconds{input="test",source="signins"}`,
		`msgraph_dedup_ids{input="test",source="signins"} 60`,
		`msgraph_token_refreshes_total{input="test",source="signins"} 1`,
	}
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("metrics lack %s", w)
		}
	}
	if m := regexp.MustCompile(`msgraph_lateness_seconds_count\{input="test",source="signins"\} (\d+)`).FindStringSubmatch(body); m == nil || m[1] != strconv.Itoa(measured) {
		t.Errorf("lateness observations: %v", m)
	}
	if t.Failed() {
		t.Log(body)
	}
	// Closing the input removes its series and the listener.
	r.in.Close()
	if metrics.Addr("127.0.0.1:0") != "" {
		t.Fatal("the listener outlived its only input")
	}
}
