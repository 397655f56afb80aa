// Package tenants is one msgraph input that collects its source for many
// tenants through one application (tenants, tenants_file): a stream per
// tenant, each an input.Instance with its own schedule, de-dup set,
// lateness, health conditions and namespace of the one state file, behind
// one Fluent Bit input and one thread.
//
// Each collect hands Fluent Bit what the streams read since the last one,
// every record carrying tenant_key, and starts the streams that are due,
// most urgent first, at most Workers at a time, each on a goroutine of its
// own: a slow page of one tenant holds up no other. The urgency is the
// class of the request a stream would send (a live poll, a re-read, a
// sweep, a backlog; budget.Class*); the application's budget across
// tenants (app_budget) serves waiting requests in the same order, so a
// backlog never delays another tenant's live poll by more than the
// requests already in flight.
//
// A tenant removed from the list (tenants_file is read again every
// tenants_refresh) stops being collected once its batch is committed; its
// namespace is kept, marked removed, until max_lookback has passed, so
// adding it again resumes where it stopped.
package tenants

import (
	"cmp"
	"crypto/x509"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/budget"
	"github.com/in-msgraph/in_msgraph/internal/config"
	"github.com/in-msgraph/in_msgraph/internal/graph"
	"github.com/in-msgraph/in_msgraph/internal/health"
	"github.com/in-msgraph/in_msgraph/internal/input"
	"github.com/in-msgraph/in_msgraph/internal/logging"
	"github.com/in-msgraph/in_msgraph/internal/metrics"
	"github.com/in-msgraph/in_msgraph/internal/records"
	"github.com/in-msgraph/in_msgraph/internal/source"
	"github.com/in-msgraph/in_msgraph/internal/state"
)

// Workers is how many tenants' reads run at once.
const Workers = 64

// tick: a stream with nothing due is still collected this often, so its
// health conditions are checked and its records go out.
const tick = time.Minute

// maxFirst: at most this many tenants make their first request (and
// token request) in one collect, so a start of hundreds does not send
// hundreds of token requests at once.
const maxFirst = 16

// Options are what tests replace; Instance is given to every stream.
type Options struct {
	Instance input.Options
	// Sync makes Collect wait for the reads it starts and hand over what
	// they read at once, so that a test clock decides what each sees.
	Sync bool
	// Workers replaces the package's Workers when positive.
	Workers int
	// Latency, with Sync, is how long the answer to a stream's request
	// takes in simulated time: the stream stays busy (its worker taken)
	// and its records wait that long, while the others go on.
	Latency func() time.Duration
}

// Stats are running totals, for tests and logs.
type Stats struct {
	Added, Removed, Dropped int // tenants added and removed by refreshes; namespaces dropped
	Refreshes, RefreshFails int
	Batches                 int
	Launched                int // stream collects started
	Busy                    int // most reads in flight at once
}

// Input is one multi-tenant input.
type Input struct {
	cfg      config.Config
	profile  source.Profile
	opts     Options
	now      func() time.Time
	log      *logging.Logger
	health   *health.Monitor // records of the input as a whole (tenant_id "*")
	metrics  *metrics.Set
	file     *state.File
	app      *budget.Budget
	workers  int
	unserve  func()
	refresh  time.Time // when tenants_file is read next
	listed   []string  // the tenants of the last good list, this shard's
	closed   bool
	throttle behind

	mu      sync.Mutex // guards streams, order, running and each stream's busy, out
	streams map[string]*stream
	order   []*stream
	running int
	wg      sync.WaitGroup

	batch  []byte
	handed []*stream // the streams whose records are in the batch last returned

	Stats Stats
}

type stream struct {
	tenant  string // as listed
	key     string // its namespace: the tenant in lower case
	in      *input.Instance
	busy    bool      // its collect runs
	readyAt time.Time // with Options.Latency: when its answer has come
	wake    time.Time // not asked whether it is due before then (Instance.Wake)
	out     []byte    // its batch, read and not yet handed over
	last    time.Time
	removed bool // left the list: closed once its batch is committed
}

// behind is the one throttled condition of the input.
type behind struct{ fired bool }

// New starts a multi-tenant input: it opens the state file and a stream
// for every tenant of cfg (cfg.Tenants, read from tenants_file at start)
// that cfg.Shard keeps. It sends no request.
func New(cfg config.Config, o Options) (*Input, error) {
	io := o.Instance
	if io.Now == nil {
		io.Now = time.Now
	}
	if io.Logger == nil {
		io.Logger = logging.New(io.Name, logging.Info)
	}
	if io.Repeat == 0 {
		io.Repeat = 15 * time.Minute
	}
	profile, ok := source.Lookup(cfg.Source)
	if !ok {
		return nil, fmt.Errorf("config: source = %q is invalid: one of: %s", cfg.Source, source.Names())
	}
	if io.Transport == nil {
		// One connection pool for every tenant: Graph is one host.
		var cas []*x509.Certificate
		if cfg.TLSCAFile != "" {
			var err error
			if cas, err = config.ReadCAFile(cfg.TLSCAFile); err != nil {
				return nil, fmt.Errorf("tls_ca_file %s: %w", cfg.TLSCAFile, err)
			}
		}
		io.Transport = graph.NewTransport(cas...)
	}
	o.Instance = io
	f := &Input{
		cfg: cfg, profile: profile, opts: o, now: io.Now, log: io.Logger,
		health:  health.New(cfg.Source, "*", io.Repeat, cfg.HealthRecords),
		metrics: metrics.For(io.Name, cfg.Source),
		workers: cmp.Or(max(o.Workers, 0), Workers),
		streams: map[string]*stream{},
	}
	f.health.OnEmit = func(c health.Code, status string) { f.metrics.Warning(string(c), status) }
	if profile.AppBudgeted() {
		f.app = budget.Shared(source.AppBudgetKey(cfg.AuthorityHost, cfg.ClientID), cfg.AppBudget, source.AppWindow)
	}
	io.Logger.Secret("client_secret", cfg.ClientSecret)
	io.Logger.Secret("private_key_password", cfg.PrivateKeyPassword)
	if cfg.DB != "" {
		file, err := openFile(cfg.DB, io.Now(), io.Logger)
		if err != nil {
			return nil, err
		}
		f.file = file
	} else {
		io.Logger.Warnf("no db is set: the de-dup sets and schedules of the %d tenants live in memory only, so a restart starts afresh and may deliver up to initial_lookback (%s) of events again; set db to a file on persistent storage", len(cfg.Tenants), config.FormatDuration(cfg.InitialLookback))
	}
	if cfg.MetricsListen != "" {
		release, err := metrics.Serve(cfg.MetricsListen)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("metrics_listen %s: %w: choose a free address, or the same address for every input", cfg.MetricsListen, err)
		}
		f.unserve = release
	}
	now := io.Now()
	if err := f.apply(now, cfg.Tenants); err != nil {
		f.Close()
		return nil, err
	}
	if len(f.order) == 0 {
		f.Close()
		return nil, fmt.Errorf("shard %d/%d keeps none of the %d tenants listed: a shard with no tenant collects nothing; list more tenants, or run fewer shards", cfg.Shard.I, cfg.Shard.N, len(cfg.Tenants))
	}
	f.refresh = now.Add(cfg.TenantsRefresh)
	f.log.Infof("collecting %s for %d tenants%s (app_budget %d requests per 10 s)", cfg.Source, len(f.order), f.shardNote(len(cfg.Tenants)), cfg.AppBudget)
	return f, nil
}

// openFile opens the shared state file, moving a damaged one aside once.
func openFile(path string, now time.Time, log *logging.Logger) (*state.File, error) {
	file, err := state.OpenFile(path)
	var ue *state.UnreadableError
	if errors.As(err, &ue) {
		moved, merr := state.MoveAside(path, now)
		if merr != nil {
			return nil, fmt.Errorf("%v, and %w", err, merr)
		}
		log.Errorf("%v; it was moved to %s and a new state file was started, so events of the last initial_lookback may be delivered again for every tenant", err, moved)
		file, err = state.OpenFile(path)
	}
	if err != nil {
		var oe *state.OpenError
		if errors.As(err, &oe) {
			return nil, fmt.Errorf("%w; %s", err, state.Fix(err))
		}
		return nil, err
	}
	return file, nil
}

func (f *Input) shardNote(listed int) string {
	if f.cfg.Shard.N == 0 {
		return ""
	}
	return fmt.Sprintf(" of %d listed (shard %d/%d)", listed, f.cfg.Shard.I, f.cfg.Shard.N)
}

// apply makes the streams those of list (this shard's part of it): new
// tenants start, removed ones stop once idle; namespaces of tenants long
// gone are dropped.
func (f *Input) apply(now time.Time, list []string) error {
	want := map[string]string{}
	var kept []string
	for _, t := range list {
		if f.cfg.Shard.Keeps(t) {
			want[strings.ToLower(t)] = t
			kept = append(kept, t)
		}
	}
	f.listed = kept
	var errs []error
	for _, t := range kept {
		key := strings.ToLower(t)
		f.mu.Lock()
		s := f.streams[key]
		f.mu.Unlock()
		if s != nil && !s.removed {
			continue
		}
		if s != nil {
			// Listed again before it stopped: it goes on.
			f.mu.Lock()
			s.removed = false
			f.mu.Unlock()
			continue
		}
		if err := f.start(now, t, key); err != nil {
			errs = append(errs, err)
		}
	}
	f.mu.Lock()
	for key, s := range f.streams {
		if _, ok := want[key]; !ok && !s.removed {
			s.removed = true
			f.Stats.Removed++
		}
	}
	f.mu.Unlock()
	f.closeRemoved(now)
	f.expire(now, want)
	return errors.Join(errs...)
}

// start opens the stream of tenant t.
func (f *Input) start(now time.Time, t, key string) error {
	cfg := f.cfg.ForTenant(t)
	o := f.opts.Instance
	o.Logger = f.log.With("tenant " + t + ":")
	o.Extra = []string{f.cfg.TenantKey, t}
	o.Fleet = true
	o.Budget = nil // the tenant's own: per app and tenant
	o.App = f.app
	o.AppWho = f // the input orders its tenants itself (launch)
	if f.cfg.MetricsTenantLabel {
		o.Metrics = metrics.ForTenant(o.Name, f.cfg.Source, t)
	} else {
		o.Metrics = f.metrics.Part()
	}
	if f.file != nil {
		file := f.file
		if err := file.MarkRemoved(key, time.Time{}); err != nil {
			f.log.Warnf("%v", err)
		}
		o.OpenState = func(string) (*state.DB, error) { return file.Namespace(key) }
		o.DiscardState = func(path string, now time.Time) (string, error) {
			if err := file.Drop(key); err != nil {
				return "", err
			}
			return fmt.Sprintf("the state of tenant %s in %s was cleared and started again", t, path), nil
		}
	}
	in, err := input.New(cfg, o)
	if err != nil {
		return fmt.Errorf("tenant %s: %w", t, err)
	}
	f.mu.Lock()
	if _, had := f.streams[key]; !had && !f.refresh.IsZero() {
		f.Stats.Added++
	}
	s := &stream{tenant: t, key: key, in: in}
	f.streams[key] = s
	f.order = append(f.order, s)
	f.mu.Unlock()
	return nil
}

// closeRemoved closes the removed streams that are idle and marks their
// namespaces removed.
func (f *Input) closeRemoved(now time.Time) {
	f.mu.Lock()
	var gone []*stream
	for _, s := range f.order {
		if s.removed && !s.busy && s.out == nil && !slices.Contains(f.handed, s) {
			gone = append(gone, s)
		}
	}
	for _, s := range gone {
		delete(f.streams, s.key)
		f.order = slices.DeleteFunc(f.order, func(x *stream) bool { return x == s })
	}
	f.mu.Unlock()
	for _, s := range gone {
		f.guard(s, "stop", func() {
			if err := s.in.Close(); err != nil {
				f.log.Warnf("tenant %s: %v", s.tenant, err)
			}
		})
		if f.file != nil {
			if err := f.file.MarkRemoved(s.key, now); err != nil {
				f.log.Warnf("%v", err)
			}
		}
		f.log.Infof("tenant %s is no longer listed: it is not collected any more; its state is kept for max_lookback (%s), so listing it again resumes where it stopped", s.tenant, config.FormatDuration(f.cfg.MaxLookback))
	}
}

// expire marks the namespaces of tenants not listed, and drops those
// marked longer than max_lookback ago: their ids and schedule could no
// longer stop a duplicate.
func (f *Input) expire(now time.Time, want map[string]string) {
	if f.file == nil {
		return
	}
	ns, err := f.file.Namespaces()
	if err != nil {
		f.log.Warnf("%v", err)
		return
	}
	for key, removed := range ns {
		if _, ok := want[key]; ok {
			continue
		}
		f.mu.Lock()
		_, open := f.streams[key]
		f.mu.Unlock()
		switch {
		case open:
		case removed.IsZero():
			// Listed by an earlier run, or by another shard's list.
			if err := f.file.MarkRemoved(key, now); err != nil {
				f.log.Warnf("%v", err)
			}
		case now.Sub(removed) > f.cfg.MaxLookback:
			if err := f.file.Drop(key); err != nil {
				f.log.Warnf("%v", err)
				continue
			}
			f.Stats.Dropped++
			f.log.Infof("the state of tenant %s, unlisted since %s (more than max_lookback), was deleted", key, removed.UTC().Format(time.RFC3339))
		}
	}
}

// reload reads tenants_file again when due. A file that cannot be read,
// or holds no valid list, leaves the last good list collected, and says
// so in a tenants_file_error record.
func (f *Input) reload(now time.Time) {
	if f.cfg.TenantsFile == "" || now.Before(f.refresh) {
		return
	}
	f.refresh = now.Add(f.cfg.TenantsRefresh)
	f.Stats.Refreshes++
	list, err := config.ReadTenants(f.cfg.TenantsFile, f.profile.IsActivity())
	if err != nil {
		f.Stats.RefreshFails++
		msg := fmt.Sprintf("%v: the %d tenants of the last list read go on being collected; the file is read again every tenants_refresh (%s)", err, len(f.listed), config.FormatDuration(f.cfg.TenantsRefresh))
		if f.health.Fire(now, health.TenantsFileError, msg, records.Field{Key: "tenants_file", Value: f.cfg.TenantsFile}, records.Field{Key: "tenants", Value: len(f.listed)}) {
			f.log.Errorf("%s", msg)
		}
		return
	}
	before := len(f.order)
	if err := f.apply(now, list); err != nil {
		// A tenant whose stream cannot start (its configuration) is
		// reported, and the others go on.
		msg := fmt.Sprintf("tenants_file %s: %v", f.cfg.TenantsFile, err)
		if f.health.Fire(now, health.TenantsFileError, msg, records.Field{Key: "tenants_file", Value: f.cfg.TenantsFile}) {
			f.log.Errorf("%s", msg)
		}
		return
	}
	if f.health.Clear(now, health.TenantsFileError, fmt.Sprintf("tenants_file %s is read again: %d tenants", f.cfg.TenantsFile, len(f.listed))) {
		f.log.Infof("tenants_file %s is read again", f.cfg.TenantsFile)
	}
	if len(f.order) != before {
		f.log.Infof("tenants_file %s: %d tenants now", f.cfg.TenantsFile, len(f.listed))
	}
}

// Collect returns the records the streams read since the last call, or
// nil, and starts the streams that are due. A non-empty batch must be
// followed by Commit once Fluent Bit has taken it.
func (f *Input) Collect() []byte {
	if f.closed {
		return nil
	}
	if len(f.handed) > 0 {
		f.Commit() // Fluent Bit calls collect again only after it took the batch
	}
	now := f.now()
	f.reload(now)
	f.release(now)
	f.closeRemoved(now)
	f.launch(now)
	if f.opts.Sync {
		f.wg.Wait()
	}
	f.checkBehind(now)
	f.batch = f.health.Take(f.batch[:0])
	f.mu.Lock()
	for _, s := range f.order {
		if len(f.batch) >= maxBatch {
			break // the rest goes with the next collects
		}
		if !s.busy && s.out != nil {
			f.batch = append(f.batch, s.out...)
			s.out = nil
			f.handed = append(f.handed, s)
		}
	}
	f.mu.Unlock()
	if len(f.batch) == 0 {
		if cap(f.batch) > maxBatch {
			f.batch = nil
		}
		return nil
	}
	f.Stats.Batches++
	return f.batch
}

// maxBatch: a batch takes the tenants' pages up to this many bytes; the
// others wait for the next collect.
const maxBatch = 8 << 20

// guard runs fn for tenant s, turning a panic (a bug) into a log line and
// an internal_error record of that tenant, so one tenant's fault never
// stops the others.
func (f *Input) guard(s *stream, what string, fn func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			ok = false
			f.log.Errorf("tenant %s: internal error in %s, recovered: %v\n%s", s.tenant, what, r, debug.Stack())
			s.wake = f.now().Add(time.Minute)
		}
	}()
	fn()
	return true
}

// release ends the simulated latency of the streams whose answer has come
// (Options.Latency).
func (f *Input) release(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.order {
		if s.busy && !s.readyAt.IsZero() && !now.Before(s.readyAt) {
			s.busy, s.readyAt = false, time.Time{}
			f.running--
		}
	}
}

// launch starts the due streams, most urgent first.
func (f *Input) launch(now time.Time) {
	type due struct {
		s     *stream
		class int
	}
	var ready []due
	f.mu.Lock()
	free := f.workers - f.running
	var idle []*stream
	for _, s := range f.order {
		if !s.busy && s.out == nil && !s.removed && !slices.Contains(f.handed, s) {
			idle = append(idle, s)
		}
	}
	f.mu.Unlock()
	if free <= 0 {
		return
	}
	// Only this goroutine starts reads, so the idle streams stay idle.
	for _, s := range idle {
		housekeeping := now.Sub(s.last) >= tick
		if now.Before(s.wake) && !housekeeping {
			continue
		}
		var class int
		var ok bool
		if !f.guard(s, "planning", func() {
			if class, ok = s.in.Due(now); !ok {
				s.wake = s.in.Wake(now)
			}
		}) {
			continue
		}
		if !ok {
			if !housekeeping {
				continue
			}
			class = budget.ClassBacklog + 1
		}
		ready = append(ready, due{s, class})
	}
	// Only so many tenants send their first request (and token request)
	// in one collect; the others that are due take the workers.
	fresh := 0
	ready = slices.DeleteFunc(ready, func(d due) bool {
		if !d.s.last.IsZero() {
			return false
		}
		fresh++
		return fresh > maxFirst
	})
	slices.SortStableFunc(ready, func(a, b due) int {
		if a.class != b.class {
			return a.class - b.class
		}
		return a.s.last.Compare(b.s.last)
	})
	for _, d := range ready[:min(free, len(ready))] {
		s := d.s
		f.mu.Lock()
		s.busy, s.last = true, now
		f.running++
		f.Stats.Launched++
		f.Stats.Busy = max(f.Stats.Busy, f.running)
		f.mu.Unlock()
		f.wg.Add(1)
		go f.run(s)
	}
}

// run is one stream's collect, on its own goroutine.
func (f *Input) run(s *stream) {
	defer f.wg.Done()
	sent := s.in.Stats.Requests
	var out []byte
	func() {
		defer func() {
			if r := recover(); r != nil {
				f.log.Errorf("tenant %s: internal error in collect, recovered: %v\n%s", s.tenant, r, debug.Stack())
				s.in.Abandon()
				s.in.InternalError("an internal error stopped the plugin while reading a page; nothing of the page was delivered and it is read again in a minute")
				out = nil
				f.mu.Lock()
				s.wake = f.now().Add(time.Minute)
				f.mu.Unlock()
			}
		}()
		out = s.in.Collect()
	}()
	f.mu.Lock()
	// The batch is the instance's buffer, untouched until its next
	// collect, which comes after the batch is committed.
	s.out = nil
	if len(out) > 0 {
		s.out = out
	}
	if lat := f.opts.Latency; lat != nil && f.opts.Sync && s.in.Stats.Requests > sent {
		s.readyAt = f.now().Add(lat())
	} else {
		s.busy = false
		f.running--
	}
	f.mu.Unlock()
}

// checkBehind raises one throttled record for the input when tenants fall
// behind (the application's budget, or the tenants' own, cannot keep up),
// naming how many and by how much, and clears it when all caught up.
func (f *Input) checkBehind(now time.Time) {
	limit := max(5*f.cfg.PollInterval, 5*time.Minute)
	var n int
	var worstFresh, worstLive, worstRec time.Duration
	var worst string
	var ids int
	var lookback time.Duration
	var last time.Time
	f.mu.Lock()
	total := len(f.order)
	var order []*stream
	for _, s := range f.order {
		if !s.busy {
			order = append(order, s)
		}
	}
	f.mu.Unlock()
	for _, s := range order {
		var fresh, live, rec, lb time.Duration
		if !f.guard(s, "checking conditions", func() {
			fresh, live, rec = s.in.Behind(now)
			lb = s.in.Lookback()
			ids += s.in.IDs()
			// The oldest last success: a stalled tenant shows.
			if p := s.in.LastPoll(); !p.IsZero() && (last.IsZero() || p.Before(last)) {
				last = p
			}
		}) {
			continue
		}
		lookback = max(lookback, lb)
		if fresh > limit || live > lb+limit || rec > 2*lb+limit {
			n++
		}
		if fresh > worstFresh {
			worstFresh, worst = fresh, s.tenant
		}
		worstLive, worstRec = max(worstLive, live), max(worstRec, rec)
	}
	f.metrics.State(lookback, worstLive, last, ids)
	fields := []records.Field{{Key: "tenants_behind", Value: n}, {Key: "tenants", Value: total},
		{Key: "live_behind_seconds", Value: worstFresh}, {Key: "reread_behind_seconds", Value: worstLive},
		{Key: "reconcile_behind_seconds", Value: worstRec}, {Key: "app_budget", Value: f.cfg.AppBudget}}
	switch {
	case n > 0:
		msg := fmt.Sprintf("collection is behind for %d of %d tenants: the newest events of tenant %s have waited %s, re-reads up to %s and reconcile sweeps up to %s; the requests wanted exceed what Graph allows (app_budget %d requests per 10 s for the application, 5 per 10 s per tenant): live polls go first, then re-reads, then sweeps and backlogs, and no time is skipped",
			n, total, worst, worstFresh.Round(time.Second), worstLive.Round(time.Second), worstRec.Round(time.Second), f.cfg.AppBudget)
		if f.health.Fire(now, health.Throttled, msg, fields...) {
			f.log.Warnf("%s", msg)
		}
		f.throttle.fired = true
	case f.throttle.fired && worstFresh <= limit/2:
		if f.health.Clear(now, health.Throttled, "every tenant has caught up", fields...) {
			f.log.Infof("every tenant has caught up")
		}
		f.throttle.fired = false
	}
}

// Commit records the batch Collect last returned as delivered, stream by
// stream.
//
// A commit that fails with a bug is that tenant's alone: its batch is
// forgotten (its events are read again, so they may be delivered twice)
// and reported as its internal_error; the other tenants' commits go on.
func (f *Input) Commit() {
	handed := f.handed
	f.handed = nil
	for _, s := range handed {
		if !f.guard(s, "commit", s.in.Commit) {
			f.guard(s, "commit", func() {
				s.in.Abandon()
				s.in.InternalError("an internal error stopped the plugin from recording a batch of this tenant; its events were delivered and are read again, so they may be delivered twice")
			})
		}
	}
}

// Abandon forgets the batch Collect last returned: nothing of it counts as
// delivered, so its events are read again.
func (f *Input) Abandon() {
	handed := f.handed
	f.handed = nil
	for _, s := range handed {
		s.in.Abandon()
	}
}

// Hold returns the commits of the batch Collect last returned.
func (f *Input) Hold() input.Held {
	parts := make([]input.Held, 0, len(f.handed))
	for _, s := range f.handed {
		parts = append(parts, s.in.Hold())
	}
	return input.Join(parts...)
}

// CommitPlace commits h without its ids (input.Instance.CommitPlace).
func (f *Input) CommitPlace(h input.Held) {
	f.handed = nil
	h.Each(func(in *input.Instance, part input.Held) { in.CommitPlace(part) })
}

// Refused tells every stream of the batch that Fluent Bit did not accept
// it: it stays pending and is offered again.
func (f *Input) Refused(n int) { input.ReportRefused(f.health, f.log, f.now(), n) }

// Accepted tells the input that Fluent Bit accepted its batch.
func (f *Input) Accepted() { input.ReportAccepted(f.health, f.log, f.now()) }

// InternalError reports a bug caught outside the input's own methods.
func (f *Input) InternalError(msg string) { f.health.Event(f.now(), health.InternalError, msg) }

// Logf logs an error line for the input, secrets scrubbed.
func (f *Input) Logf(format string, args ...any) { f.log.Errorf(format, args...) }

// Cancel aborts every request in flight, and every later one. It may be
// called while another method runs.
func (f *Input) Cancel() {
	f.mu.Lock()
	order := slices.Clone(f.order)
	f.mu.Unlock()
	for _, s := range order {
		s.in.Cancel()
	}
}

// Wait waits for the reads in flight to end.
func (f *Input) Wait() { f.wg.Wait() }

// Close stops every stream (after the reads in flight end), and closes
// the state file; it is idempotent. An uncommitted batch is not
// committed: it is delivered again next time.
func (f *Input) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.Cancel()
	f.wg.Wait()
	var errs []error
	f.mu.Lock()
	order := f.order
	f.mu.Unlock()
	for _, s := range order {
		if err := s.in.Close(); err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", s.tenant, err))
		}
	}
	if f.file != nil {
		errs = append(errs, f.file.Close())
	}
	f.metrics.Delete()
	if f.app != nil {
		f.app.Forget(f)
	}
	if f.unserve != nil {
		f.unserve()
	}
	if t, ok := f.opts.Instance.Transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	return errors.Join(errs...)
}

// Tenants returns the tenants collected, as listed, in order.
func (f *Input) Tenants() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.order))
	for _, s := range f.order {
		if !s.removed {
			out = append(out, s.tenant)
		}
	}
	return out
}

// Stream returns the instance collecting tenant t (any case), or nil.
func (f *Input) Stream(t string) *input.Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.streams[strings.ToLower(t)]; s != nil {
		return s.in
	}
	return nil
}
