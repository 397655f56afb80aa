package graphsim

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The Management Activity API address names its tenant: a token of
// another tenant is refused with 401 AF20010, and each tenant has its own
// subscriptions and content.
func TestManageTenants(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now, Tenants: twoTenants()})
	scope := s.ManageURL() + "/.default"
	ma, mb := tenantToken(t, s, "a.example.com", scope), tenantToken(t, s, tenantB, scope)
	feed := func(tenant, op string, q url.Values) string {
		u := s.ManageURL() + "/api/v1.0/" + tenant + "/activity/feed/" + op
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		return u
	}
	ct := ContentExchange
	r := manageDo(t, http.MethodGet, feed(tenantA, "subscriptions/list", nil), mb)
	msg := wantAF(t, "tenant b's token on tenant a's address", r, http.StatusUnauthorized, "AF20010")
	if !strings.Contains(msg, tenantA) || !strings.Contains(msg, tenantB) || r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("AF20010: %q, WWW-Authenticate %q", msg, r.header.Get("WWW-Authenticate"))
	}
	// The tenant's ID in another case is its own address.
	if r := manageDo(t, http.MethodGet, feed(strings.ToUpper(tenantA), "subscriptions/list", nil), ma); r.status != http.StatusOK {
		t.Fatalf("tenant a's address in upper case: %d %s", r.status, r.body)
	}

	if r := manageDo(t, http.MethodPost, feed(tenantA, "subscriptions/start", url.Values{"contentType": {ct}}), ma); r.status != http.StatusOK {
		t.Fatalf("start in tenant a: %d %s", r.status, r.body)
	}
	if !s.SubscribedIn("A.example.com", ct) || s.SubscribedIn(tenantB, ct) || s.Subscribed(ct) {
		t.Fatal("a start in tenant a is not tenant a's alone")
	}
	if r := manageDo(t, http.MethodGet, feed(tenantB, "subscriptions/list", nil), mb); string(r.body) != "[]" {
		t.Errorf("tenant b's subscriptions: %s", r.body)
	}
	s.SetSubscribedIn("b.example.com", ct, true)
	created := clk.Now().Add(-time.Hour)
	a := recordBlob(ct, created, "rec-a")
	a.Tenant, a.ID = "a.example.com", "blob-a"
	b := recordBlob(ct, created, "rec-b")
	b.Tenant, b.ID = tenantB, "blob-b"
	s.AddBlobs(a, b, Blob{ContentType: ct, Created: created, ID: "blob-default"})
	q := windowQuery(ct, created.Add(-time.Minute), created.Add(time.Minute))
	for _, tc := range []struct{ tenant, tok, want string }{{tenantA, ma, "blob-a"}, {tenantB, mb, "blob-b"}} {
		items := decodeListing(t, manageDo(t, http.MethodGet, feed(tc.tenant, "subscriptions/content", q), tc.tok))
		if len(items) != 1 || items[0].ContentID != tc.want || !strings.Contains(items[0].ContentURI, "/"+tc.tenant+"/") {
			t.Errorf("tenant %s's content: %+v", tc.tenant, items)
		}
		if got := s.ManageBlobsIn(tc.tenant, ct); len(got) != 1 || got[0].ID != tc.want {
			t.Errorf("ManageBlobsIn(%s): %+v", tc.tenant, got)
		}
	}
	if r := manageDo(t, http.MethodGet, feed(tenantB, "audit/blob-a", nil), mb); r.status != http.StatusBadRequest {
		t.Errorf("tenant a's blob at tenant b's address: %d %s", r.status, r.body)
	} else if code, _ := afCode(t, r); code != "AF20050" {
		t.Errorf("tenant a's blob at tenant b's address: %s", r.body)
	}
	if r := manageDo(t, http.MethodGet, feed(tenantA, "audit/blob-a", nil), ma); r.status != http.StatusOK || !strings.Contains(string(r.body), "rec-a") {
		t.Errorf("tenant a's blob: %d %s", r.status, r.body)
	}
	if got := s.ManageBlobs(ct); len(got) != 1 || got[0].ID != "blob-default" {
		t.Errorf("the default tenant's blobs: %+v", got)
	}
	if st := s.Stats(); st.WrongTenant != 1 || st.TokensByTenant[tenantA] != 1 {
		t.Errorf("WrongTenant %d, tokens %v", st.WrongTenant, st.TokensByTenant)
	}
}
