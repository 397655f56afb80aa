// Package input is one msgraph input instance: it plans queries with the
// schedule, reads one Graph page per collect call, drops what was already
// delivered, and hands Fluent Bit a msgpack batch. The batch's keys and the
// schedule's progress are committed only when Fluent Bit has taken the
// batch (Commit), so a crash repeats at most one batch and skips nothing.
//
// Nothing here sleeps: waits (Retry-After, back-off, the request budget)
// are "not before" times checked on the next call.
package input

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"strings"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/auth"
	"github.com/in-msgraph/in_msgraph/internal/budget"
	"github.com/in-msgraph/in_msgraph/internal/config"
	"github.com/in-msgraph/in_msgraph/internal/dedup"
	"github.com/in-msgraph/in_msgraph/internal/graph"
	"github.com/in-msgraph/in_msgraph/internal/health"
	"github.com/in-msgraph/in_msgraph/internal/logging"
	"github.com/in-msgraph/in_msgraph/internal/manage"
	"github.com/in-msgraph/in_msgraph/internal/metrics"
	"github.com/in-msgraph/in_msgraph/internal/records"
	"github.com/in-msgraph/in_msgraph/internal/schedule"
	"github.com/in-msgraph/in_msgraph/internal/source"
	"github.com/in-msgraph/in_msgraph/internal/state"
)

// Options are the parts of an instance that tests replace.
type Options struct {
	Name      string            // instance name for logs, e.g. msgraph.0
	Now       func() time.Time  // clock; nil means time.Now
	Rand      *rand.Rand        // jitter; nil means seeded from the clock
	Logger    *logging.Logger   // nil means stderr at info
	Transport http.RoundTripper // nil means graph.NewTransport()
	Budget    *budget.Budget    // nil means the shared budget of the app and tenant
	Repeat    time.Duration     // health repeat interval; 0 means 15m
	// OpenState opens the state file; nil means state.Open.
	OpenState func(path string) (*state.DB, error)
	// DiscardState replaces state.MoveAside for a state that cannot be
	// read, and says what it did ("it was moved to …"): one tenant's
	// namespace of a shared file is cleared, not the file.
	DiscardState func(path string, now time.Time) (string, error)

	// What a multi-tenant input (internal/tenants) sets for each tenant.
	//
	// App is the application's budget across tenants (app_budget), for
	// the sources that count against it; nil means the process-wide one
	// of the client_id.
	App *budget.Budget
	// AppWho is who waits in App's queue: the multi-tenant input, which
	// orders its own tenants, rather than each of them (nil: the instance).
	AppWho any
	// Extra are key-value pairs every record carries last (tenant_key).
	Extra []string
	// Metrics replaces the input's metrics (a tenant's, labelled).
	Metrics *metrics.Set
	// Fleet: the instance is one tenant of many. Being behind is reported
	// once for all of them (Behind), not by each, and the instance serves
	// no metrics_listen of its own.
	Fleet bool
}

// Stats are running totals, for tests and logs.
type Stats struct {
	Requests, Pages, Delivered, Duplicates, Invalid int
	Errors, Throttled, Commits                      int
	LateArrivals                                    int
	LinkRefused                                     int // nextLinks Graph refused (expired)
	// Unreadable counts the pages that could not be read, Stretches the
	// unreadable stretches found (unreadable blobs, for the Management
	// Activity API).
	Unreadable, Stretches int
	Blobs                 int // content blobs fetched
}

// Instance is one configured input.
type Instance struct {
	cfg     config.Config
	profile source.Profile
	now     func() time.Time
	rng     *rand.Rand
	log     *logging.Logger
	tokens  *auth.Source
	client  *graph.Client
	budget  *budget.Budget
	// app is the application's budget across tenants, or nil.
	app    *budget.Budget
	appWho any
	fleet  bool
	sched  *schedule.Schedule
	seen   *dedup.Set
	db     store
	health *health.Monitor
	ctx    context.Context
	cancel context.CancelFunc
	// transport is kept to close its idle connections on Close.
	transport http.RoundTripper
	metrics   *metrics.Set
	unserve   func() // stops serving metrics_listen
	tokensOK  int    // token counts already reported
	tokensErr int

	// act is set for the Management Activity API sources (activity.go).
	act *activity
	// svc names the API in messages.
	svc string

	dec     records.Decoder
	page    records.Page
	inPage  map[records.Key]struct{}
	batch   []byte
	pending *commit

	// followed holds, per chunk being paged, the nextLinks already
	// followed in its chain: a loop guard. req is the chunk of the
	// request in flight and whether it followed a link.
	followed  map[uint64]map[string]struct{}
	req       request
	linkFails int // nextLinks Graph refused in a row
	// lastReadable is when a page was last read, unreadableRun how many
	// unreadable answers came since.
	lastReadable  time.Time
	unreadableRun int
	top           int // $top now: page_size, halved while pages are too large
	topOK         int // pages read since top was last halved
	notBefore     time.Time
	failures      int // consecutive failed requests
	throttles     int // consecutive 429s
	closed        bool

	newest   time.Time // newest event time Graph has returned
	lastPoll time.Time // last page read successfully
	began    time.Time // when this instance was created
	// lastNew is when a page last brought an event not delivered before,
	// lastPlan when the schedule last planned (idle_poll_interval).
	lastNew, lastPlan time.Time
	late              lateAgg
	lateness          Histogram
	lastReport        time.Time

	// stateProblem is a damaged state file moved aside, reported as
	// state_error on the next collect; unsaved holds what a failed commit
	// could not write, written with the next one.
	stateProblem string
	unsavedAdd   []state.Entry
	unsavedDel   []records.Key
	commitFailed bool
	st           stateFile // the file's loading, retries and pacing (statefile.go)

	Stats Stats
}

// store is where commits go: the state file.
type store interface {
	Commit(add []state.Entry, del []records.Key, schedule []byte) error
	Close() error
}

type request struct {
	chunk  uint64
	linked bool
	top    int // the $top it asked for
}

type commit struct {
	split  bool // read the chunk again in halves
	add    []state.Entry
	chunk  uint64
	result schedule.PageResult
	when   time.Time
	class  schedule.Class
	// stretch: the page is of the retry of an unreadable stretch.
	stretch bool
	act     *actCommit // Management Activity API sources
	// live: the page is of a live query planned by this run.
	live bool
}

type lateAgg struct {
	count int
	max   time.Duration
}

// New opens the state and prepares an instance; it sends no request.
func New(cfg config.Config, o Options) (*Instance, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.New(rand.NewSource(o.Now().UnixNano()))
	}
	if o.Logger == nil {
		o.Logger = logging.New(o.Name, logging.Info)
	}
	if o.Transport == nil {
		var cas []*x509.Certificate
		if cfg.TLSCAFile != "" {
			var err error
			if cas, err = config.ReadCAFile(cfg.TLSCAFile); err != nil {
				return nil, fmt.Errorf("tls_ca_file %s: %w", cfg.TLSCAFile, err)
			}
		}
		o.Transport = graph.NewTransport(cas...)
	}
	if o.Repeat == 0 {
		o.Repeat = 15 * time.Minute
	}
	profile, ok := source.Lookup(cfg.Source)
	if !ok {
		return nil, fmt.Errorf("config: source = %q is invalid: one of: %s", cfg.Source, source.Names())
	}
	// The token is for the API the source comes from: a Graph token is
	// refused by the Management Activity API, and the other way round.
	resource := cfg.GraphHost
	if profile.IsActivity() {
		resource = cfg.ManagementHost
	}
	o.Logger.Secret("client_secret", cfg.ClientSecret)
	o.Logger.Secret("private_key_password", cfg.PrivateKeyPassword)
	// Every request of the instance, token requests included, ends when
	// it is cancelled (Close, or a stop).
	ctx, cancel := context.WithCancel(context.Background())
	started := false
	defer func() {
		if !started {
			cancel()
		}
	}()
	creds := auth.Credentials{
		Context:            ctx,
		Kind:               cfg.Auth,
		TenantID:           cfg.TenantID,
		ClientID:           cfg.ClientID,
		Secret:             cfg.ClientSecret,
		AuthorityHost:      cfg.AuthorityHost,
		Scope:              resource + "/.default",
		Resource:           resource + "/",
		FederatedTokenFile: cfg.FederatedTokenFile,
		IMDSEndpoint:       cfg.IMDSEndpoint,
		HTTPClient:         &http.Client{Transport: o.Transport},
		Timeout:            cfg.HTTPTimeout,
		Now:                o.Now,
	}
	if cfg.ClientSecretFile != "" {
		file := cfg.ClientSecretFile
		log := o.Logger
		creds.SecretFile = func() (string, error) {
			s, err := config.ReadSecretFile(file)
			log.Secret("client_secret_file", s)
			return s, err
		}
	}
	if cfg.Auth == config.AuthCertificate {
		cert, err := auth.LoadCertificate(cfg.CertificateFile, cfg.PrivateKeyFile, cfg.PrivateKeyPassword, cfg.CertificateAlgorithm, cfg.SendCertificateChain)
		if err != nil {
			return nil, err
		}
		creds.Certificate = cert
		o.Logger.Infof("client certificate %s (SHA-1 thumbprint %s), assertions signed %s", cfg.CertificateFile, cert.Thumbprint(), cfg.CertificateAlgorithm)
	}
	tokens := auth.New(creds)
	client, err := graph.NewClient(cfg.GraphHost, tokens, o.Transport, cfg.HTTPTimeout)
	if err != nil {
		return nil, err
	}
	client.Now = o.Now
	var act *activity
	if profile.IsActivity() {
		mc, err := manage.NewClient(cfg.ManagementHost, cfg.TenantID, cfg.PublisherID, tokens, o.Transport, cfg.HTTPTimeout)
		if err != nil {
			return nil, err
		}
		mc.Now = o.Now
		act = newActivity(mc, profile.ContentType)
	}
	if o.Budget == nil {
		b := profile.Budget
		o.Budget = budget.Shared(profile.BudgetKey(cfg.AuthorityHost, cfg.TenantID, cfg.ClientID), b.Requests, b.Window)
	}
	if o.App == nil && profile.AppBudgeted() && cfg.AppBudget > 0 {
		o.App = budget.Shared(source.AppBudgetKey(cfg.AuthorityHost, cfg.ClientID), cfg.AppBudget, source.AppWindow)
	}
	if !profile.AppBudgeted() {
		o.App = nil
	}
	if o.Metrics == nil {
		o.Metrics = metrics.For(o.Name, cfg.Source)
	}
	in := &Instance{
		cfg:      cfg,
		profile:  profile,
		now:      o.Now,
		rng:      o.Rand,
		log:      o.Logger,
		tokens:   tokens,
		client:   client,
		budget:   o.Budget,
		app:      o.App,
		appWho:   o.AppWho,
		fleet:    o.Fleet,
		seen:     dedup.New(),
		health:   health.New(cfg.Source, cfg.TenantID, o.Repeat, cfg.HealthRecords),
		dec:      records.Decoder{TimeField: profile.TimeField, Versioned: profile.Versioned, IDField: profile.IDField},
		act:      act,
		svc:      "Graph",
		inPage:   map[records.Key]struct{}{},
		began:    o.Now(),
		lastNew:  o.Now(),
		followed: map[uint64]map[string]struct{}{},
		top:      profile.Top(cfg.PageSize),

		transport: o.Transport,
		metrics:   o.Metrics,
	}
	in.dec.SetExtra(o.Extra...)
	if act != nil {
		in.svc = manage.Service
	}
	in.health.OnEmit = func(c health.Code, status string) { in.metrics.Warning(string(c), status) }
	in.st = stateFile{open: o.OpenState, discard: o.DiscardState, maxUnsaved: MaxUnsaved}
	if in.st.open == nil {
		in.st.open = state.Open
	}
	if in.st.discard == nil {
		in.st.discard = func(path string, now time.Time) (string, error) {
			moved, err := state.MoveAside(path, now)
			return "it was moved to " + moved + " and a new state file was started", err
		}
	}
	// From here on a failure closes what was opened (Close).
	in.ctx, in.cancel, started = ctx, cancel, true
	if cfg.MetricsListen != "" && !o.Fleet {
		release, err := metrics.Serve(cfg.MetricsListen)
		if err != nil {
			in.Close()
			return nil, fmt.Errorf("metrics_listen %s: %w: choose a free address, or the same address for every input", cfg.MetricsListen, err)
		}
		in.unserve = release
	}
	params := schedule.Params{
		PollInterval:    cfg.PollInterval,
		Lookback:        cfg.Lookback,
		MaxLookback:     cfg.MaxLookback,
		Reconcile:       cfg.Reconcile,
		InitialLookback: cfg.InitialLookback,
	}
	if in.profile.Strict {
		params.Grain = 2 * time.Second
	}
	in.sched = schedule.New(params)
	if cfg.DB == "" {
		in.log.Warnf("no db is set: the de-dup set and the schedule live in memory only, so a restart starts afresh and may deliver up to initial_lookback (%s) of events again; set db to a file on persistent storage", config.FormatDuration(cfg.InitialLookback))
	} else if err := in.openState(params); err != nil {
		in.Close()
		return nil, err
	}
	in.log.Infof("configuration: %s", cfg.Redacted())
	if in.top < cfg.PageSize && act == nil {
		in.log.Infof("page_size %d is above what %s accepts: pages of %d are asked for", cfg.PageSize, profile.Name, in.top)
	}
	return in, nil
}

// openState opens the state file and loads it (loadState, statefile.go).
// A file in use is a configuration error. A damaged file is moved aside
// (kept, never overwritten) and replaced by a new one. Any other failure
// (open files, memory, permissions, space, I/O) leaves the file as it is:
// it is reported as state_error, nothing is delivered, and opening is
// retried on later collects (stateGate).
func (in *Instance) openState(params schedule.Params) error {
	in.st.params = params
	in.st.start = in.now()
	err := in.loadState(in.st.start)
	switch {
	case err == nil:
	case errors.Is(err, state.ErrInUse):
		return err
	default:
		in.notLoaded(in.st.start, err)
	}
	return nil
}

// Abandon forgets the batch being built and the page position, after a
// failure inside Collect: nothing of it counts as delivered, so its events
// are read again.
func (in *Instance) Abandon() {
	in.pending = nil
}

// Logf logs an error line for this instance, secrets scrubbed.
func (in *Instance) Logf(format string, args ...any) { in.log.Errorf(format, args...) }

// Collect returns the next batch of msgpack records, or nil when there is
// nothing to deliver now. A non-empty batch must be followed by Commit once
// Fluent Bit has taken it; an empty one is committed here.
func (in *Instance) Collect() []byte {
	if in.closed {
		return nil
	}
	if in.pending != nil {
		// Fluent Bit calls the next collect only after it appended the
		// previous batch; a missing cleanup call means it did.
		in.Commit()
	}
	now := in.now()
	if b, hold := in.stateGate(now); hold {
		return b
	}
	in.plan(now)
	in.abandonStretches(now)
	in.checkConditions(now)
	in.batch = in.batch[:0]
	in.page.Records = in.page.Records[:0]
	if in.act != nil {
		in.readActivity(now)
	} else {
		in.readPage(now)
	}
	in.batch = in.health.Take(in.batch)
	for _, r := range in.page.Records {
		if in.isNew(r) {
			in.batch = append(in.batch, in.page.Buf[r.Start:r.End]...)
		}
	}
	if len(in.batch) == 0 {
		in.Commit()
		return nil
	}
	return in.batch
}

// quietAfter: a tenant that has brought no new event for this many
// idle_poll_intervals is quiet, and polled every idle_poll_interval.
const quietAfter = 3

// plan has the schedule plan what is due, unless the tenant is quiet and
// idle_poll_interval has not passed since the last plan. Polling a quiet
// tenant less often keeps the late-event guarantee: each live level's
// query reaches back from its own last run, however long ago that was,
// so the levels' runs still cover every moment of visibility; only the
// time to deliver a quiet tenant's first new event grows, to at most
// idle_poll_interval. The first new event makes it busy again.
func (in *Instance) plan(now time.Time) {
	idle := in.cfg.IdlePollInterval
	if idle > in.cfg.PollInterval && in.act == nil && now.Sub(in.lastNew) >= quietAfter*idle && now.Sub(in.lastPlan) < idle {
		return
	}
	in.lastPlan = now
	in.sched.Plan(now)
}

// Quiet reports whether the tenant is polled every idle_poll_interval.
func (in *Instance) Quiet(now time.Time) bool {
	idle := in.cfg.IdlePollInterval
	return idle > in.cfg.PollInterval && in.act == nil && now.Sub(in.lastNew) >= quietAfter*idle
}

// isNew reports whether r is neither delivered nor earlier on this page,
// and queues its key for the commit.
func (in *Instance) isNew(r records.Record) bool {
	if in.pending == nil {
		return false
	}
	if in.seen.Has(r.Key) {
		in.Stats.Duplicates++
		in.metrics.Duplicate()
		return false
	}
	if _, dup := in.inPage[r.Key]; dup {
		in.Stats.Duplicates++
		in.metrics.Duplicate()
		return false
	}
	in.inPage[r.Key] = struct{}{}
	in.lastNew = in.pending.when
	in.pending.add = append(in.pending.add, state.Entry{Key: r.Key, Time: in.entryTime(r)})
	in.noteRecord(r)
	return true
}

// readPage sends at most one request and leaves its records in in.page,
// with a pending commit describing them.
func (in *Instance) readPage(now time.Time) {
	if now.Before(in.notBefore) {
		return
	}
	chunk, ok := in.sched.Next(in.Stats.Requests%schedule.ReconcileShare == schedule.ReconcileShare-1)
	if !ok {
		return
	}
	// A chunk being paged resumes from its own nextLink, even when other
	// chunks were served in between; otherwise it is queried afresh from
	// the position it reached.
	link := chunk.Link
	if link == "" {
		link = in.profile.URL(in.cfg.GraphHost, chunk.From, chunk.To, in.top)
	}
	in.req = request{chunk: chunk.ID, linked: chunk.Link != "", top: in.top}
	if !in.take(now, in.classOf(chunk)) {
		return
	}
	in.Stats.Requests++
	resp, err := in.client.Get(in.ctx, link)
	in.countRequest(in.profile.Path, err)
	unreadable := false
	if err == nil {
		err = in.dec.DecodePage(resp.Body, &in.page)
		resp.Release() // the page holds copies: the body's buffer goes back to the pool
		if err != nil {
			unreadable = true
			err = &graph.TransportError{Err: fmt.Errorf("the page could not be read: %w", err), RequestID: resp.RequestID}
		}
	}
	if err == nil && in.page.NextLink != "" {
		switch {
		case in.page.NextLink == link || in.linkFollowed(chunk.ID, in.page.NextLink):
			err = &pagingError{msg: "Graph returned an @odata.nextLink that was already followed in this query (a paging loop); the query is restarted later"}
		case !in.client.SameOrigin(in.page.NextLink):
			err = &graph.OriginError{Link: in.page.NextLink, Host: in.cfg.GraphHost}
		}
	}
	if err != nil {
		in.page.Records = in.page.Records[:0]
		if in.req.linked && linkRefused(err) {
			in.linkRefused(now, chunk, err)
			return
		}
		if unreadable && in.unreadablePage(now, chunk, resp.RequestID, err) {
			return
		}
		// A chunk whose page keeps failing must not hold up the others;
		// it keeps its link, and is pinned again by its next page.
		in.sched.Unpin(chunk.ID)
		in.onError(now, err)
		return
	}
	in.linkFails = 0
	in.lastReadable, in.unreadableRun = now, 0
	in.onSuccess(now)
	in.Stats.Pages++
	if full := in.profile.Top(in.cfg.PageSize); in.top < full {
		if in.topOK++; in.topOK >= 20 {
			in.top, in.topOK = min(2*in.top, full), 0
		}
	}
	in.log.Debugf("at %s: %s query %s..%s: page of %d events, more=%t", now.UTC().Format("15:04:05.0"), chunk.Class, chunk.From.UTC().Format(time.RFC3339Nano), chunk.To.UTC().Format(time.RFC3339Nano), len(in.page.Records), in.page.NextLink != "")
	res := schedule.PageResult{Count: len(in.page.Records), Next: in.page.NextLink, Fresh: !in.req.linked}
	for i, r := range in.page.Records {
		t := time.Unix(0, r.Created)
		if res.Oldest.IsZero() || t.Before(res.Oldest) {
			res.Oldest = t
		}
		if t.After(res.Newest) {
			res.Newest = t
		}
		if i > 0 && r.Created > in.page.Records[i-1].Created {
			res.OutOfOrder = true
		}
	}
	// Sweeps, and queries planned before this start (a backlog resumed
	// after a restart), read old time on purpose: only a live query of
	// this run says how fresh Graph's data is.
	if chunk.Class == schedule.Live && !chunk.Planned.Before(in.began) && res.Newest.After(in.newest) {
		in.newest = res.Newest
	}
	in.reportPage(now, &in.page, resp.RequestID)
	clear(in.inPage)
	in.pending = &commit{chunk: chunk.ID, result: res, when: now, class: chunk.Class, stretch: chunk.Stretch}
	// A full page without a nextLink, from a service that answers that way
	// instead of paging: the range may hold more than a page.
	in.pending.split = in.profile.NoNextLink && in.page.NextLink == "" && len(in.page.Records)+in.page.Invalid >= in.req.top
}

// take takes a request of class c from the tenant's budget and, for the
// sources that count against it, from the application's budget across
// tenants: from both or from neither. The application's budget is asked
// only once the tenant's has room, so a tenant held back by its own limit
// never holds a place in the application's queue.
func (in *Instance) take(now time.Time, c int) bool {
	if in.app == nil {
		return in.budget.TryTake(now, in)
	}
	if in.budget.Wait(now) > 0 {
		in.budget.TryTake(now, in) // refused: it waits its turn there
		return false
	}
	who := in.appWho
	if who == nil {
		who = in
	}
	if !in.app.TryTakeClass(now, who, c) {
		return false
	}
	if !in.budget.TryTake(now, in) {
		in.app.Return(now)
		return false
	}
	return true
}

// classOf is how urgent a request for chunk is, for the application's
// budget: the first page of a live query (Graph returns the newest events
// first, so it brings the newest minutes) goes first, then the later pages
// of live queries (re-reads of the lookback), then reconcile sweeps, then
// backlogs (a live query planned before this start, or reaching further
// back than the lookback's levels can: initial_lookback, or the time an
// outage left behind).
func (in *Instance) classOf(c schedule.Chunk) int {
	// A due level's query reaches back its period and its reach from
	// now, and a quiet tenant's the time since it was last polled too,
	// plus a few polls of delay; beyond that it is a backlog.
	var reach time.Duration
	for _, l := range in.sched.Levels() {
		reach = max(reach, l.Period+l.Reach)
	}
	reach += max(in.cfg.IdlePollInterval, in.cfg.PollInterval) + 5*in.cfg.PollInterval
	switch {
	case c.Class == schedule.Reconcile:
		return budget.ClassSweep
	case c.Planned.Before(in.began) || c.Planned.Sub(c.From) > reach:
		return budget.ClassBacklog
	case c.Link == "":
		return budget.ClassPoll
	}
	return budget.ClassReread
}

// Due reports whether a collect now would send a request, and the class
// of that request; a multi-tenant input collects its due tenants, most
// urgent first. It plans what is due, as Collect would.
func (in *Instance) Due(now time.Time) (class int, due bool) {
	if in.closed || in.st.loading || in.st.full || now.Before(in.notBefore) {
		return 0, false
	}
	if in.act != nil {
		return budget.ClassPoll, true
	}
	in.plan(now)
	chunk, ok := in.sched.Next(in.Stats.Requests%schedule.ReconcileShare == schedule.ReconcileShare-1)
	if !ok {
		return 0, false
	}
	if in.budget.Wait(now) > 0 || in.app != nil && in.app.Wait(now) > 0 {
		return 0, false
	}
	return in.classOf(chunk), true
}

// Wake is when Due may next report a request, if it reports none now: a
// multi-tenant input does not ask a tenant before then. It is now while
// queries are pending (they wait for a budget).
func (in *Instance) Wake(now time.Time) time.Time {
	if in.act != nil || in.st.loading || in.st.full || len(in.sched.Pending()) > 0 {
		return later(now, in.notBefore)
	}
	t := in.sched.NextPlan()
	if in.Quiet(now) {
		t = later(t, in.lastPlan.Add(in.cfg.IdlePollInterval))
	}
	return later(t, in.notBefore)
}

// Behind is how long the newest pending live query, the oldest live query
// and the oldest reconcile sweep have waited.
func (in *Instance) Behind(now time.Time) (fresh, live, reconcile time.Duration) {
	live, reconcile, _ = in.sched.Backlog(now)
	return in.sched.Freshest(now), live, reconcile
}

// Pending is the schedule's pending queries, for tests and logs.
func (in *Instance) Pending() []schedule.Chunk { return in.sched.Pending() }

// Backlogged reports whether a backlog (budget.ClassBacklog) is pending:
// initial_lookback, or time an outage left behind, not yet read.
func (in *Instance) Backlogged() bool {
	for _, c := range in.sched.Pending() {
		if c.Class == schedule.Live && in.classOf(c) == budget.ClassBacklog {
			return true
		}
	}
	return false
}

// Lookback is the schedule's lookback now; IDs how many ids the de-dup
// set holds.
func (in *Instance) Lookback() time.Duration { return in.sched.Lookback() }

// LastPoll is when a page was last read successfully.
func (in *Instance) LastPoll() time.Time { return in.lastPoll }

// IDs is how many delivered ids the de-dup set holds.
func (in *Instance) IDs() int { return in.seen.Len() }

// reportPage reports the objects of the page that were skipped, or
// delivered in another form so that Fluent Bit's outputs can carry them.
func (in *Instance) reportPage(now time.Time, p *records.Page, requestID string) {
	if p.Invalid > 0 {
		in.Stats.Invalid += p.Invalid
		msg := fmt.Sprintf("%s returned %d objects that cannot be delivered (%s); they are skipped", in.svc, p.Invalid, p.SkippedReasons())
		fields := []records.Field{{Key: "count", Value: p.Invalid}, {Key: "request_id", Value: requestID}}
		if ids := p.SkippedIDs(); ids != "" {
			msg += "; ids " + ids
			fields = append(fields, records.Field{Key: "ids", Value: ids})
		}
		if in.health.Event(now, health.InvalidRecords, msg, fields...) {
			in.log.Warnf("%s (request-id %s)", msg, requestID)
		}
	}
	if p.Deep.Count+p.Numbers.Count+p.Text.Count == 0 {
		return
	}
	var parts []string
	fields := []records.Field{{Key: "request_id", Value: requestID}}
	for _, a := range []struct {
		key, what string
		alt       *records.Altered
	}{
		{"deep_count", fmt.Sprintf("nested deeper than %d levels, delivered with what lies deeper as a string of its JSON text", records.SafeDepth), &p.Deep},
		{"number_count", "with numbers beyond float64 (such as 1e400), delivered as strings of their text", &p.Numbers},
		{"text_count", "with invalid UTF-8 or lone surrogate escapes, delivered with U+FFFD in their place", &p.Text},
	} {
		if a.alt.Count > 0 {
			parts = append(parts, fmt.Sprintf("%d objects %s (ids %s)", a.alt.Count, a.what, a.alt.IDList()))
			fields = append(fields, records.Field{Key: a.key, Value: a.alt.Count})
		}
	}
	msg := in.svc + " returned objects Fluent Bit's outputs cannot carry as sent: " + strings.Join(parts, "; ")
	if in.health.Event(now, health.AlteredRecords, msg, fields...) {
		in.log.Warnf("%s (request-id %s)", msg, requestID)
	}
}

// countRequest records the request's outcome and the token requests it
// caused.
func (in *Instance) countRequest(endpoint string, err error) {
	code := 200
	var ge *graph.APIError
	switch {
	case errors.As(err, &ge):
		code = ge.Status
	case err != nil:
		code = 0
	}
	in.metrics.Request(endpoint, code)
	ok, failed := in.tokens.Counts()
	in.metrics.Tokens(ok-in.tokensOK, failed-in.tokensErr)
	in.tokensOK, in.tokensErr = ok, failed
}

// linkRefused reports whether Graph refused a nextLink as unknown or
// expired: in the audit logs that is a 400 (or 404/410) without a stable
// code, while throttling, auth and server errors are answered as for any
// request.
func linkRefused(err error) bool {
	var ge *graph.APIError
	if !errors.As(err, &ge) || ge.Code == "ResponseTooLarge" {
		return false
	}
	return ge.Status == http.StatusBadRequest || ge.Status == http.StatusNotFound || ge.Status == http.StatusGone
}

// linkRefused restarts the chunk from the position it reached, at once:
// Graph expires nextLinks, especially after a pause between pages, and
// the position is all the chunk needs. Three refusals in a row are
// reported.
func (in *Instance) linkRefused(now time.Time, c schedule.Chunk, err error) {
	in.linkFails++
	in.sched.Restart(c.ID)
	delete(in.followed, c.ID)
	in.Stats.LinkRefused++
	link := "nextLink"
	if in.act != nil {
		link = "NextPageUri"
	}
	in.log.Infof("%v: %s no longer accepts the %s of the %s query %s..%s; it resumes from %s", err, in.svc, link, c.Class,
		c.From.UTC().Format(time.RFC3339), c.OrigTo.UTC().Format(time.RFC3339), c.To.UTC().Format(time.RFC3339Nano))
	if in.linkFails >= 3 {
		msg := fmt.Sprintf("%s refused %d %ss in a row (%v); each query resumes from the position it reached, so nothing is skipped, but paging costs more requests", in.svc, in.linkFails, link, err)
		if in.health.Fire(now, health.APIError, msg, records.Field{Key: "consecutive_failures", Value: in.linkFails}) {
			in.log.Warnf("%s", msg)
		}
	}
}

// unreadableTries is how many unreadable answers in a row isolate a
// chunk, once a page of other work was read since the first of them: a
// body cut short by the network is read at the next try, and when no
// answer is readable the fault is Graph's, not the chunk's time.
const unreadableTries = 3

// unreadableAlarm is how long no page at all may be readable before it is
// reported (api_error): a poll interval or two pass while one stretch is
// isolated, and other pages are read meanwhile.
const unreadableAlarm = 5 * time.Minute

// unreadablePage handles a page whose body could not be read (see
// schedule's Unreadable stretches), and reports whether it did; when too
// many stretches are kept already, the failure is handled as any other.
func (in *Instance) unreadablePage(now time.Time, c schedule.Chunk, requestID string, err error) bool {
	in.Stats.Unreadable++
	in.unreadableRun++
	// Other work goes on meanwhile; the chunk waits on its own.
	in.notBefore = now.Add(time.Second)
	if in.sched.Carve(c.ID) {
		// The query reaches into a stretch found since it started.
		delete(in.followed, c.ID)
		return true
	}
	// The fault lies in the chunk's time only if Graph's other answers
	// are readable: a page was read since the chunk's first failure.
	local := !c.BadSince.IsZero() && in.lastReadable.After(c.BadSince)
	wait := in.backoff(c.Bad+1, time.Second, time.Minute)
	c = in.sched.Unreadable(c.ID, now, now.Add(wait))
	what, u := schedule.Refused, schedule.Stretch{}
	if c.Stretch || (c.Bad >= unreadableTries && local) {
		u, what = in.sched.Isolate(c.ID, now, requestID)
	}
	if quiet := now.Sub(later(in.lastReadable, in.began)); in.unreadableRun >= unreadableTries && quiet >= unreadableAlarm {
		// No page at all was readable for a while: Graph's fault, not a
		// stretch's, reported as any failure that retries do not clear.
		msg := fmt.Sprintf("%v (%d answers in a row that cannot be read, none readable for %s)", err, in.unreadableRun, quiet.Round(time.Second))
		if in.health.Fire(now, health.APIError, in.log.Scrub(msg), records.Field{Key: "request_id", Value: requestID},
			records.Field{Key: "consecutive_failures", Value: in.unreadableRun}) {
			in.log.Errorf("%s", msg)
		}
	}
	if what == schedule.Refused {
		if c.Bad > 1 && in.req.linked {
			in.restartChain()
		}
		in.log.Warnf("%v; the %s query %s..%s is retried in %s", err, c.Class,
			c.From.UTC().Format(time.RFC3339), c.To.UTC().Format(time.RFC3339Nano), wait.Round(time.Millisecond))
		return true
	}
	delete(in.followed, c.ID)
	switch what {
	case schedule.Halved:
		in.log.Infof("%v, %d times for the %s query %s..%s: it is read in halves, to deliver everything around the part that cannot be read",
			err, c.Bad, c.Class, c.From.UTC().Format(time.RFC3339Nano), c.To.UTC().Format(time.RFC3339Nano))
	case schedule.Quarantined:
		in.Stats.Stretches++
		msg := fmt.Sprintf("Graph's pages for %s to %s cannot be read (%v, request-id %s): the events of those seconds are not delivered yet; everything around them is. They are queried again every %s, at least until %s",
			u.From.UTC().Format(time.RFC3339), u.To.UTC().Format(time.RFC3339), err, requestID,
			config.FormatDuration(u.Retry.Sub(now)), u.To.Add(in.cfg.MaxLookback).UTC().Format(time.RFC3339))
		in.health.Report(now, health.UnreadablePage, "event", msg, append(stretchFields(u.From, u.To),
			records.Field{Key: "request_id", Value: requestID}, records.Field{Key: "retry_at", Value: u.Retry.UTC().Format(time.RFC3339)})...)
		in.log.Errorf("%s", msg)
	case schedule.Failed:
		in.log.Infof("Graph's pages for %s to %s still cannot be read (%v, request-id %s; %d tries); next try at %s",
			u.From.UTC().Format(time.RFC3339), u.To.UTC().Format(time.RFC3339), err, requestID, u.Tries, u.Retry.UTC().Format(time.RFC3339))
	}
	return true
}

// abandonStretches reports the unreadable stretches given up.
func (in *Instance) abandonStretches(now time.Time) {
	for _, u := range in.sched.TakeAbandoned() {
		msg := fmt.Sprintf("Graph's pages for %s to %s could not be read in %d tries since %s, and that time is now older than max_lookback (%s): its events are not delivered. Read them in the Entra admin center or with another query of that range",
			u.From.UTC().Format(time.RFC3339), u.To.UTC().Format(time.RFC3339), u.Tries, u.Found.UTC().Format(time.RFC3339), config.FormatDuration(in.cfg.MaxLookback))
		in.health.Report(now, health.UnreadablePage, "abandoned", msg, append(stretchFields(u.From, u.To),
			records.Field{Key: "request_id", Value: u.RequestID}, records.Field{Key: "tries", Value: u.Tries})...)
		in.log.Errorf("%s", msg)
	}
}

func later(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}

func stretchFields(from, to time.Time) []records.Field {
	return []records.Field{{Key: "range_start", Value: from.UTC().Format(time.RFC3339)}, {Key: "range_end", Value: to.UTC().Format(time.RFC3339)}}
}

// restartChain abandons the chain of the chunk just requested.
func (in *Instance) restartChain() {
	in.sched.Restart(in.req.chunk)
	delete(in.followed, in.req.chunk)
}

// linkFollowed reports whether link was already followed in chunk's chain.
func (in *Instance) linkFollowed(chunk uint64, link string) bool {
	_, ok := in.followed[chunk][link]
	return ok
}

type pagingError struct{ msg string }

func (e *pagingError) Error() string { return e.msg }

// Commit records the last batch as delivered: its keys join the de-dup set
// and the state file together with the schedule's progress.
func (in *Instance) Commit() {
	c := in.pending
	in.pending = nil
	if c == nil || in.closed {
		return
	}
	if c.act != nil {
		in.commitActivity(c)
		return
	}
	now := in.now()
	// Lateness is measured only for events that happened while the input
	// was running: the first query's backlog says nothing about Graph.
	started := in.sched.Started().UnixNano()
	for _, e := range c.add {
		in.seen.Add(e.Key, e.Time)
		if e.Time >= started {
			l := c.when.Sub(time.Unix(0, e.Time))
			in.lateness.Add(l)
			in.metrics.Lateness(l)
		}
	}
	in.Stats.Delivered += len(c.add)
	in.metrics.Delivered(len(c.add))
	if c.class == schedule.Reconcile && !c.stretch && len(c.add) > 0 {
		// (A stretch read at last says nothing of Graph's lateness.)
		in.lateArrivals(now, c)
	}
	if c.split {
		delete(in.followed, c.chunk)
		if !in.sched.Split(c.chunk) {
			in.sched.Drop(c.chunk)
			in.log.Warnf("%s answered a full page of %d without a nextLink for a range of two seconds or less; more updates within those seconds cannot be asked for", in.profile.Name, in.top)
		}
		in.save(now, c.add, nil)
		return
	}
	chunk, done, err := in.sched.PageDone(c.chunk, c.result)
	switch {
	case err != nil || done:
		delete(in.followed, c.chunk)
		if done {
			in.chunkDone(now, chunk)
		}
	default:
		if c.result.Fresh {
			delete(in.followed, c.chunk)
		}
		if in.followed[c.chunk] == nil {
			in.followed[c.chunk] = map[string]struct{}{}
		}
		in.followed[c.chunk][c.result.Next] = struct{}{}
	}
	var expired []records.Key
	h := in.sched.Horizon(now)
	// Queries never reach behind h, but their bounds widen to whole
	// seconds, one more with strict operators: ids are kept 2 s longer.
	in.seen.Expire(h.Add(-2*time.Second).UnixNano(), func(k records.Key) { expired = append(expired, k) })
	in.sched.Forget(h)
	in.Stats.Commits++
	in.save(now, c.add, expired)
	in.report(now)
	in.shrink()
}

// shrinkAbove: after a small page, page and batch buffers larger than
// this are let go, so that a tenant that was busy once does not keep a
// large page's memory while idle (a multi-tenant input holds hundreds).
const shrinkAbove = 256 << 10

func (in *Instance) shrink() {
	if len(in.page.Buf) < shrinkAbove/8 && cap(in.page.Buf) > shrinkAbove {
		in.page.Buf, in.page.Records = nil, nil
	}
	if len(in.batch) < shrinkAbove/8 && cap(in.batch) > shrinkAbove {
		in.batch = nil
	}
	if len(in.inPage) == 0 {
		in.inPage = map[records.Key]struct{}{} // a map keeps its largest size
	}
}

// save writes the commit to the state file, together with whatever an
// earlier failed commit could not write and the budget's recent requests.
func (in *Instance) save(now time.Time, add []state.Entry, del []records.Key) {
	if in.db == nil {
		return
	}
	raw, _ := json.Marshal(in.sched.State())
	if len(in.unsavedAdd)+len(in.unsavedDel) > 0 {
		add = append(in.unsavedAdd, add...)
		del = append(in.unsavedDel, del...)
	}
	in.stagePacing(now)
	t0 := time.Now()
	err := in.db.Commit(add, del, raw)
	in.metrics.Commit(time.Since(t0))
	if err != nil {
		in.unsavedAdd, in.unsavedDel = add, del
		in.commitFailed = true
		in.saveFailed(now, err)
		return
	}
	in.saved(now)
}

func (in *Instance) chunkDone(now time.Time, c schedule.Chunk) {
	if c.Stretch {
		msg := fmt.Sprintf("Graph's pages for %s to %s can be read again; the events of that stretch not delivered before are delivered now",
			c.From.UTC().Format(time.RFC3339), c.To.UTC().Format(time.RFC3339))
		in.health.Report(now, health.UnreadablePage, "resolved", msg, stretchFields(c.From, c.To)...)
		in.log.Infof("%s", msg)
	}
	if c.Returned > 0 {
		if in.health.Clear(now, health.EmptyResult, "Graph returns events again for time ranges it had events for") {
			in.log.Infof("empty results cleared")
		}
		return
	}
	// An object that changes leaves the range of its old version, so an
	// empty answer says nothing for those sources.
	if !c.To.Equal(c.OrigTo) || in.profile.Versioned {
		return
	}
	if n := in.seen.CountRange(c.From.UnixNano(), c.To.UnixNano()); n > 0 {
		msg := fmt.Sprintf("Graph returned no events for %s to %s, although %d were delivered from that range before; events may be missing from Graph (retention, licence or permission change)",
			c.From.UTC().Format(time.RFC3339), c.To.UTC().Format(time.RFC3339), n)
		if in.health.Fire(now, health.EmptyResult, msg, records.Field{Key: "range_start", Value: c.From.UTC().Format(time.RFC3339)},
			records.Field{Key: "range_end", Value: c.To.UTC().Format(time.RFC3339)}, records.Field{Key: "delivered_before", Value: n}) {
			in.log.Warnf("%s", msg)
		}
	}
}

func (in *Instance) lateArrivals(now time.Time, c *commit) {
	// An event that a pending live query still covers was only found by
	// the sweep first: the live query would have delivered it too.
	late := make([]state.Entry, 0, len(c.add))
	for _, e := range c.add {
		if !in.sched.LiveCovers(time.Unix(0, e.Time)) {
			late = append(late, e)
		}
	}
	n := len(late)
	if n == 0 {
		return
	}
	in.Stats.LateArrivals += n
	in.metrics.LateArrivals(n)
	in.late.count += n
	// Only events that happened under the current lookback say it is too
	// short: an older one may have been missed by a shorter lookback.
	var latest, beyond time.Duration
	since := in.sched.LookbackSince().UnixNano()
	for _, e := range late {
		l := c.when.Sub(time.Unix(0, e.Time))
		latest = max(latest, l)
		if e.Time >= since {
			beyond = max(beyond, l)
		}
	}
	in.late.max = max(in.late.max, latest)
	lookback := in.sched.Lookback()
	msg := fmt.Sprintf("%d events appeared in Graph later than lookback (%s) covers and were found only by a reconcile sweep, the latest %s after its event time; they are delivered now",
		in.late.count, config.FormatDuration(lookback), in.late.max.Round(time.Second))
	if in.health.Event(now, health.LateArrivals, msg, records.Field{Key: "count", Value: in.late.count},
		records.Field{Key: "max_lateness_seconds", Value: in.late.max}, records.Field{Key: "lookback_seconds", Value: lookback}) {
		in.log.Warnf("%s", msg)
		in.late = lateAgg{}
	}
	in.widen(now, lookback, beyond, "events arrived")
}

// widen doubles lookback, and says so, when late arrivals that happened
// under it (beyond is the latest of them) came later than it covers: once
// per lookback at most, since one sweep finds many late events. what says
// what was late.
func (in *Instance) widen(now time.Time, lookback, beyond time.Duration, what string) {
	if beyond <= lookback {
		return
	}
	if nl, changed := in.sched.Widen(now); changed {
		msg := fmt.Sprintf("lookback widened from %s to %s because %s later than it covered (max_lookback %s)",
			config.FormatDuration(lookback), config.FormatDuration(nl), what, config.FormatDuration(in.cfg.MaxLookback))
		in.health.Event(now, health.LookbackWidened, msg, records.Field{Key: "old_lookback_seconds", Value: lookback},
			records.Field{Key: "new_lookback_seconds", Value: nl})
		in.log.Warnf("%s", msg)
	}
}

// onSuccess clears the error conditions after a page was read.
func (in *Instance) onSuccess(now time.Time) {
	in.lastPoll = now
	if in.failures > 0 || in.throttles > 0 {
		in.log.Infof("%s answers again after %d failed requests", in.svc, in.failures+in.throttles)
	}
	in.failures, in.throttles = 0, 0
	in.health.Clear(now, health.AuthFailed, "token requests succeed again")
	in.health.Clear(now, health.APIError, in.svc+" requests succeed again")
}

// onError decides when to retry and which condition to raise.
func (in *Instance) onError(now time.Time, err error) {
	if in.ctx.Err() != nil {
		// Stopping: the request was cancelled, nothing to report.
		in.notBefore = now.Add(time.Second)
		return
	}
	in.Stats.Errors++
	in.failures++
	var (
		ae *auth.Error
		ge *graph.APIError
		te *graph.TransportError
		oe *graph.OriginError
		pe *pagingError
	)
	wait := in.backoff(in.failures, time.Second, 5*time.Minute)
	switch {
	case errors.As(err, &ae):
		if !ae.Temporary {
			wait = in.backoff(in.failures, time.Minute, 15*time.Minute)
		}
		msg := "Entra ID refused the token request: " + ae.Error()
		if in.health.Fire(now, health.AuthFailed, in.log.Scrub(msg), records.Field{Key: "aadsts_code", Value: ae.Code},
			records.Field{Key: "http_status", Value: ae.Status}, records.Field{Key: "retry_in_seconds", Value: wait}) {
			in.log.Errorf("%s; retrying in %s", msg, wait.Round(time.Second))
		}
	case errors.As(err, &ge) && ge.Code == "ResponseTooLarge" && in.top > 1:
		// Ask again for smaller pages, from the position the chunk
		// reached: the events are still there and nothing is skipped.
		in.failures--
		in.top, in.topOK = max(1, in.top/2), 0
		in.restartChain()
		wait = time.Second
		in.log.Warnf("%v; asking for pages of %d events", ge, in.top)
	case errors.As(err, &ge) && (ge.Status == http.StatusTooManyRequests || ge.Throttled):
		in.failures--
		in.throttles++
		in.Stats.Throttled++
		if ge.RetryAfter > 0 {
			wait = ge.RetryAfter
		} else {
			wait = in.backoff(in.throttles, 2*time.Second, 2*time.Minute)
		}
		in.budget.Block(now.Add(wait))
		in.metrics.Throttled(wait)
		if in.throttles >= 3 {
			msg := fmt.Sprintf("Graph keeps answering 429 Too Many Requests (%d in a row); requests wait %s as Graph asks. Another tool using the same app registration may be sharing its budget of 5 requests per 10 seconds", in.throttles, wait.Round(time.Millisecond))
			if in.act != nil {
				msg = fmt.Sprintf("%s keeps answering %d %s, its throttling (%d in a row); requests wait %s. Every tool that reads this tenant's activity feed with the same publisher_id (%s) shares its budget of 2 000 requests a minute",
					manage.Service, ge.Status, ge.Code, in.throttles, wait.Round(time.Millisecond), in.cfg.PublisherID)
			}
			if in.health.Fire(now, health.Throttled, msg, records.Field{Key: "consecutive_429", Value: in.throttles},
				records.Field{Key: "retry_after_seconds", Value: wait}, records.Field{Key: "request_id", Value: ge.RequestID}) {
				in.log.Warnf("%s", msg)
			}
		} else {
			in.log.Debugf("%s throttled the request (HTTP %d), waiting %s", in.svc, ge.Status, wait)
		}
	case errors.As(err, &ge):
		if ge.RetryAfter > 0 {
			wait = ge.RetryAfter
		}
		if !ge.Retryable {
			wait = in.backoff(in.failures, time.Minute, 15*time.Minute)
		}
		if !ge.Retryable || in.failures >= 3 {
			msg := ge.Error()
			if fix := ge.Fix(); fix != "" {
				msg += "; " + fix
			}
			if in.health.Fire(now, health.APIError, msg, records.Field{Key: "http_status", Value: ge.Status},
				records.Field{Key: "graph_error_code", Value: ge.Code}, records.Field{Key: "request_id", Value: ge.RequestID},
				records.Field{Key: "consecutive_failures", Value: in.failures}, records.Field{Key: "retry_in_seconds", Value: wait}) {
				in.log.Errorf("%s; retrying in %s", msg, wait.Round(time.Second))
			}
		} else {
			in.log.Warnf("%v; retrying in %s", ge, wait.Round(time.Millisecond))
		}
	case errors.As(err, &oe), errors.As(err, &pe):
		// Restart the query from the position it reached, later; its
		// range stays pending, so nothing is skipped.
		in.restartChain()
		wait = in.backoff(in.failures, time.Minute, 15*time.Minute)
		if in.health.Fire(now, health.APIError, err.Error(), records.Field{Key: "retry_in_seconds", Value: wait}) {
			in.log.Errorf("%v", err)
		}
	default:
		reqID := ""
		if errors.As(err, &te) {
			reqID = te.RequestID
		}
		if in.failures >= 3 {
			msg := fmt.Sprintf("%v (%d failures in a row)", err, in.failures)
			if in.health.Fire(now, health.APIError, in.log.Scrub(msg), records.Field{Key: "request_id", Value: reqID},
				records.Field{Key: "consecutive_failures", Value: in.failures}, records.Field{Key: "retry_in_seconds", Value: wait}) {
				in.log.Errorf("%s; retrying in %s", msg, wait.Round(time.Second))
			}
		} else {
			in.log.Warnf("%v; retrying in %s", err, wait.Round(time.Millisecond))
		}
	}
	in.notBefore = now.Add(wait)
}

// backoff is exponential from base, capped, with ±20% jitter.
func (in *Instance) backoff(n int, base, cap time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < cap; i++ {
		d *= 2
	}
	d = min(d, cap)
	j := time.Duration(in.rng.Int63n(int64(d)/5+1)) - d/10
	return d + j
}

// checkConditions raises or clears drift and backlog warnings.
func (in *Instance) checkConditions(now time.Time) {
	if in.stateProblem != "" {
		if in.db != nil {
			// A fresh file replaced an unreadable one: reported once.
			in.health.Event(now, health.StateError, in.stateProblem)
			in.stateProblem = ""
		} else {
			in.health.Fire(now, health.StateError, in.stateProblem)
		}
	}
	started := in.sched.Started()
	if in.act != nil {
		// A listing ends only after all its pages: after a restart the
		// first may take a while with a backlog queued.
		started = later(started, in.began)
	}
	switch {
	case !in.newest.IsZero() && now.Sub(in.newest) > in.cfg.DriftWarning:
		age := now.Sub(in.newest).Round(time.Second)
		msg := fmt.Sprintf("the newest event Graph returns is %s old (drift_warning %s): Graph is publishing late, or the tenant has had no such events since", age, config.FormatDuration(in.cfg.DriftWarning))
		if in.act != nil {
			msg = fmt.Sprintf("the newest content %s lists was created %s ago (drift_warning %s): the API is publishing late, or the tenant has had no %s activity since", manage.Service, age, config.FormatDuration(in.cfg.DriftWarning), in.act.contentType)
		}
		if in.health.Fire(now, health.DriftExceeded, msg, records.Field{Key: "newest_event", Value: in.newest.UTC().Format(time.RFC3339Nano)},
			records.Field{Key: "drift_seconds", Value: age}) {
			in.log.Warnf("%s", msg)
		}
	case in.newest.IsZero() && !started.IsZero() && now.Sub(started) > in.cfg.DriftWarning && in.lastPoll.After(started):
		msg := fmt.Sprintf("%s has returned no %s since the plugin started %s ago", in.svc, map[bool]string{false: "event", true: "content"}[in.act != nil], now.Sub(started).Round(time.Second))
		if in.health.Fire(now, health.DriftExceeded, msg, records.Field{Key: "drift_seconds", Value: now.Sub(started)}) {
			in.log.Warnf("%s", msg)
		}
	case !in.newest.IsZero():
		if in.health.Clear(now, health.DriftExceeded, "events are fresh again", records.Field{Key: "newest_event", Value: in.newest.UTC().Format(time.RFC3339Nano)}) {
			in.log.Infof("drift cleared: newest event %s", in.newest.UTC().Format(time.RFC3339Nano))
		}
	}
	live, rec, n := in.sched.Backlog(now)
	fresh := in.sched.Freshest(now)
	in.metrics.State(in.sched.Lookback(), live, in.lastPoll, in.seen.Len())
	// Behind: the newest events wait, or a re-read of the lookback takes
	// longer than the lookback, or a sweep twice that.
	limit := max(5*in.cfg.PollInterval, 5*time.Minute)
	lb := in.sched.Lookback()
	var queued time.Duration
	if in.act != nil {
		_, queued = in.act.oldest(now)
	}
	if in.fleet {
		return
	}
	if fresh > limit || live > lb+limit || rec > 2*lb+limit || queued > lb+limit {
		msg := fmt.Sprintf("collection is behind: the newest pending live query has waited %s, the oldest %s and reconcile sweeps %s (%d queries queued); Graph's budget of 5 requests per 10 seconds cannot keep up, newest events go first",
			fresh.Round(time.Second), live.Round(time.Second), rec.Round(time.Second), n)
		if in.act != nil {
			msg = fmt.Sprintf("collection is behind: %d content blobs are queued, the oldest listed %s ago; the newest listing has waited %s and reconcile sweeps %s; blobs are fetched oldest first, one per collect",
				len(in.act.queue), queued.Round(time.Second), fresh.Round(time.Second), rec.Round(time.Second))
		}
		if in.health.Fire(now, health.Throttled, msg, records.Field{Key: "live_behind_seconds", Value: fresh}, records.Field{Key: "reread_behind_seconds", Value: live},
			records.Field{Key: "reconcile_behind_seconds", Value: rec}, records.Field{Key: "queued_queries", Value: n}) {
			in.log.Warnf("%s", msg)
		}
	} else if fresh <= limit/2 && live <= lb+limit/2 && rec <= 2*lb+limit/2 && queued <= lb+limit/2 && in.throttles == 0 {
		// Cleared with a margin, so that a queue hovering at the limit
		// does not flap.
		if in.health.Clear(now, health.Throttled, "the schedule has caught up") {
			in.log.Infof("the schedule has caught up")
		}
	}
}

// report logs a summary every ten minutes.
func (in *Instance) report(now time.Time) {
	if now.Sub(in.lastReport) < 10*time.Minute {
		return
	}
	in.lastReport = now
	in.log.Infof("delivered %d events (%d duplicates dropped, %d late arrivals) in %d pages; lookback %s; lateness %s; %d ids held",
		in.Stats.Delivered, in.Stats.Duplicates, in.Stats.LateArrivals, in.Stats.Pages, config.FormatDuration(in.sched.Lookback()), in.lateness.String(), in.seen.Len())
}

// Close stops the instance, releases what it holds (metrics_listen, its
// place in the budget, idle connections) and closes the state file, keeping
// the recent requests in it; it is idempotent.
// An uncommitted batch is not committed: it is delivered again next time.
func (in *Instance) Close() error {
	if in.closed {
		return nil
	}
	in.closed = true
	in.cancel()
	if t, ok := in.transport.(interface{ CloseIdleConnections() }); ok && !in.fleet {
		// (A tenant of many shares the input's transport: the input
		// closes it.)
		t.CloseIdleConnections()
	}
	in.metrics.Delete()
	in.budget.Forget(in)
	if in.app != nil && in.appWho == nil {
		in.app.Forget(in)
	}
	if in.unserve != nil {
		in.unserve()
	}
	return in.closeState()
}

// Histogram counts lateness (first seen minus event time) in power-of-two
// second buckets.
type Histogram struct {
	buckets [24]int
	n       int
	max     time.Duration
}

// Add counts one lateness.
func (h *Histogram) Add(d time.Duration) {
	i := 0
	for s := time.Second; d > s && i < len(h.buckets)-1; s *= 2 {
		i++
	}
	h.buckets[i]++
	h.n++
	h.max = max(h.max, d)
}

// Quantile is an upper bound of the q-quantile.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	target := int(q*float64(h.n) + 0.5)
	acc := 0
	for i, c := range h.buckets {
		acc += c
		if acc >= target {
			return time.Second << i
		}
	}
	return h.max
}

func (h *Histogram) String() string {
	if h.n == 0 {
		return "no events yet"
	}
	qs := []float64{0.5, 0.95, 0.99}
	parts := make([]string, 0, 4)
	for _, q := range qs {
		parts = append(parts, fmt.Sprintf("p%d<=%s", int(q*100), h.Quantile(q)))
	}
	parts = append(parts, "max "+h.max.Round(time.Second).String())
	return strings.Join(parts, " ")
}
