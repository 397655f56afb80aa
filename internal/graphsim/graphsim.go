// Package graphsim is an in-process Microsoft Graph and Entra ID token
// endpoint simulator for the audit log APIs a pull client collects from:
// sign-ins of every kind, directory audits, provisioning events, risk
// detections and security alerts. It reproduces what such a client has to
// survive in production: the OAuth2 client-credentials
// exchange with Entra-style error bodies (with a client secret, a
// certificate-signed client assertion verified for real, or a federated
// workload identity token), the Azure Instance Metadata Service (IMDS)
// token endpoint of a managed identity, expiring bearer tokens,
// newest-first paging with opaque skip tokens that stay stable across
// retries (and the alerts list that never pages), strict per-endpoint
// $filter validation, events that become visible only some time after
// their own time, objects that change after they are first logged, each
// API family's throttling, licence and permission errors, and injected
// server faults.
//
// It serves the Office 365 Management Activity API too, on a listener of
// its own (ManageURL): subscriptions, content blob listings with
// NextPageUri paging, blob retrieval with expiry, its AF error codes and
// its 403 AF429 throttling, with tokens issued per resource so that each
// API refuses the other's. NewFeed lays out millions of audit records in
// content blobs whose bodies are generated on each fetch.
//
// One application can be consented in many tenants (Options.Tenants,
// AddTenant): each tenant gets its own tokens, events, content,
// subscriptions, paging and per-tenant limits, and Graph's per-application
// limit across tenants applies to them together (Options.AppLimit).
//
// Every time decision goes through an injectable clock so that tests of
// expiry, lateness and back-off never sleep.
package graphsim

import (
	"cmp"
	"crypto/x509"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultTenantID     = "11111111-2222-3333-4444-555555555555"
	DefaultClientID     = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	DefaultClientSecret = "sim-secret"
)

// DateTimeLayout is how Graph renders createdDateTime and the other time
// fields the simulator filters on: UTC with exactly seven fractional digits.
const DateTimeLayout = "2006-01-02T15:04:05.0000000Z"

// Options configures a Server. Zero values select the documented defaults.
type Options struct {
	// Now is the clock behind every time decision (token expiry,
	// visibility, throttling, Retry-After); nil means time.Now.
	Now func() time.Time
	// Seed makes fault injection and generated identifiers deterministic.
	Seed int64
	// TenantID is the default tenant: the tenant of the token endpoint path
	// /{tenant}/oauth2/v2.0/token, of the events and blobs added without a
	// Tenant, and of IMDS tokens. See Tenants for more.
	TenantID string
	// TenantAliases are domain names also accepted as {tenant}, and as
	// Event.Tenant and Blob.Tenant, for TenantID.
	TenantAliases []string
	ClientID      string
	ClientSecret  string
	// TokenLifetime is the access token lifetime (default 1h).
	TokenLifetime time.Duration
	// Throttle enforces Graph's documented limits: 5 requests per 10 s per
	// (tenant, client) shared by signIns, directoryAudits and provisioning;
	// 1 request per second per tenant, whichever client, on riskDetections,
	// whose 429 has no Retry-After; 150 requests per minute per (tenant,
	// client) on security alerts; and across tenants, per client, the
	// per-application limit of the first three (see AppLimit).
	Throttle bool
	// ThrottleWindowScale multiplies the window of every throttle while
	// keeping its request count, so that a test can run a long backlog
	// against Graph's limits in less time: 0.1 turns 5 requests per 10 s
	// into 5 per second. Zero (or any value that is not positive) keeps
	// Graph's windows.
	ThrottleWindowScale float64
	// MaxPageSize is the default and largest accepted $top (default 1000).
	// An endpoint with a lower documented limit keeps it: riskDetections
	// accepts at most 500 and answers 20 without a $top.
	MaxPageSize int
	// Faults is the initial fault configuration; see Server.SetFaults.
	Faults Faults
	// MaxFilterAge rejects filter datetimes older than now-MaxFilterAge
	// (default 90 days), as Graph does.
	MaxFilterAge time.Duration

	// ClientCertificates are the certificates registered on the
	// application ClientID: a client assertion must be signed with the key
	// of one of them and presented while it is valid. See
	// SetClientCertificates.
	ClientCertificates []*x509.Certificate
	// FederatedTokens are the federated (workload identity) tokens
	// accepted as a client_assertion, compared verbatim. See
	// SetFederatedTokens.
	FederatedTokens []string
	// ManagedIdentityClientIDs are the user-assigned managed identities of
	// the simulated VM; its system-assigned identity always exists.
	ManagedIdentityClientIDs []string
	// IMDSFaults is the initial IMDS fault configuration; see
	// SetIMDSFaults.
	IMDSFaults IMDSFaults
	// LinkIdle expires a nextLink whose query has not been paged for that
	// long (Graph's paging tokens expire, especially after a pause between
	// pages); 0 keeps them while the snapshot limits allow.
	LinkIdle time.Duration

	// ManagePageSize is the most content blobs a Management Activity API
	// listing page holds before it sets NextPageUri (default 200).
	ManagePageSize int
	// ManageFaults is the initial Management Activity API fault
	// configuration; see SetManageFaults.
	ManageFaults ManageFaults
	// ManageNoDlpPermission withholds ActivityFeed.ReadDlp: DLP.All
	// answers 403 AF10001.
	ManageNoDlpPermission bool
	// ManagePermission403 withholds ActivityFeed.Read: every Management
	// Activity API request answers 403 AF10001.
	ManagePermission403 bool
	// Tenants are the other tenants the application ClientID is consented
	// in, a multi-tenant application's (see Tenant); TenantID stays the
	// default tenant. Graph URLs name no tenant: a Graph request is served
	// the events (Event.Tenant) of its token's tenant, and its nextLinks
	// page only with a token of that tenant. A Management Activity API
	// address names its tenant, and a token of another tenant is refused
	// there with 401 AF20010. More can be added while the server runs with
	// AddTenant.
	Tenants []Tenant
	// AppLimit is, with Throttle, Graph's limit per application across all
	// tenants on the identity and access reports (signIns, directoryAudits
	// and provisioning together), on top of the 5 requests per 10 s per
	// (tenant, client): this many requests per 10 s (scaled by
	// ThrottleWindowScale) per client ID, whichever tenant its tokens are
	// for. Zero is Graph's documented 122 (DefaultAppLimit); a negative
	// value turns the limit off. Its 429 carries a Retry-After as the
	// tenant's does, and counts in Stats.ThrottledApp.
	AppLimit int

	// ManageURL is the base URL ManageHandler is served at when the
	// server is not started by Start, which sets its own: the token
	// endpoint issues Management Activity API tokens for its scope.
	ManageURL string
}

// Faults selects injected failures. Rates are per Graph request
// probabilities; the token endpoint is never faulted, and IMDS has its own
// IMDSFaults.
type Faults struct {
	Rate429       float64 // 429 with a fractional Retry-After in [0.1, 2], without one on riskDetections
	Rate503       float64 // 503 with Retry-After: 1
	Rate500       float64
	Rate504       float64
	RateTruncated float64 // 200 whose body stops halfway through the JSON
	// RateExpiredLink refuses a nextLink with 400 "Invalid skip token." as
	// if it had expired.
	RateExpiredLink float64
	Licence403      bool // lists that need P1/P2 (all but directoryAudits and alerts) answer 403 Authentication_RequestFromNonPremiumTenantOrB2CTenant
	Permission403   bool // every list answers 403 Authentication_MSGraphPermissionMissing
}

// Event is one record held by the simulator: a sign-in, directory audit,
// provisioning event, risk detection or security alert, as Source says.
//
// Risk detections and security alerts change after they are first logged
// (state, status, classification), each change moving their lastUpdated
// time, and Graph lists only the current version of an object. In the
// simulator several Events of such a source (see Versioned) may share an
// ID, each one version whose Created is its lastUpdated time. An object's
// current version is its visible version with the latest Created; a query
// returns it only if that Created is within the $filter bounds, and never
// returns an older version, even one within them.
type Event struct {
	ID string
	// Source is the plugin source the event belongs to, one of Sources;
	// "" is "signins". Events of an unknown source are kept but never
	// served.
	Source string
	// Created is the event's time: the value of its source's time field
	// (see TimeField), a multiple of 100 ns in UTC.
	Created time.Time
	// Visible is the moment (by Options.Now) from which queries return
	// the event; it models ingestion latency.
	Visible time.Time
	// JSON is the complete object, served verbatim. Its "id" and time
	// field must match ID and Created. Nil serves Body, the smallest
	// object of the source, which keeps tests of millions of events light.
	JSON []byte
	// Tenant is the tenant the event belongs to: the ID or an alias (any
	// case) of Options.TenantID or of a Tenant; "" is the default tenant.
	// Only a token of that tenant is served the event. An event of a tenant
	// not known yet is kept, and served once a tenant of that ID is added.
	Tenant string

	seq uint64 // order of Add, for snapshots
}

// Stats counts what the server saw and answered.
type Stats struct {
	Requests     int         // all HTTP requests, token endpoint and IMDS included
	ByStatus     map[int]int // responses by status code
	Tokens       int         // access tokens issued by the token endpoint
	TokenErrors  int         // token endpoint requests refused
	IMDSRequests int         // requests to the IMDS token endpoint
	IMDSTokens   int         // access tokens issued by IMDS
	// ByCredential counts the access tokens issued per credential:
	// "client_secret", "certificate", "federated" and "managed_identity".
	ByCredential  map[string]int
	Throttled     int // 429s from the rate limit (injected 429s show only in ByStatus)
	Truncated     int // truncated bodies sent
	Pages         int // complete list pages sent, every endpoint
	Unauthorized  int // 401s
	MaxConcurrent int // most requests in flight at once
	ExpiredLinks  int // nextLinks refused as expired (LinkIdle, RateExpiredLink)
	// ThrottledApp counts the 429s of the per-application limit across
	// tenants (Options.AppLimit); Throttled counts them too.
	ThrottledApp int
	// ThrottledBy counts the 429s of the rate limit by the limit that
	// refused: "reports" (5 per 10 s per tenant and client on signIns,
	// directoryAudits and provisioning), "reportsApp" (the same lists'
	// limit per client across tenants, as ThrottledApp), "identityProtection"
	// (1 per second per tenant) and "security" (150 per minute per tenant
	// and client). Throttled is their sum.
	ThrottledBy map[string]int
	// WrongTenant counts the requests refused because the token's tenant is
	// not the one the request is for: a Management Activity API address of
	// another tenant (401 AF20010), or a Graph nextLink of another tenant's
	// query (400 "Invalid skip token.").
	WrongTenant int
	// ByTenant counts the Graph list requests whose token was accepted, by
	// the token's tenant ID (Options.TenantID or a Tenant.ID as written
	// there), throttled and faulted ones included.
	ByTenant map[string]int
	// TokensByTenant counts the access tokens issued per tenant ID (those
	// of IMDS are the default tenant's).
	TokensByTenant map[string]int
	// ByPath counts the requests to each Graph list path, such as
	// "/v1.0/auditLogs/signIns".
	ByPath map[string]int

	// ManageTokens counts the access tokens issued for the Management
	// Activity API (Tokens counts them too).
	ManageTokens int
	// WrongAudience counts requests refused because their token is for
	// the other API: a Management API token on Graph or a Graph token on
	// the Management API.
	WrongAudience int
	// ManageRequests counts the Management Activity API requests.
	ManageRequests int
	// ByManageOp counts them per operation: "list" (subscriptions/list),
	// "content" (subscriptions/content), "blob" (a contentUri), "start" and
	// "stop".
	ByManageOp         map[string]int
	BlobsServed        int // content blobs sent whole
	ManageRecords      int // audit records in the blobs sent whole
	ManageThrottled    int // 403 AF429 from the rate limit (injected ones show only in ByStatus)
	ManageTruncated    int // truncated listing or blob bodies sent
	ExpiredContent     int // AF20051 answers
	SubscriptionStarts int // subscriptions started by subscriptions/start
}

// Server is the simulator. All methods are safe for concurrent use.
type Server struct {
	opts    Options
	handler http.Handler

	mu        sync.Mutex
	faults    Faults
	imdsFault IMDSFaults
	certs     []*x509.Certificate // registered client certificates
	federated []string            // accepted federated tokens
	rng       *rand.Rand
	events    map[string][]Event // per eventsKey (tenant and canonical source), ascending by compareEvents
	tokens    map[string]grant
	hits      map[string][]time.Time // admitted request times per throttle budget
	snaps     map[string]*snapshot
	seq       uint64 // events added so far
	snapOrder []string
	snapSize  int
	stats     Stats
	inflight  int
	url       string
	ts        *httptest.Server

	// tenantMu guards tenantIDs, which maps the lower-case ID and aliases
	// of every known tenant to its ID. It is never held while taking mu.
	tenantMu  sync.RWMutex
	tenantIDs map[string]string

	manageHandler http.Handler
	manage        manageState
	manageURL     string
	manageTS      *httptest.Server
}

type grant struct {
	tenant, client string
	expires        time.Time
	// api is the API the token is for, apiGraph or apiManage, and
	// resource the scope host it was requested for.
	api, resource string
}

// throttleWindow is a throttle's window as ThrottleWindowScale sets it.
func (o Options) throttleWindow(w time.Duration) time.Duration {
	if o.ThrottleWindowScale > 0 {
		return time.Duration(float64(w) * o.ThrottleWindowScale)
	}
	return w
}

// New returns a Server that is not listening; serve its Handler or use Start.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.TenantID = cmp.Or(opts.TenantID, DefaultTenantID)
	opts.TenantAliases = slices.Clone(opts.TenantAliases)
	opts.ClientID = cmp.Or(opts.ClientID, DefaultClientID)
	opts.ClientSecret = cmp.Or(opts.ClientSecret, DefaultClientSecret)
	opts.TokenLifetime = cmp.Or(opts.TokenLifetime, time.Hour)
	opts.MaxPageSize = cmp.Or(opts.MaxPageSize, 1000)
	opts.MaxFilterAge = cmp.Or(opts.MaxFilterAge, 90*24*time.Hour)
	opts.ManagedIdentityClientIDs = slices.Clone(opts.ManagedIdentityClientIDs)
	opts.ManagePageSize = cmp.Or(opts.ManagePageSize, 200)
	s := &Server{
		opts:      opts,
		faults:    opts.Faults,
		imdsFault: opts.IMDSFaults,
		certs:     slices.Clone(opts.ClientCertificates),
		federated: slices.Clone(opts.FederatedTokens),
		rng:       rand.New(rand.NewPCG(uint64(opts.Seed), 0x9e3779b97f4a7c15)),
		tokens:    make(map[string]grant),
		hits:      make(map[string][]time.Time),
		events:    make(map[string][]Event),
		snaps:     make(map[string]*snapshot),
		stats: Stats{ByStatus: make(map[int]int), ByCredential: make(map[string]int), ByPath: make(map[string]int), ByManageOp: make(map[string]int),
			ThrottledBy: make(map[string]int), ByTenant: make(map[string]int), TokensByTenant: make(map[string]int)},
		manage:    newManageState(opts.ManageFaults),
		manageURL: strings.TrimSuffix(opts.ManageURL, "/"),
		tenantIDs: make(map[string]string),
	}
	s.tenantIDs[strings.ToLower(opts.TenantID)] = opts.TenantID
	for _, a := range opts.TenantAliases {
		s.tenantIDs[strings.ToLower(a)] = opts.TenantID
	}
	for _, t := range opts.Tenants {
		s.AddTenant(t)
	}
	s.handler = http.HandlerFunc(s.serveHTTP)
	s.manageHandler = http.HandlerFunc(s.serveManageHTTP)
	return s
}

// Start serves a new Server on two loopback httptest servers, one for the
// token endpoint and Graph (URL) and one for the Office 365 Management
// Activity API (ManageURL), which are closed when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := New(opts)
	ts := httptest.NewServer(s.handler)
	mts := httptest.NewServer(s.manageHandler)
	s.mu.Lock()
	s.ts, s.url = ts, ts.URL
	s.manageTS, s.manageURL = mts, mts.URL
	s.mu.Unlock()
	t.Cleanup(s.Close)
	return s
}

// Handler returns the HTTP handler serving the token endpoint, IMDS and
// Graph, and also the Management Activity API paths (/api/v1.0/...), so
// that a Proxy can present it under the manage.office.com host names.
func (s *Server) Handler() http.Handler { return s.handler }

// ManageHandler returns the HTTP handler serving the Management Activity
// API alone.
func (s *Server) ManageHandler() http.Handler { return s.manageHandler }

// ManageURL is the base URL of the Management Activity API once started by
// Start (scheme://host:port), "" otherwise.
func (s *Server) ManageURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.manageURL
}

// URL is the base URL once started by Start, "" otherwise. It is both the
// authority host and the Graph host.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Close stops a server started by Start. It is idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	ts, mts := s.ts, s.manageTS
	s.ts, s.manageTS = nil, nil
	s.mu.Unlock()
	if ts != nil {
		ts.Close()
	}
	if mts != nil {
		mts.Close()
	}
}

// SetFaults replaces the fault configuration; requests already past the
// fault decision are unaffected.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

// SetIMDSFaults replaces the IMDS fault configuration.
func (s *Server) SetIMDSFaults(f IMDSFaults) {
	s.mu.Lock()
	s.imdsFault = f
	s.mu.Unlock()
}

// SetFederatedTokens replaces the federated tokens accepted as client
// assertions, as when kubelet rotates a projected service account token.
func (s *Server) SetFederatedTokens(tokens ...string) {
	s.mu.Lock()
	s.federated = slices.Clone(tokens)
	s.mu.Unlock()
}

// SetClientCertificates replaces the certificates registered on the
// application, as when one is uploaded or removed in the portal.
func (s *Server) SetClientCertificates(certs ...*x509.Certificate) {
	s.mu.Lock()
	s.certs = slices.Clone(certs)
	s.mu.Unlock()
}

// Add stores events, of any mix of sources. Events are not validated, so a
// test can serve deliberately malformed JSON.
func (s *Server) Add(events ...Event) {
	bySource := make(map[string][]Event)
	keys := make(map[string]string) // Event.Tenant -> tenantKey
	for _, e := range events {
		key, ok := keys[e.Tenant]
		if !ok {
			key = s.tenantKey(e.Tenant)
			keys[e.Tenant] = key
		}
		name := s.eventsKey(key, canonical(e.Source))
		bySource[name] = append(bySource[name], e)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, batch := range bySource {
		for i := range batch {
			s.seq++
			batch[i].seq = s.seq
		}
		slices.SortFunc(batch, compareEvents)
		s.events[name] = mergeEvents(s.events[name], batch)
	}
}

// mergeEvents merges two ascending lists. Merging keeps Add linear in the
// stored events, which matters when a generator adds a few events many
// times a second.
func mergeEvents(old, batch []Event) []Event {
	merged := make([]Event, 0, len(old)+len(batch))
	i, j := 0, 0
	for i < len(old) && j < len(batch) {
		if compareEvents(old[i], batch[j]) <= 0 {
			merged = append(merged, old[i])
			i++
		} else {
			merged = append(merged, batch[j])
			j++
		}
	}
	merged = append(merged, old[i:]...)
	return append(merged, batch[j:]...)
}

// Events returns all stored events of every source, visible or not, and
// every version of a versioned object, oldest first. The JSON slices are
// shared and must not be modified.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []Event
	for _, evs := range s.events {
		all = mergeEvents(all, evs)
	}
	return all
}

// Remove deletes the events whose time is before t, as Graph does when
// they pass its retention (or when a licence lapses), and returns how many
// it removed. Of a versioned object it removes the old versions only,
// unless all are that old.
func (s *Server) Remove(before time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for name, evs := range s.events {
		kept := evs[:0]
		for _, e := range evs {
			if !e.Created.Before(before) {
				kept = append(kept, e)
			}
		}
		n += len(evs) - len(kept)
		clear(evs[len(kept):])
		s.events[name] = kept
	}
	return n
}

// Body is the object served for the event: its JSON, or, without one,
// the smallest object of its source: its id and its time field.
func (e Event) Body() []byte {
	if e.JSON != nil {
		return e.JSON
	}
	b := make([]byte, 0, 96)
	b = append(b, `{"id":`...)
	b = append(b, jsonString(e.ID)...)
	b = append(b, `,"`...)
	b = append(b, cmp.Or(TimeField(e.Source), "createdDateTime")...)
	b = append(b, `":"`...)
	b = e.Created.UTC().AppendFormat(b, DateTimeLayout)
	return append(b, `"}`...)
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ByStatus = make(map[int]int, len(s.stats.ByStatus))
	for k, v := range s.stats.ByStatus {
		st.ByStatus[k] = v
	}
	st.ByCredential = maps.Clone(s.stats.ByCredential)
	st.ByPath = maps.Clone(s.stats.ByPath)
	st.ByManageOp = maps.Clone(s.stats.ByManageOp)
	st.ThrottledBy = maps.Clone(s.stats.ThrottledBy)
	st.ByTenant = maps.Clone(s.stats.ByTenant)
	st.TokensByTenant = maps.Clone(s.stats.TokensByTenant)
	return st
}

func compareEvents(a, b Event) int {
	if c := a.Created.Compare(b.Created); c != 0 {
		return c
	}
	if c := strings.Compare(a.ID, b.ID); c != 0 {
		return c
	}
	return strings.Compare(canonical(a.Source), canonical(b.Source))
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.track(w, r, s.route)
}

func (s *Server) serveManageHTTP(w http.ResponseWriter, r *http.Request) {
	s.track(w, r, func(w *recorder, r *http.Request) {
		if isManagePath(r.URL.Path) {
			s.serveManage(w, r)
			return
		}
		manageMessage(w, http.StatusNotFound, "No HTTP resource was found that matches the request URI '"+baseURL(r)+r.URL.RequestURI()+"'.")
	})
}

// track counts a request and its answer in Stats around serve.
func (s *Server) track(w http.ResponseWriter, r *http.Request, serve func(*recorder, *http.Request)) {
	s.mu.Lock()
	s.stats.Requests++
	s.inflight++
	s.stats.MaxConcurrent = max(s.stats.MaxConcurrent, s.inflight)
	s.mu.Unlock()
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		s.mu.Lock()
		s.inflight--
		s.stats.ByStatus[rec.status]++
		if rec.status == http.StatusUnauthorized {
			s.stats.Unauthorized++
		}
		s.mu.Unlock()
	}()
	serve(rec, r)
}

func (s *Server) route(rec *recorder, r *http.Request) {
	p := r.URL.Path
	ep, isList := endpoints[p]
	switch {
	case isList:
		s.mu.Lock()
		s.stats.ByPath[p]++
		s.mu.Unlock()
		if s.refuseManageToken(rec, r) {
			return
		}
		s.list(rec, r, ep)
	case isManagePath(p):
		s.serveManage(rec, r)
	case p == IMDSPath:
		s.imds(rec, r)
	case strings.HasSuffix(p, tokenPathSuffix) && strings.Count(p, "/") == strings.Count(tokenPathSuffix, "/")+1:
		s.token(rec, r, strings.TrimSuffix(p[1:], tokenPathSuffix))
	default:
		seg := p[strings.LastIndexByte(p, '/')+1:]
		s.graphError(rec, r, http.StatusNotFound, "ResourceNotFound", "Resource not found for the segment '"+seg+"'.")
	}
}

// recorder remembers the status for Stats.
type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

// baseURL is the scheme and authority the client used, so that links and
// scopes match whatever host name it was configured with.
func baseURL(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// newID draws a GUID from the server's seeded source.
func (s *Server) newID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return NewID(s.rng)
}
