package graphsim

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// sourceQuery is how a client asks for one source's events.
type sourceQuery struct {
	path   string
	lambda string // the signInEventTypes clause, beta sign-ins only
}

var sourceQueries = map[string]sourceQuery{
	SourceSignIns:                 {"/v1.0/auditLogs/signIns", ""},
	SourceSignInsNonInteractive:   {"/beta/auditLogs/signIns", "signInEventTypes/any(t: t eq 'nonInteractiveUser')"},
	SourceSignInsServicePrincipal: {"/beta/auditLogs/signIns", "signInEventTypes/any(t: t eq 'servicePrincipal')"},
	SourceSignInsManagedIdentity:  {"/beta/auditLogs/signIns", "signInEventTypes/any(t: t eq 'managedIdentity')"},
	SourceDirectoryAudits:         {"/v1.0/auditLogs/directoryAudits", ""},
	SourceProvisioning:            {"/v1.0/auditLogs/provisioning", ""},
	SourceRiskDetections:          {"/v1.0/identityProtection/riskDetections", ""},
	SourceSecurityAlerts:          {"/v1.0/security/alerts_v2", ""},
}

// listURL builds a request URL for path with filter (which may be empty)
// and any extra query options.
func listURL(s *Server, path, filter string, extra url.Values) string {
	q := url.Values{}
	for k, v := range extra {
		q[k] = v
	}
	if filter != "" {
		q.Set("$filter", filter)
	}
	u := s.URL() + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// and joins filter clauses, skipping empty ones.
func and(clauses ...string) string {
	return strings.Join(slices.DeleteFunc(clauses, func(c string) bool { return c == "" }), " and ")
}

// listAll follows nextLink from rawURL and returns every object, failing
// the test on any status other than 200.
func listAll(t *testing.T, rawURL, tok string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for link, n := rawURL, 0; link != ""; n++ {
		if n > 100 {
			t.Fatalf("more than 100 pages from %s", rawURL)
		}
		resp, b := get(t, link, tok)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d: %s", link, resp.StatusCode, b)
		}
		p := decodePage(t, b)
		for _, v := range p.Value {
			var m map[string]any
			if err := json.Unmarshal(v, &m); err != nil {
				t.Fatalf("item: %v", err)
			}
			out = append(out, m)
		}
		link = p.NextLink
	}
	return out
}

// stub is a minimal event of source at time at.
func stub(source, id string, at time.Time) Event {
	return Event{ID: id, Source: source, Created: at, Visible: at,
		JSON: []byte(`{"id":"` + id + `","` + TimeField(source) + `":"` + at.UTC().Format(DateTimeLayout) + `"}`)}
}

func ids(items []map[string]any) []string {
	out := make([]string, len(items))
	for i, m := range items {
		out[i], _ = m["id"].(string)
	}
	return out
}

func TestSourceTable(t *testing.T) {
	if len(Sources) != len(sourceTable) {
		t.Fatalf("Sources has %d names, the table %d", len(Sources), len(sourceTable))
	}
	for _, tc := range []struct {
		source, field string
		versioned     bool
	}{
		{"", "createdDateTime", false},
		{SourceSignIns, "createdDateTime", false},
		{SourceSignInsNonInteractive, "createdDateTime", false},
		{SourceSignInsServicePrincipal, "createdDateTime", false},
		{SourceSignInsManagedIdentity, "createdDateTime", false},
		{SourceDirectoryAudits, "activityDateTime", false},
		{SourceProvisioning, "activityDateTime", false},
		{SourceRiskDetections, "lastUpdatedDateTime", true},
		{SourceSecurityAlerts, "lastUpdateDateTime", true},
		{"nope", "", false},
	} {
		if got := TimeField(tc.source); got != tc.field {
			t.Errorf("TimeField(%q) = %q, want %q", tc.source, got, tc.field)
		}
		if got := Versioned(tc.source); got != tc.versioned {
			t.Errorf("Versioned(%q) = %t, want %t", tc.source, got, tc.versioned)
		}
		if _, ok := sourceQueries[tc.source]; !ok && tc.field != "" && tc.source != "" {
			t.Errorf("no query for %q in the test table", tc.source)
		}
	}
}

// Every path serves only its own source, newest first by the source's
// time field, with its own @odata.context.
func TestSourceRouting(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now})
	tok := token(t, s)
	now := clk.Now()
	r := rand.New(rand.NewPCG(11, 11))
	owner := map[string]string{}
	count := map[string]int{}
	for _, src := range Sources {
		evs := GenerateSource(r, src, now.Add(-2*time.Hour), now, 40, nil)
		for _, e := range evs {
			owner[e.ID] = src
		}
		count[src] = len(evs)
		s.Add(evs...)
	}
	for _, tc := range []struct {
		name, path, filter string
		want               []string
		context            string // "" when the body has none
	}{
		{"v1.0 signIns", "/v1.0/auditLogs/signIns", "", []string{SourceSignIns}, "/v1.0/$metadata#auditLogs/signIns"},
		{"beta default is interactive", "/beta/auditLogs/signIns", "", []string{SourceSignIns}, "/beta/$metadata#auditLogs/signIns"},
		{"beta interactiveUser", "/beta/auditLogs/signIns", "signInEventTypes/any(t: t eq 'interactiveUser')", []string{SourceSignIns}, "/beta/$metadata#auditLogs/signIns"},
		{"beta nonInteractiveUser", "/beta/auditLogs/signIns", sourceQueries[SourceSignInsNonInteractive].lambda, []string{SourceSignInsNonInteractive}, "/beta/$metadata#auditLogs/signIns"},
		{"beta servicePrincipal", "/beta/auditLogs/signIns", sourceQueries[SourceSignInsServicePrincipal].lambda, []string{SourceSignInsServicePrincipal}, "/beta/$metadata#auditLogs/signIns"},
		{"beta managedIdentity", "/beta/auditLogs/signIns", sourceQueries[SourceSignInsManagedIdentity].lambda, []string{SourceSignInsManagedIdentity}, "/beta/$metadata#auditLogs/signIns"},
		{"beta two types", "/beta/auditLogs/signIns", "signInEventTypes/any(t: t eq 'servicePrincipal' or t eq 'managedIdentity')",
			[]string{SourceSignInsServicePrincipal, SourceSignInsManagedIdentity}, "/beta/$metadata#auditLogs/signIns"},
		{"directoryAudits", "/v1.0/auditLogs/directoryAudits", "", []string{SourceDirectoryAudits}, "/v1.0/$metadata#auditLogs/directoryAudits"},
		{"provisioning", "/v1.0/auditLogs/provisioning", "", []string{SourceProvisioning}, "/v1.0/$metadata#auditLogs/provisioning"},
		{"riskDetections", "/v1.0/identityProtection/riskDetections", "", []string{SourceRiskDetections}, ""},
		{"alerts_v2", "/v1.0/security/alerts_v2", "", []string{SourceSecurityAlerts}, "/v1.0/$metadata#security/alerts_v2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Pages of 30 make the paged lists follow a nextLink; alerts
			// never page, so they are asked for everything at once.
			top := url.Values{"$top": {"30"}}
			if tc.want[0] == SourceSecurityAlerts {
				top = nil
			}
			resp, b := get(t, listURL(s, tc.path, tc.filter, top), tok)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			var head map[string]json.RawMessage
			if err := json.Unmarshal(b, &head); err != nil {
				t.Fatal(err)
			}
			ctx, has := head["@odata.context"]
			switch {
			case tc.context == "" && has:
				t.Errorf("@odata.context %s, want none", ctx)
			case tc.context != "" && string(ctx) != strconv.Quote(s.URL()+tc.context):
				t.Errorf("@odata.context %s, want %q", ctx, s.URL()+tc.context)
			}

			items := listAll(t, listURL(s, tc.path, tc.filter, top), tok)
			want := 0
			for _, src := range tc.want {
				want += count[src]
			}
			if len(items) != want {
				t.Errorf("%d items, want %d", len(items), want)
			}
			field := TimeField(tc.want[0])
			var prev string
			for i, m := range items {
				id, _ := m["id"].(string)
				if !slices.Contains(tc.want, owner[id]) {
					t.Fatalf("item %s of source %q", id, owner[id])
				}
				ts, _ := m[field].(string)
				if i > 0 && ts > prev {
					t.Fatalf("item %d (%s) is newer than the one before (%s)", i, ts, prev)
				}
				prev = ts
			}
		})
	}
	if st := s.Stats(); st.ByPath["/beta/auditLogs/signIns"] == 0 || st.ByPath["/v1.0/security/alerts_v2"] == 0 {
		t.Errorf("Stats.ByPath = %v", st.ByPath)
	}
}

// Each endpoint accepts exactly its documented operators on its own time
// field, with gt/lt excluding the boundary instant and ge/le/eq including
// it.
func TestSourceFilterOperators(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now})
	tok := token(t, s)
	b := clk.Now().Add(-time.Hour)
	at := func(d time.Duration) string { return b.Add(d).Format(time.RFC3339Nano) }
	for _, src := range Sources {
		for i, d := range []time.Duration{-time.Minute, 0, time.Minute} {
			s.Add(stub(src, src+"-"+strconv.Itoa(i), b.Add(d)))
		}
	}
	type row struct {
		filter string
		n      int // -1: 400 Invalid filter clause
	}
	ops := func(field string, ge, le, gt, lt, eq int) []row {
		return []row{
			{field + " ge " + at(0), ge},
			{field + " le " + at(0), le},
			{field + " gt " + at(0), gt},
			{field + " lt " + at(0), lt},
			{field + " eq " + at(0), eq},
		}
	}
	for _, tc := range []struct {
		source string
		rows   []row
	}{
		{SourceSignIns, ops("createdDateTime", 2, 2, -1, -1, 1)},
		{SourceSignInsNonInteractive, ops("createdDateTime", 2, 2, -1, -1, 1)},
		{SourceSignInsServicePrincipal, ops("createdDateTime", 2, 2, -1, -1, 1)},
		{SourceSignInsManagedIdentity, ops("createdDateTime", 2, 2, -1, -1, 1)},
		{SourceDirectoryAudits, append(ops("activityDateTime", 2, 2, -1, -1, 1),
			row{"activityDateTime ge " + at(-time.Minute) + " and activityDateTime le " + at(0), 2},
			row{"createdDateTime ge " + at(0), -1})},
		{SourceProvisioning, append(ops("activityDateTime", -1, -1, 1, 1, 1),
			row{"activityDateTime gt " + at(-time.Minute) + " and activityDateTime lt " + at(time.Minute), 1},
			row{"(activityDateTime gt " + at(-2*time.Minute) + ") and activityDateTime lt " + at(time.Minute), 2},
			row{"activityDateTime gt " + at(-time.Minute-100), 3},
			row{"activityDateTime gt '" + at(0) + "'", -1})},
		{SourceRiskDetections, append(ops("lastUpdatedDateTime", 2, 2, 1, 1, -1),
			row{"lastUpdatedDateTime gt " + at(-time.Minute) + " and lastUpdatedDateTime le " + at(time.Minute), 2},
			row{"lastUpdatedDateTime ge " + at(time.Minute) + " and lastUpdatedDateTime lt " + at(time.Minute), 0},
			row{"detectedDateTime ge " + at(0), -1},
			row{"lastUpdatedDateTime ge " + clk.Now().Add(-91*24*time.Hour).Format(time.RFC3339), -1})},
		{SourceSecurityAlerts, append(ops("lastUpdateDateTime", 2, 2, 1, 1, -1),
			row{"lastUpdateDateTime gt " + at(0) + " and lastUpdateDateTime gt " + at(-time.Minute), 1},
			row{"lastUpdateDateTime ge " + at(0) + " and lastUpdateDateTime gt " + at(0), 1},
			row{"lastUpdatedDateTime ge " + at(0), -1})},
	} {
		q := sourceQueries[tc.source]
		for _, rw := range tc.rows {
			filter := and(rw.filter, q.lambda)
			resp, body := get(t, listURL(s, q.path, filter, nil), tok)
			if rw.n < 0 {
				if resp.StatusCode != http.StatusBadRequest || graphCode(t, body) != "BadRequest" || !bytes.Contains(body, []byte(`"Invalid filter clause"`)) {
					t.Errorf("%s %q: status %d body %s, want 400 Invalid filter clause", tc.source, filter, resp.StatusCode, body)
				}
				continue
			}
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s %q: status %d body %s", tc.source, filter, resp.StatusCode, body)
				continue
			}
			p := decodePage(t, body)
			if len(p.Value) != rw.n {
				t.Errorf("%s %q: %d events, want %d", tc.source, filter, len(p.Value), rw.n)
			}
			for _, v := range p.Value {
				if !bytes.Contains(v, []byte(`"`+tc.source+`-`)) {
					t.Errorf("%s %q: foreign event %s", tc.source, filter, v)
				}
			}
		}
	}
}

func TestSignInEventTypesFilter(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now})
	tok := token(t, s)
	now := clk.Now()
	signIns := []string{SourceSignIns, SourceSignInsNonInteractive, SourceSignInsServicePrincipal, SourceSignInsManagedIdentity}
	for _, src := range signIns {
		s.Add(stub(src, src+"-old", now.Add(-2*time.Hour)), stub(src, src+"-new", now.Add(-time.Minute)))
	}
	s.Add(stub(SourceDirectoryAudits, "audit", now.Add(-time.Minute)))
	recent := "createdDateTime ge " + now.Add(-time.Hour).Format(time.RFC3339)
	for _, tc := range []struct {
		path, filter string
		want         []string // ids; nil: 400
	}{
		{"/v1.0/auditLogs/signIns", "signInEventTypes/any(t: t eq 'nonInteractiveUser')", nil},
		{"/v1.0/auditLogs/signIns", recent + " and signInEventTypes/any(t: t eq 'interactiveUser')", nil},
		{"/beta/auditLogs/signIns", "signInEventTypes/any(t: t eq 'nonInteractiveUser')",
			[]string{"signins_noninteractive-new", "signins_noninteractive-old"}},
		{"/beta/auditLogs/signIns", recent + " and signInEventTypes/any(t: t eq 'servicePrincipal')",
			[]string{"signins_service_principal-new"}},
		{"/beta/auditLogs/signIns", "signInEventTypes/any(t: t eq 'servicePrincipal') and " + recent,
			[]string{"signins_service_principal-new"}},
		{"/beta/auditLogs/signIns", "(" + recent + " and createdDateTime le " + now.Format(time.RFC3339) + ") and signInEventTypes/any(t: t eq 'managedIdentity')",
			[]string{"signins_managed_identity-new"}},
		{"/beta/auditLogs/signIns", "(signInEventTypes/any(t: t eq 'managedIdentity' or t eq 'nonInteractiveUser')) and " + recent,
			[]string{"signins_managed_identity-new", "signins_noninteractive-new"}},
		{"/beta/auditLogs/signIns", "signInEventTypes/any(x:x eq 'interactiveUser' or (x eq 'servicePrincipal')) and " + recent,
			[]string{"signins-new", "signins_service_principal-new"}},
		{"/beta/auditLogs/signIns", "signInEventTypes/any(t: t ne 'interactiveUser') and " + recent,
			[]string{"signins_managed_identity-new", "signins_noninteractive-new", "signins_service_principal-new"}},
		{"/beta/auditLogs/signIns", "signInEventTypes/any(t: t eq 'unknownFutureValue')", []string{}},
		{"/beta/auditLogs/signIns", "signInEventTypes/any(t: t eq 'servicePrincipal') and signInEventTypes/any(t: t eq 'managedIdentity')", []string{}},
		{"/beta/auditLogs/signIns", "signInEventTypes/any(t: t eq 'robot')", nil},
		{"/beta/auditLogs/signIns", "signInEventTypes/any(t: t eq nonInteractiveUser)", nil},
		{"/beta/auditLogs/signIns", "signInEventTypes/any(t: u eq 'nonInteractiveUser')", nil},
		{"/beta/auditLogs/signIns", "signInEventTypes/any(t: t eq 'nonInteractiveUser' and t eq 'servicePrincipal')", nil},
		{"/beta/auditLogs/signIns", "signInEventTypes/any(t: t eq 'nonInteractiveUser'", nil},
		{"/beta/auditLogs/signIns", "signInEventTypes/any(t: t eq 'nonInteractiveUser') or " + recent, nil},
		{"/beta/auditLogs/signIns", "signInEventTypes/any(t t eq 'nonInteractiveUser')", nil},
		{"/v1.0/auditLogs/directoryAudits", "signInEventTypes/any(t: t eq 'nonInteractiveUser')", nil},
	} {
		resp, b := get(t, listURL(s, tc.path, tc.filter, nil), tok)
		if tc.want == nil {
			if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(b, []byte(`"Invalid filter clause"`)) {
				t.Errorf("%s %q: status %d body %s, want 400 Invalid filter clause", tc.path, tc.filter, resp.StatusCode, b)
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s %q: status %d body %s", tc.path, tc.filter, resp.StatusCode, b)
			continue
		}
		var items []map[string]any
		for _, v := range decodePage(t, b).Value {
			var m map[string]any
			_ = json.Unmarshal(v, &m)
			items = append(items, m)
		}
		got := ids(items)
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s %q: %v, want %v", tc.path, tc.filter, got, tc.want)
		}
	}
}

func TestSourceQueryOptions(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now})
	tok := token(t, s)
	now := clk.Now()
	for _, src := range Sources {
		for i := range 30 {
			s.Add(stub(src, src+"-"+strconv.Itoa(i), now.Add(-time.Duration(i)*time.Second)))
		}
	}
	for _, tc := range []struct {
		source string
		q      url.Values
		status int
		n      int  // items on the first page when 200
		next   bool // whether it has a nextLink
	}{
		{SourceDirectoryAudits, url.Values{"$top": {"1000"}}, 200, 30, false},
		{SourceDirectoryAudits, url.Values{"$top": {"1001"}}, 400, 0, false},
		{SourceDirectoryAudits, url.Values{"$top": {"7"}, "$orderby": {"activityDateTime"}}, 200, 7, true},
		{SourceDirectoryAudits, url.Values{"$orderby": {"createdDateTime"}}, 400, 0, false},
		{SourceProvisioning, url.Values{"$top": {"1001"}}, 400, 0, false},
		{SourceProvisioning, url.Values{"$top": {"10"}, "$orderby": {"activityDateTime desc"}}, 200, 10, true},
		{SourceSignInsServicePrincipal, url.Values{"$top": {"1001"}}, 400, 0, false},
		{SourceRiskDetections, nil, 200, 20, true}, // Graph's default page of 20
		{SourceRiskDetections, url.Values{"$top": {"500"}}, 200, 30, false},
		{SourceRiskDetections, url.Values{"$top": {"501"}}, 400, 0, false},
		{SourceRiskDetections, url.Values{"$top": {"5"}}, 200, 5, true},
		{SourceRiskDetections, url.Values{"$orderby": {"lastUpdatedDateTime"}}, 400, 0, false},
		{SourceSecurityAlerts, nil, 200, 30, false},
		{SourceSecurityAlerts, url.Values{"$top": {"1000"}}, 200, 30, false},
		{SourceSecurityAlerts, url.Values{"$top": {"1001"}}, 400, 0, false},
		{SourceSecurityAlerts, url.Values{"$top": {"5"}}, 200, 5, false},
		{SourceSecurityAlerts, url.Values{"$skiptoken": {"x_1"}}, 400, 0, false},
		{SourceSecurityAlerts, url.Values{"$skip": {"5"}}, 400, 0, false},
	} {
		q := sourceQueries[tc.source]
		resp, b := get(t, listURL(s, q.path, q.lambda, tc.q), tok)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %v: status %d, want %d: %s", tc.source, tc.q, resp.StatusCode, tc.status, b)
			continue
		}
		if tc.status != http.StatusOK {
			if graphCode(t, b) != "BadRequest" {
				t.Errorf("%s %v: body %s", tc.source, tc.q, b)
			}
			continue
		}
		p := decodePage(t, b)
		if len(p.Value) != tc.n || (p.NextLink != "") != tc.next {
			t.Errorf("%s %v: %d items, nextLink %q; want %d, nextLink %t", tc.source, tc.q, len(p.Value), p.NextLink, tc.n, tc.next)
		}
	}

	// A skip token is bound to the list that issued it.
	_, b := get(t, listURL(s, sourceQueries[SourceDirectoryAudits].path, "", url.Values{"$top": {"5"}}), tok)
	next := decodePage(t, b).NextLink
	if next == "" {
		t.Fatal("no nextLink on directoryAudits")
	}
	other := strings.Replace(next, "/auditLogs/directoryAudits?", "/auditLogs/provisioning?", 1)
	if resp, b := get(t, other, tok); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("directoryAudits skip token on provisioning: status %d %s", resp.StatusCode, b)
	}
}

// alerts_v2 never pages: a query answers at most $top objects, the most
// recently updated, and the client narrows its range to reach the rest.
func TestAlertsNoNextLink(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now})
	tok := token(t, s)
	now := clk.Now()
	evs := GenerateSource(rand.New(rand.NewPCG(12, 12)), SourceSecurityAlerts, now.Add(-time.Hour), now, 35, nil)
	s.Add(evs...)
	slices.Reverse(evs) // newest first, as served

	path := sourceQueries[SourceSecurityAlerts].path
	var got []string
	filter := ""
	for range 10 {
		resp, b := get(t, listURL(s, path, filter, url.Values{"$top": {"10"}}), tok)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		if bytes.Contains(b, []byte("nextLink")) {
			t.Fatalf("alerts_v2 sent a nextLink: %s", b)
		}
		p := decodePage(t, b)
		if len(p.Value) > 10 {
			t.Fatalf("%d items for $top=10", len(p.Value))
		}
		if len(p.Value) == 0 {
			break
		}
		var last map[string]any
		for _, v := range p.Value {
			last = nil
			_ = json.Unmarshal(v, &last)
			got = append(got, last["id"].(string))
		}
		filter = "lastUpdateDateTime lt " + last["lastUpdateDateTime"].(string)
	}
	var want []string
	for _, e := range evs {
		want = append(want, e.ID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("narrowing the range returned\n%v\nwant\n%v", got, want)
	}
}

// Only the current version of a versioned object is served, and only
// when that version's time is within the filter.
func TestVersionedCurrentOnly(t *testing.T) {
	for _, src := range []string{SourceRiskDetections, SourceSecurityAlerts} {
		t.Run(src, func(t *testing.T) {
			clk := newClock()
			s := Start(t, Options{Now: clk.Now})
			tok := token(t, s)
			r := rand.New(rand.NewPCG(13, 13))
			field := TimeField(src)
			t0 := clk.Now().Add(-3 * time.Hour)
			t1, t2, t3 := t0.Add(time.Hour), t0.Add(2*time.Hour), clk.Now().Add(-time.Minute)
			v1 := Event{ID: "obj", Source: src, Created: t1, Visible: t1, JSON: Object(r, src, "obj", t1)}
			v2 := Update(r, v1, t2, nil)
			v3 := Update(r, v2, t3, func(*rand.Rand) time.Duration { return 5 * time.Minute })
			other := Event{ID: "other", Source: src, Created: t1.Add(time.Minute), Visible: t1, JSON: Object(r, src, "other", t1.Add(time.Minute))}
			s.Add(v3, v1, other, v2)

			path := sourceQueries[src].path
			query := func(filter string) map[string]string {
				t.Helper()
				out := map[string]string{}
				for _, m := range listAll(t, listURL(s, path, filter, nil), tok) {
					out[m["id"].(string)] = m[field].(string)
				}
				return out
			}
			f := func(op string, at time.Time) string { return field + " " + op + " " + at.Format(time.RFC3339Nano) }
			check := func(name string, got map[string]string, want map[string]time.Time) {
				t.Helper()
				if len(got) != len(want) {
					t.Errorf("%s: got %v, want %v", name, got, want)
					return
				}
				for id, at := range want {
					if got[id] != at.Format(DateTimeLayout) {
						t.Errorf("%s: %s at %q, want %s", name, id, got[id], at.Format(DateTimeLayout))
					}
				}
			}
			// v3 is not visible yet, so v2 is current.
			check("before v3 is visible", query(""), map[string]time.Time{"obj": t2, "other": other.Created})
			check("v1 range, v2 current", query(and(f("ge", t1), f("lt", t2))), map[string]time.Time{"other": other.Created})
			clk.Advance(5 * time.Minute)
			check("after v3 is visible", query(""), map[string]time.Time{"obj": t3, "other": other.Created})
			check("v2 range", query(and(f("ge", t2), f("le", t2.Add(time.Minute)))), map[string]time.Time{})
			check("v3 range", query(f("ge", t3)), map[string]time.Time{"obj": t3})
			check("just before v3", query(f("lt", t3)), map[string]time.Time{"other": other.Created})
			check("from v1 on", query(f("gt", t0)), map[string]time.Time{"obj": t3, "other": other.Created})

			if n := s.Remove(t2.Add(time.Second)); n != 3 {
				t.Errorf("Remove removed %d, want 3 (two old versions and other)", n)
			}
			check("after retention", query(""), map[string]time.Time{"obj": t3})
		})
	}
}

// Paging a versioned source sees each object once, at its current version.
func TestVersionedPaging(t *testing.T) {
	clk := newClock()
	s := Start(t, Options{Now: clk.Now})
	tok := token(t, s)
	r := rand.New(rand.NewPCG(14, 14))
	now := clk.Now()
	evs := GenerateSource(r, SourceRiskDetections, now.Add(-2*time.Hour), now.Add(-time.Hour), 25, nil)
	current := map[string]string{}
	for _, e := range evs {
		u := Update(r, e, e.Created.Add(time.Duration(1+r.IntN(3600))*time.Second), nil)
		s.Add(e, u)
		current[u.ID] = u.Created.Format(DateTimeLayout)
	}
	items := listAll(t, listURL(s, sourceQueries[SourceRiskDetections].path, "", url.Values{"$top": {"10"}}), tok)
	if len(items) != 25 {
		t.Fatalf("%d items, want 25", len(items))
	}
	for _, m := range items {
		if id := m["id"].(string); current[id] != m["lastUpdatedDateTime"] {
			t.Errorf("%s served at %v, current is %s", id, m["lastUpdatedDateTime"], current[id])
		}
	}
}

func TestSourceThrottles(t *testing.T) {
	t.Run("reports budget shared", func(t *testing.T) {
		clk := newClock()
		s := Start(t, Options{Now: clk.Now, Throttle: true})
		tok := token(t, s)
		paths := []string{"/v1.0/auditLogs/signIns", "/beta/auditLogs/signIns", "/v1.0/auditLogs/directoryAudits", "/v1.0/auditLogs/provisioning", "/v1.0/auditLogs/directoryAudits"}
		for i, p := range paths {
			if resp, b := get(t, s.URL()+p, tok); resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d to %s: status %d %s", i+1, p, resp.StatusCode, b)
			}
			clk.Advance(time.Second)
		}
		resp, b := get(t, s.URL()+"/v1.0/auditLogs/provisioning", tok)
		if resp.StatusCode != http.StatusTooManyRequests || graphCode(t, b) != "TooManyRequests" || resp.Header.Get("Retry-After") != "5.000" {
			t.Fatalf("6th reports request: status %d Retry-After %q body %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
		// Other families keep their own budgets.
		for _, p := range []string{"/v1.0/identityProtection/riskDetections", "/v1.0/security/alerts_v2"} {
			if resp, b := get(t, s.URL()+p, tok); resp.StatusCode != http.StatusOK {
				t.Errorf("%s while reports are throttled: status %d %s", p, resp.StatusCode, b)
			}
		}
		clk.Advance(5 * time.Second)
		if resp, _ := get(t, s.URL()+"/v1.0/auditLogs/signIns", tok); resp.StatusCode != http.StatusOK {
			t.Errorf("after Retry-After: status %d", resp.StatusCode)
		}
	})

	t.Run("riskDetections 1/s per tenant", func(t *testing.T) {
		clk := newClock()
		s := Start(t, Options{Now: clk.Now, Throttle: true})
		tokA := token(t, s)
		tokB, _ := s.grant("bbbbbbbb-0000-4000-8000-000000000002", CredentialSecret)
		u := s.URL() + "/v1.0/identityProtection/riskDetections"
		if resp, b := get(t, u, tokA); resp.StatusCode != http.StatusOK {
			t.Fatalf("first: status %d %s", resp.StatusCode, b)
		}
		for _, step := range []struct {
			advance time.Duration
			tok     string
			want    int
		}{
			{0, tokB, http.StatusTooManyRequests}, // another application shares the budget
			{999 * time.Millisecond, tokA, http.StatusTooManyRequests},
			{time.Millisecond, tokB, http.StatusOK},
			{500 * time.Millisecond, tokA, http.StatusTooManyRequests},
		} {
			clk.Advance(step.advance)
			resp, b := get(t, u, step.tok)
			if resp.StatusCode != step.want {
				t.Fatalf("after %v: status %d, want %d: %s", step.advance, resp.StatusCode, step.want, b)
			}
			if step.want == http.StatusTooManyRequests {
				if _, ok := resp.Header["Retry-After"]; ok {
					t.Errorf("riskDetections 429 has Retry-After %q", resp.Header.Get("Retry-After"))
				}
				if graphCode(t, b) != "TooManyRequests" {
					t.Errorf("body %s", b)
				}
			}
		}
		// Injected 429s on this API lack Retry-After too.
		clk.Advance(time.Second)
		s.SetFaults(Faults{Rate429: 1})
		if resp, _ := get(t, u, tokA); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "" {
			t.Errorf("injected 429: status %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if got := s.Stats().Throttled; got != 3 {
			t.Errorf("Stats.Throttled = %d, want 3", got)
		}
	})

	t.Run("alerts 150/min per app", func(t *testing.T) {
		clk := newClock()
		s := Start(t, Options{Now: clk.Now, Throttle: true})
		tokA := token(t, s)
		tokB, _ := s.grant("bbbbbbbb-0000-4000-8000-000000000002", CredentialSecret)
		u := s.URL() + "/v1.0/security/alerts_v2?$top=1"
		for i := range 150 {
			if resp, b := get(t, u, tokA); resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d: status %d %s", i+1, resp.StatusCode, b)
			}
			clk.Advance(100 * time.Millisecond)
		}
		resp, b := get(t, u, tokA)
		if resp.StatusCode != http.StatusTooManyRequests || graphCode(t, b) != "TooManyRequests" || resp.Header.Get("Retry-After") != "45.000" {
			t.Fatalf("151st: status %d Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
		if resp, _ := get(t, u, tokB); resp.StatusCode != http.StatusOK {
			t.Errorf("another application: status %d", resp.StatusCode)
		}
		clk.Advance(45 * time.Second)
		if resp, _ := get(t, u, tokA); resp.StatusCode != http.StatusOK {
			t.Errorf("after Retry-After: status %d", resp.StatusCode)
		}
	})
}

func TestSourceFaults(t *testing.T) {
	s := Start(t, Options{Now: newClock().Now})
	tok := token(t, s)
	for _, tc := range []struct {
		path    string
		licence bool // whether the licence fault applies
		perm    string
	}{
		{"/v1.0/auditLogs/signIns", true, "AuditLog.Read.All"},
		{"/beta/auditLogs/signIns", true, "AuditLog.Read.All"},
		{"/v1.0/auditLogs/directoryAudits", false, "AuditLog.Read.All"},
		{"/v1.0/auditLogs/provisioning", true, "AuditLog.Read.All"},
		{"/v1.0/identityProtection/riskDetections", true, "IdentityRiskEvent.Read.All"},
		{"/v1.0/security/alerts_v2", false, "SecurityAlert.Read.All"},
	} {
		s.SetFaults(Faults{Licence403: true})
		resp, b := get(t, s.URL()+tc.path, tok)
		if got := resp.StatusCode == http.StatusForbidden; got != tc.licence {
			t.Errorf("%s with Licence403: status %d %s", tc.path, resp.StatusCode, b)
		}
		s.SetFaults(Faults{Permission403: true})
		resp, b = get(t, s.URL()+tc.path, tok)
		if resp.StatusCode != http.StatusForbidden || graphCode(t, b) != "Authentication_MSGraphPermissionMissing" || !bytes.Contains(b, []byte(tc.perm)) {
			t.Errorf("%s with Permission403: status %d %s", tc.path, resp.StatusCode, b)
		}
	}
}

// Generated objects are valid JSON carrying ID and Created, realistic per
// source, deterministic per seed, and exercise escapes and non-ASCII text.
func TestGeneratedObjects(t *testing.T) {
	from := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	var nonASCII, quote, backslash, newline bool
	for _, src := range Sources {
		t.Run(src, func(t *testing.T) {
			r := rand.New(rand.NewPCG(15, 15))
			evs := GenerateSource(r, src, from, from.Add(time.Hour), 150, RealisticLateness(time.Minute))
			seen := map[string]bool{}
			for i, e := range evs {
				if e.Source != src {
					t.Fatalf("Source %q", e.Source)
				}
				if i > 0 && compareEvents(evs[i-1], e) > 0 {
					t.Fatal("not oldest first")
				}
				if e.Visible.Before(e.Created) || e.Created.Nanosecond()%100 != 0 {
					t.Fatalf("Created %v Visible %v", e.Created, e.Visible)
				}
				seen[e.ID] = true
				checkObject(t, src, e)
				nonASCII = nonASCII || utf8.RuneCount(e.JSON) < len(e.JSON)
				quote = quote || bytes.Contains(e.JSON, []byte(`\"`))
				backslash = backslash || bytes.Contains(e.JSON, []byte(`\\`))
				newline = newline || bytes.Contains(e.JSON, []byte(`\n`))
			}
			if len(seen) != len(evs) {
				t.Errorf("%d distinct ids among %d events", len(seen), len(evs))
			}
			a := GenerateSource(rand.New(rand.NewPCG(9, 9)), src, from, from.Add(time.Hour), 3, nil)
			b := GenerateSource(rand.New(rand.NewPCG(9, 9)), src, from, from.Add(time.Hour), 3, nil)
			for i := range a {
				if a[i].ID != b[i].ID || !bytes.Equal(a[i].JSON, b[i].JSON) {
					t.Fatal("GenerateSource is not deterministic for a seed")
				}
			}
		})
	}
	if !nonASCII || !quote || !backslash || !newline {
		t.Errorf("coverage: nonASCII=%t quote=%t backslash=%t newline=%t", nonASCII, quote, backslash, newline)
	}
	g := Generate(rand.New(rand.NewPCG(1, 2)), from, from.Add(time.Hour), 2, nil)
	h := GenerateSource(rand.New(rand.NewPCG(1, 2)), SourceSignIns, from, from.Add(time.Hour), 2, nil)
	if g[0].ID != h[0].ID || !bytes.Equal(g[1].JSON, h[1].JSON) {
		t.Error("Generate differs from GenerateSource signins")
	}
}

// checkObject checks e.JSON against e and the shape of its source.
func checkObject(t *testing.T, src string, e Event) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(e.JSON, &m); err != nil {
		t.Fatalf("%s: invalid JSON: %v\n%s", src, err, e.JSON)
	}
	if m["id"] != e.ID || m[TimeField(src)] != e.Created.Format(DateTimeLayout) {
		t.Fatalf("%s: id %v %s %v, want %s %s", src, m["id"], TimeField(src), m[TimeField(src)], e.ID, e.Created.Format(DateTimeLayout))
	}
	need := func(keys ...string) {
		t.Helper()
		for _, k := range keys {
			if _, ok := m[k]; !ok {
				t.Fatalf("%s: no %q in %s", src, k, e.JSON)
			}
		}
	}
	types, _ := m["signInEventTypes"].([]any)
	switch src {
	case SourceSignIns:
		need("userPrincipalName", "appliedConditionalAccessPolicies", "riskEventTypes")
		if m["isInteractive"] != true {
			t.Fatalf("interactive sign-in: %s", e.JSON)
		}
	case SourceSignInsNonInteractive:
		need("userAgent", "incomingTokenType", "authenticationProcessingDetails", "riskEventTypes_v2")
		if len(types) != 1 || types[0] != "nonInteractiveUser" || m["isInteractive"] != false || m["userId"] == "" {
			t.Fatalf("non-interactive sign-in: %s", e.JSON)
		}
	case SourceSignInsServicePrincipal:
		need("clientCredentialType", "servicePrincipalCredentialKeyId")
		if len(types) != 1 || types[0] != "servicePrincipal" || m["userId"] != "" || m["userPrincipalName"] != "" || m["servicePrincipalId"] == "" {
			t.Fatalf("service principal sign-in: %s", e.JSON)
		}
	case SourceSignInsManagedIdentity:
		msi, _ := m["managedServiceIdentity"].(map[string]any)
		if len(types) != 1 || types[0] != "managedIdentity" || m["clientCredentialType"] != "managedIdentity" || m["userId"] != "" ||
			msi["associatedResourceId"] == nil {
			t.Fatalf("managed identity sign-in: %s", e.JSON)
		}
	case SourceDirectoryAudits:
		need("category", "activityDisplayName", "loggedByService", "operationType", "initiatedBy", "targetResources", "additionalDetails")
		init, _ := m["initiatedBy"].(map[string]any)
		if (init["user"] == nil) == (init["app"] == nil) {
			t.Fatalf("initiatedBy needs exactly one of user and app: %s", e.JSON)
		}
	case SourceProvisioning:
		need("jobId", "cycleId", "changeId", "provisioningAction", "provisioningStatusInfo", "provisioningSteps", "sourceSystem", "targetSystem", "modifiedProperties")
	case SourceRiskDetections:
		need("requestId", "riskEventType", "riskState", "riskLevel", "riskDetail", "detectionTimingType", "activityDateTime", "detectedDateTime", "location")
		info, ok := m["additionalInfo"].(string)
		var v []any
		if !ok || json.Unmarshal([]byte(info), &v) != nil {
			t.Fatalf("additionalInfo is not JSON text in a string: %s", e.JSON)
		}
		if m["detectedDateTime"].(string) > m["lastUpdatedDateTime"].(string) || m["activityDateTime"].(string) > m["detectedDateTime"].(string) {
			t.Fatalf("times out of order: %s", e.JSON)
		}
	case SourceSecurityAlerts:
		need("providerAlertId", "incidentId", "status", "severity", "classification", "determination", "serviceSource", "detectionSource",
			"title", "description", "createdDateTime", "firstActivityDateTime", "lastActivityDateTime")
		if ev, _ := m["evidence"].([]any); len(ev) == 0 {
			t.Fatalf("no evidence: %s", e.JSON)
		}
		if m["createdDateTime"].(string) > m["lastUpdateDateTime"].(string) {
			t.Fatalf("created after last update: %s", e.JSON)
		}
	}
	return m
}

// An update keeps what was fixed when the object was first logged and
// moves its state.
func TestUpdate(t *testing.T) {
	from := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		source string
		stable []string
		state  string
	}{
		{SourceRiskDetections, []string{"requestId", "riskEventType", "riskLevel", "activityDateTime", "detectedDateTime", "userId", "additionalInfo", "location"}, "riskState"},
		{SourceSecurityAlerts, []string{"incidentId", "title", "severity", "serviceSource", "createdDateTime", "firstActivityDateTime", "evidence"}, "status"},
	} {
		t.Run(tc.source, func(t *testing.T) {
			r := rand.New(rand.NewPCG(16, 16))
			for _, e := range GenerateSource(r, tc.source, from, from.Add(time.Hour), 50, nil) {
				prev := checkObject(t, tc.source, e)
				first := prev
				for i := range 3 {
					at := e.Created.Add(time.Duration(i+1) * 17 * time.Minute).Add(123)
					u := Update(r, e, at, func(*rand.Rand) time.Duration { return time.Minute })
					if u.ID != e.ID || u.Source != e.Source || !u.Created.Equal(at.Truncate(100)) || !u.Visible.Equal(u.Created.Add(time.Minute)) {
						t.Fatalf("update %+v", u)
					}
					m := checkObject(t, tc.source, u)
					if m[tc.state] == prev[tc.state] {
						t.Fatalf("%s stayed %v", tc.state, m[tc.state])
					}
					for _, k := range tc.stable {
						if a, b := mustMarshal(m[k]), mustMarshal(first[k]); !bytes.Equal(a, b) {
							t.Fatalf("%s changed from %s to %s", k, b, a)
						}
					}
					if tc.source == SourceSecurityAlerts && (m["status"] == "resolved") != (m["resolvedDateTime"] != nil) {
						t.Fatalf("status %v with resolvedDateTime %v", m["status"], m["resolvedDateTime"])
					}
					e, prev = u, m
				}
			}
			// Versions made independently from the id agree on it too.
			a := Object(rand.New(rand.NewPCG(1, 1)), tc.source, "same", from)
			b := Object(rand.New(rand.NewPCG(2, 2)), tc.source, "same", from)
			var ma, mb map[string]any
			_ = json.Unmarshal(a, &ma)
			_ = json.Unmarshal(b, &mb)
			for _, k := range tc.stable {
				if !bytes.Equal(mustMarshal(ma[k]), mustMarshal(mb[k])) {
					t.Errorf("Object with one id disagrees on %s", k)
				}
			}
		})
	}
	// A test may store deliberately broken JSON; Update still works.
	bad := Event{ID: "x", Source: SourceRiskDetections, Created: from, JSON: []byte("{")}
	checkObject(t, SourceRiskDetections, Update(rand.New(rand.NewPCG(1, 1)), bad, from.Add(time.Hour), nil))
}

func TestGeneratorPanics(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for name, fn := range map[string]func(){
		"Update of a sign-in": func() {
			Update(r, GenerateSource(r, SourceSignIns, time.Now(), time.Now(), 1, nil)[0], time.Now(), nil)
		},
		"unknown source": func() { GenerateSource(r, "nope", time.Now(), time.Now(), 1, nil) },
		"unknown Object": func() { Object(r, "nope", "x", time.Now()) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			fn()
		}()
	}
}

func FuzzParseEndpointFilter(f *testing.F) {
	for _, s := range []string{
		"signInEventTypes/any(t: t eq 'nonInteractiveUser')",
		"(createdDateTime ge 2025-03-01T11:52:00.5Z and createdDateTime le 2025-03-01T11:55:00Z) and signInEventTypes/any(t: t eq 'servicePrincipal')",
		"signInEventTypes/any(x:x eq 'interactiveUser' or (x ne 'managedIdentity'))",
		"signInEventTypes/any(t: t eq 'a'",
	} {
		f.Add(s)
	}
	oldest := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		for _, ep := range endpoints {
			flt, err := parseEndpointFilter(s, ep, oldest)
			if err != nil {
				continue
			}
			if flt.b.hasLo && flt.b.lo.Before(oldest) {
				t.Errorf("%q accepted a bound before the oldest allowed", s)
			}
			if flt.types != nil && !ep.eventTypes {
				t.Errorf("%q selected event types on an endpoint without them", s)
			}
		}
	})
}
