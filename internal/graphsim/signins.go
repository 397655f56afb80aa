package graphsim

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	graphContentType = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"
	agsDiagnostic    = `{"ServerInfo":{"DataCenter":"Sim","Slice":"E","Ring":"1","ScaleUnit":"000","RoleInstance":"GRAPHSIM0001","ADSiteName":"SIM"}}`

	throttleLimit  = 5
	throttleWindow = 10 * time.Second

	// Snapshots are bounded both in number and in held references so that
	// a long-running simulator cannot grow without limit.
	maxSnapshots       = 10000
	maxSnapshotEntries = 4 << 20
)

// page is what a signIns request produced once it got past auth, throttling
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

func (s *Server) signIns(w http.ResponseWriter, r *http.Request) {
	s.requestIDs(w, r)
	h := w.Header()
	if r.Method != http.MethodGet {
		s.graphError(w, r, http.StatusMethodNotAllowed, "Request_BadRequest",
			"The HTTP method '"+r.Method+"' is not allowed for this resource.")
		return
	}
	p, rep := s.decide(r)
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

	version := strings.TrimPrefix(r.URL.Path, "/")
	version = version[:strings.IndexByte(version, '/')]
	var b bytes.Buffer
	b.WriteString(`{"@odata.context":`)
	b.Write(jsonString(baseURL(r) + "/" + version + "/$metadata#auditLogs/signIns"))
	if p.next != "" {
		b.WriteString(`,"@odata.nextLink":`)
		b.Write(jsonString(p.next))
	}
	b.WriteString(`,"value":[`)
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
func (s *Server) decide(r *http.Request) (*page, *reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()

	g, rep := s.authorize(r, now)
	if rep != nil {
		return nil, rep
	}
	switch {
	case s.faults.Licence403:
		return nil, &reply{status: http.StatusForbidden, code: "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
			msg: "Neither tenant is B2C or tenant doesn't have premium license"}
	case s.faults.Permission403:
		return nil, &reply{status: http.StatusForbidden, code: "Authentication_MSGraphPermissionMissing",
			msg: "Calling principal does not have required MSGraph permissions AuditLog.Read.All"}
	}
	if s.opts.Throttle {
		if wait, ok := s.admit(g.tenant+"/"+g.client, now); !ok {
			s.stats.Throttled++
			return nil, &reply{status: http.StatusTooManyRequests, retryAfter: formatSeconds(wait), throttled: true}
		}
	}

	f := s.faults
	truncate := false
	switch u := s.rng.Float64(); {
	case u < f.Rate429:
		wait := time.Duration((0.1 + 1.9*s.rng.Float64()) * float64(time.Second))
		return nil, &reply{status: http.StatusTooManyRequests, retryAfter: formatSeconds(wait), throttled: true}
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

	p, err := s.query(r, now)
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

// admit applies a sliding window. Refused requests are not recorded, so
// a client that keeps retrying early is not punished further.
func (s *Server) admit(key string, now time.Time) (time.Duration, bool) {
	hits := s.hits[key]
	i := 0
	for i < len(hits) && !hits[i].After(now.Add(-throttleWindow)) {
		i++
	}
	hits = hits[i:]
	if len(hits) >= throttleLimit {
		s.hits[key] = hits
		return hits[0].Add(throttleWindow).Sub(now), false
	}
	s.hits[key] = append(hits, now)
	return 0, true
}

func formatSeconds(d time.Duration) string {
	return strconv.FormatFloat(max(d.Seconds(), 0.001), 'f', 3, 64)
}

// query resolves the result page, creating a snapshot on the first page so
// that every later link (and every retry of one) sees the same list.
func (s *Server) query(r *http.Request, now time.Time) (*page, error) {
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "$filter", "$top", "$skiptoken", "$orderby":
		default:
			if strings.HasPrefix(k, "$") {
				return nil, badRequest(fmt.Sprintf("Query option '%s' is not allowed. Make sure that it is supported by the target resource.", k))
			}
		}
	}
	top := s.opts.MaxPageSize
	if v, ok := q["$top"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 || n > s.opts.MaxPageSize {
			return nil, badRequest(fmt.Sprintf("Invalid page size specified: '%s'. Must be between 1 and %d inclusive.", v[0], s.opts.MaxPageSize))
		}
		top = n
	}

	var list [][]byte
	id, offset := "", 0
	if tok := q.Get("$skiptoken"); tok != "" {
		var err error
		if id, offset, err = parseSkipToken(tok); err == nil {
			var ok bool
			if list, ok = s.snaps[id]; !ok || offset > len(list) {
				err = errors.New("unknown")
			}
		}
		if err != nil {
			return nil, badRequest("Invalid skip token.")
		}
	} else {
		asc := false
		switch q.Get("$orderby") {
		case "", "createdDateTime desc":
		case "createdDateTime", "createdDateTime asc":
			asc = true
		default:
			return nil, badRequest("Invalid $orderby clause. Only createdDateTime is supported.")
		}
		var b bounds
		if v, ok := q["$filter"]; ok {
			var err error
			if b, err = parseFilter(v[0], now.Add(-s.opts.MaxFilterAge)); err != nil {
				return nil, err
			}
		}
		list = s.match(b, now, asc)
		if len(list) > top {
			id = fmt.Sprintf("%016x%016x", s.rng.Uint64(), s.rng.Uint64())
			s.keepSnapshot(id, list)
		}
	}

	end := min(offset+top, len(list))
	p := &page{items: list[offset:end]}
	if end < len(list) {
		p.next = nextLink(r, q, fmt.Sprintf("%s_%d", id, end))
	}
	return p, nil
}

func (s *Server) match(b bounds, now time.Time, asc bool) [][]byte {
	var out [][]byte
	for i := range s.events {
		if !asc {
			i = len(s.events) - 1 - i
		}
		e := &s.events[i]
		if e.Visible.After(now) || (b.hasLo && e.Created.Before(b.lo)) || (b.hasHi && e.Created.After(b.hi)) {
			continue
		}
		out = append(out, e.JSON)
	}
	return out
}

func (s *Server) keepSnapshot(id string, list [][]byte) {
	s.snaps[id] = list
	s.snapOrder = append(s.snapOrder, id)
	s.snapSize += len(list)
	for len(s.snapOrder) > 1 && (len(s.snapOrder) > maxSnapshots || s.snapSize > maxSnapshotEntries) {
		old := s.snapOrder[0]
		s.snapOrder = s.snapOrder[1:]
		s.snapSize -= len(s.snaps[old])
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

// bounds is the inclusive createdDateTime range a filter selects.
type bounds struct {
	lo, hi       time.Time
	hasLo, hasHi bool
}

const errFilter = badRequest("Invalid filter clause")

var dateTimeRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?Z$`)

// parseFilter accepts one or more "createdDateTime ge|le|eq <datetime>"
// clauses joined by "and", optionally parenthesised. Anything else, and
// any datetime before oldest, is the 400 Graph gives.
func parseFilter(s string, oldest time.Time) (bounds, error) {
	p := filterParser{toks: tokenize(s), oldest: oldest}
	if err := p.expr(0); err != nil {
		return bounds{}, err
	}
	if p.pos != len(p.toks) {
		return bounds{}, errFilter
	}
	return p.b, nil
}

func tokenize(s string) []string {
	var toks []string
	start := -1
	for i, c := range s {
		switch c {
		case ' ', '\t', '(', ')':
			if start >= 0 {
				toks = append(toks, s[start:i])
				start = -1
			}
			if c == '(' || c == ')' {
				toks = append(toks, string(c))
			}
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		toks = append(toks, s[start:])
	}
	return toks
}

type filterParser struct {
	toks   []string
	pos    int
	b      bounds
	oldest time.Time
}

func (p *filterParser) next() string {
	if p.pos >= len(p.toks) {
		return ""
	}
	p.pos++
	return p.toks[p.pos-1]
}

func (p *filterParser) expr(depth int) error {
	if depth > 16 {
		return errFilter
	}
	for {
		if err := p.term(depth); err != nil {
			return err
		}
		if p.pos >= len(p.toks) || p.toks[p.pos] != "and" {
			return nil
		}
		p.pos++
	}
}

func (p *filterParser) term(depth int) error {
	first := p.next()
	if first == "(" {
		if err := p.expr(depth + 1); err != nil {
			return err
		}
		if p.next() != ")" {
			return errFilter
		}
		return nil
	}
	if first != "createdDateTime" {
		return errFilter
	}
	op, v := p.next(), p.next()
	if !dateTimeRE.MatchString(v) {
		return errFilter
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil || t.Before(p.oldest) {
		return errFilter
	}
	switch op {
	case "ge":
		p.raiseLo(t)
	case "le":
		p.lowerHi(t)
	case "eq":
		p.raiseLo(t)
		p.lowerHi(t)
	default:
		return errFilter
	}
	return nil
}

func (p *filterParser) raiseLo(t time.Time) {
	if !p.b.hasLo || t.After(p.b.lo) {
		p.b.lo, p.b.hasLo = t, true
	}
}

func (p *filterParser) lowerHi(t time.Time) {
	if !p.b.hasHi || t.Before(p.b.hi) {
		p.b.hi, p.b.hasHi = t, true
	}
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
