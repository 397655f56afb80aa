package graphsim

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The content types of the Office 365 Management Activity API.
const (
	ContentAzureActiveDirectory = "Audit.AzureActiveDirectory"
	ContentExchange             = "Audit.Exchange"
	ContentSharePoint           = "Audit.SharePoint"
	ContentGeneral              = "Audit.General"
	ContentDLP                  = "DLP.All"
)

// ContentTypes lists the content types in the order of Microsoft's
// reference, which is also the order of subscriptions/list.
var ContentTypes = []string{ContentAzureActiveDirectory, ContentExchange, ContentSharePoint, ContentGeneral, ContentDLP}

// ContentTimeLayout is how contentCreated and contentExpiration are
// rendered: UTC with milliseconds, as in Microsoft's samples.
const ContentTimeLayout = "2006-01-02T15:04:05.000Z"

// ContentLifetime is how long a blob stays retrievable when its Expires is
// not set: contentExpiration is contentCreated plus 7 days in Microsoft's
// samples, and AF20051 says "Content older than 7 days cannot be
// retrieved".
const ContentLifetime = 7 * 24 * time.Hour

// manageHosts are the Management Activity API hosts of the clouds, whose
// scopes the token endpoint accepts: Enterprise, GCC, GCC High, DoD and
// 21Vianet.
var manageHosts = []string{
	"https://manage.office.com",
	"https://manage-gcc.office.com",
	"https://manage.office365.us",
	"https://manage.protection.apps.mil",
	"https://manage.office.cn",
}

// Limits of the Management Activity API as the simulator models them.
const (
	// manageTenantLimit is the documented baseline per tenant, for
	// requests carrying a PublisherIdentifier.
	manageTenantLimit = 2000
	// manageSharedLimit is the pool shared by requests without a
	// PublisherIdentifier. Microsoft documents only that it is shared;
	// the simulator makes it small so that omitting the parameter shows.
	manageSharedLimit = 200
	manageWindow      = time.Minute
	// startCooldown is the documented wait between two start requests.
	startCooldown   = 15 * time.Minute
	maxContentRange = 24 * time.Hour
	maxContentAge   = 7 * 24 * time.Hour
	zeroPublisher   = "00000000-0000-0000-0000-000000000000"
	foreignBase     = "https://evil.example.invalid"
	manageJSON      = "application/json; charset=utf-8"
)

// Blob is one content blob of the Management Activity API.
type Blob struct {
	ContentType string    // one of ContentTypes
	ID          string    // contentId; "" → generated in the service's $-separated form
	Created     time.Time // contentCreated, the time listings filter on
	Listed      time.Time // listable from (zero: Created); later models a late listing
	Expires     time.Time // contentExpiration (zero: Created + ContentLifetime)
	Records     [][]byte  // audit records (JSON objects), served as a JSON array
	// Body is an alternative for volume: the whole body, generated on each
	// fetch; used when non-nil. It must be safe for concurrent use.
	Body func() []byte
	N    int // records in Body, for Stats
	// Tenant is the tenant whose feed holds the blob: the ID or an alias
	// of Options.TenantID or of a Tenant ("" is the default tenant). Only
	// that tenant's address lists and serves it, and only while that
	// tenant's subscription to its content type is enabled.
	Tenant string

	// FailFetches makes the first that many fetches answer 500 AF50000,
	// a blob that is readable only on a retry.
	FailFetches int
	// Fault makes every fetch answer badly; see BlobFault.
	Fault BlobFault
}

// BlobFault is a persistent fault of one blob.
type BlobFault int

const (
	BlobOK            BlobFault = iota
	BlobInternalError           // every fetch answers 500 AF50000
	BlobTruncated               // every fetch's body stops halfway
	BlobNotFound                // listed, but every fetch answers AF20050
	BlobNotJSON                 // every fetch answers 200 with a body that is not JSON
)

// ManageFaults selects injected Management Activity API failures. Rates
// are per request probabilities, drawn only when one of them is set.
type ManageFaults struct {
	Rate503   float64 // 503 with an HTML body, as from a front end, without Retry-After
	Rate500   float64 // 500 AF50000
	RateAF429 float64 // 403 AF429, as when throttled
	// RateTruncated cuts a listing or blob body halfway: the declared
	// Content-Length is never reached.
	RateTruncated float64
	// RateBadListing answers a listing with 200 and a body that is not
	// JSON.
	RateBadListing float64
	// LoopNextPage sets NextPageUri on every listing to the request's own
	// URL.
	LoopNextPage bool
	// ForeignContentURI puts every contentUri on https://evil.example.invalid.
	ForeignContentURI bool
}

type manageState struct {
	faults  ManageFaults
	tenants map[string]*manageTenant // per tenantKey
	seq     uint64                   // generated content IDs
}

// manageTenant is one tenant's feed: its blobs and subscriptions.
type manageTenant struct {
	blobs map[string][]*blobEntry // per content type, ascending by compareBlobs
	byID  map[string]*blobEntry
	subs  map[string]*subscription
}

func newManageState(f ManageFaults) manageState {
	return manageState{faults: f, tenants: make(map[string]*manageTenant)}
}

// tenant is the feed of the tenant of key (see tenantKey), created empty
// on first use.
func (m *manageState) tenant(key string) *manageTenant {
	mt := m.tenants[key]
	if mt == nil {
		mt = &manageTenant{blobs: make(map[string][]*blobEntry), byID: make(map[string]*blobEntry), subs: make(map[string]*subscription)}
		m.tenants[key] = mt
	}
	return mt
}

type blobEntry struct {
	Blob
	fetches int
}

// subscription is one content type's subscription. Content that became
// listable while it was stopped stays out of reach after a restart, as
// documented.
type subscription struct {
	enabled   bool
	started   time.Time // of the last start request, for startCooldown
	stoppedAt time.Time
	gaps      [][2]time.Time // stopped periods [from, to)
}

func (sub *subscription) hides(listed time.Time) bool {
	for _, g := range sub.gaps {
		if !listed.Before(g[0]) && listed.Before(g[1]) {
			return true
		}
	}
	return false
}

func (sub *subscription) enable(now time.Time) {
	if !sub.enabled && !sub.stoppedAt.IsZero() {
		sub.gaps = append(sub.gaps, [2]time.Time{sub.stoppedAt, now})
	}
	sub.enabled = true
}

func compareBlobs(a, b *blobEntry) int {
	if c := a.Created.Compare(b.Created); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// SetManageFaults replaces the Management Activity API fault
// configuration.
func (s *Server) SetManageFaults(f ManageFaults) {
	s.mu.Lock()
	s.manage.faults = f
	s.mu.Unlock()
}

// AddBlobs stores content blobs. Missing IDs are generated, a zero Listed
// becomes Created and a zero Expires Created + ContentLifetime; the times
// are truncated to milliseconds, the precision listings show. A blob with
// the ID of a stored one of its tenant replaces it. Blobs are not
// validated, so a test can serve deliberately malformed records.
func (s *Server) AddBlobs(bs ...Blob) {
	keys := make(map[string]string) // Blob.Tenant -> tenantKey
	for _, b := range bs {
		if _, ok := keys[b.Tenant]; !ok {
			keys[b.Tenant] = s.tenantKey(b.Tenant)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	type batchKey struct{ tenant, contentType string }
	byType := make(map[batchKey][]*blobEntry)
	for _, b := range bs {
		key := keys[b.Tenant]
		m := s.manage.tenant(key)
		b.Created = b.Created.UTC().Truncate(time.Millisecond)
		if b.Listed.IsZero() {
			b.Listed = b.Created
		}
		b.Listed = b.Listed.UTC().Truncate(time.Millisecond)
		if b.Expires.IsZero() {
			b.Expires = b.Created.Add(ContentLifetime)
		}
		b.Expires = b.Expires.UTC().Truncate(time.Millisecond)
		for b.ID == "" {
			s.manage.seq++
			if id := ContentID(b.ContentType, b.Created, s.manage.seq); m.byID[id] == nil {
				b.ID = id
			}
		}
		if old := m.byID[b.ID]; old != nil {
			list := m.blobs[old.ContentType]
			if i := slices.Index(list, old); i >= 0 {
				m.blobs[old.ContentType] = slices.Delete(list, i, i+1)
			}
		}
		e := &blobEntry{Blob: b}
		m.byID[b.ID] = e
		bk := batchKey{key, b.ContentType}
		byType[bk] = append(byType[bk], e)
	}
	for bk, batch := range byType {
		m := s.manage.tenants[bk.tenant]
		// A batch may hold two blobs of one ID; the last one stays.
		batch = slices.DeleteFunc(batch, func(e *blobEntry) bool { return m.byID[e.ID] != e })
		slices.SortFunc(batch, compareBlobs)
		m.blobs[bk.contentType] = mergeBlobs(m.blobs[bk.contentType], batch)
	}
}

func mergeBlobs(old, batch []*blobEntry) []*blobEntry {
	merged := make([]*blobEntry, 0, len(old)+len(batch))
	i, j := 0, 0
	for i < len(old) && j < len(batch) {
		if compareBlobs(old[i], batch[j]) <= 0 {
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

// ManageBlobs returns copies of the stored blobs of a content type of the
// default tenant in listing order. Their Records are shared and must not
// be modified.
func (s *Server) ManageBlobs(contentType string) []Blob { return s.ManageBlobsIn("", contentType) }

// ManageBlobsIn is ManageBlobs of a tenant (its ID or an alias; "" is the
// default tenant).
func (s *Server) ManageBlobsIn(tenant, contentType string) []Blob {
	key := s.tenantKey(tenant)
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []*blobEntry
	if mt := s.manage.tenants[key]; mt != nil {
		list = mt.blobs[contentType]
	}
	out := make([]Blob, len(list))
	for i, e := range list {
		out[i] = e.Blob
	}
	return out
}

// SetSubscribed starts or stops the default tenant's subscription to a
// content type as if subscriptions/start or /stop had been called, without
// their checks, counters or the start cooldown.
func (s *Server) SetSubscribed(contentType string, on bool) { s.SetSubscribedIn("", contentType, on) }

// SetSubscribedIn is SetSubscribed for a tenant (its ID or an alias; ""
// is the default tenant).
func (s *Server) SetSubscribedIn(tenant, contentType string, on bool) {
	key := s.tenantKey(tenant)
	s.mu.Lock()
	defer s.mu.Unlock()
	mt := s.manage.tenant(key)
	if on {
		mt.sub(contentType).enable(s.opts.Now())
	} else if sub := mt.subs[contentType]; sub != nil && sub.enabled {
		sub.enabled, sub.stoppedAt = false, s.opts.Now()
	}
}

// Subscribed reports whether the default tenant's subscription to a
// content type is enabled.
func (s *Server) Subscribed(contentType string) bool { return s.SubscribedIn("", contentType) }

// SubscribedIn is Subscribed for a tenant (its ID or an alias; "" is the
// default tenant).
func (s *Server) SubscribedIn(tenant, contentType string) bool {
	key := s.tenantKey(tenant)
	s.mu.Lock()
	defer s.mu.Unlock()
	mt := s.manage.tenants[key]
	if mt == nil {
		return false
	}
	sub := mt.subs[contentType]
	return sub != nil && sub.enabled
}

func (mt *manageTenant) sub(ct string) *subscription {
	sub := mt.subs[ct]
	if sub == nil {
		sub = &subscription{}
		mt.subs[ct] = sub
	}
	return sub
}

// ContentID builds a content ID in the service's form, such as
// 20260101100000123000001$20260101100000123000001$audit_exchange$Audit_Exchange$na0014,
// unique per n.
func ContentID(contentType string, created time.Time, n uint64) string {
	t := created.UTC()
	stamp := t.Format("20060102150405") + fmt.Sprintf("%03d%06d", t.Nanosecond()/1e6, n%1e6)
	name := strings.ReplaceAll(contentType, ".", "_")
	return fmt.Sprintf("%s$%s%02d$%s$%s$na%04d", stamp, stamp[:21], n/1e6%100, strings.ToLower(name), name, n%97)
}

func validContentType(ct string) bool { return slices.Contains(ContentTypes, ct) }

// isManagePath reports whether p is under the Management Activity API
// root, /api/v1.0/ (or /api/v1/, as in Microsoft's NextPageUri sample).
func isManagePath(p string) bool {
	l := strings.ToLower(p)
	return strings.HasPrefix(l, "/api/v1.0/") || strings.HasPrefix(l, "/api/v1/")
}

// isManageHost reports whether u (a scheme and host, without a trailing
// slash) names this Management Activity API.
func (s *Server) isManageHost(u string) bool {
	if slices.Contains(manageHosts, u) {
		return true
	}
	own := s.ManageURL()
	return own != "" && u == own
}

// manageRequest is a Management Activity API request once routed.
type manageRequest struct {
	op        string // list, content, blob, start, stop
	method    string // the operation's name in AF429 messages
	tenant    string
	contentID string
	q         map[string]string // query parameters by lower-case name
	publisher string
	g         grant
	feed      *manageTenant // the tenant's, once the token is known to be for it
	now       time.Time
}

// parseManagePath splits /api/v1.0/{tenant}/activity/feed/{operation}.
// Routing is case-insensitive and empty segments are skipped, as the
// service's routing does.
func parseManagePath(p string) (op, tenant, contentID string, ok bool) {
	var segs []string
	for seg := range strings.SplitSeq(p, "/") {
		if seg != "" {
			segs = append(segs, seg)
		}
	}
	if len(segs) < 6 || !strings.EqualFold(segs[0], "api") || !strings.EqualFold(segs[3], "activity") || !strings.EqualFold(segs[4], "feed") {
		return "", "", "", false
	}
	tenant, rest := segs[2], segs[5:]
	switch {
	case len(rest) == 2 && strings.EqualFold(rest[0], "subscriptions"):
		switch strings.ToLower(rest[1]) {
		case "start", "stop", "list", "content":
			return strings.ToLower(rest[1]), tenant, "", true
		}
	case len(rest) == 2 && strings.EqualFold(rest[0], "audit"):
		return "blob", tenant, rest[1], true
	}
	return "", "", "", false
}

var manageOps = map[string]struct{ method, name string }{
	"start":   {http.MethodPost, "StartSubscription"},
	"stop":    {http.MethodPost, "StopSubscription"},
	"list":    {http.MethodGet, "ListSubscriptions"},
	"content": {http.MethodGet, "ListContent"},
	"blob":    {http.MethodGet, "GetBlob"},
}

// manageReply is a non-200 Management Activity API answer.
type manageReply struct {
	status    int
	code, msg string
	denied    bool // 401 in the ASP.NET form
	html      bool // 503 from the front end
}

func afError(status int, code, msg string) *manageReply {
	return &manageReply{status: status, code: code, msg: msg}
}

// serveManage serves one Management Activity API request.
func (s *Server) serveManage(w http.ResponseWriter, r *http.Request) {
	op, tenant, contentID, ok := parseManagePath(r.URL.Path)
	if !ok {
		manageMessage(w, http.StatusNotFound, "No HTTP resource was found that matches the request URI '"+baseURL(r)+r.URL.RequestURI()+"'.")
		return
	}
	s.mu.Lock()
	s.stats.ManageRequests++
	s.stats.ByManageOp[op]++
	now := s.opts.Now()
	s.mu.Unlock()
	w.Header().Set("Date", now.UTC().Format(http.TimeFormat))
	if r.Method != manageOps[op].method {
		manageMessage(w, http.StatusMethodNotAllowed, "The requested resource does not support http method '"+r.Method+"'.")
		return
	}
	mr := &manageRequest{op: op, method: manageOps[op].name, tenant: tenant, contentID: contentID, q: make(map[string]string)}
	for k, v := range r.URL.Query() {
		if l := strings.ToLower(k); len(v) > 0 {
			if _, dup := mr.q[l]; !dup {
				mr.q[l] = v[0]
			}
		}
	}
	if op == "start" && r.Body != nil {
		// The body may hold a webhook, which the simulator does not call.
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	}

	s.mu.Lock()
	out, rep := s.manageDecide(r, mr)
	s.mu.Unlock()
	if rep != nil {
		writeManageReply(w, rep)
		return
	}
	out.write(w)
}

// manageOut is a 200 answer decided under the lock and written outside it.
type manageOut struct {
	body     []byte
	blob     *Blob // generate the body from it
	next     string
	truncate bool
	notJSON  bool
	records  int
}

func (o *manageOut) write(w http.ResponseWriter) {
	body := o.body
	if o.blob != nil {
		body = blobBody(o.blob)
	}
	if o.notJSON {
		body = []byte("<html><head><title>Object moved</title></head><body><h2>Object moved to <a href=\"/errorpage.aspx\">here</a>.</h2></body></html>")
	}
	h := w.Header()
	if o.next != "" {
		h.Set("NextPageUri", o.next)
	}
	h.Set("Content-Type", manageJSON)
	h.Set("Cache-Control", "no-cache")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "-1")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if o.truncate {
		// The declared length is never reached, so net/http closes the
		// connection and the client reads an unexpected EOF.
		_, _ = w.Write(body[:len(body)/2])
		return
	}
	_, _ = w.Write(body)
}

func blobBody(b *Blob) []byte {
	if b.Body != nil {
		return b.Body()
	}
	n := 2
	for _, r := range b.Records {
		n += len(r) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, '[')
	for i, r := range b.Records {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, r...)
	}
	return append(out, ']')
}

// manageDecide runs the pipeline: auth, tenant, permission, throttling,
// injected faults, the operation. It runs under s.mu.
func (s *Server) manageDecide(r *http.Request, mr *manageRequest) (*manageOut, *manageReply) {
	m := &s.manage
	now := s.opts.Now()
	mr.now = now
	if rep := s.manageAuthorize(r, mr); rep != nil {
		return nil, rep
	}
	switch {
	case !isGUID(mr.tenant):
		return nil, afError(http.StatusBadRequest, "AF20013", fmt.Sprintf("The tenant ID passed in the URL (%s) is not a valid GUID.", mr.tenant))
	case !strings.EqualFold(mr.tenant, mr.g.tenant):
		// A token is good for its own tenant only, even for an application
		// consented in both: the reference's AF20010, with the 401 of a
		// token the request cannot be authorized with.
		s.stats.WrongTenant++
		return nil, afError(http.StatusUnauthorized, "AF20010", fmt.Sprintf("The tenant ID passed in the URL (%s) does not match the tenant ID passed in the access token (%s).", mr.tenant, mr.g.tenant))
	case s.opts.ManagePermission403:
		return nil, afError(http.StatusForbidden, "AF10001", "The permission set () sent in the request did not include the expected permission ActivityFeed.Read.")
	}
	mr.feed = m.tenant(strings.ToLower(mr.g.tenant))
	publisher, hasPublisher := mr.q["publisheridentifier"]
	if hasPublisher && !isGUID(publisher) {
		return nil, afError(http.StatusBadRequest, "AF20002", "Invalid parameter type: PublisherIdentifier. Expected type: guid")
	}
	mr.publisher = cmp.Or(publisher, zeroPublisher)
	if s.opts.Throttle {
		key, limit := "manage/shared", manageSharedLimit
		if hasPublisher {
			key, limit = "manage/tenant/"+strings.ToLower(mr.g.tenant), manageTenantLimit
		}
		if _, ok := s.admit(key, limit, s.opts.throttleWindow(manageWindow), now); !ok {
			s.stats.ManageThrottled++
			return nil, mr.tooMany()
		}
	}
	f := m.faults
	truncate, notJSON := false, false
	if f.Rate503+f.Rate500+f.RateAF429+f.RateTruncated+f.RateBadListing > 0 {
		switch u := s.rng.Float64(); {
		case u < f.Rate503:
			return nil, &manageReply{status: http.StatusServiceUnavailable, html: true}
		case u < f.Rate503+f.Rate500:
			return nil, internalError()
		case u < f.Rate503+f.Rate500+f.RateAF429:
			return nil, mr.tooMany()
		case u < f.Rate503+f.Rate500+f.RateAF429+f.RateTruncated:
			truncate = mr.op == "content" || mr.op == "blob"
		case u < f.Rate503+f.Rate500+f.RateAF429+f.RateTruncated+f.RateBadListing:
			notJSON = mr.op == "content"
		}
	}

	var out *manageOut
	var rep *manageReply
	switch mr.op {
	case "list":
		out = s.listSubscriptions(mr)
	case "start":
		out, rep = s.startSubscription(mr)
	case "stop":
		out, rep = s.stopSubscription(mr)
	case "content":
		out, rep = s.listContent(r, mr)
	case "blob":
		out, rep = s.getBlob(mr)
	}
	if rep != nil {
		return nil, rep
	}
	out.truncate, out.notJSON = truncate || out.truncate, notJSON || out.notJSON
	switch {
	case out.truncate:
		s.stats.ManageTruncated++
	case out.blob != nil && !out.notJSON:
		// Counted before the body is sent, so that a client that has read
		// it sees it in Stats.
		s.stats.BlobsServed++
		s.stats.ManageRecords += out.records
	}
	return out, nil
}

func (mr *manageRequest) tooMany() *manageReply {
	return afError(http.StatusForbidden, "AF429", fmt.Sprintf("Too many requests. Method=%s, PublisherId=%s", mr.method, mr.publisher))
}

func internalError() *manageReply {
	return afError(http.StatusInternalServerError, "AF50000", "An internal error occurred. Retry the request.")
}

// manageAuthorize accepts a live token issued for the Management Activity
// API. Under a known manage host name it must be that host's token, since
// tokens are not interchangeable between clouds.
func (s *Server) manageAuthorize(r *http.Request, mr *manageRequest) *manageReply {
	denied := &manageReply{status: http.StatusUnauthorized, denied: true}
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return denied
	}
	g, ok := s.tokens[tok]
	if !ok || !mr.now.Before(g.expires) {
		return denied
	}
	host := "https://" + strings.ToLower(r.Host)
	if g.api != apiManage || slices.Contains(manageHosts, host) && slices.Contains(manageHosts, g.resource) && g.resource != host {
		s.stats.WrongAudience++
		return denied
	}
	mr.g = g
	return nil
}

// refuseManageToken answers a Graph request that carries a Management
// Activity API token as Graph does a token of another audience, and
// reports whether it did.
func (s *Server) refuseManageToken(w http.ResponseWriter, r *http.Request) bool {
	_, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	s.mu.Lock()
	g, ok := s.tokens[tok]
	wrong := ok && g.api == apiManage
	if wrong {
		s.stats.WrongAudience++
	}
	s.mu.Unlock()
	if !wrong {
		return false
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`)
	s.graphError(w, r, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
	return true
}

// contentType validates the contentType parameter and the permission its
// data needs.
func (s *Server) contentType(mr *manageRequest) (string, *manageReply) {
	ct, ok := mr.q["contenttype"]
	switch {
	case !ok || ct == "":
		return "", afError(http.StatusBadRequest, "AF20001", "Missing parameter: contentType.")
	case !validContentType(ct):
		return "", afError(http.StatusBadRequest, "AF20020", "The specified content type is not valid.")
	}
	if rep := s.dlpPermission(ct); rep != nil {
		return "", rep
	}
	return ct, nil
}

func (s *Server) dlpPermission(ct string) *manageReply {
	if ct == ContentDLP && s.opts.ManageNoDlpPermission {
		return afError(http.StatusForbidden, "AF10001", "The permission set (ActivityFeed.Read) sent in the request did not include the expected permission ActivityFeed.ReadDlp.")
	}
	return nil
}

func noSubscription() *manageReply {
	return afError(http.StatusBadRequest, "AF20022", "No subscription found for the specified content type.")
}

type subscriptionJSON struct {
	ContentType string    `json:"contentType"`
	Status      string    `json:"status"`
	Webhook     *struct{} `json:"webhook"`
}

func (s *Server) listSubscriptions(mr *manageRequest) *manageOut {
	list := []subscriptionJSON{}
	names := slices.Sorted(maps.Keys(mr.feed.subs))
	// The documented content types first, in their order.
	slices.SortStableFunc(names, func(a, b string) int {
		ia, ib := slices.Index(ContentTypes, a), slices.Index(ContentTypes, b)
		if ia < 0 {
			ia = len(ContentTypes)
		}
		if ib < 0 {
			ib = len(ContentTypes)
		}
		return ia - ib
	})
	for _, ct := range names {
		status := "disabled"
		if mr.feed.subs[ct].enabled {
			status = "enabled"
		}
		list = append(list, subscriptionJSON{ContentType: ct, Status: status})
	}
	b, _ := marshal(list)
	return &manageOut{body: b}
}

func (s *Server) startSubscription(mr *manageRequest) (*manageOut, *manageReply) {
	ct, rep := s.contentType(mr)
	if rep != nil {
		return nil, rep
	}
	sub := mr.feed.sub(ct)
	if sub.enabled {
		return nil, afError(http.StatusBadRequest, "AF20024", "The subscription is already enabled. No property change.")
	}
	if s.opts.Throttle && !sub.started.IsZero() && mr.now.Sub(sub.started) < s.opts.throttleWindow(startCooldown) {
		s.stats.ManageThrottled++
		return nil, mr.tooMany()
	}
	sub.enable(mr.now)
	sub.started = mr.now
	s.stats.SubscriptionStarts++
	b, _ := marshal(subscriptionJSON{ContentType: ct, Status: "enabled"})
	return &manageOut{body: b}, nil
}

func (s *Server) stopSubscription(mr *manageRequest) (*manageOut, *manageReply) {
	ct, rep := s.contentType(mr)
	if rep != nil {
		return nil, rep
	}
	sub := mr.feed.subs[ct]
	if sub == nil || !sub.enabled {
		return nil, noSubscription()
	}
	sub.enabled, sub.stoppedAt = false, mr.now
	return &manageOut{body: []byte{}}, nil
}

// contentWindow is the parsed startTime/endTime of a listing, with the
// texts NextPageUri repeats.
type contentWindow struct {
	start, end         time.Time
	startText, endText string
}

func timeRangeError() *manageReply {
	return afError(http.StatusBadRequest, "AF20055", "Start time and end time must both be specified (or both omitted) and must be less than or equal to 24 hours apart, with the start time prior to end time and start time no more than 7 days in the past.")
}

func (s *Server) parseWindow(mr *manageRequest, continued bool) (contentWindow, *manageReply) {
	st, hasStart := mr.q["starttime"]
	et, hasEnd := mr.q["endtime"]
	if !hasStart && !hasEnd {
		end := mr.now.UTC().Truncate(time.Millisecond)
		start := end.Add(-maxContentRange)
		return contentWindow{start, end, start.Format(ContentTimeLayout), end.Format(ContentTimeLayout)}, nil
	}
	if !hasStart || !hasEnd {
		return contentWindow{}, timeRangeError()
	}
	start, ok := parseManageTime(st)
	if !ok {
		return contentWindow{}, afError(http.StatusBadRequest, "AF20002", "Invalid parameter type: startTime. Expected type: datetime")
	}
	end, ok := parseManageTime(et)
	if !ok {
		return contentWindow{}, afError(http.StatusBadRequest, "AF20002", "Invalid parameter type: endTime. Expected type: datetime")
	}
	// A chain of pages is not refused for passing the 7-day bound while
	// it is being read.
	if !start.Before(end) || end.Sub(start) > maxContentRange || !continued && start.Before(mr.now.Add(-maxContentAge)) {
		return contentWindow{}, timeRangeError()
	}
	return contentWindow{start, end, st, et}, nil
}

// parseManageTime accepts the documented YYYY-MM-DD, YYYY-MM-DDTHH:MM and
// YYYY-MM-DDTHH:MM:SS, with optional fractional seconds and an optional
// zone (Z or an offset); without a zone the time is UTC.
func parseManageTime(v string) (time.Time, bool) {
	for _, layout := range []string{"2006-01-02T15:04:05Z07:00", "2006-01-02T15:04Z07:00", "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// listContent answers subscriptions/content: the blobs whose contentCreated
// is in [start, end) that are listable now, ascending, one page at a time.
// A nextPage names the last blob served, so that blobs listed meanwhile
// after that position are neither skipped nor served twice in the chain.
func (s *Server) listContent(r *http.Request, mr *manageRequest) (*manageOut, *manageReply) {
	ct, rep := s.contentType(mr)
	if rep != nil {
		return nil, rep
	}
	sub := mr.feed.subs[ct]
	if sub == nil || !sub.enabled {
		return nil, noSubscription()
	}
	var after *blobEntry
	np, continued := mr.q["nextpage"]
	if continued {
		var ok bool
		if after, ok = parseNextPage(np); !ok {
			return nil, afError(http.StatusBadRequest, "AF20031", fmt.Sprintf("Invalid nextPage Input: %s.", np))
		}
	}
	win, rep := s.parseWindow(mr, continued)
	if rep != nil {
		return nil, rep
	}
	list := mr.feed.blobs[ct]
	i, _ := slices.BinarySearchFunc(list, win.start, func(e *blobEntry, t time.Time) int { return e.Created.Compare(t) })
	if after != nil {
		j, found := slices.BinarySearchFunc(list, after, compareBlobs)
		if found {
			j++
		}
		i = max(i, j)
	}
	visible := func(e *blobEntry) bool {
		return !mr.now.Before(e.Listed) && mr.now.Before(e.Expires) && !sub.hides(e.Listed)
	}
	base := baseURL(r)
	if s.manage.faults.ForeignContentURI {
		base = foreignBase
	}
	type item struct {
		ContentType       string `json:"contentType"`
		ContentID         string `json:"contentId"`
		ContentURI        string `json:"contentUri"`
		ContentCreated    string `json:"contentCreated"`
		ContentExpiration string `json:"contentExpiration"`
	}
	items := []item{}
	var last *blobEntry
	more := false
	for ; i < len(list) && list[i].Created.Before(win.end); i++ {
		e := list[i]
		if !visible(e) {
			continue
		}
		if len(items) == s.opts.ManagePageSize {
			more = true
			break
		}
		items = append(items, item{ct, e.ID, base + "/api/v1.0/" + mr.tenant + "/activity/feed/audit/" + e.ID,
			e.Created.Format(ContentTimeLayout), e.Expires.Format(ContentTimeLayout)})
		last = e
	}
	b, _ := marshal(items)
	out := &manageOut{body: b}
	if more {
		out.next = nextPageURI(r, mr, ct, win, formatNextPage(last))
	}
	if s.manage.faults.LoopNextPage {
		out.next = baseURL(r) + r.URL.RequestURI()
	}
	return out, nil
}

// nextPageURI repeats the listing's query, with the window it used, and
// sets the next page.
func nextPageURI(r *http.Request, mr *manageRequest, ct string, win contentWindow, page string) string {
	var b strings.Builder
	b.WriteString(baseURL(r) + r.URL.Path + "?contentType=" + queryEscape(ct))
	b.WriteString("&startTime=" + queryEscape(win.startText) + "&endTime=" + queryEscape(win.endText))
	if p, ok := mr.q["publisheridentifier"]; ok {
		b.WriteString("&PublisherIdentifier=" + queryEscape(p))
	}
	b.WriteString("&nextPage=" + page)
	return b.String()
}

func queryEscape(v string) string {
	return strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(v, "%", "%25"), "+", "%2B"), "&", "%26")
}

// The nextPage token is opaque to clients: the position of the last blob
// served, as its contentCreated in milliseconds and its contentId.
func formatNextPage(e *blobEntry) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(e.Created.UnixMilli(), 10) + "R" + e.ID))
}

func parseNextPage(tok string) (*blobEntry, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return nil, false
	}
	ms, id, ok := strings.Cut(string(raw), "R")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || id == "" {
		return nil, false
	}
	return &blobEntry{Blob: Blob{Created: time.UnixMilli(n).UTC(), ID: id}}, true
}

// getBlob answers a contentUri. The body is generated after the lock is
// released.
func (s *Server) getBlob(mr *manageRequest) (*manageOut, *manageReply) {
	e := mr.feed.byID[mr.contentID]
	notFound := afError(http.StatusBadRequest, "AF20050", fmt.Sprintf("The specified content (%s) does not exist.", mr.contentID))
	if e == nil || mr.now.Before(e.Listed) {
		return nil, notFound
	}
	if rep := s.dlpPermission(e.ContentType); rep != nil {
		return nil, rep
	}
	sub := mr.feed.subs[e.ContentType]
	switch {
	case sub == nil || !sub.enabled:
		return nil, noSubscription()
	case sub.hides(e.Listed):
		return nil, notFound
	case !mr.now.Before(e.Expires):
		s.stats.ExpiredContent++
		return nil, afError(http.StatusBadRequest, "AF20051", fmt.Sprintf("Content requested with the key %s has already expired. Content older than 7 days cannot be retrieved.", e.ID))
	case e.fetches < e.FailFetches:
		e.fetches++
		return nil, internalError()
	}
	e.fetches++
	out := &manageOut{blob: &e.Blob, records: len(e.Records)}
	if e.Body != nil {
		out.records = e.N
	}
	switch e.Fault {
	case BlobInternalError:
		return nil, internalError()
	case BlobNotFound:
		return nil, notFound
	case BlobTruncated:
		out.truncate = true
	case BlobNotJSON:
		out.notJSON = true
	}
	return out, nil
}

func writeManageReply(w http.ResponseWriter, rep *manageReply) {
	if rep.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", resource_id="https://manage.office.com"`)
	}
	switch {
	case rep.denied:
		manageMessage(w, rep.status, "Authorization has been denied for this request.")
	case rep.html:
		body := "<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body><h2>Service Unavailable</h2><p>The service is temporarily unavailable. Please try again later.</p></body></html>"
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, body)
	default:
		type inner struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		writeJSON(w, rep.status, manageJSON, struct {
			Error inner `json:"error"`
		}{inner{rep.code, rep.msg}})
	}
}

// manageMessage writes the ASP.NET Web API error form {"Message":"..."}.
func manageMessage(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, manageJSON, struct {
		Message string `json:"Message"`
	}{msg})
}

// isGUID reports whether v is a GUID in the 8-4-4-4-12 hex form.
func isGUID(v string) bool {
	if len(v) != 36 {
		return false
	}
	for i := range len(v) {
		c := v[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
