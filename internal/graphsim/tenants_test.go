package graphsim

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func tenantToken(t *testing.T, s *Server, tenant, scope string) string {
	t.Helper()
	form := tokenForm(s)
	if scope != "" {
		form.Set("scope", scope)
	}
	code, body := postToken(t, s, tenant, form, false)
	if code != http.StatusOK {
		t.Fatalf("token of %s: status %d, body %v", tenant, code, body)
	}
	return body["access_token"].(string)
}

// Many tenants behind one application: each tenant's token reads its own
// events only, a Management API token of one tenant is refused on
// another's address, a nextLink of one tenant cannot be paged with
// another's token, and the per-tenant limit of one never throttles
// another.
func TestTenantsAreApart(t *testing.T) {
	clk := NewClock(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
	a, b := "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"
	s := Start(t, Options{Now: clk.Now, Throttle: true, Tenants: []Tenant{{ID: a, Aliases: []string{"a.example.com"}}, {ID: b}}})
	base := clk.Now().Add(-time.Hour)
	for i := range 30 {
		s.Add(Event{ID: fmt.Sprintf("a-%02d", i), Tenant: "A.example.com", Created: base.Add(time.Duration(i) * time.Second), Visible: base})
	}
	s.Add(Event{ID: "b-1", Tenant: b, Created: base, Visible: base}, Event{ID: "default-1", Created: base, Visible: base})
	ids := func(tok string, q url.Values) (n int, next string, first string) {
		resp, body := get(t, signInsURL(s, q), tok)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		p := decodePage(t, body)
		if len(p.Value) > 0 {
			first = string(p.Value[0])
		}
		return len(p.Value), p.NextLink, first
	}
	ta, tb := tenantToken(t, s, "a.example.com", ""), tenantToken(t, s, b, "")
	if n, _, first := ids(tb, nil); n != 1 || !strings.Contains(first, `"b-1"`) {
		t.Fatalf("tenant b sees %d events (%s), want its one", n, first)
	}
	if n, _, _ := ids(token(t, s), nil); n != 1 {
		t.Fatalf("the default tenant sees %d events, want its one", n)
	}
	n, next, first := ids(ta, url.Values{"$top": {"10"}})
	if n != 10 || next == "" || !strings.Contains(first, `"a-`) {
		t.Fatalf("tenant a: %d events, next %q, first %s", n, next, first)
	}
	if resp, body := get(t, next, tb); resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "Invalid skip token") {
		t.Fatalf("tenant a's nextLink with tenant b's token: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get(t, next, ta); resp.StatusCode != http.StatusOK {
		t.Fatalf("tenant a's nextLink with its own token: %d", resp.StatusCode)
	}
	// Management API: the address names the tenant; another's token is
	// refused.
	mb := tenantToken(t, s, b, s.ManageURL()+"/.default")
	r := manageDo(t, http.MethodGet, s.ManageURL()+"/api/v1.0/"+a+"/activity/feed/subscriptions/list", mb)
	if r.status != http.StatusForbidden || !strings.Contains(string(r.body), "AF20010") {
		t.Fatalf("tenant b's token on tenant a's address: %d %s", r.status, r.body)
	}
	// Tenant a spends its 5 requests (2 above, three here); b is not held.
	ids(ta, nil)
	ids(ta, nil)
	ids(ta, nil)
	if resp, _ := get(t, signInsURL(s, nil), ta); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("tenant a's sixth request in 10 s: %d, want 429", resp.StatusCode)
	}
	if resp, _ := get(t, signInsURL(s, nil), tb); resp.StatusCode != http.StatusOK {
		t.Fatalf("tenant b throttled by tenant a's requests: %d", resp.StatusCode)
	}
	st := s.Stats()
	if st.ByTenant[a] != 5 || st.ByTenant[b] != 3 || st.TokensByTenant[a] != 1 || st.TokensByTenant[b] != 2 {
		t.Fatalf("by tenant: requests %v, tokens %v", st.ByTenant, st.TokensByTenant)
	}
	if got := s.canonicalTenant("unknown.example.com"); got != "" {
		t.Fatalf("an unknown tenant resolved to %q", got)
	}
	s.AddTenant(Tenant{ID: "cccccccc-0000-4000-8000-000000000003", Aliases: []string{"c.example.com"}})
	tenantToken(t, s, "c.example.com", "")
}

// The application's limit across tenants: 30 tenants × 5 requests in one
// window is 150 requests; 122 are admitted, the rest answered 429 with a
// Retry-After, and a new window admits again.
func TestAppLimitAcrossTenants(t *testing.T) {
	clk := NewClock(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
	var ts []Tenant
	for i := range 30 {
		ts = append(ts, Tenant{ID: fmt.Sprintf("%08x-0000-4000-8000-000000000000", i+1)})
	}
	s := Start(t, Options{Now: clk.Now, Throttle: true, Tenants: ts})
	toks := make([]string, len(ts))
	for i, tn := range ts {
		toks[i] = tenantToken(t, s, tn.ID, "")
	}
	ok, refused := 0, 0
	for range 5 {
		for i := range ts {
			resp, _ := get(t, signInsURL(s, nil), toks[i])
			switch resp.StatusCode {
			case http.StatusOK:
				ok++
			case http.StatusTooManyRequests:
				refused++
				if resp.Header.Get("Retry-After") == "" {
					t.Fatal("an app-limit 429 without Retry-After")
				}
			default:
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
	}
	if ok != DefaultAppLimit || refused != 150-DefaultAppLimit || s.Stats().ThrottledApp != refused {
		t.Fatalf("%d admitted, %d refused (%d by the app limit), want %d and %d", ok, refused, s.Stats().ThrottledApp, DefaultAppLimit, 150-DefaultAppLimit)
	}
	clk.Advance(10 * time.Second)
	if resp, _ := get(t, signInsURL(s, nil), toks[0]); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the window: %d", resp.StatusCode)
	}
}
