// Package metrics exposes what each input does as Prometheus metrics:
// requests, throttling, events, duplicates, lateness, commits, tokens and
// warnings, labelled by input and source. Inputs that set
// metrics_listen serve them on /metrics; inputs sharing an address share
// one listener.
package metrics

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The input is named "input", not "instance", which Prometheus sets to the
// scrape target itself.
var labels = []string{"input", "source"}

// Registry holds the plugin's metrics; it is process-wide because every
// input of the shared object reports into it.
var Registry = prometheus.NewRegistry()

func counter(name, help string, extra ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append(append([]string(nil), labels...), extra...))
}

func gauge(name, help string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
}

var (
	requests     = counter("msgraph_requests_total", "Requests to Graph by endpoint and HTTP status (\"error\" when no answer came).", "endpoint", "code")
	throttled    = counter("msgraph_throttled_total", "Requests answered 429 Too Many Requests.")
	retryAfter   = counter("msgraph_retry_after_seconds_total", "Seconds waited because Graph asked to (Retry-After) or throttled without saying.")
	events       = counter("msgraph_events_total", "Events delivered to Fluent Bit.")
	duplicates   = counter("msgraph_duplicates_total", "Events read again and dropped because they were already delivered.")
	lateArrivals = counter("msgraph_late_arrivals_total", "Events found only by a reconcile sweep.")
	tokenFetches = counter("msgraph_token_refreshes_total", "Access tokens obtained.")
	tokenFails   = counter("msgraph_token_failures_total", "Token requests that failed.")
	warnings     = counter("msgraph_warnings_total", "Health records by code and status.", "code", "status")
	lateness     = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "msgraph_lateness_seconds",
		Help:    "How late events were first seen: first seen minus event time.",
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400},
	}, labels)
	commitDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "msgraph_commit_duration_seconds",
		Help:    "Time to write one commit (a page's ids and the schedule) to the state file.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	}, labels)
	lookback    = gauge("msgraph_lookback_seconds", "Current lookback (it widens when events arrive later than it covers).")
	lastSuccess = gauge("msgraph_last_success_timestamp_seconds", "Unix time of the last page read successfully.")
	backlog     = gauge("msgraph_backlog_seconds", "How long the oldest pending live query has waited.")
	dedupIDs    = gauge("msgraph_dedup_ids", "Ids held in the de-duplication set.")
)

func init() {
	Registry.MustRegister(requests, throttled, retryAfter, events, duplicates, lateArrivals, tokenFetches, tokenFails,
		warnings, lateness, commitDur, lookback, lastSuccess, backlog, dedupIDs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// Set records the metrics of one input.
type Set struct {
	instance, source string
	events, dups     prometheus.Counter
	lateArrivals     prometheus.Counter
	throttled        prometheus.Counter
	retryAfter       prometheus.Counter
	tokens, tokenErr prometheus.Counter
	lateness         prometheus.Observer
	commit           prometheus.Observer
	lookback         prometheus.Gauge
	lastSuccess      prometheus.Gauge
	backlog          prometheus.Gauge
	ids              prometheus.Gauge
}

// For returns the metrics of one input.
func For(instance, source string) *Set {
	l := prometheus.Labels{"input": instance, "source": source}
	return &Set{
		instance: instance, source: source,
		events: events.With(l), dups: duplicates.With(l), lateArrivals: lateArrivals.With(l),
		throttled: throttled.With(l), retryAfter: retryAfter.With(l),
		tokens: tokenFetches.With(l), tokenErr: tokenFails.With(l),
		lateness: lateness.With(l), commit: commitDur.With(l),
		lookback: lookback.With(l), lastSuccess: lastSuccess.With(l), backlog: backlog.With(l), ids: dedupIDs.With(l),
	}
}

// Request counts one request to endpoint answered with code (0: no answer).
func (s *Set) Request(endpoint string, code int) {
	c := "error"
	if code > 0 {
		c = strconv.Itoa(code)
	}
	requests.WithLabelValues(s.instance, s.source, endpoint, c).Inc()
}

// Throttled counts a 429 and the wait it caused.
func (s *Set) Throttled(wait time.Duration) {
	s.throttled.Inc()
	s.retryAfter.Add(wait.Seconds())
}

// Delivered counts events handed to Fluent Bit.
func (s *Set) Delivered(n int) { s.events.Add(float64(n)) }

// Duplicate counts one event dropped as already delivered.
func (s *Set) Duplicate() { s.dups.Inc() }

// LateArrivals counts events found only by a reconcile sweep.
func (s *Set) LateArrivals(n int) { s.lateArrivals.Add(float64(n)) }

// Lateness records how late one event was first seen.
func (s *Set) Lateness(d time.Duration) { s.lateness.Observe(d.Seconds()) }

// Commit records the duration of one state commit.
func (s *Set) Commit(d time.Duration) { s.commit.Observe(d.Seconds()) }

// Tokens adds token requests that succeeded and failed since the last call.
func (s *Set) Tokens(ok, failed int) {
	s.tokens.Add(float64(ok))
	s.tokenErr.Add(float64(failed))
}

// Warning counts a health record.
func (s *Set) Warning(code, status string) {
	warnings.WithLabelValues(s.instance, s.source, code, status).Inc()
}

// State sets the gauges.
func (s *Set) State(lookback, backlog time.Duration, lastSuccess time.Time, ids int) {
	s.lookback.Set(lookback.Seconds())
	s.backlog.Set(backlog.Seconds())
	if !lastSuccess.IsZero() {
		s.lastSuccess.Set(float64(lastSuccess.UnixNano()) / 1e9)
	}
	s.ids.Set(float64(ids))
}

// Delete removes the input's series (when it stops).
func (s *Set) Delete() {
	l := prometheus.Labels{"input": s.instance, "source": s.source}
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{requests, throttled, retryAfter, events, duplicates, lateArrivals, tokenFetches, tokenFails, warnings, lateness, commitDur, lookback, lastSuccess, backlog, dedupIDs} {
		v.DeletePartialMatch(l)
	}
}

// listeners are the /metrics servers, shared by address.
var (
	mu        sync.Mutex
	listeners = map[string]*listener{}
)

type listener struct {
	srv  *http.Server
	refs int
	addr string
}

// Serve makes the metrics reachable on addr (host:port) until release is
// called by every input that asked for that address.
func Serve(addr string) (release func(), err error) {
	mu.Lock()
	defer mu.Unlock()
	l := listeners[addr]
	if l == nil {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(Registry, promhttp.HandlerOpts{}))
		l = &listener{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, addr: ln.Addr().String()}
		go func() {
			if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				_ = err // the listener died with the process or was closed
			}
		}()
		listeners[addr] = l
	}
	l.refs++
	var once sync.Once
	return func() {
		once.Do(func() {
			mu.Lock()
			defer mu.Unlock()
			if l.refs--; l.refs == 0 {
				l.srv.Close()
				delete(listeners, addr)
			}
		})
	}, nil
}

// Addr is the address a listener for addr is bound to (for ":0" in tests).
func Addr(addr string) string {
	mu.Lock()
	defer mu.Unlock()
	if l := listeners[addr]; l != nil {
		return l.addr
	}
	return ""
}
