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
// scrape target itself. An input with metrics_tenant_label on labels its
// series with the tenant too; those series live in a registry of their
// own (TenantRegistry), served beside Registry, because one metric's
// series in a registry must share their label names.
var (
	labels       = []string{"input", "source"}
	tenantLabels = []string{"input", "source", "tenant"}
)

// Registry holds the plugin's metrics; it is process-wide because every
// input of the shared object reports into it. TenantRegistry holds the
// series labelled by tenant.
var (
	Registry       = prometheus.NewRegistry()
	TenantRegistry = prometheus.NewRegistry()
)

// vecs are the metric vectors of one label set.
type vecs struct {
	requests, throttled, retryAfter, events, duplicates, lateArrivals *prometheus.CounterVec
	tokenFetches, tokenFails, warnings                                *prometheus.CounterVec
	lateness, commitDur                                               *prometheus.HistogramVec
	lookback, lastSuccess, backlog, dedupIDs                          *prometheus.GaugeVec
}

func newVecs(labels []string) *vecs {
	counter := func(name, help string, extra ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append(append([]string(nil), labels...), extra...))
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	}
	return &vecs{
		requests:     counter("msgraph_requests_total", "Requests to Graph by endpoint and HTTP status (\"error\" when no answer came).", "endpoint", "code"),
		throttled:    counter("msgraph_throttled_total", "Requests answered 429 Too Many Requests."),
		retryAfter:   counter("msgraph_retry_after_seconds_total", "Seconds waited because Graph asked to (Retry-After) or throttled without saying."),
		events:       counter("msgraph_events_total", "Events delivered to Fluent Bit."),
		duplicates:   counter("msgraph_duplicates_total", "Events read again and dropped because they were already delivered."),
		lateArrivals: counter("msgraph_late_arrivals_total", "Events found only by a reconcile sweep."),
		tokenFetches: counter("msgraph_token_refreshes_total", "Access tokens obtained."),
		tokenFails:   counter("msgraph_token_failures_total", "Token requests that failed."),
		warnings:     counter("msgraph_warnings_total", "Health records by code and status.", "code", "status"),
		lateness: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "msgraph_lateness_seconds",
			Help:    "How late events were first seen: first seen minus event time.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400},
		}, labels),
		commitDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "msgraph_commit_duration_seconds",
			Help:    "Time to write one commit (a page's ids and the schedule) to the state file.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, labels),
		lookback:    gauge("msgraph_lookback_seconds", "Current lookback (it widens when events arrive later than it covers)."),
		lastSuccess: gauge("msgraph_last_success_timestamp_seconds", "Unix time of the last page read successfully."),
		backlog:     gauge("msgraph_backlog_seconds", "How long the oldest pending live query has waited."),
		dedupIDs:    gauge("msgraph_dedup_ids", "Ids held in the de-duplication set."),
	}
}

func (v *vecs) all() []prometheus.Collector {
	return []prometheus.Collector{v.requests, v.throttled, v.retryAfter, v.events, v.duplicates, v.lateArrivals, v.tokenFetches, v.tokenFails,
		v.warnings, v.lateness, v.commitDur, v.lookback, v.lastSuccess, v.backlog, v.dedupIDs}
}

var plain, byTenant = newVecs(labels), newVecs(tenantLabels)

func init() {
	Registry.MustRegister(plain.all()...)
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	TenantRegistry.MustRegister(byTenant.all()...)
}

// Set records the metrics of one input, or of one tenant of an input.
type Set struct {
	v                *vecs
	base             []string // the label values: input, source (, tenant)
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
	// part: a tenant's share of its input's Set (Part), which sets no
	// gauges and deletes nothing.
	part bool
}

// Part returns a Set that counts into s for one of its input's tenants:
// the gauges, one value per input, are left to the input (State on s).
func (s *Set) Part() *Set {
	p := *s
	p.part = true
	return &p
}

// For returns the metrics of one input.
func For(instance, source string) *Set { return newSet(plain, instance, source) }

// ForTenant returns the metrics of one tenant of a multi-tenant input,
// labelled with the tenant (metrics_tenant_label on).
func ForTenant(instance, source, tenant string) *Set {
	return newSet(byTenant, instance, source, tenant)
}

func newSet(v *vecs, base ...string) *Set {
	return &Set{
		v: v, base: base,
		events: v.events.WithLabelValues(base...), dups: v.duplicates.WithLabelValues(base...), lateArrivals: v.lateArrivals.WithLabelValues(base...),
		throttled: v.throttled.WithLabelValues(base...), retryAfter: v.retryAfter.WithLabelValues(base...),
		tokens: v.tokenFetches.WithLabelValues(base...), tokenErr: v.tokenFails.WithLabelValues(base...),
		lateness: v.lateness.WithLabelValues(base...), commit: v.commitDur.WithLabelValues(base...),
		lookback: v.lookback.WithLabelValues(base...), lastSuccess: v.lastSuccess.WithLabelValues(base...),
		backlog: v.backlog.WithLabelValues(base...), ids: v.dedupIDs.WithLabelValues(base...),
	}
}

func (s *Set) with(extra ...string) []string {
	return append(append(make([]string, 0, len(s.base)+len(extra)), s.base...), extra...)
}

// Request counts one request to endpoint answered with code (0: no answer).
func (s *Set) Request(endpoint string, code int) {
	c := "error"
	if code > 0 {
		c = strconv.Itoa(code)
	}
	s.v.requests.WithLabelValues(s.with(endpoint, c)...).Inc()
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
	s.v.warnings.WithLabelValues(s.with(code, status)...).Inc()
}

// State sets the gauges.
func (s *Set) State(lookback, backlog time.Duration, lastSuccess time.Time, ids int) {
	if s.part {
		return
	}
	s.lookback.Set(lookback.Seconds())
	s.backlog.Set(backlog.Seconds())
	if !lastSuccess.IsZero() {
		s.lastSuccess.Set(float64(lastSuccess.UnixNano()) / 1e9)
	}
	s.ids.Set(float64(ids))
}

// Delete removes the series of the input (of the tenant, for a Set of
// ForTenant) when it stops.
func (s *Set) Delete() {
	if s.part {
		return
	}
	l := prometheus.Labels{}
	names := labels
	if len(s.base) == len(tenantLabels) {
		names = tenantLabels
	}
	for i, n := range names {
		l[n] = s.base[i]
	}
	for _, c := range s.v.all() {
		c.(interface {
			DeletePartialMatch(prometheus.Labels) int
		}).DeletePartialMatch(l)
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
		mux.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{Registry, TenantRegistry}, promhttp.HandlerOpts{}))
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
