package graphsim

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	tenantA = "aaaaaaaa-0000-4000-8000-000000000001"
	tenantB = "bbbbbbbb-0000-4000-8000-000000000002"
)

func twoTenants() []Tenant {
	return []Tenant{{ID: tenantA, Aliases: []string{"a.example.com"}}, {ID: tenantB, Aliases: []string{"b.example.com"}}}
}

// tenantToken gets a token in tenant (an ID or alias) for scope, Graph's
// when scope is "".
func tenantToken(t *testing.T, s *Server, tenant, scope string) string {
	t.Helper()
	form := tokenForm(s)
	if scope != "" {
		form.Set("scope", scope)
	}
	code, body := postToken(t, s, tenant, form, false)
	if code != http.StatusOK {
		t.Fatalf("token in %s: status %d, body %v", tenant, code, body)
	}
	return body["access_token"].(string)
}

// grantOf is the grant behind an access token.
func grantOf(s *Server, tok string) grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[tok]
}

// pageIDs lists a Graph page and returns the ids of its objects and its
// nextLink.
func pageIDs(t *testing.T, rawURL, tok string) ([]string, string) {
	t.Helper()
	resp, body := get(t, rawURL, tok)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %d: %s", rawURL, resp.StatusCode, body)
	}
	p := decodePage(t, body)
	var out []string
	for _, v := range p.Value {
		var o struct{ ID string }
		if err := json.Unmarshal(v, &o); err != nil {
			t.Fatal(err)
		}
		out = append(out, o.ID)
	}
	return out, p.NextLink
}

// The same client ID and credentials get a token in every tenant the
// application is consented in, by ID or domain in any case; the grant is
// the tenant's canonical ID. Other tenants are unknown.
func TestTenantTokens(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	cert := NewTestCertificateWith(t, TestCertificateOptions{NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0)})
	s := Start(t, Options{Now: clk.Now, Tenants: twoTenants(), ClientCertificates: []*x509.Certificate{cert.Cert}})
	for name, want := range map[string]string{
		tenantA: tenantA, strings.ToUpper(tenantA): tenantA, "A.Example.COM": tenantA,
		tenantB: tenantB, "b.example.com": tenantB, DefaultTenantID: DefaultTenantID,
	} {
		if g := grantOf(s, tenantToken(t, s, name, "")); g.tenant != want || g.client != DefaultClientID {
			t.Errorf("token in %s: grant %+v, want tenant %s", name, g, want)
		}
	}
	code, body := postToken(t, s, "c.example.com", tokenForm(s), false)
	if desc := checkRefusal(t, code, body, http.StatusBadRequest, "invalid_request", 90002); !strings.Contains(desc, "'c.example.com' not found") {
		t.Errorf("unknown tenant: %s", desc)
	}
	code, body = postToken(t, s, "", tokenForm(s), false)
	checkRefusal(t, code, body, http.StatusBadRequest, "invalid_request", 90002)

	// A certificate assertion is for the token endpoint of its tenant.
	assertion := func(tenant string) string {
		return sign(t, assertionSpec{alg: "PS256", key: cert.Key, header: map[string]any{"x5t#S256": x5tS256(cert.Cert)}, claims: jwt.MapClaims{
			"aud": s.URL() + "/" + tenant + "/oauth2/v2.0/token", "iss": DefaultClientID, "sub": DefaultClientID, "jti": "j-" + tenant,
			"nbf": now.Unix(), "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		}})
	}
	form := assertionForm(s, assertion(tenantB))
	if code, body := postToken(t, s, tenantB, form, false); code != http.StatusOK {
		t.Fatalf("certificate in tenant b: %d %v", code, body)
	}
	form = assertionForm(s, assertion(tenantA))
	code, body = postToken(t, s, tenantB, form, false)
	checkRefusal(t, code, body, http.StatusUnauthorized, "invalid_client", 700023)

	st := s.Stats()
	if st.TokensByTenant[tenantA] != 3 || st.TokensByTenant[tenantB] != 3 || st.TokensByTenant[DefaultTenantID] != 1 || st.Tokens != 7 {
		t.Errorf("tokens by tenant %v (%d in all)", st.TokensByTenant, st.Tokens)
	}
}

// Graph URLs name no tenant: each token is served its tenant's events
// only, of every source, and events added under an alias or before their
// tenant was known are its own.
func TestTenantsGraphEvents(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now, Tenants: twoTenants()})
	base := clk.Now().Add(-time.Hour)
	ev := func(tenant, source, id string, i int) Event {
		at := base.Add(time.Duration(i) * time.Second)
		return Event{ID: id, Tenant: tenant, Source: source, Created: at, Visible: at}
	}
	var evs []Event
	for i := range 3 {
		evs = append(evs, ev("A.EXAMPLE.com", SourceSignIns, fmt.Sprintf("a-%d", i), i), ev(tenantB, SourceSignIns, fmt.Sprintf("b-%d", i), i))
	}
	evs = append(evs, ev("", SourceSignIns, "default-0", 0), ev(tenantA, SourceDirectoryAudits, "a-audit", 1),
		ev(strings.ToUpper(tenantB), SourceRiskDetections, "b-risk", 2),
		ev("cccccccc-0000-4000-8000-000000000003", SourceSignIns, "c-0", 0))
	s.Add(evs...)

	ta, tb, td := tenantToken(t, s, tenantA, ""), tenantToken(t, s, "b.example.com", ""), token(t, s)
	for _, tc := range []struct {
		tok, path, want string
	}{
		{ta, "/v1.0/auditLogs/signIns", "a-2 a-1 a-0"},
		{tb, "/v1.0/auditLogs/signIns", "b-2 b-1 b-0"},
		{td, "/v1.0/auditLogs/signIns", "default-0"},
		{ta, "/beta/auditLogs/signIns", "a-2 a-1 a-0"},
		{ta, "/v1.0/auditLogs/directoryAudits", "a-audit"},
		{tb, "/v1.0/auditLogs/directoryAudits", ""},
		{tb, "/v1.0/identityProtection/riskDetections", "b-risk"},
		{ta, "/v1.0/identityProtection/riskDetections", ""},
	} {
		got, _ := pageIDs(t, s.URL()+tc.path, tc.tok)
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%s of %s: %v, want %s", tc.path, grantOf(s, tc.tok).tenant, got, tc.want)
		}
	}
	// Tenant c's event waits for its tenant.
	s.AddTenant(Tenant{ID: "CCCCCCCC-0000-4000-8000-000000000003", Aliases: []string{"c.example.com"}})
	if got, _ := pageIDs(t, signInsURL(s, nil), tenantToken(t, s, "c.example.com", "")); strings.Join(got, " ") != "c-0" {
		t.Errorf("tenant c added after its event: %v", got)
	}
	st := s.Stats()
	if st.ByTenant[tenantA] != 4 || st.ByTenant[tenantB] != 3 || st.ByTenant[DefaultTenantID] != 1 || st.ByTenant["CCCCCCCC-0000-4000-8000-000000000003"] != 1 {
		t.Errorf("requests by tenant %v", st.ByTenant)
	}
	if n := len(s.Events()); n != len(evs) {
		t.Errorf("Events() holds %d, want %d", n, len(evs))
	}
}

// A nextLink belongs to the tenant of its query: another tenant's token is
// refused as Graph refuses a skip token it does not know, and is served
// none of the data.
func TestTenantNextLink(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now, Tenants: twoTenants()})
	base := clk.Now().Add(-time.Hour)
	for i := range 6 {
		at := base.Add(time.Duration(i) * time.Second)
		s.Add(Event{ID: fmt.Sprintf("a-%d", i), Tenant: tenantA, Created: at, Visible: at},
			Event{ID: fmt.Sprintf("a-risk-%d", i), Tenant: tenantA, Source: SourceRiskDetections, Created: at, Visible: at},
			Event{ID: fmt.Sprintf("b-%d", i), Tenant: tenantB, Created: at, Visible: at})
	}
	ta, tb := tenantToken(t, s, tenantA, ""), tenantToken(t, s, tenantB, "")
	for _, first := range []string{
		signInsURL(s, url.Values{"$top": {"2"}}),                   // a lazy snapshot
		s.URL() + "/v1.0/identityProtection/riskDetections?$top=2", // a versioned source's listed snapshot
		s.URL() + "/beta/auditLogs/signIns?$top=2&$filter=" + url.QueryEscape( // several sources
			"signInEventTypes/any(t: t eq 'interactiveUser' or t eq 'servicePrincipal')"),
	} {
		got, next := pageIDs(t, first, ta)
		if len(got) != 2 || next == "" || !strings.HasPrefix(got[0], "a-") {
			t.Fatalf("%s: %v, next %q", first, got, next)
		}
		resp, body := get(t, next, tb)
		if resp.StatusCode != http.StatusBadRequest || graphCode(t, body) != "BadRequest" || !strings.Contains(string(body), "Invalid skip token.") || strings.Contains(string(body), `"a-`) {
			t.Fatalf("tenant a's nextLink with tenant b's token: %d %s", resp.StatusCode, body)
		}
		if got, _ := pageIDs(t, next, ta); len(got) != 2 || !strings.HasPrefix(got[0], "a-") {
			t.Fatalf("tenant a's nextLink with its own token: %v", got)
		}
	}
	if st := s.Stats(); st.WrongTenant != 3 || st.ExpiredLinks != 0 {
		t.Errorf("WrongTenant %d, ExpiredLinks %d; want 3 and 0", st.WrongTenant, st.ExpiredLinks)
	}
}

// The per-tenant limits are per tenant: one tenant's requests never
// throttle another's.
func TestTenantLimitsApart(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now, Throttle: true, Tenants: twoTenants()})
	ta, tb := tenantToken(t, s, tenantA, ""), tenantToken(t, s, tenantB, "")
	status := func(path, tok string) int {
		resp, _ := get(t, s.URL()+path, tok)
		return resp.StatusCode
	}
	for i := range 5 {
		if c := status("/v1.0/auditLogs/directoryAudits", ta); c != http.StatusOK {
			t.Fatalf("tenant a's request %d: %d", i+1, c)
		}
	}
	if c := status("/v1.0/auditLogs/signIns", ta); c != http.StatusTooManyRequests {
		t.Fatalf("tenant a's sixth report request in 10 s: %d, want 429", c)
	}
	for i := range 5 {
		if c := status("/v1.0/auditLogs/provisioning", tb); c != http.StatusOK {
			t.Fatalf("tenant b's request %d after tenant a's five: %d", i+1, c)
		}
	}
	// riskDetections: one per second per tenant, whichever application.
	if status("/v1.0/identityProtection/riskDetections", ta) != http.StatusOK || status("/v1.0/identityProtection/riskDetections", tb) != http.StatusOK {
		t.Fatal("riskDetections of two tenants in one second")
	}
	if c := status("/v1.0/identityProtection/riskDetections", tb); c != http.StatusTooManyRequests {
		t.Fatalf("tenant b's second riskDetections in a second: %d", c)
	}
	st := s.Stats()
	if st.Throttled != 2 || st.ThrottledBy["reports"] != 1 || st.ThrottledBy["identityProtection"] != 1 || st.ThrottledApp != 0 {
		t.Errorf("Throttled %d, by %v, app %d", st.Throttled, st.ThrottledBy, st.ThrottledApp)
	}
	if st.ByTenant[tenantA] != 7 || st.ByTenant[tenantB] != 7 {
		t.Errorf("requests by tenant %v", st.ByTenant)
	}
}

// The application's limit across tenants on the identity and access
// reports: 30 tenants × 5 requests in one window are 150, of which 122 are
// admitted and the rest refused with a Retry-After, until the window has
// passed.
func TestAppLimitAcrossTenants(t *testing.T) {
	clk := newClock()
	var ts []Tenant
	for i := range 30 {
		ts = append(ts, NumberedTenant(i))
	}
	s := Start(t, Options{Now: clk.Now, Throttle: true, Tenants: ts})
	toks := make([]string, len(ts))
	for i, tn := range ts {
		toks[i] = tenantToken(t, s, tn.Aliases[0], "")
	}
	paths := []string{"/v1.0/auditLogs/signIns", "/v1.0/auditLogs/directoryAudits", "/v1.0/auditLogs/provisioning"}
	round := func() (ok, refused int) {
		t.Helper()
		for r := range 5 {
			for i := range ts {
				resp, _ := get(t, s.URL()+paths[(r+i)%len(paths)], toks[i])
				switch resp.StatusCode {
				case http.StatusOK:
					ok++
				case http.StatusTooManyRequests:
					refused++
					if ra, err := strconv.ParseFloat(resp.Header.Get("Retry-After"), 64); err != nil || ra != 10 {
						t.Fatalf("an application-limit 429 with Retry-After %q, want 10.000", resp.Header.Get("Retry-After"))
					}
				default:
					t.Fatalf("status %d", resp.StatusCode)
				}
			}
		}
		return ok, refused
	}
	if ok, refused := round(); ok != DefaultAppLimit || refused != 150-DefaultAppLimit {
		t.Fatalf("%d admitted, %d refused; want %d and %d", ok, refused, DefaultAppLimit, 150-DefaultAppLimit)
	}
	st := s.Stats()
	if st.ThrottledApp != 28 || st.ThrottledBy[appThrottleName] != 28 || st.Throttled != 28 || st.ThrottledBy["reports"] != 0 {
		t.Fatalf("ThrottledApp %d, by %v, Throttled %d", st.ThrottledApp, st.ThrottledBy, st.Throttled)
	}
	// A request the application's limit refused takes nothing from its
	// tenant's budget: tenant 29 was refused its fifth request.
	s.mu.Lock()
	hits := len(s.hits["reports/"+ts[29].ID+"/"+DefaultClientID])
	s.mu.Unlock()
	if hits != 4 {
		t.Errorf("tenant 29 holds %d hits of its budget, want 4", hits)
	}
	clk.Advance(10 * time.Second)
	if ok, refused := round(); ok != DefaultAppLimit || refused != 150-DefaultAppLimit {
		t.Fatalf("the next window: %d admitted, %d refused", ok, refused)
	}
}

// AppLimit sets the limit, scaled with the other windows; a negative one
// turns it off.
func TestAppLimitOption(t *testing.T) {
	for _, tc := range []struct {
		limit, want int
	}{{3, 3}, {-1, 10}} {
		clk := newClock()
		s := Start(t, Options{Now: clk.Now, Throttle: true, AppLimit: tc.limit, ThrottleWindowScale: 0.1, Tenants: []Tenant{NumberedTenant(1), NumberedTenant(2)}})
		toks := []string{tenantToken(t, s, NumberedTenant(1).ID, ""), tenantToken(t, s, NumberedTenant(2).ID, "")}
		ok := 0
		for i := range 10 {
			if resp, _ := get(t, signInsURL(s, nil), toks[i%2]); resp.StatusCode == http.StatusOK {
				ok++
			} else if resp.Header.Get("Retry-After") != "1.000" {
				t.Errorf("AppLimit %d: Retry-After %q, want 1.000", tc.limit, resp.Header.Get("Retry-After"))
			}
		}
		if ok != tc.want || s.Stats().ThrottledApp != 10-tc.want {
			t.Errorf("AppLimit %d: %d admitted (%d by the app limit), want %d", tc.limit, ok, s.Stats().ThrottledApp, tc.want)
		}
		clk.Advance(time.Second)
		if resp, _ := get(t, signInsURL(s, nil), toks[0]); resp.StatusCode != http.StatusOK {
			t.Errorf("AppLimit %d: after the scaled window: %d", tc.limit, resp.StatusCode)
		}
	}
}

// Tenants added while the server runs, concurrently with token requests,
// events and queries of other tenants.
func TestAddTenantWhileServing(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now, Throttle: true})
	at := clk.Now().Add(-time.Minute)
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for i := range 20 {
		wg.Go(func() {
			tn := NumberedTenant(i)
			if code, _ := postToken(t, s, tn.Aliases[0], tokenForm(s), false); code != http.StatusBadRequest {
				errs <- fmt.Sprintf("tenant %d before it was added: %d", i, code)
			}
			s.Add(Event{ID: fmt.Sprintf("t%d", i), Tenant: tn.ID, Created: at, Visible: at})
			s.AddTenant(tn)
			code, body := postToken(t, s, tn.Aliases[0], tokenForm(s), false)
			if code != http.StatusOK {
				errs <- fmt.Sprintf("tenant %d after it was added: %d", i, code)
				return
			}
			got, _ := pageIDs(t, signInsURL(s, nil), body["access_token"].(string))
			if strings.Join(got, " ") != fmt.Sprintf("t%d", i) {
				errs <- fmt.Sprintf("tenant %d sees %v", i, got)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if st := s.Stats(); len(st.ByTenant) != 20 || len(st.TokensByTenant) != 20 {
		t.Errorf("by tenant: requests %v, tokens %v", st.ByTenant, st.TokensByTenant)
	}

	// Adding a tenant again adds its aliases; a tenant's ID must be a GUID
	// and an alias cannot name two tenants.
	s.AddTenant(Tenant{ID: NumberedTenant(1).ID, Aliases: []string{"one.example.com"}})
	if g := grantOf(s, tenantToken(t, s, "ONE.example.com", "")); g.tenant != NumberedTenant(1).ID {
		t.Errorf("the added alias: %+v", g)
	}
	for name, tn := range map[string]Tenant{
		"a domain as ID":            {ID: "d.example.com"},
		"another tenant's alias":    {ID: NumberedTenant(99).ID, Aliases: []string{"tenant1.example.com"}},
		"the default's ID as alias": {ID: NumberedTenant(98).ID, Aliases: []string{DefaultTenantID}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AddTenant with %s did not panic", name)
				}
			}()
			s.AddTenant(tn)
		}()
	}
	if NumberedTenant(7).ID != "00000000-0000-4000-8000-000000000007" || NumberedTenant(7).Aliases[0] != "tenant7.example.com" || !isGUID(NumberedTenant(123456).ID) {
		t.Errorf("NumberedTenant(7) = %+v", NumberedTenant(7))
	}
}

// Many tenants, most idle and one busy: each is served its own events, and
// an idle tenant's query looks only at its own.
func TestManyTenants(t *testing.T) {
	clk := newClock()
	const n = 500
	var ts []Tenant
	for i := range n {
		ts = append(ts, NumberedTenant(i))
	}
	s := Start(t, Options{Now: clk.Now, Tenants: ts})
	at := clk.Now().Add(-time.Hour)
	busy := make([]Event, 50000)
	for i := range busy {
		c := at.Add(time.Duration(i) * time.Millisecond)
		busy[i] = Event{ID: fmt.Sprintf("busy-%d", i), Tenant: ts[0].ID, Created: c, Visible: c}
	}
	s.Add(busy...)
	for i := 1; i < n; i++ {
		s.Add(Event{ID: fmt.Sprintf("idle-%d", i), Tenant: ts[i].Aliases[0], Created: at, Visible: at})
	}
	for _, i := range []int{1, 250, n - 1} {
		got, next := pageIDs(t, signInsURL(s, nil), tenantToken(t, s, ts[i].ID, ""))
		if strings.Join(got, " ") != fmt.Sprintf("idle-%d", i) || next != "" {
			t.Errorf("idle tenant %d: %v, next %q", i, got, next)
		}
	}
	if got, next := pageIDs(t, signInsURL(s, nil), tenantToken(t, s, ts[0].ID, "")); len(got) != 1000 || next == "" || got[0] != "busy-49999" {
		t.Errorf("busy tenant: %d events, first %v", len(got), got[:min(len(got), 1)])
	}
	s.mu.Lock()
	idle, stored := len(s.events[s.eventsKey(strings.ToLower(ts[1].ID), SourceSignIns)]), len(s.events)
	s.mu.Unlock()
	if idle != 1 || stored != n {
		t.Errorf("an idle tenant's list holds %d events, %d lists in all; want 1 and %d", idle, stored, n)
	}
}
