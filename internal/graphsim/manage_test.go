package graphsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// manageNow is the clock of the Management Activity API tests.
var manageNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

const otherTenant = "99999999-8888-7777-6666-555555555555"

func manageToken(t *testing.T, s *Server, scope string) string {
	t.Helper()
	form := tokenForm(s)
	form.Set("scope", scope)
	code, body := postToken(t, s, DefaultTenantID, form, false)
	if code != http.StatusOK {
		t.Fatalf("token for %s: status %d, body %v", scope, code, body)
	}
	return body["access_token"].(string)
}

func feedURL(s *Server, op string, q url.Values) string {
	u := s.ManageURL() + "/api/v1.0/" + DefaultTenantID + "/activity/feed/" + op
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

type manageResp struct {
	status int
	header http.Header
	body   []byte
	err    error // reading the body
}

func manageDo(t *testing.T, method, rawURL, tok string) manageResp {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return manageResp{resp.StatusCode, resp.Header, b, err}
}

// afError decodes the {"error":{"code","message"}} body.
func afCode(t *testing.T, r manageResp) (code, msg string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("decode error body: %v\n%s", err, r.body)
	}
	return e.Error.Code, e.Error.Message
}

func wantAF(t *testing.T, what string, r manageResp, status int, code string) string {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.status, status, r.body)
	}
	got, msg := afCode(t, r)
	if got != code {
		t.Fatalf("%s: code %s (%s), want %s", what, got, msg, code)
	}
	return msg
}

type listItem struct {
	ContentType, ContentID, ContentURI, ContentCreated, ContentExpiration string
}

func decodeListing(t *testing.T, r manageResp) []listItem {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("listing: status %d: %s", r.status, r.body)
	}
	var items []listItem
	if err := json.Unmarshal(r.body, &items); err != nil {
		t.Fatalf("decode listing: %v\n%s", err, r.body)
	}
	return items
}

// listAllContent follows NextPageUri to the end and returns every item
// and the number of pages.
func listAllContent(t *testing.T, first, tok string) ([]listItem, int) {
	t.Helper()
	var all []listItem
	pages := 0
	for next := first; next != ""; pages++ {
		if pages > 1000 {
			t.Fatal("NextPageUri does not end")
		}
		r := manageDo(t, http.MethodGet, next, tok)
		all = append(all, decodeListing(t, r)...)
		next = r.header.Get("NextPageUri")
	}
	return all, pages
}

func windowQuery(ct string, start, end time.Time) url.Values {
	return url.Values{"contentType": {ct}, "startTime": {start.Format(AuditTimeLayout)}, "endTime": {end.Format(AuditTimeLayout)}}
}

func recordBlob(ct string, created time.Time, ids ...string) Blob {
	b := Blob{ContentType: ct, Created: created}
	for _, id := range ids {
		b.Records = append(b.Records, AuditRecord(ct, id, created.Add(-time.Minute), ""))
	}
	return b
}

func TestManageTokens(t *testing.T) {
	clock := NewClock(manageNow)
	s := Start(t, Options{Now: clock.Now})
	s.SetSubscribed(ContentExchange, true)
	list := feedURL(s, "subscriptions/list", nil)
	for _, host := range append(slices.Clone(manageHosts), s.ManageURL()) {
		tok := manageToken(t, s, host+"/.default")
		if r := manageDo(t, http.MethodGet, list, tok); r.status != http.StatusOK {
			t.Errorf("token for %s: list status %d: %s", host, r.status, r.body)
		}
	}
	for _, scope := range []string{"https://manage.office.com", "https://manage.office.de/.default", "https://manage.office.com/ActivityFeed.Read"} {
		form := tokenForm(s)
		form.Set("scope", scope)
		if code, body := postToken(t, s, DefaultTenantID, form, false); code != http.StatusBadRequest || body["error"] != "invalid_scope" {
			t.Errorf("scope %s: status %d %v, want invalid_scope", scope, code, body["error"])
		}
	}

	manage := manageToken(t, s, "https://manage.office.com/.default")
	graph := token(t, s)
	denied := `{"Message":"Authorization has been denied for this request."}`
	for name, tok := range map[string]string{"graph token": graph, "no token": "", "unknown token": "gsim.nope"} {
		r := manageDo(t, http.MethodGet, list, tok)
		if r.status != http.StatusUnauthorized || string(r.body) != denied || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s on the Management API: %d %s %q", name, r.status, r.body, r.header.Get("WWW-Authenticate"))
		}
	}
	resp, body := get(t, signInsURL(s, nil), manage)
	if resp.StatusCode != http.StatusUnauthorized || graphCode(t, body) != "InvalidAuthenticationToken" || !strings.Contains(string(body), "Invalid audience.") {
		t.Errorf("manage token on Graph: %d %s", resp.StatusCode, body)
	}
	if resp, body := get(t, signInsURL(s, nil), graph); resp.StatusCode != http.StatusOK {
		t.Errorf("graph token on Graph: %d %s", resp.StatusCode, body)
	}

	// The main handler serves the Management API paths too, with the same
	// audience rule.
	mainList := s.URL() + "/api/v1.0/" + DefaultTenantID + "/activity/feed/subscriptions/list"
	if r := manageDo(t, http.MethodGet, mainList, manage); r.status != http.StatusOK {
		t.Errorf("list on the main URL: %d %s", r.status, r.body)
	}
	if r := manageDo(t, http.MethodGet, mainList, graph); r.status != http.StatusUnauthorized {
		t.Errorf("graph token on the main URL's Management API: %d", r.status)
	}

	// A token of one cloud's manage host is refused under another's.
	gov := manageToken(t, s, "https://manage.office365.us/.default")
	for host, want := range map[string]int{"manage.office.com": http.StatusUnauthorized, "manage.office365.us": http.StatusOK} {
		req, _ := http.NewRequest(http.MethodGet, mainList, nil)
		req.Host = host
		req.Header.Set("Authorization", "Bearer "+gov)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GCC High token under %s: %d, want %d", host, resp.StatusCode, want)
		}
	}

	// Tenants in the path.
	r := manageDo(t, http.MethodGet, strings.Replace(list, DefaultTenantID, otherTenant, 1), manage)
	if msg := wantAF(t, "other tenant", r, http.StatusUnauthorized, "AF20010"); !strings.Contains(msg, otherTenant) || !strings.Contains(msg, DefaultTenantID) {
		t.Errorf("AF20010 message %q", msg)
	}
	r = manageDo(t, http.MethodGet, strings.Replace(list, DefaultTenantID, "contoso.onmicrosoft.com", 1), manage)
	wantAF(t, "tenant domain", r, http.StatusBadRequest, "AF20013")

	clock.Advance(time.Hour)
	if r := manageDo(t, http.MethodGet, list, manage); r.status != http.StatusUnauthorized {
		t.Errorf("expired token: %d", r.status)
	}
	st := s.Stats()
	if st.ManageTokens != len(manageHosts)+3 || st.WrongAudience != 4 || st.ByManageOp["list"] == 0 || st.ManageRequests == 0 {
		t.Errorf("stats: ManageTokens %d WrongAudience %d ByManageOp %v", st.ManageTokens, st.WrongAudience, st.ByManageOp)
	}
}

func TestManageSubscriptions(t *testing.T) {
	clock := NewClock(manageNow)
	s := Start(t, Options{Now: clock.Now})
	tok := manageToken(t, s, s.ManageURL()+"/.default")
	list := func() string {
		r := manageDo(t, http.MethodGet, feedURL(s, "subscriptions/list", nil), tok)
		if r.status != http.StatusOK {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		return string(r.body)
	}
	start := func(ct string) manageResp {
		return manageDo(t, http.MethodPost, feedURL(s, "subscriptions/start", url.Values{"contentType": {ct}, "PublisherIdentifier": {DefaultTenantID}}), tok)
	}
	if got := list(); got != "[]" {
		t.Errorf("list before any start: %s", got)
	}
	r := start(ContentExchange)
	if r.status != http.StatusOK || string(r.body) != `{"contentType":"Audit.Exchange","status":"enabled","webhook":null}` {
		t.Fatalf("start: %d %s", r.status, r.body)
	}
	if msg := wantAF(t, "start again", start(ContentExchange), http.StatusBadRequest, "AF20024"); msg != "The subscription is already enabled. No property change." {
		t.Errorf("AF20024 message %q", msg)
	}
	wantAF(t, "start unknown", start("Audit.Teams"), http.StatusBadRequest, "AF20020")
	wantAF(t, "start without type", manageDo(t, http.MethodPost, feedURL(s, "subscriptions/start", nil), tok), http.StatusBadRequest, "AF20001")
	if r := start(ContentAzureActiveDirectory); r.status != http.StatusOK {
		t.Fatalf("start AAD: %d", r.status)
	}
	if got := list(); got != `[{"contentType":"Audit.AzureActiveDirectory","status":"enabled","webhook":null},{"contentType":"Audit.Exchange","status":"enabled","webhook":null}]` {
		t.Errorf("list: %s", got)
	}
	content := func(ct string) manageResp {
		return manageDo(t, http.MethodGet, feedURL(s, "subscriptions/content", url.Values{"contentType": {ct}}), tok)
	}
	if msg := wantAF(t, "content not subscribed", content(ContentSharePoint), http.StatusBadRequest, "AF20022"); msg != "No subscription found for the specified content type." {
		t.Errorf("AF20022 message %q", msg)
	}
	if r := manageDo(t, http.MethodGet, feedURL(s, "subscriptions/start", url.Values{"contentType": {ContentExchange}}), tok); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET start: %d", r.status)
	}

	// A blob listed while the subscription is stopped stays out of reach
	// after the restart; older and newer ones do not.
	s.AddBlobs(recordBlob(ContentExchange, manageNow.Add(-time.Hour), "before"))
	stop := manageDo(t, http.MethodPost, feedURL(s, "subscriptions/stop", url.Values{"contentType": {ContentExchange}}), tok)
	if stop.status != http.StatusOK || len(stop.body) != 0 {
		t.Fatalf("stop: %d %s", stop.status, stop.body)
	}
	wantAF(t, "stop again", manageDo(t, http.MethodPost, feedURL(s, "subscriptions/stop", url.Values{"contentType": {ContentExchange}}), tok), http.StatusBadRequest, "AF20022")
	if got := list(); !strings.Contains(got, `{"contentType":"Audit.Exchange","status":"disabled","webhook":null}`) {
		t.Errorf("list after stop: %s", got)
	}
	wantAF(t, "content stopped", content(ContentExchange), http.StatusBadRequest, "AF20022")
	if s.Subscribed(ContentExchange) {
		t.Error("Subscribed after stop")
	}
	clock.Advance(10 * time.Minute)
	s.AddBlobs(recordBlob(ContentExchange, clock.Now(), "during"))
	clock.Advance(10 * time.Minute)
	if r := start(ContentExchange); r.status != http.StatusOK {
		t.Fatalf("restart: %d %s", r.status, r.body)
	}
	after := recordBlob(ContentExchange, clock.Now().Add(-time.Second), "after")
	after.Listed = clock.Now()
	s.AddBlobs(after)
	items := decodeListing(t, content(ContentExchange))
	if len(items) != 2 || items[0].ContentCreated != "2026-12-01T11:00:00.000Z" || items[1].ContentCreated != "2026-12-01T12:19:59.000Z" {
		t.Errorf("after restart: %+v", items)
	}
	if st := s.Stats(); st.SubscriptionStarts != 3 || st.ByManageOp["start"] != 7 || st.ByManageOp["stop"] != 2 {
		t.Errorf("stats: %d starts, ops %v", st.SubscriptionStarts, st.ByManageOp)
	}
}

func TestManageListing(t *testing.T) {
	clock := NewClock(manageNow)
	s := Start(t, Options{Now: clock.Now})
	s.SetSubscribed(ContentSharePoint, true)
	tok := manageToken(t, s, "https://manage.office.com/.default")
	base := manageNow.Add(-6 * time.Hour)
	for i := range 10 {
		b := recordBlob(ContentSharePoint, base.Add(time.Duration(i)*30*time.Minute+123*time.Millisecond+456*time.Microsecond), fmt.Sprintf("r%d", i))
		b.ID = fmt.Sprintf("blob%02d", 9-i) // IDs sort against creation order
		s.AddBlobs(b)
	}
	// Two blobs of one instant are ordered by ID.
	s.AddBlobs(Blob{ContentType: ContentSharePoint, ID: "zz", Created: base.Add(time.Hour)}, Blob{ContentType: ContentSharePoint, ID: "aa", Created: base.Add(time.Hour)})

	listing := func(q url.Values) manageResp {
		return manageDo(t, http.MethodGet, feedURL(s, "subscriptions/content", q), tok)
	}
	ids := func(items []listItem) []string {
		var out []string
		for _, it := range items {
			out = append(out, it.ContentID)
		}
		return out
	}
	// [start, end): the blob created at 07:00:00.123 (its microseconds
	// dropped) is excluded by an end of 07:00:00.123 and included by a
	// start of it; the two blobs of 07:00:00.000 are ordered by ID.
	for _, tc := range []struct {
		start, end string
		want       []string
	}{
		{"2026-12-01T06:30:00.123Z", "2026-12-01T07:00:00.123", []string{"blob08", "aa", "zz"}},
		{"2026-12-01T07:00:00.123Z", "2026-12-01T08:00", []string{"blob07", "blob06"}},
		{"2026-12-01T07:00:00.1230001Z", "2026-12-01T08:00:00.123", []string{"blob06"}},
		{"2026-12-01T07:00", "2026-12-01T07:00:00.100", []string{"aa", "zz"}},
	} {
		items := decodeListing(t, listing(url.Values{"contentType": {ContentSharePoint}, "startTime": {tc.start}, "endTime": {tc.end}}))
		if got := ids(items); !slices.Equal(got, tc.want) {
			t.Errorf("[%s, %s): %v, want %v", tc.start, tc.end, got, tc.want)
		}
	}
	items := decodeListing(t, listing(url.Values{"contentType": {ContentSharePoint}, "startTime": {"2026-12-01T07:30"}, "endTime": {"2026-12-01T08:00"}}))
	if len(items) != 1 {
		t.Fatalf("items %+v", items)
	}
	if it := items[0]; it.ContentType != ContentSharePoint || it.ContentID != "blob06" || it.ContentCreated != "2026-12-01T07:30:00.123Z" || it.ContentExpiration != "2026-12-08T07:30:00.123Z" ||
		it.ContentURI != s.ManageURL()+"/api/v1.0/"+DefaultTenantID+"/activity/feed/audit/blob06" {
		t.Errorf("item: %+v", it)
	}
	// The last 24 hours without a window; the documented date forms.
	items = decodeListing(t, listing(url.Values{"contentType": {ContentSharePoint}}))
	if got := ids(items); len(got) != 12 || got[0] != "blob09" || got[11] != "blob00" {
		t.Errorf("default window: %v", got)
	}
	for _, w := range [][2]string{{"2026-12-01", "2026-12-02"}, {"2026-12-01T00:00", "2026-12-01T23:59"}, {"2026-12-01T00:00:00", "2026-12-01T12:00:00"}, {"2026-12-01T01:00:00+01:00", "2026-12-01T12:00:00Z"}} {
		if n := len(decodeListing(t, listing(url.Values{"contentType": {ContentSharePoint}, "startTime": {w[0]}, "endTime": {w[1]}}))); n != 12 {
			t.Errorf("window %v: %d items", w, n)
		}
	}
	// Parameter names are not case-sensitive.
	if n := len(decodeListing(t, listing(url.Values{"contenttype": {ContentSharePoint}, "STARTTIME": {"2026-12-01"}, "endtime": {"2026-12-02"}}))); n != 12 {
		t.Errorf("lower-case parameters: %d items", n)
	}

	for _, tc := range []struct {
		name       string
		start, end string
		code       string
	}{
		{"start only", "2026-12-01T00:00:00", "", "AF20055"},
		{"end only", "", "2026-12-01T00:00:00", "AF20055"},
		{"over 24 hours", "2026-11-30T11:59:59", "2026-12-01T12:00:00", "AF20055"},
		{"end before start", "2026-12-01T10:00:00", "2026-12-01T09:00:00", "AF20055"},
		{"empty window", "2026-12-01T10:00:00", "2026-12-01T10:00:00", "AF20055"},
		{"over 7 days back", "2026-11-24T11:59:00", "2026-11-25T00:00:00", "AF20055"},
		{"unparsable", "yesterday", "2026-12-01T10:00:00", "AF20002"},
		{"unparsable end", "2026-12-01T10:00:00", "2026-12-01 11:00", "AF20002"},
	} {
		q := url.Values{"contentType": {ContentSharePoint}}
		if tc.start != "" {
			q.Set("startTime", tc.start)
		}
		if tc.end != "" {
			q.Set("endTime", tc.end)
		}
		msg := wantAF(t, tc.name, listing(q), http.StatusBadRequest, tc.code)
		if tc.code == "AF20055" && msg != "Start time and end time must both be specified (or both omitted) and must be less than or equal to 24 hours apart, with the start time prior to end time and start time no more than 7 days in the past." {
			t.Errorf("%s: message %q", tc.name, msg)
		}
	}
	// Exactly 24 hours, starting exactly 7 days back, is accepted.
	if r := listing(windowQuery(ContentSharePoint, manageNow.Add(-7*24*time.Hour), manageNow.Add(-6*24*time.Hour))); r.status != http.StatusOK {
		t.Errorf("24 h window 7 days back: %d %s", r.status, r.body)
	}
	wantAF(t, "unknown content type", listing(url.Values{"contentType": {"audit.sharepoint"}}), http.StatusBadRequest, "AF20020")
	wantAF(t, "no content type", listing(nil), http.StatusBadRequest, "AF20001")
	wantAF(t, "bad publisher", listing(url.Values{"contentType": {ContentSharePoint}, "PublisherIdentifier": {"contoso"}}), http.StatusBadRequest, "AF20002")
}

func TestManagePaging(t *testing.T) {
	clock := NewClock(manageNow)
	s := Start(t, Options{Now: clock.Now, ManagePageSize: 3})
	s.SetSubscribed(ContentGeneral, true)
	tok := manageToken(t, s, "https://manage.office.com/.default")
	base := manageNow.Add(-3 * time.Hour)
	for i := range 10 {
		s.AddBlobs(Blob{ContentType: ContentGeneral, ID: fmt.Sprintf("g%02d", i), Created: base.Add(time.Duration(i) * time.Minute)})
	}
	q := windowQuery(ContentGeneral, base, manageNow)
	q.Set("PublisherIdentifier", DefaultTenantID)
	first := feedURL(s, "subscriptions/content", q)
	items, pages := listAllContent(t, first, tok)
	if len(items) != 10 || pages != 4 {
		t.Fatalf("%d items in %d pages", len(items), pages)
	}
	for i, it := range items {
		if it.ContentID != fmt.Sprintf("g%02d", i) {
			t.Fatalf("item %d is %s", i, it.ContentID)
		}
	}

	r := manageDo(t, http.MethodGet, first, tok)
	next := r.header.Get("NextPageUri")
	u, err := url.Parse(next)
	if err != nil || !strings.HasPrefix(next, s.ManageURL()+"/api/v1.0/"+DefaultTenantID+"/activity/feed/subscriptions/content?") {
		t.Fatalf("NextPageUri %q", next)
	}
	nq := u.Query()
	if nq.Get("contentType") != ContentGeneral || nq.Get("startTime") != q.Get("startTime") || nq.Get("endTime") != q.Get("endTime") ||
		nq.Get("PublisherIdentifier") != DefaultTenantID || nq.Get("nextPage") == "" {
		t.Errorf("NextPageUri query %v", nq)
	}
	// Blobs listed meanwhile: one after the position is served once in
	// the chain, one before it is not.
	s.AddBlobs(Blob{ContentType: ContentGeneral, ID: "late-after", Created: base.Add(4*time.Minute + time.Second)},
		Blob{ContentType: ContentGeneral, ID: "late-before", Created: base.Add(time.Second)})
	var rest []string
	for next != "" {
		r := manageDo(t, http.MethodGet, next, tok)
		for _, it := range decodeListing(t, r) {
			rest = append(rest, it.ContentID)
		}
		next = r.header.Get("NextPageUri")
	}
	if want := []string{"g03", "g04", "late-after", "g05", "g06", "g07", "g08", "g09"}; !slices.Equal(rest, want) {
		t.Errorf("rest of the chain: %v, want %v", rest, want)
	}
	// A chain is not cut by the 7-day bound while it is read.
	old := windowQuery(ContentGeneral, manageNow.Add(-7*24*time.Hour), manageNow.Add(-6*24*time.Hour))
	for i := range 4 {
		s.AddBlobs(Blob{ContentType: ContentGeneral, ID: fmt.Sprintf("old%d", i), Created: manageNow.Add(-7*24*time.Hour + time.Duration(i)*time.Minute), Expires: manageNow.Add(time.Hour)})
	}
	r = manageDo(t, http.MethodGet, feedURL(s, "subscriptions/content", old), tok)
	clock.Advance(time.Minute)
	if next := r.header.Get("NextPageUri"); next == "" {
		t.Error("no NextPageUri at the 7-day edge")
	} else if r := manageDo(t, http.MethodGet, next, tok); r.status != http.StatusOK || len(decodeListing(t, r)) != 1 {
		t.Errorf("second page past the 7-day bound: %d %s", r.status, r.body)
	}
	clock.Advance(-time.Minute)

	// Without a window, NextPageUri carries the 24 hours before the first
	// request.
	r = manageDo(t, http.MethodGet, feedURL(s, "subscriptions/content", url.Values{"contentType": {ContentGeneral}}), tok)
	u, _ = url.Parse(r.header.Get("NextPageUri"))
	if got := u.Query(); got.Get("startTime") != "2026-11-30T12:00:00.000Z" || got.Get("endTime") != "2026-12-01T12:00:00.000Z" || got.Has("PublisherIdentifier") {
		t.Errorf("default window NextPageUri: %v", got)
	}
	bad := feedURL(s, "subscriptions/content", url.Values{"contentType": {ContentGeneral}, "nextPage": {"2015101900R022885001761"}})
	if msg := wantAF(t, "bad nextPage", manageDo(t, http.MethodGet, bad, tok), http.StatusBadRequest, "AF20031"); msg != "Invalid nextPage Input: 2015101900R022885001761." {
		t.Errorf("AF20031 message %q", msg)
	}
}

func TestManageLateListingAndExpiry(t *testing.T) {
	clock := NewClock(manageNow)
	s := Start(t, Options{Now: clock.Now, TokenLifetime: 30 * 24 * time.Hour})
	s.SetSubscribed(ContentAzureActiveDirectory, true)
	tok := manageToken(t, s, "https://manage.office.com/.default")
	created := manageNow.Add(-2 * time.Hour)
	late := recordBlob(ContentAzureActiveDirectory, created, "a1", "a2")
	late.Listed = manageNow.Add(time.Hour)
	s.AddBlobs(late, recordBlob(ContentAzureActiveDirectory, created.Add(time.Minute), "b1"))
	stored := s.ManageBlobs(ContentAzureActiveDirectory)
	if len(stored) != 2 || stored[0].ID == "" || !stored[0].Expires.Equal(created.Add(ContentLifetime)) || !strings.Contains(stored[0].ID, "$audit_azureactivedirectory$Audit_AzureActiveDirectory$") {
		t.Fatalf("stored: %+v", stored)
	}
	window := feedURL(s, "subscriptions/content", windowQuery(ContentAzureActiveDirectory, created.Add(-time.Hour), created.Add(time.Hour)))
	if items := decodeListing(t, manageDo(t, http.MethodGet, window, tok)); len(items) != 1 || items[0].ContentID != stored[1].ID {
		t.Errorf("before listing: %+v", items)
	}
	blobURL := feedURL(s, "audit/"+stored[0].ID, nil)
	wantAF(t, "blob before listing", manageDo(t, http.MethodGet, blobURL, tok), http.StatusBadRequest, "AF20050")
	clock.Advance(time.Hour)
	items := decodeListing(t, manageDo(t, http.MethodGet, window, tok))
	if len(items) != 2 || items[0].ContentID != stored[0].ID {
		t.Fatalf("after listing: %+v", items)
	}
	r := manageDo(t, http.MethodGet, items[0].ContentURI+"?PublisherIdentifier="+DefaultTenantID, tok)
	var recs []map[string]any
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json; charset=utf-8" || json.Unmarshal(r.body, &recs) != nil || len(recs) != 2 || recs[0]["Id"] != "a1" {
		t.Fatalf("blob: %d %s", r.status, r.body)
	}

	// Expiry: listed until contentExpiration, then AF20051.
	clock.Advance(ContentLifetime - 4*time.Hour)
	wantAF(t, "unknown blob", manageDo(t, http.MethodGet, feedURL(s, "audit/nope", nil), tok), http.StatusBadRequest, "AF20050")
	if r := manageDo(t, http.MethodGet, blobURL, tok); r.status != http.StatusOK {
		t.Fatalf("blob just before expiry: %d", r.status)
	}
	clock.Advance(time.Hour)
	msg := wantAF(t, "expired", manageDo(t, http.MethodGet, blobURL, tok), http.StatusBadRequest, "AF20051")
	if msg != "Content requested with the key "+stored[0].ID+" has already expired. Content older than 7 days cannot be retrieved." {
		t.Errorf("AF20051 message %q", msg)
	}
	recent := feedURL(s, "subscriptions/content", url.Values{"contentType": {ContentAzureActiveDirectory}, "startTime": {created.Format(AuditTimeLayout)}, "endTime": {created.Add(time.Hour).Format(AuditTimeLayout)}})
	if items := decodeListing(t, manageDo(t, http.MethodGet, recent, tok)); len(items) != 1 || items[0].ContentID != stored[1].ID {
		t.Errorf("expired blob listed: %+v", items)
	}
	st := s.Stats()
	if st.BlobsServed != 2 || st.ManageRecords != 4 || st.ExpiredContent != 1 {
		t.Errorf("stats: served %d records %d expired %d", st.BlobsServed, st.ManageRecords, st.ExpiredContent)
	}
}

func TestManageBlobBodies(t *testing.T) {
	s := Start(t, Options{Now: NewClock(manageNow).Now})
	s.SetSubscribed(ContentExchange, true)
	tok := manageToken(t, s, "https://manage.office.com/.default")
	at := manageNow.Add(-time.Hour)
	body := []byte(`[{"Id":"x","CreationTime":"2026-12-01T10:00:00"}]`)
	s.AddBlobs(
		Blob{ContentType: ContentExchange, ID: "records", Created: at, Records: [][]byte{[]byte(`{"Id":"r1"}`), []byte(`{"Id":"r2"}`)}},
		Blob{ContentType: ContentExchange, ID: "empty", Created: at},
		Blob{ContentType: ContentExchange, ID: "body", Created: at, Body: func() []byte { return body }, N: 1},
		Blob{ContentType: ContentExchange, ID: "flaky", Created: at, Records: [][]byte{[]byte(`{}`)}, FailFetches: 2},
		Blob{ContentType: ContentExchange, ID: "broken", Created: at, Fault: BlobInternalError},
		Blob{ContentType: ContentExchange, ID: "cut", Created: at, Records: [][]byte{[]byte(`{"Id":"c"}`)}, Fault: BlobTruncated},
		Blob{ContentType: ContentExchange, ID: "gone", Created: at, Fault: BlobNotFound},
		Blob{ContentType: ContentExchange, ID: "html", Created: at, Fault: BlobNotJSON},
	)
	fetch := func(id string) manageResp { return manageDo(t, http.MethodGet, feedURL(s, "audit/"+id, nil), tok) }
	for id, want := range map[string]string{"records": `[{"Id":"r1"},{"Id":"r2"}]`, "empty": `[]`, "body": string(body)} {
		if r := fetch(id); r.status != http.StatusOK || string(r.body) != want {
			t.Errorf("%s: %d %s", id, r.status, r.body)
		}
	}
	wantAF(t, "flaky 1", fetch("flaky"), http.StatusInternalServerError, "AF50000")
	wantAF(t, "flaky 2", fetch("flaky"), http.StatusInternalServerError, "AF50000")
	if r := fetch("flaky"); r.status != http.StatusOK {
		t.Errorf("flaky 3: %d", r.status)
	}
	wantAF(t, "broken", fetch("broken"), http.StatusInternalServerError, "AF50000")
	wantAF(t, "gone", fetch("gone"), http.StatusBadRequest, "AF20050")
	if r := fetch("cut"); r.err == nil {
		t.Errorf("truncated blob read whole: %s", r.body)
	}
	if r := fetch("html"); r.status != http.StatusOK || json.Valid(r.body) {
		t.Errorf("not-JSON blob: %d %s", r.status, r.body)
	}
	if st := s.Stats(); st.BlobsServed != 4 || st.ManageRecords != 4 {
		t.Errorf("stats: served %d records %d", st.BlobsServed, st.ManageRecords)
	}
	s.SetSubscribed(ContentExchange, false)
	wantAF(t, "blob of a stopped subscription", fetch("records"), http.StatusBadRequest, "AF20022")
}

func TestManagePermissions(t *testing.T) {
	s := Start(t, Options{Now: NewClock(manageNow).Now, ManageNoDlpPermission: true})
	tok := manageToken(t, s, "https://manage.office.com/.default")
	r := manageDo(t, http.MethodPost, feedURL(s, "subscriptions/start", url.Values{"contentType": {ContentDLP}}), tok)
	if msg := wantAF(t, "start DLP", r, http.StatusForbidden, "AF10001"); !strings.Contains(msg, "ActivityFeed.ReadDlp") {
		t.Errorf("DLP message %q", msg)
	}
	s.SetSubscribed(ContentDLP, true)
	s.AddBlobs(Blob{ContentType: ContentDLP, ID: "dlp", Created: manageNow.Add(-time.Hour)})
	wantAF(t, "list DLP", manageDo(t, http.MethodGet, feedURL(s, "subscriptions/content", url.Values{"contentType": {ContentDLP}}), tok), http.StatusForbidden, "AF10001")
	wantAF(t, "fetch DLP", manageDo(t, http.MethodGet, feedURL(s, "audit/dlp", nil), tok), http.StatusForbidden, "AF10001")
	if r := manageDo(t, http.MethodPost, feedURL(s, "subscriptions/start", url.Values{"contentType": {ContentExchange}}), tok); r.status != http.StatusOK {
		t.Errorf("start Exchange without DLP permission: %d", r.status)
	}

	s = Start(t, Options{Now: NewClock(manageNow).Now, ManagePermission403: true})
	tok = manageToken(t, s, "https://manage.office.com/.default")
	for _, u := range []string{feedURL(s, "subscriptions/list", nil), feedURL(s, "subscriptions/content", url.Values{"contentType": {ContentExchange}}), feedURL(s, "audit/x", nil)} {
		msg := wantAF(t, u, manageDo(t, http.MethodGet, u, tok), http.StatusForbidden, "AF10001")
		if msg != "The permission set () sent in the request did not include the expected permission ActivityFeed.Read." {
			t.Errorf("AF10001 message %q", msg)
		}
	}
}

// serveManage sends a request straight to the Management API handler,
// which keeps tests of thousands of requests fast.
func serveManage(s *Server, method, target, tok string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	s.ManageHandler().ServeHTTP(w, req)
	return w
}

func TestManageThrottle(t *testing.T) {
	clock := NewClock(manageNow)
	s := Start(t, Options{Now: clock.Now, Throttle: true, ThrottleWindowScale: 0.5})
	s.SetSubscribed(ContentExchange, true)
	tok := manageToken(t, s, "https://manage.office.com/.default")
	path := "/api/v1.0/" + DefaultTenantID + "/activity/feed/subscriptions/list"
	publisher := "46b472a7-c68e-4adf-8ade-3db49497518e"
	throttled := func(w *httptest.ResponseRecorder) string {
		t.Helper()
		var e struct {
			Error struct{ Code, Message string }
		}
		if w.Code != http.StatusForbidden || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error.Code != "AF429" {
			t.Fatalf("want 403 AF429, got %d %s", w.Code, w.Body)
		}
		if w.Header().Get("Retry-After") != "" {
			t.Errorf("Retry-After %q", w.Header().Get("Retry-After"))
		}
		return e.Error.Message
	}
	// The shared pool without a PublisherIdentifier.
	for i := range manageSharedLimit {
		if w := serveManage(s, http.MethodGet, path, tok); w.Code != http.StatusOK {
			t.Fatalf("shared request %d: %d", i, w.Code)
		}
	}
	if msg := throttled(serveManage(s, http.MethodGet, path, tok)); msg != "Too many requests. Method=ListSubscriptions, PublisherId=00000000-0000-0000-0000-000000000000" {
		t.Errorf("message %q", msg)
	}
	// The tenant's own pool.
	withPub := path + "?PublisherIdentifier=" + publisher
	for i := range manageTenantLimit {
		if w := serveManage(s, http.MethodGet, withPub, tok); w.Code != http.StatusOK {
			t.Fatalf("tenant request %d: %d", i, w.Code)
		}
	}
	blob := "/api/v1.0/" + DefaultTenantID + "/activity/feed/audit/x?PublisherIdentifier=" + publisher
	if msg := throttled(serveManage(s, http.MethodGet, blob, tok)); msg != "Too many requests. Method=GetBlob, PublisherId="+publisher {
		t.Errorf("message %q", msg)
	}
	// The window is a minute, scaled.
	clock.Advance(30 * time.Second)
	if w := serveManage(s, http.MethodGet, withPub, tok); w.Code != http.StatusOK {
		t.Errorf("after the window: %d", w.Code)
	}
	if w := serveManage(s, http.MethodGet, path, tok); w.Code != http.StatusOK {
		t.Errorf("shared after the window: %d", w.Code)
	}
	// A second start of a content type within 15 minutes (scaled) is
	// throttled.
	start := "/api/v1.0/" + DefaultTenantID + "/activity/feed/subscriptions/start?contentType=Audit.SharePoint&PublisherIdentifier=" + publisher
	stop := strings.Replace(start, "start?", "stop?", 1)
	if w := serveManage(s, http.MethodPost, start, tok); w.Code != http.StatusOK {
		t.Fatalf("start: %d %s", w.Code, w.Body)
	}
	serveManage(s, http.MethodPost, stop, tok)
	clock.Advance(7 * time.Minute)
	if msg := throttled(serveManage(s, http.MethodPost, start, tok)); !strings.Contains(msg, "Method=StartSubscription") {
		t.Errorf("message %q", msg)
	}
	clock.Advance(time.Minute)
	if w := serveManage(s, http.MethodPost, start, tok); w.Code != http.StatusOK {
		t.Errorf("start after the cooldown: %d %s", w.Code, w.Body)
	}
	if st := s.Stats(); st.ManageThrottled != 3 || st.ByStatus[http.StatusForbidden] != 3 {
		t.Errorf("stats: %d throttled, %d 403s", st.ManageThrottled, st.ByStatus[http.StatusForbidden])
	}
}

func TestManageFaults(t *testing.T) {
	s := Start(t, Options{Now: NewClock(manageNow).Now, Seed: 3})
	s.SetSubscribed(ContentSharePoint, true)
	tok := manageToken(t, s, "https://manage.office.com/.default")
	s.AddBlobs(recordBlob(ContentSharePoint, manageNow.Add(-time.Hour), "r1"))
	content := feedURL(s, "subscriptions/content", url.Values{"contentType": {ContentSharePoint}})
	blob := feedURL(s, "audit/"+s.ManageBlobs(ContentSharePoint)[0].ID, nil)

	s.SetManageFaults(ManageFaults{Rate503: 1})
	if r := manageDo(t, http.MethodGet, content, tok); r.status != http.StatusServiceUnavailable || json.Valid(r.body) || r.header.Get("Retry-After") != "" {
		t.Errorf("503: %d %s", r.status, r.body)
	}
	s.SetManageFaults(ManageFaults{Rate500: 1})
	wantAF(t, "500", manageDo(t, http.MethodGet, blob, tok), http.StatusInternalServerError, "AF50000")
	s.SetManageFaults(ManageFaults{RateAF429: 1})
	wantAF(t, "AF429", manageDo(t, http.MethodGet, content, tok), http.StatusForbidden, "AF429")
	s.SetManageFaults(ManageFaults{RateTruncated: 1})
	for _, u := range []string{content, blob} {
		if r := manageDo(t, http.MethodGet, u, tok); r.status != http.StatusOK || !errors.Is(r.err, io.ErrUnexpectedEOF) {
			t.Errorf("truncated %s: %d %v", u, r.status, r.err)
		}
	}
	s.SetManageFaults(ManageFaults{RateBadListing: 1})
	if r := manageDo(t, http.MethodGet, content, tok); r.status != http.StatusOK || json.Valid(r.body) {
		t.Errorf("bad listing: %d %s", r.status, r.body)
	}
	if r := manageDo(t, http.MethodGet, blob, tok); r.status != http.StatusOK || !json.Valid(r.body) {
		t.Errorf("blob under RateBadListing: %d %s", r.status, r.body)
	}
	s.SetManageFaults(ManageFaults{LoopNextPage: true, ForeignContentURI: true})
	r := manageDo(t, http.MethodGet, content, tok)
	items := decodeListing(t, r)
	if r.header.Get("NextPageUri") != content {
		t.Errorf("LoopNextPage: NextPageUri %q, want %q", r.header.Get("NextPageUri"), content)
	}
	if len(items) != 1 || !strings.HasPrefix(items[0].ContentURI, "https://evil.example.invalid/api/v1.0/"+DefaultTenantID+"/activity/feed/audit/") {
		t.Errorf("ForeignContentURI: %+v", items)
	}
	s.SetManageFaults(ManageFaults{Rate500: 0.5})
	n500 := 0
	for range 200 {
		if r := manageDo(t, http.MethodGet, content, tok); r.status == http.StatusInternalServerError {
			n500++
		}
	}
	if n500 < 60 || n500 > 140 {
		t.Errorf("Rate500 0.5: %d of 200", n500)
	}
	if st := s.Stats(); st.ManageTruncated != 2 {
		t.Errorf("ManageTruncated %d", st.ManageTruncated)
	}
}

func TestManageNotFound(t *testing.T) {
	s := Start(t, Options{Now: NewClock(manageNow).Now})
	tok := manageToken(t, s, "https://manage.office.com/.default")
	for _, p := range []string{"/api/v1.0/" + DefaultTenantID + "/activity/feed/subscriptions/nope", "/api/v1.0/" + DefaultTenantID + "/activity/feed", "/v1.0/auditLogs/signIns", "/"} {
		r := manageDo(t, http.MethodGet, s.ManageURL()+p, tok)
		var m struct{ Message string }
		if r.status != http.StatusNotFound || json.Unmarshal(r.body, &m) != nil || !strings.HasPrefix(m.Message, "No HTTP resource was found that matches the request URI '") {
			t.Errorf("%s: %d %s", p, r.status, r.body)
		}
	}
	// Routing ignores case and empty segments, and /api/v1/ is an alias.
	s.SetSubscribed(ContentExchange, true)
	for _, p := range []string{"/api/v1.0/" + DefaultTenantID + "/Activity/Feed//Subscriptions/List", "/api/v1/" + DefaultTenantID + "/activity/feed/subscriptions/list"} {
		if r := manageDo(t, http.MethodGet, s.ManageURL()+p, tok); r.status != http.StatusOK {
			t.Errorf("%s: %d %s", p, r.status, r.body)
		}
	}
	if r := manageDo(t, http.MethodDelete, feedURL(s, "subscriptions/list", nil), tok); r.status != http.StatusMethodNotAllowed || !strings.Contains(string(r.body), "does not support http method 'DELETE'") {
		t.Errorf("DELETE: %d %s", r.status, r.body)
	}
}

func TestAuditRecord(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 30, 15, 999e6, time.UTC)
	for i, ct := range ContentTypes {
		id := fmt.Sprintf("%08x-9d81-4c57-a97a-accfc3443dca", i)
		rec := AuditRecord(ct, id, at, "")
		var m map[string]any
		if err := json.Unmarshal(rec, &m); err != nil {
			t.Fatalf("%s: %v\n%s", ct, err, rec)
		}
		for _, k := range []string{"CreationTime", "Id", "Operation", "OrganizationId", "RecordType", "UserKey", "UserType", "Version", "Workload", "ClientIP", "ObjectId", "UserId"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%s: no %s in %s", ct, k, rec)
			}
		}
		if m["CreationTime"] != "2026-12-01T09:30:15" || m["Id"] != id || m["OrganizationId"] != DefaultTenantID {
			t.Errorf("%s: %s", ct, rec)
		}
		if !slices.ContainsFunc(keysOf(t, rec), func(k string) bool {
			_, nested := m[k].([]any)
			_, obj := m[k].(map[string]any)
			return nested || obj
		}) {
			t.Errorf("%s: no nested value", ct)
		}
		if !slices.Equal(AuditRecord(ct, id, at, ""), rec) {
			t.Errorf("%s: not deterministic", ct)
		}
		re := ReorderKeys(rec, uint64(i))
		var m2 map[string]any
		if err := json.Unmarshal(re, &m2); err != nil || fmt.Sprint(m2) != fmt.Sprint(m) || slices.Equal(keysOf(t, re), keysOf(t, rec)) {
			t.Errorf("%s: ReorderKeys: %v\n%s", ct, err, re)
		}
	}
	wantWorkload := map[string]string{ContentAzureActiveDirectory: "AzureActiveDirectory", ContentExchange: "Exchange", ContentSharePoint: "SharePoint", ContentGeneral: "MicrosoftTeams"}
	for ct, w := range wantWorkload {
		var m map[string]any
		_ = json.Unmarshal(AuditRecord(ct, "x", at, "t"), &m)
		if m["Workload"] != w {
			t.Errorf("%s: Workload %v", ct, m["Workload"])
		}
	}
	for _, in := range []string{`[1,2]`, `{"a":1}`, `{`, `nope`} {
		if got := ReorderKeys([]byte(in), 1); string(got) != in {
			t.Errorf("ReorderKeys(%s) = %s", in, got)
		}
	}
	if got := string(ReorderKeys([]byte(`{"a" : {"x": [1, 2]}, "b":"\u00e9"}`), 1)); got != `{"b":"\u00e9","a":{"x": [1, 2]}}` {
		t.Errorf("ReorderKeys keeps values: %s", got)
	}
}

// keysOf returns the top-level keys of a JSON object in order.
func keysOf(t *testing.T, rec []byte) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(rec)))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// TestManageHandlerWithoutStart serves New's handlers on listeners of the
// caller's, as the graphsim command does: Options.ManageURL names the
// Management API's scope.
func TestManageHandlerWithoutStart(t *testing.T) {
	mts := httptest.NewUnstartedServer(nil)
	manageURL := "http://" + mts.Listener.Addr().String()
	s := New(Options{Now: NewClock(manageNow).Now, ManageURL: manageURL + "/"})
	mts.Config.Handler = s.ManageHandler()
	mts.Start()
	t.Cleanup(mts.Close)
	main := httptest.NewServer(s.Handler())
	t.Cleanup(main.Close)
	if s.ManageURL() != manageURL {
		t.Errorf("ManageURL %q", s.ManageURL())
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {DefaultClientID}, "client_secret": {DefaultClientSecret}, "scope": {manageURL + "/.default"}}
	resp, err := http.PostForm(main.URL+"/"+DefaultTenantID+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || body.AccessToken == "" {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	s.SetSubscribed(ContentGeneral, false) // never started: not listed
	s.SetSubscribed(ContentExchange, true)
	r := manageDo(t, http.MethodGet, manageURL+"/api/v1.0/"+DefaultTenantID+"/activity/feed/subscriptions/list", body.AccessToken)
	if r.status != http.StatusOK || string(r.body) != `[{"contentType":"Audit.Exchange","status":"enabled","webhook":null}]` {
		t.Errorf("list: %d %s", r.status, r.body)
	}
}
