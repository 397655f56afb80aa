package graphsim

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	graphContentType = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"
	agsDiagnostic    = `{"ServerInfo":{"DataCenter":"Sim","Slice":"E","Ring":"1","ScaleUnit":"000","RoleInstance":"GRAPHSIM0001","ADSiteName":"SIM"}}`

	// Snapshots are bounded both in number and in held references so that
	// a long-running simulator cannot grow without limit.
	maxSnapshots       = 10000
	maxSnapshotEntries = 4 << 20
)

// page is what a list request produced once it got past auth, throttling
// and fault injection.
type page struct {
	items    [][]byte
	next     string
	truncate bool
}

// reply is a non-200 outcome.
type reply struct {
	status     int
	code, msg  string
	retryAfter string
	throttled  bool // 429 body shape
}

// snapshot is a result list frozen by its first page; the path keeps a
// skip token from being replayed on another list. A query of one
// unversioned source is kept lazily, as its bounds, the moment it was made
// and the position after each page served, so that a query over days costs
// a page, not the whole range; any other query keeps its items.
type snapshot struct {
	path   string
	tenant string // the tenant of the query: another's token cannot page it
	items  [][]byte
	lazy   *lazyQuery
	used   time.Time // last served, for Options.LinkIdle
}

type lazyQuery struct {
	source string
	b      bounds
	at     time.Time // events visible then
	seq    uint64    // and stored by then
	asc    bool
	// after maps each offset a skip token names to the last event served
	// before it.
	after map[int]Event
}

// list serves one of the Graph list endpoints.
func (s *Server) list(w http.ResponseWriter, r *http.Request, ep endpoint) {
	s.requestIDs(w, r)
	h := w.Header()
	if r.Method != http.MethodGet {
		s.graphError(w, r, http.StatusMethodNotAllowed, "Request_BadRequest",
			"The HTTP method '"+r.Method+"' is not allowed for this resource.")
		return
	}
	p, rep := s.decide(r, ep)
	if rep != nil {
		if rep.retryAfter != "" {
			h.Set("Retry-After", rep.retryAfter)
		}
		if rep.status == http.StatusUnauthorized {
			h.Set("WWW-Authenticate", `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`)
		}
		if rep.throttled {
			s.throttleError(w, r, rep.status)
			return
		}
		s.graphError(w, r, rep.status, rep.code, rep.msg)
		return
	}

	var b bytes.Buffer
	b.WriteByte('{')
	if ep.context != "" {
		version := strings.TrimPrefix(r.URL.Path, "/")
		version = version[:strings.IndexByte(version, '/')]
		b.WriteString(`"@odata.context":`)
		b.Write(jsonString(baseURL(r) + "/" + version + "/$metadata#" + ep.context))
		b.WriteByte(',')
	}
	if p.next != "" {
		b.WriteString(`"@odata.nextLink":`)
		b.Write(jsonString(p.next))
		b.WriteByte(',')
	}
	b.WriteString(`"value":[`)
	for i, item := range p.items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(item)
	}
	b.WriteString("]}")

	h.Set("Content-Type", graphContentType)
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(http.StatusOK)
	if p.truncate {
		// The declared length is never reached, so net/http closes the
		// connection and the client reads an unexpected EOF.
		_, _ = w.Write(b.Bytes()[:b.Len()/2])
		return
	}
	_, _ = w.Write(b.Bytes())
}

// decide runs the per-request pipeline in the documented order: auth,
// licence and permission checks, throttling, injected faults, the query.
func (s *Server) decide(r *http.Request, ep endpoint) (*page, *reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()

	g, rep := s.authorize(r, now)
	if rep != nil {
		return nil, rep
	}
	s.stats.ByTenant[g.tenant]++
	switch {
	case s.faults.Licence403 && ep.licence:
		return nil, &reply{status: http.StatusForbidden, code: "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
			msg: "Neither tenant is B2C or tenant doesn't have premium license"}
	case s.faults.Permission403:
		return nil, &reply{status: http.StatusForbidden, code: "Authentication_MSGraphPermissionMissing",
			msg: "Calling principal does not have required MSGraph permissions " + ep.permission}
	}
	th := ep.throttle
	if s.opts.Throttle {
		if cause, wait, ok := s.admitGraph(th, g, now); !ok {
			s.stats.Throttled++
			s.stats.ThrottledBy[cause]++
			if cause == appThrottleName {
				s.stats.ThrottledApp++
			}
			rep := &reply{status: http.StatusTooManyRequests, throttled: true}
			if th.retryAfter {
				rep.retryAfter = formatSeconds(wait)
			}
			return nil, rep
		}
	}

	f := s.faults
	truncate := false
	switch u := s.rng.Float64(); {
	case u < f.Rate429:
		wait := time.Duration((0.1 + 1.9*s.rng.Float64()) * float64(time.Second))
		rep := &reply{status: http.StatusTooManyRequests, throttled: true}
		if th.retryAfter {
			rep.retryAfter = formatSeconds(wait)
		}
		return nil, rep
	case u < f.Rate429+f.Rate503:
		return nil, &reply{status: http.StatusServiceUnavailable, code: "serviceNotAvailable",
			msg: "The service is temporarily unavailable for maintenance or is overloaded. You may repeat the request after a delay.", retryAfter: "1"}
	case u < f.Rate429+f.Rate503+f.Rate500:
		return nil, &reply{status: http.StatusInternalServerError, code: "generalException",
			msg: "An unspecified error has occurred."}
	case u < f.Rate429+f.Rate503+f.Rate500+f.Rate504:
		return nil, &reply{status: http.StatusGatewayTimeout, code: "UnknownError", msg: ""}
	case u < f.Rate429+f.Rate503+f.Rate500+f.Rate504+f.RateTruncated:
		truncate = true
	}

	p, err := s.query(r, ep, now, g.tenant)
	if err != nil {
		return nil, &reply{status: http.StatusBadRequest, code: "BadRequest", msg: err.Error()}
	}
	p.truncate = truncate
	if truncate {
		s.stats.Truncated++
	} else {
		s.stats.Pages++
	}
	return p, nil
}

func (s *Server) authorize(r *http.Request, now time.Time) (grant, *reply) {
	deny := func(msg string) (grant, *reply) {
		return grant{}, &reply{status: http.StatusUnauthorized, code: "InvalidAuthenticationToken", msg: msg}
	}
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return deny("Access token is empty.")
	}
	g, ok := s.tokens[tok]
	if !ok {
		return deny("Access token validation failure.")
	}
	if !now.Before(g.expires) {
		return deny("Access token has expired or is not yet valid.")
	}
	return g, nil
}

// admit applies a sliding window of limit requests per window. Refused
// requests are not recorded, so a client that keeps retrying early is not
// punished further.
func (s *Server) admit(key string, limit int, window time.Duration, now time.Time) (time.Duration, bool) {
	hits := s.hits[key]
	i := 0
	for i < len(hits) && !hits[i].After(now.Add(-window)) {
		i++
	}
	hits = hits[i:]
	if len(hits) >= limit {
		s.hits[key] = hits
		return hits[0].Add(window).Sub(now), false
	}
	s.hits[key] = append(hits, now)
	return 0, true
}

// DefaultAppLimit is Graph's limit per application across all tenants on
// the identity and access reports: 122 requests per 10 seconds (besides
// five per 10 seconds per application per tenant).
const DefaultAppLimit = 122

// appThrottleName names the per-application limit in Stats.ThrottledBy.
const appThrottleName = "reportsApp"

// admitGraph applies th's limit to a request of grant g, and on the
// identity and access reports the application's limit across tenants
// too: a request counts in both or in neither. It returns the name of the
// limit that refused and how long until it admits again.
func (s *Server) admitGraph(th *throttle, g grant, now time.Time) (string, time.Duration, bool) {
	window := s.opts.throttleWindow(th.window)
	key := th.name + "/" + strings.ToLower(g.tenant)
	if th.perApp {
		key += "/" + g.client
	}
	if wait, ok := s.admit(key, th.limit, window, now); !ok {
		return th.name, wait, false
	}
	if th != reportsThrottle || s.opts.AppLimit < 0 {
		return "", 0, true
	}
	appKey := appThrottleName + "/" + g.client
	if wait, ok := s.admit(appKey, cmp.Or(s.opts.AppLimit, DefaultAppLimit), window, now); !ok {
		// Not admitted after all: the tenant's hit is taken back.
		hits := s.hits[key]
		s.hits[key] = hits[:len(hits)-1]
		return appThrottleName, wait, false
	}
	return "", 0, true
}

func formatSeconds(d time.Duration) string {
	return strconv.FormatFloat(max(d.Seconds(), 0.001), 'f', 3, 64)
}

// query resolves the result page of tenant (the token's, canonical) from
// that tenant's events alone. On a paged endpoint the first page creates
// a snapshot so that every later link (and every retry of one) sees the
// same list, which only a token of the same tenant can page; the others
// answer the $top newest objects and stop.
func (s *Server) query(r *http.Request, ep endpoint, now time.Time, tenant string) (*page, error) {
	q := r.URL.Query()
	for k := range q {
		allowed := k == "$filter" || k == "$top" ||
			(k == "$skiptoken" && ep.paged) || (k == "$orderby" && ep.orderBy)
		if !allowed && strings.HasPrefix(k, "$") {
			return nil, badRequest(fmt.Sprintf("Query option '%s' is not allowed. Make sure that it is supported by the target resource.", k))
		}
	}
	maxTop := min(s.opts.MaxPageSize, ep.maxTop)
	top := maxTop
	if ep.defaultTop > 0 {
		top = min(ep.defaultTop, maxTop)
	}
	if v, ok := q["$top"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 || n > maxTop {
			return nil, badRequest(fmt.Sprintf("Invalid page size specified: '%s'. Must be between 1 and %d inclusive.", v[0], maxTop))
		}
		top = n
	}

	var list [][]byte
	id, offset := "", 0
	if tok := q.Get("$skiptoken"); tok != "" {
		var err error
		var snap *snapshot
		if id, offset, err = parseSkipToken(tok); err == nil {
			snap = s.snaps[id]
			switch {
			case snap == nil || snap.path != r.URL.Path:
				err = errors.New("unknown")
			case snap.tenant != tenant:
				// Another tenant's query: Graph knows no such token in
				// this tenant.
				s.stats.WrongTenant++
				err = errors.New("unknown")
			case s.opts.LinkIdle > 0 && now.Sub(snap.used) > s.opts.LinkIdle, s.rng.Float64() < s.faults.RateExpiredLink:
				// Graph expires paging tokens, especially after a pause
				// between pages.
				s.stats.ExpiredLinks++
				err = errors.New("expired")
			case snap.lazy != nil:
				if _, ok := snap.lazy.after[offset]; !ok {
					err = errors.New("unknown")
				}
			case offset > len(snap.items):
				err = errors.New("unknown")
			}
		}
		if err != nil {
			return nil, badRequest("Invalid skip token.")
		}
		snap.used = now
		if snap.lazy != nil {
			after := snap.lazy.after[offset]
			return s.lazyPage(r, q, id, snap.lazy, offset, &after, top), nil
		}
		list = snap.items
	} else {
		asc := false
		switch q.Get("$orderby") {
		case "", ep.timeField + " desc":
		case ep.timeField, ep.timeField + " asc":
			asc = true
		default:
			return nil, badRequest("Invalid $orderby clause. Only " + ep.timeField + " is supported.")
		}
		f := filter{}
		if v, ok := q["$filter"]; ok {
			var err error
			if f, err = parseEndpointFilter(v[0], ep, now.Add(-s.opts.MaxFilterAge)); err != nil {
				return nil, err
			}
		}
		names := ep.sources
		if f.types != nil {
			names = sourcesForEventTypes(f.types)
		}
		keys := make([]string, len(names))
		for i, n := range names {
			keys[i] = s.eventsKey(strings.ToLower(tenant), n)
		}
		if ep.paged && len(names) == 1 && !sourceTable[names[0]].versioned {
			lq := &lazyQuery{source: keys[0], b: f.b, at: now, seq: s.seq, asc: asc, after: map[int]Event{}}
			id = fmt.Sprintf("%016x%016x", s.rng.Uint64(), s.rng.Uint64())
			p := s.lazyPage(r, q, id, lq, 0, nil, top)
			if p.next != "" {
				s.keepSnapshot(id, &snapshot{path: r.URL.Path, tenant: tenant, lazy: lq, used: now})
			}
			return p, nil
		}
		list = s.match(keys, f.b, now, asc)
		if !ep.paged {
			list = list[:min(top, len(list))]
		}
		if len(list) > top {
			id = fmt.Sprintf("%016x%016x", s.rng.Uint64(), s.rng.Uint64())
			s.keepSnapshot(id, &snapshot{path: r.URL.Path, tenant: tenant, items: list, used: now})
		}
	}

	end := min(offset+top, len(list))
	p := &page{items: list[offset:end]}
	if end < len(list) {
		p.next = nextLink(r, q, fmt.Sprintf("%s_%d", id, end))
	}
	return p, nil
}

// lazyPage serves the page of lq that starts at offset, after the event
// after (nil on the first page), and remembers where the next one starts.
func (s *Server) lazyPage(r *http.Request, q url.Values, id string, lq *lazyQuery, offset int, after *Event, top int) *page {
	evs := s.events[lq.source]
	lo, hi := span(evs, lq.b)
	visible := func(e *Event) bool { return !e.Visible.After(lq.at) && e.seq <= lq.seq }
	var i int
	if lq.asc {
		i = lo
		if after != nil {
			j, found := slices.BinarySearchFunc(evs, *after, compareEvents)
			if found {
				j++
			}
			i = max(i, j)
		}
	} else {
		i = hi - 1
		if after != nil {
			j, _ := slices.BinarySearchFunc(evs, *after, compareEvents)
			i = min(i, j-1)
		}
	}
	step := 1
	inRange := func(k int) bool { return k < hi }
	if !lq.asc {
		step, inRange = -1, func(k int) bool { return k >= lo }
	}
	p := &page{}
	var last *Event
	for ; inRange(i) && len(p.items) < top; i += step {
		if e := &evs[i]; visible(e) {
			p.items = append(p.items, s.body(e))
			last = e
		}
	}
	for ; inRange(i); i += step {
		if visible(&evs[i]) {
			lq.after[offset+len(p.items)] = *last
			p.next = nextLink(r, q, fmt.Sprintf("%s_%d", id, offset+len(p.items)))
			break
		}
	}
	return p
}

// span is the index range of the stored events (ascending) within b.
func span(evs []Event, b bounds) (lo, hi int) {
	if b.hasLo {
		lo, _ = slices.BinarySearchFunc(evs, b.lo, func(e Event, t time.Time) int {
			if c := e.Created.Compare(t); c != 0 || !b.loOpen {
				return c
			}
			return -1 // an open bound excludes its own instant
		})
	}
	hi = len(evs)
	if b.hasHi {
		hi, _ = slices.BinarySearchFunc(evs, b.hi, func(e Event, t time.Time) int {
			if c := e.Created.Compare(t); c != 0 || b.hiOpen {
				return c
			}
			return -1 // a closed bound includes its own instant
		})
	}
	return lo, max(lo, hi)
}

// body is the object served for e: its JSON, or for an event added
// without one (see Event.JSON) the smallest object of its source.
func (s *Server) body(e *Event) []byte {
	if e.JSON != nil {
		return e.JSON
	}
	return e.Body()
}

// match returns the JSON of the events of the named sources that the
// bounds select and that are visible at now, newest first (oldest first
// when asc). Of a versioned source it returns each object's current
// version only.
func (s *Server) match(names []string, b bounds, now time.Time, asc bool) [][]byte {
	var hits []*Event
	for _, name := range names {
		evs := s.events[name]
		// The stored events are ascending, so the bounds are two binary
		// searches away.
		lo, hi := span(evs, b)
		if sourceTable[sourceOf(name)].versioned {
			hits = appendCurrent(hits, evs[lo:], b, now)
			continue
		}
		for i := hi - 1; i >= lo; i-- {
			if e := &evs[i]; !e.Visible.After(now) {
				hits = append(hits, e)
			}
		}
	}
	if len(names) > 1 {
		slices.SortFunc(hits, func(a, b *Event) int { return compareEvents(*b, *a) })
	}
	if asc {
		slices.Reverse(hits)
	}
	out := make([][]byte, len(hits))
	for i, e := range hits {
		out[i] = s.body(e)
	}
	return out
}

// appendCurrent appends, newest first, the current version of each object
// in evs (ascending, and already cut below the lower bound) whose time is
// within b. The newest visible version of an ID is its current one even
// when it lies above the upper bound, in which case the object is not
// returned: Graph has no older versions to offer.
func appendCurrent(hits []*Event, evs []Event, b bounds, now time.Time) []*Event {
	seen := make(map[string]bool)
	for i := len(evs) - 1; i >= 0; i-- {
		e := &evs[i]
		if e.Visible.After(now) || seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		if b.hasHi && (e.Created.After(b.hi) || b.hiOpen && e.Created.Equal(b.hi)) {
			continue
		}
		hits = append(hits, e)
	}
	return hits
}

func (s *Server) keepSnapshot(id string, snap *snapshot) {
	s.snaps[id] = snap
	s.snapOrder = append(s.snapOrder, id)
	s.snapSize += len(snap.items) + 1
	for len(s.snapOrder) > 1 && (len(s.snapOrder) > maxSnapshots || s.snapSize > maxSnapshotEntries) {
		old := s.snapOrder[0]
		s.snapOrder = s.snapOrder[1:]
		s.snapSize -= len(s.snaps[old].items) + 1
		delete(s.snaps, old)
	}
}

func parseSkipToken(tok string) (string, int, error) {
	id, off, ok := strings.Cut(tok, "_")
	if !ok {
		return "", 0, errors.New("malformed")
	}
	n, err := strconv.Atoi(off)
	if err != nil || n < 0 {
		return "", 0, errors.New("malformed")
	}
	return id, n, nil
}

// nextLink keeps the caller's query options, as Graph does, and replaces
// the skip token. Spaces are written as %20 like Graph's own links.
func nextLink(r *http.Request, q url.Values, skip string) string {
	var b strings.Builder
	b.WriteString(baseURL(r) + r.URL.Path + "?")
	for _, k := range []string{"$filter", "$orderby", "$top"} {
		if v, ok := q[k]; ok {
			b.WriteString(k + "=" + strings.ReplaceAll(url.QueryEscape(v[0]), "+", "%20") + "&")
		}
	}
	b.WriteString("$skiptoken=" + url.QueryEscape(skip))
	return b.String()
}

// graphError writes Graph's error envelope.
func (s *Server) graphError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	type inner struct {
		Date            string `json:"date"`
		RequestID       string `json:"request-id"`
		ClientRequestID string `json:"client-request-id"`
	}
	type body struct {
		Code       string `json:"code"`
		Message    string `json:"message"`
		InnerError inner  `json:"innerError"`
	}
	reqID, clientReqID := s.requestIDs(w, r)
	writeJSON(w, status, graphContentType, struct {
		Error body `json:"error"`
	}{body{code, msg, inner{s.innerDate(), reqID, clientReqID}}})
}

// throttleError writes the 429 body from Graph's throttling documentation,
// whose innerError differs from other errors.
func (s *Server) throttleError(w http.ResponseWriter, r *http.Request, status int) {
	type inner struct {
		Code      string `json:"code"`
		Date      string `json:"date"`
		Message   string `json:"message"`
		RequestID string `json:"request-id"`
		Status    string `json:"status"`
	}
	type body struct {
		Code       string `json:"code"`
		InnerError inner  `json:"innerError"`
		Message    string `json:"message"`
	}
	reqID, _ := s.requestIDs(w, r)
	st := strconv.Itoa(status)
	writeJSON(w, status, graphContentType, struct {
		Error body `json:"error"`
	}{body{"TooManyRequests", inner{st, s.innerDate(), "Please retry after", reqID, st}, "Please retry again later."}})
}

// requestIDs returns the response's request-id headers, setting them when
// the handler has not yet done so.
func (s *Server) requestIDs(w http.ResponseWriter, r *http.Request) (string, string) {
	h := w.Header()
	if h.Get("request-id") == "" {
		id := s.newID()
		h.Set("request-id", id)
		h.Set("client-request-id", cmp.Or(r.Header.Get("client-request-id"), id))
		h.Set("x-ms-ags-diagnostic", agsDiagnostic)
	}
	return h.Get("request-id"), h.Get("client-request-id")
}

func (s *Server) innerDate() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opts.Now().UTC().Format("2006-01-02T15:04:05")
}

func jsonString(v string) []byte {
	b, _ := marshal(v)
	return b
}

// badRequest is a 400 whose text is sent to the client as the message.
type badRequest string

func (e badRequest) Error() string { return string(e) }
