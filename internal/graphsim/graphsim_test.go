package graphsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

func newClock() *Clock { return NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)) }

func tokenForm(s *Server) url.Values {
	return url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {DefaultClientID},
		"client_secret": {DefaultClientSecret},
		"scope":         {s.URL() + "/.default"},
	}
}

func postToken(t *testing.T, s *Server, tenant string, form url.Values, basic bool) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL()+"/"+tenant+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(url.QueryEscape(DefaultClientID), url.QueryEscape(DefaultClientSecret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode token response: %v", err)
	}
	return resp.StatusCode, body
}

func token(t *testing.T, s *Server) string {
	t.Helper()
	code, body := postToken(t, s, DefaultTenantID, tokenForm(s), false)
	if code != http.StatusOK {
		t.Fatalf("token: status %d, body %v", code, body)
	}
	return body["access_token"].(string)
}

func get(t *testing.T, rawURL, tok string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
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
	if err != nil {
		t.Fatalf("read %s: %v", rawURL, err)
	}
	return resp, b
}

func signInsURL(s *Server, q url.Values) string {
	u := s.URL() + "/v1.0/auditLogs/signIns"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

type pageBody struct {
	Context  string            `json:"@odata.context"`
	NextLink string            `json:"@odata.nextLink"`
	Value    []json.RawMessage `json:"value"`
}

func decodePage(t *testing.T, b []byte) pageBody {
	t.Helper()
	var p pageBody
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("decode page: %v\n%s", err, b)
	}
	return p
}

func graphCode(t *testing.T, b []byte) string {
	t.Helper()
	var e struct {
		Error struct {
			Code, Message string
			InnerError    map[string]any
		}
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("decode error body: %v\n%s", err, b)
	}
	if e.Error.InnerError["request-id"] == nil || e.Error.InnerError["date"] == nil {
		t.Errorf("error body lacks innerError date/request-id: %s", b)
	}
	return e.Error.Code
}

func TestTokenSuccess(t *testing.T) {
	s := Start(t, Options{Now: newClock().Now, TenantAliases: []string{"contoso.onmicrosoft.com"}, TokenLifetime: 90 * time.Minute})
	for _, tc := range []struct {
		name   string
		tenant string
		scope  string
		basic  bool
	}{
		{"tenant id", DefaultTenantID, "", false},
		{"alias", "Contoso.onmicrosoft.com", "", false},
		{"public scope", DefaultTenantID, "https://graph.microsoft.com/.default", false},
		{"basic auth", DefaultTenantID, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := tokenForm(s)
			if tc.scope != "" {
				form.Set("scope", tc.scope)
			}
			if tc.basic {
				form.Del("client_id")
				form.Del("client_secret")
			}
			code, body := postToken(t, s, tc.tenant, form, tc.basic)
			if code != http.StatusOK {
				t.Fatalf("status %d, body %v", code, body)
			}
			if body["token_type"] != "Bearer" || body["expires_in"] != float64(5400) || body["access_token"] == "" {
				t.Errorf("unexpected body %v", body)
			}
		})
	}
	if got := s.Stats().Tokens; got != 4 {
		t.Errorf("Stats.Tokens = %d, want 4", got)
	}
}

func TestTokenErrors(t *testing.T) {
	s := Start(t, Options{Now: newClock().Now})
	for _, tc := range []struct {
		name    string
		tenant  string
		edit    func(url.Values)
		errCode string
		aadsts  int
	}{
		{"wrong secret", DefaultTenantID, func(f url.Values) { f.Set("client_secret", "nope") }, "invalid_client", 7000215},
		{"no secret", DefaultTenantID, func(f url.Values) { f.Del("client_secret") }, "invalid_client", 7000216},
		{"unknown client", DefaultTenantID, func(f url.Values) { f.Set("client_id", "00000000-0000-0000-0000-000000000000") }, "unauthorized_client", 700016},
		{"unknown tenant", "contoso.example", func(url.Values) {}, "invalid_request", 90002},
		{"wrong scope", DefaultTenantID, func(f url.Values) { f.Set("scope", "https://graph.example.net/.default") }, "invalid_scope", 70011},
		{"no scope", DefaultTenantID, func(f url.Values) { f.Del("scope") }, "invalid_scope", 70011},
		{"bad grant", DefaultTenantID, func(f url.Values) { f.Set("grant_type", "password") }, "unsupported_grant_type", 70003},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := tokenForm(s)
			tc.edit(form)
			code, body := postToken(t, s, tc.tenant, form, false)
			if code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", code)
			}
			if body["error"] != tc.errCode {
				t.Errorf("error = %v, want %s", body["error"], tc.errCode)
			}
			prefix := "AADSTS" + strconv.Itoa(tc.aadsts) + ": "
			if d, _ := body["error_description"].(string); !strings.HasPrefix(d, prefix) {
				t.Errorf("error_description = %q, want prefix %q", d, prefix)
			}
			if codes, _ := body["error_codes"].([]any); len(codes) != 1 || codes[0] != float64(tc.aadsts) {
				t.Errorf("error_codes = %v", body["error_codes"])
			}
			for _, k := range []string{"timestamp", "trace_id", "correlation_id"} {
				if v, _ := body[k].(string); v == "" {
					t.Errorf("missing %s", k)
				}
			}
		})
	}
}

func TestAuth(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now, TokenLifetime: time.Hour})
	tok := token(t, s)
	for _, tc := range []struct {
		name, tok string
		want      int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"foreign token", "eyJ0eXAiOiJKV1QifQ.e30.sig", http.StatusUnauthorized},
		{"valid", tok, http.StatusOK},
	} {
		resp, b := get(t, signInsURL(s, nil), tc.tok)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
		if tc.want == http.StatusUnauthorized && graphCode(t, b) != "InvalidAuthenticationToken" {
			t.Errorf("%s: body %s", tc.name, b)
		}
	}
	clk.Advance(time.Hour)
	resp, b := get(t, signInsURL(s, nil), tok)
	if resp.StatusCode != http.StatusUnauthorized || graphCode(t, b) != "InvalidAuthenticationToken" {
		t.Errorf("expired token: status %d body %s", resp.StatusCode, b)
	}
	if got := s.Stats().Unauthorized; got != 3 {
		t.Errorf("Stats.Unauthorized = %d, want 3", got)
	}
}

func TestFilter(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now})
	tok := token(t, s)
	base := clk.Now()
	for i := range 10 {
		c := base.Add(-time.Duration(i) * time.Minute)
		id := NewID(rand.New(rand.NewPCG(uint64(i), 0)))
		s.Add(Event{ID: id, Created: c, Visible: c, JSON: []byte(`{"id":"` + id + `","createdDateTime":"` + c.Format(DateTimeLayout) + `"}`)})
	}
	for _, tc := range []struct {
		filter string
		n      int // -1: rejected with 400
	}{
		{"createdDateTime ge 2025-03-01T11:55:00Z", 6},
		{"createdDateTime le 2025-03-01T11:55:00Z", 5},
		{"createdDateTime eq 2025-03-01T11:55:00Z", 1},
		{"createdDateTime ge 2025-03-01T11:52:00Z and createdDateTime le 2025-03-01T11:55:00.0000000Z", 4},
		{"(createdDateTime ge 2025-03-01T11:52:00.5Z and createdDateTime le 2025-03-01T11:55:00Z)", 3},
		{"createdDateTime ge 2025-03-01T12:00:00.0000001Z", 0},
		{"createdDateTime ge '2025-03-01T11:55:00Z'", -1},
		{"createdDateTime gt 2025-03-01T11:55:00Z", -1},
		{"createdDateTime lt 2025-03-01T11:55:00Z", -1},
		{"activityDateTime ge 2025-03-01T11:55:00Z", -1},
		{"createdDateTime ge 2025-03-01", -1},
		{"createdDateTime ge 2025-03-01T11:55:00+00:00", -1},
		{"createdDateTime ge 2025-13-01T11:55:00Z", -1},
		{"createdDateTime ge 2025-03-01T11:55:00.12345678Z", -1},
		{"createdDateTime ge 2024-11-30T11:55:00Z", -1}, // older than 90 days
		{"createdDateTime ge 2025-03-01T11:55:00Z or createdDateTime le 2025-03-01T11:56:00Z", -1},
		{"(createdDateTime ge 2025-03-01T11:55:00Z", -1},
		{"createdDateTime ge 2025-03-01T11:55:00Z and", -1},
		{"", -1},
	} {
		resp, b := get(t, signInsURL(s, url.Values{"$filter": {tc.filter}}), tok)
		if tc.n < 0 {
			if resp.StatusCode != http.StatusBadRequest || graphCode(t, b) != "BadRequest" || !bytes.Contains(b, []byte(`"Invalid filter clause"`)) {
				t.Errorf("%q: status %d body %s, want 400 Invalid filter clause", tc.filter, resp.StatusCode, b)
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%q: status %d body %s", tc.filter, resp.StatusCode, b)
			continue
		}
		if got := len(decodePage(t, b).Value); got != tc.n {
			t.Errorf("%q: %d events, want %d", tc.filter, got, tc.n)
		}
	}
}

func TestQueryOptions(t *testing.T) {
	s := Start(t, Options{Now: newClock().Now})
	tok := token(t, s)
	for _, tc := range []struct {
		q    url.Values
		want int
	}{
		{url.Values{"$top": {"0"}}, http.StatusBadRequest},
		{url.Values{"$top": {"1001"}}, http.StatusBadRequest},
		{url.Values{"$top": {"ten"}}, http.StatusBadRequest},
		{url.Values{"$top": {"1000"}}, http.StatusOK},
		{url.Values{"$orderby": {"userId"}}, http.StatusBadRequest},
		{url.Values{"$orderby": {"createdDateTime desc"}}, http.StatusOK},
		{url.Values{"$select": {"id"}}, http.StatusBadRequest},
		{url.Values{"$skiptoken": {"nope"}}, http.StatusBadRequest},
	} {
		if resp, b := get(t, signInsURL(s, tc.q), tok); resp.StatusCode != tc.want {
			t.Errorf("%v: status %d, want %d: %s", tc.q, resp.StatusCode, tc.want, b)
		}
	}
}

func TestPaging(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now})
	r := rand.New(rand.NewPCG(7, 7))
	s.Add(Generate(r, clk.Now().Add(-24*time.Hour), clk.Now(), 2500, nil)...)
	tok := token(t, s)

	link := signInsURL(s, url.Values{"$top": {"1000"}, "$filter": {"createdDateTime ge 2025-02-28T00:00:00Z"}})
	var sizes []int
	var got []Event
	for link != "" {
		resp, b := get(t, link, tok)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json;") {
			t.Errorf("Content-Type %q", ct)
		}
		if resp.Header.Get("request-id") == "" || resp.Header.Get("x-ms-ags-diagnostic") == "" {
			t.Errorf("missing Graph headers: %v", resp.Header)
		}
		p := decodePage(t, b)
		if p.Context != s.URL()+"/v1.0/$metadata#auditLogs/signIns" {
			t.Errorf("@odata.context = %q", p.Context)
		}
		if p.NextLink != "" && !strings.HasPrefix(p.NextLink, s.URL()+"/v1.0/auditLogs/signIns?") {
			t.Errorf("nextLink %q is not absolute on %s", p.NextLink, s.URL())
		}
		sizes = append(sizes, len(p.Value))
		for _, v := range p.Value {
			var e struct {
				ID      string    `json:"id"`
				Created time.Time `json:"createdDateTime"`
			}
			if err := json.Unmarshal(v, &e); err != nil {
				t.Fatal(err)
			}
			got = append(got, Event{ID: e.ID, Created: e.Created})
		}
		link = p.NextLink
	}
	if !slices.Equal(sizes, []int{1000, 1000, 500}) {
		t.Errorf("page sizes %v, want [1000 1000 500]", sizes)
	}
	if !slices.IsSortedFunc(got, func(a, b Event) int { return compareEvents(b, a) }) {
		t.Error("events are not in descending createdDateTime order")
	}
	ids := map[string]bool{}
	for _, e := range got {
		ids[e.ID] = true
	}
	if len(ids) != 2500 {
		t.Errorf("%d distinct ids, want 2500", len(ids))
	}
	if st := s.Stats(); st.Pages != 3 || st.ByStatus[200] != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestVisibility(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now})
	tok := token(t, s)
	now := clk.Now()
	r := rand.New(rand.NewPCG(1, 1))
	e := Generate(r, now.Add(-time.Minute), now, 1, func(*rand.Rand) time.Duration { return 5 * time.Minute })[0]
	s.Add(e)
	count := func() int {
		resp, b := get(t, signInsURL(s, nil), tok)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return len(decodePage(t, b).Value)
	}
	if n := count(); n != 0 {
		t.Errorf("before Visible: %d events, want 0", n)
	}
	clk.Advance(5 * time.Minute)
	if n := count(); n != 1 {
		t.Errorf("after Visible: %d events, want 1", n)
	}
}

func TestSnapshotStable(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now})
	r := rand.New(rand.NewPCG(2, 2))
	now := clk.Now()
	s.Add(Generate(r, now.Add(-time.Hour), now, 30, nil)...)
	tok := token(t, s)

	_, b := get(t, signInsURL(s, url.Values{"$top": {"10"}}), tok)
	next := decodePage(t, b).NextLink
	if next == "" {
		t.Fatal("no nextLink on first page")
	}
	_, first := get(t, next, tok)
	// New events must not shift a snapshot the client is already paging.
	s.Add(Generate(r, now.Add(-time.Hour), now, 30, nil)...)
	_, again := get(t, next, tok)
	if !bytes.Equal(first, again) {
		t.Error("retrying a nextLink returned a different page")
	}
	p := decodePage(t, again)
	if len(p.Value) != 10 || p.NextLink == "" {
		t.Fatalf("second page: %d items, nextLink %q", len(p.Value), p.NextLink)
	}
	_, b = get(t, p.NextLink, tok)
	if last := decodePage(t, b); len(last.Value) != 10 || last.NextLink != "" {
		t.Errorf("last page: %d items, nextLink %q", len(last.Value), last.NextLink)
	}
}

func TestThrottle(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now, Throttle: true})
	tok := token(t, s)
	for i := range 5 {
		if resp, _ := get(t, signInsURL(s, nil), tok); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d", i+1, resp.StatusCode)
		}
		clk.Advance(1500 * time.Millisecond)
	}
	resp, b := get(t, signInsURL(s, nil), tok)
	if resp.StatusCode != http.StatusTooManyRequests || graphCode(t, b) != "TooManyRequests" {
		t.Fatalf("6th request: status %d body %s", resp.StatusCode, b)
	}
	ra, err := strconv.ParseFloat(resp.Header.Get("Retry-After"), 64)
	if err != nil || ra != 2.5 {
		t.Fatalf("Retry-After %q (%v), want 2.500", resp.Header.Get("Retry-After"), err)
	}
	// A throttled request does not consume budget: retrying right away
	// is told the same wait.
	if resp, _ := get(t, signInsURL(s, nil), tok); resp.Header.Get("Retry-After") != "2.500" {
		t.Errorf("second refusal Retry-After %q", resp.Header.Get("Retry-After"))
	}
	clk.Advance(time.Duration(ra * float64(time.Second)))
	if resp, _ := get(t, signInsURL(s, nil), tok); resp.StatusCode != http.StatusOK {
		t.Errorf("after Retry-After: status %d", resp.StatusCode)
	}
	if got := s.Stats().Throttled; got != 2 {
		t.Errorf("Stats.Throttled = %d, want 2", got)
	}
}

func TestFaults(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now})
	s.Add(Generate(rand.New(rand.NewPCG(3, 3)), clk.Now().Add(-time.Hour), clk.Now(), 5, nil)...)
	tok := token(t, s)
	for _, tc := range []struct {
		name   string
		f      Faults
		status int
		code   string
	}{
		{"licence", Faults{Licence403: true}, 403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant"},
		{"permission", Faults{Permission403: true}, 403, "Authentication_MSGraphPermissionMissing"},
		{"429", Faults{Rate429: 1}, 429, "TooManyRequests"},
		{"503", Faults{Rate503: 1}, 503, ""},
		{"500", Faults{Rate500: 1}, 500, ""},
		{"504", Faults{Rate504: 1}, 504, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.SetFaults(tc.f)
			resp, b := get(t, signInsURL(s, nil), tok)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if code := graphCode(t, b); tc.code != "" && code != tc.code {
				t.Errorf("code %q, want %q", code, tc.code)
			}
			switch tc.status {
			case 429:
				ra, err := strconv.ParseFloat(resp.Header.Get("Retry-After"), 64)
				if err != nil || ra < 0.1 || ra > 2 {
					t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
				}
			case 503:
				if resp.Header.Get("Retry-After") != "1" {
					t.Errorf("Retry-After %q, want 1", resp.Header.Get("Retry-After"))
				}
			}
		})
	}

	s.SetFaults(Faults{RateTruncated: 1})
	req, _ := http.NewRequest(http.MethodGet, signInsURL(s, nil), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p pageBody
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&p) == nil {
		t.Errorf("truncated page: status %d and it decoded", resp.StatusCode)
	}
	if got := s.Stats().Truncated; got != 1 {
		t.Errorf("Stats.Truncated = %d, want 1", got)
	}
}

func TestNotFound(t *testing.T) {
	s := Start(t, Options{Now: newClock().Now})
	resp, b := get(t, s.URL()+"/v1.0/auditLogs/nope", "")
	if resp.StatusCode != http.StatusNotFound || graphCode(t, b) != "ResourceNotFound" {
		t.Errorf("status %d body %s", resp.StatusCode, b)
	}
}

func TestSignIn(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	created := time.Date(2020, 3, 13, 19, 15, 41, 619583300, time.UTC)
	var nonASCII, escapes, control, nulls bool
	for range 200 {
		id := NewID(r)
		b := SignIn(r, id, created)
		if len(b) < 1536 || len(b) > 5120 {
			t.Errorf("size %d outside 1.5–5 KB", len(b))
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("invalid JSON: %v\n%s", err, b)
		}
		if m["id"] != id || m["createdDateTime"] != "2020-03-13T19:15:41.6195833Z" {
			t.Fatalf("id/createdDateTime = %v/%v", m["id"], m["createdDateTime"])
		}
		if rt, ok := m["riskEventTypes"].([]any); !ok || rt == nil {
			t.Errorf("riskEventTypes = %v", m["riskEventTypes"])
		}
		nonASCII = nonASCII || utf8.RuneCount(b) < len(b)
		escapes = escapes || bytes.Contains(b, []byte(`\"`)) && bytes.Contains(b, []byte(`\\`)) && bytes.Contains(b, []byte(`\n`))
		control = control || bytes.Contains(b, []byte(`\u0001`))
		nulls = nulls || bytes.Contains(b, []byte(`:null`))
	}
	if !nonASCII || !escapes || !control || !nulls {
		t.Errorf("coverage: nonASCII=%t escapes=%t control=%t nulls=%t", nonASCII, escapes, control, nulls)
	}
	a := SignIn(rand.New(rand.NewPCG(9, 9)), "x", created)
	if b := SignIn(rand.New(rand.NewPCG(9, 9)), "x", created); !bytes.Equal(a, b) {
		t.Error("SignIn is not deterministic for a seed")
	}
}

func TestRealisticLateness(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	late := RealisticLateness(time.Minute)
	d := make([]time.Duration, 200000)
	for i := range d {
		d[i] = late(r)
	}
	slices.Sort(d)
	p95, p99, top := d[len(d)*95/100], d[len(d)*99/100], d[len(d)-1]
	if p95 < 100*time.Second || p95 > 140*time.Second {
		t.Errorf("P95 = %v, want ≈ 2m", p95)
	}
	if p99 < 4*time.Minute || p99 > 6*time.Minute {
		t.Errorf("P99 = %v, want ≈ 5m", p99)
	}
	if top < 30*time.Minute || top > time.Hour {
		t.Errorf("max = %v, want stragglers up to 1h", top)
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"createdDateTime ge 2025-03-01T11:55:00Z",
		"(createdDateTime ge 2025-03-01T11:52:00.5Z and createdDateTime le 2025-03-01T11:55:00Z)",
		"((((createdDateTime eq 2025-03-01T11:55:00.1234567Z))))",
		"createdDateTime ge '2025-03-01T11:55:00Z'",
	} {
		f.Add(s)
	}
	oldest := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		b, err := parseFilter(s, oldest)
		if err == nil && b.hasLo && b.lo.Before(oldest) {
			t.Errorf("%q accepted a bound before the oldest allowed", s)
		}
	})
}

func TestConcurrent(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now, Seed: 42})
	tok := token(t, s)
	now := clk.Now()
	var wg sync.WaitGroup
	errs := make(chan string, 40)
	for i := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 0))
			s.Add(Generate(r, now.Add(-time.Hour), now, 50, nil)...)
		})
		wg.Go(func() {
			version := []string{"v1.0", "beta"}[i%2]
			req, _ := http.NewRequest(http.MethodGet, s.URL()+"/"+version+"/auditLogs/signIns?$top=10", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer resp.Body.Close()
			var p pageBody
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != http.StatusOK {
				errs <- fmt.Sprintf("status %d: %v", resp.StatusCode, err)
				return
			}
			if want := s.URL() + "/" + version + "/$metadata#auditLogs/signIns"; p.Context != want {
				errs <- fmt.Sprintf("@odata.context %q, want %q", p.Context, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := len(s.Events()); n != 400 {
		t.Errorf("%d events stored, want 400", n)
	}
	if !slices.IsSortedFunc(s.Events(), compareEvents) {
		t.Error("Events() is not oldest first")
	}
	if st := s.Stats(); st.MaxConcurrent < 1 || st.Requests != 9 {
		t.Errorf("stats %+v", st)
	}
}
