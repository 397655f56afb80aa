package graph_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/auth"
	"github.com/in-msgraph/in_msgraph/internal/graph"
	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/source"
)

const signIns = "/v1.0/auditLogs/signIns"

func newClock() *graphsim.Clock {
	return graphsim.NewClock(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
}

// transport returns a private transport whose idle connections are closed
// before the servers of the test, so no connection outlives its test.
func transport(t testing.TB) *http.Transport {
	tr := graph.NewTransport()
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// simRig is a simulator and a client of it, on one clock.
type simRig struct {
	clk    *graphsim.Clock
	sim    *graphsim.Server
	tokens *auth.Source
	client *graph.Client
}

func newSimRig(t *testing.T, opts graphsim.Options) *simRig {
	t.Helper()
	clk := newClock()
	opts.Now = clk.Now
	sim := graphsim.Start(t, opts)
	secret := opts.ClientSecret
	if secret == "" {
		secret = graphsim.DefaultClientSecret
	}
	tr := transport(t)
	tokens := auth.New(auth.Credentials{
		TenantID:      graphsim.DefaultTenantID,
		ClientID:      graphsim.DefaultClientID,
		Secret:        secret,
		AuthorityHost: sim.URL(),
		Scope:         sim.URL() + "/.default",
		HTTPClient:    &http.Client{Transport: tr},
		Timeout:       5 * time.Second,
	})
	c, err := graph.NewClient(sim.URL(), tokens, tr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Now = clk.Now
	return &simRig{clk: clk, sim: sim, tokens: tokens, client: c}
}

// signinsURL is the sign-ins query the plugin sends for [from, to].
func signinsURL(host string, from, to time.Time, top int) string {
	p, _ := source.Lookup("signins")
	return p.URL(host, from, to, top)
}

// firstPage is a valid first-page link of the simulator.
func (r *simRig) firstPage() string {
	now := r.clk.Now()
	return signinsURL(r.sim.URL(), now.Add(-time.Hour), now, 100)
}

// fake is a hand-written Graph host that also serves the token endpoint,
// for answers the simulator never gives. It records what it received; the
// test asserts on the record after the request.
type fake struct {
	srv *httptest.Server

	mu        sync.Mutex
	tokenReqs int
	graphReqs int
	auths     []string // Authorization header of each Graph request
	accepts   []string // Accept header of each Graph request
}

const fakeTenant = "contoso.onmicrosoft.com"

func startFake(t testing.TB, graphHandler http.HandlerFunc) *fake {
	t.Helper()
	f := &fake{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/"+fakeTenant+"/oauth2/v2.0/token" {
			f.mu.Lock()
			f.tokenReqs++
			n := f.tokenReqs
			f.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"token_type":"Bearer","expires_in":3600,"access_token":"fake-token-%d"}`, n)
			return
		}
		f.mu.Lock()
		f.graphReqs++
		f.auths = append(f.auths, r.Header.Get("Authorization"))
		f.accepts = append(f.accepts, r.Header.Get("Accept"))
		f.mu.Unlock()
		graphHandler(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) counts() (tokens, graph int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokenReqs, f.graphReqs
}

// client returns a client whose Graph host and authority are the fake.
func (f *fake) client(t testing.TB) (*graph.Client, *auth.Source) {
	t.Helper()
	tr := transport(t)
	tokens := auth.New(auth.Credentials{
		TenantID:      fakeTenant,
		ClientID:      "client",
		Secret:        "secret",
		AuthorityHost: f.srv.URL,
		Scope:         f.srv.URL + "/.default",
		HTTPClient:    &http.Client{Transport: tr},
		Timeout:       5 * time.Second,
	})
	c, err := graph.NewClient(f.srv.URL, tokens, tr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c, tokens
}

// counter is a server that must never be reached.
type counter struct {
	srv *httptest.Server
	mu  sync.Mutex
	n   int
}

func startCounter(t *testing.T) *counter {
	c := &counter{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"value":[]}`)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *counter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// TestPageURLWidensTheSimulatorsSelection checks the widening end to end:
// events just outside the requested sub-second bounds but inside the whole
// seconds around them come back, and nothing beyond.
func TestPageURLWidensTheSimulatorsSelection(t *testing.T) {
	r := newSimRig(t, graphsim.Options{Seed: 1})
	base := r.clk.Now().Add(-10 * time.Minute) // a whole second
	rng := rand.New(rand.NewPCG(1, 2))
	offsets := map[string]time.Duration{
		"before":      -100 * time.Nanosecond,
		"floor":       0,
		"below-from":  500 * time.Millisecond,
		"inside":      5 * time.Second,
		"above-to":    10*time.Second + 200*time.Millisecond,
		"ceiling":     11 * time.Second,
		"after-ceil":  11*time.Second + 100*time.Nanosecond,
		"much-later":  time.Minute,
		"much-before": -time.Minute,
	}
	ids := map[string]string{}
	for name, off := range offsets {
		id := graphsim.NewID(rng)
		ids[id] = name
		created := base.Add(off)
		r.sim.Add(graphsim.Event{ID: id, Created: created, Visible: created, JSON: graphsim.SignIn(rng, id, created)})
	}
	link := signinsURL(r.sim.URL(), base.Add(700*time.Millisecond), base.Add(10*time.Second+100*time.Millisecond), 100)
	resp, err := r.client.Get(context.Background(), link)
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Value []struct {
			ID string `json:"id"`
		} `json:"value"`
	}
	if err := json.Unmarshal(resp.Body, &page); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range page.Value {
		got = append(got, ids[v.ID])
	}
	slices.Sort(got)
	want := []string{"above-to", "below-from", "ceiling", "floor", "inside"}
	if !slices.Equal(got, want) {
		t.Fatalf("selected %v, want %v", got, want)
	}
	if resp.RequestID == "" {
		t.Error("no request-id on a successful page")
	}
}

func TestSameOrigin(t *testing.T) {
	c, err := graph.NewClient("https://graph.microsoft.com", nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	local, err := graph.NewClient("http://127.0.0.1:8080", nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		client *graph.Client
		link   string
		want   bool
	}{
		{"same host", c, "https://graph.microsoft.com/v1.0/auditLogs/signIns?$skiptoken=abc", true},
		{"host case differs", c, "https://GRAPH.Microsoft.com/v1.0/auditLogs/signIns", true},
		{"scheme case differs", c, "HTTPS://graph.microsoft.com/v1.0/auditLogs/signIns", true},
		{"bare host", c, "https://graph.microsoft.com", true},
		{"other scheme", c, "http://graph.microsoft.com/v1.0/auditLogs/signIns", false},
		{"other port", c, "https://graph.microsoft.com:8443/v1.0/auditLogs/signIns", false},
		{"other host", c, "https://graph.microsoft.us/v1.0/auditLogs/signIns", false},
		{"host as a prefix", c, "https://graph.microsoft.com.example.net/v1.0/auditLogs/signIns", false},
		{"subdomain", c, "https://evil.graph.microsoft.com/v1.0/auditLogs/signIns", false},
		{"userinfo", c, "https://user@graph.microsoft.com/v1.0/auditLogs/signIns", false},
		{"userinfo with password", c, "https://user:pw@graph.microsoft.com/v1.0/auditLogs/signIns", false},
		{"host hidden in userinfo", c, "https://graph.microsoft.com@evil.example/v1.0/auditLogs/signIns", false},
		{"protocol-relative", c, "//graph.microsoft.com/v1.0/auditLogs/signIns", false},
		{"relative path", c, "/v1.0/auditLogs/signIns?$skiptoken=abc", false},
		{"empty", c, "", false},
		{"bad escape", c, "https://graph.microsoft.com/v1.0/%zz", false},
		{"control character", c, "https://graph.microsoft.com/v1.0/\x7f", false},
		{"missing scheme", c, "://graph.microsoft.com/v1.0", false},
		{"bad port", c, "https://graph.microsoft.com:port/v1.0", false},
		{"loopback same port", local, "http://127.0.0.1:8080/v1.0/auditLogs/signIns", true},
		{"loopback other port", local, "http://127.0.0.1:8081/v1.0/auditLogs/signIns", false},
		{"loopback no port", local, "http://127.0.0.1/v1.0/auditLogs/signIns", false},
		{"loopback by name", local, "http://localhost:8080/v1.0/auditLogs/signIns", false},
		{"loopback over https", local, "https://127.0.0.1:8080/v1.0/auditLogs/signIns", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.client.SameOrigin(tt.link); got != tt.want {
				t.Errorf("SameOrigin(%q) = %v, want %v", tt.link, got, tt.want)
			}
		})
	}
}

// TestGetRefusesForeignLinks checks that a link away from the Graph host
// is refused before anything is sent: no token request, no Graph request,
// and nothing reaches the foreign server.
func TestGetRefusesForeignLinks(t *testing.T) {
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"value":[]}`)
	})
	foreign := startCounter(t)
	own, _ := url.Parse(f.srv.URL)
	other, _ := url.Parse(foreign.srv.URL)
	tests := []struct {
		name, link string
	}{
		{"other port", foreign.srv.URL + signIns},
		{"other scheme", "https://" + own.Host + signIns},
		{"other host name", "http://localhost:" + own.Port() + signIns},
		{"userinfo", "http://user:pw@" + own.Host + signIns},
		{"host hidden in userinfo", "http://" + own.Host + "@" + other.Host + signIns},
		{"relative", signIns},
		{"unparseable", f.srv.URL + "/v1.0/%zz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, tokens := f.client(t)
			resp, err := c.Get(context.Background(), tt.link)
			var oe *graph.OriginError
			if !errors.As(err, &oe) {
				t.Fatalf("Get = %v, %v; want *graph.OriginError", resp, err)
			}
			if resp != nil {
				t.Errorf("a response came with the origin error")
			}
			if oe.Link != tt.link || oe.Host != f.srv.URL {
				t.Errorf("OriginError{Link: %q, Host: %q}", oe.Link, oe.Host)
			}
			if !strings.Contains(err.Error(), "not followed") || !strings.Contains(err.Error(), f.srv.URL) {
				t.Errorf("message: %s", err)
			}
			if tokens.Fetches+tokens.Failures != 0 {
				t.Errorf("a token was requested for a refused link")
			}
		})
	}
	if tok, g := f.counts(); tok != 0 || g != 0 {
		t.Errorf("the Graph host saw %d token and %d Graph requests", tok, g)
	}
	if n := foreign.count(); n != 0 {
		t.Errorf("the foreign server saw %d requests", n)
	}
}

// TestGetSendsTheTokenOnlyToGraph checks the happy path's headers and that
// a redirect to another host is not followed, so the token stays put.
func TestGetSendsTheTokenOnlyToGraph(t *testing.T) {
	foreign := startCounter(t)
	tests := []struct {
		name       string
		status     int
		wantStatus int
	}{
		{"200", http.StatusOK, 0},
		{"302 to another host", http.StatusFound, http.StatusFound},
		{"307 to another host", http.StatusTemporaryRedirect, http.StatusTemporaryRedirect},
		{"308 to another host", http.StatusPermanentRedirect, http.StatusPermanentRedirect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.status != http.StatusOK {
					http.Redirect(w, r, foreign.srv.URL+r.URL.RequestURI(), tt.status)
					return
				}
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				w.Header().Set("request-id", "req-1")
				_, _ = io.WriteString(w, `{"value":[]}`)
			})
			c, _ := f.client(t)
			resp, err := c.Get(context.Background(), f.srv.URL+signIns)
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if string(resp.Body) != `{"value":[]}` || resp.RequestID != "req-1" {
					t.Errorf("response %q, request-id %q", resp.Body, resp.RequestID)
				}
			} else {
				var ae *graph.APIError
				if !errors.As(err, &ae) || ae.Status != tt.wantStatus || ae.Retryable {
					t.Fatalf("Get = %v; want a non-retryable *graph.APIError with status %d", err, tt.wantStatus)
				}
			}
			f.mu.Lock()
			auths, accepts := slices.Clone(f.auths), slices.Clone(f.accepts)
			f.mu.Unlock()
			if !slices.Equal(auths, []string{"Bearer fake-token-1"}) || !slices.Equal(accepts, []string{"application/json"}) {
				t.Errorf("Graph saw Authorization %q and Accept %q", auths, accepts)
			}
		})
	}
	if n := foreign.count(); n != 0 {
		t.Errorf("a redirect was followed: the foreign server saw %d requests", n)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		v    string
		want time.Duration
	}{
		{"fractional", "2.128", 2128 * time.Millisecond},
		{"millisecond", "0.001", time.Millisecond},
		{"integer", "1", time.Second},
		{"integer with spaces", " 30 ", 30 * time.Second},
		{"one hour", "3600", time.Hour},
		{"HTTP date", now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{"HTTP date in RFC 850 form", now.Add(90 * time.Second).Format(time.RFC850), 90 * time.Second},
		{"HTTP date in asctime form", now.Add(2 * time.Minute).Format(time.ANSIC), 2 * time.Minute},
		{"HTTP date capped at an hour", now.Add(3 * time.Hour).Format(http.TimeFormat), time.Hour},
		{"HTTP date now", now.Format(http.TimeFormat), 0},
		{"HTTP date in the past", now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"zero", "0", 0},
		{"negative", "-1", 0},
		{"negative fraction", "-0.5", 0},
		{"empty", "", 0},
		{"blank", "   ", 0},
		{"garbage", "soon", 0},
		{"unit suffix", "5s", 0},
		{"infinity", "+Inf", 0},
		{"date without zone", "2026-03-02 08:00:30", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := graph.ParseRetryAfter(tt.v, now); got != tt.want {
				t.Errorf("ParseRetryAfter(%q) = %v, want %v", tt.v, got, tt.want)
			}
		})
	}
}

// TestParseRetryAfterNaN: ParseFloat reads "NaN" as a number, and NaN
// passes both range checks (every comparison with NaN is false).
func TestParseRetryAfterNaN(t *testing.T) {
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	for _, v := range []string{"NaN", "nan", "+NaN"} {
		if got := graph.ParseRetryAfter(v, now); got != 0 {
			t.Errorf("ParseRetryAfter(%q) = %v, want 0", v, got)
		}
	}
}

// TestAPIErrorsFromSimulator checks the typed error for each of Graph's
// failure answers as the simulator renders them.
func TestAPIErrorsFromSimulator(t *testing.T) {
	tests := []struct {
		name          string
		faults        graphsim.Faults
		link          func(r *simRig) string
		status        int
		code          string
		retryable     bool
		retryAfterMin time.Duration
		retryAfterMax time.Duration
		fix           string // a fragment of Fix(), "" for none
	}{
		{name: "429", faults: graphsim.Faults{Rate429: 1}, status: 429, code: "TooManyRequests", retryable: true,
			retryAfterMin: 100 * time.Millisecond, retryAfterMax: 2 * time.Second},
		{name: "503", faults: graphsim.Faults{Rate503: 1}, status: 503, code: "serviceNotAvailable", retryable: true,
			retryAfterMin: time.Second, retryAfterMax: time.Second},
		{name: "500", faults: graphsim.Faults{Rate500: 1}, status: 500, code: "generalException", retryable: true},
		{name: "504", faults: graphsim.Faults{Rate504: 1}, status: 504, code: "UnknownError", retryable: true},
		{name: "licence 403", faults: graphsim.Faults{Licence403: true}, status: 403,
			code: "Authentication_RequestFromNonPremiumTenantOrB2CTenant", fix: "P1 or P2"},
		{name: "permission 403", faults: graphsim.Faults{Permission403: true}, status: 403,
			code: "Authentication_MSGraphPermissionMissing", fix: "AuditLog.Read.All"},
		{name: "bad filter", status: 400, code: "BadRequest", fix: "page_size",
			link: func(r *simRig) string { return r.sim.URL() + signIns + "?$filter=id%20eq%20'x'" }},
		{name: "page size too large", status: 400, code: "BadRequest", fix: "page_size",
			link: func(r *simRig) string {
				now := r.clk.Now()
				return signinsURL(r.sim.URL(), now.Add(-time.Hour), now, 1001)
			}},
		{name: "unknown path", status: 404, code: "ResourceNotFound", fix: "graph_host",
			link: func(r *simRig) string { return r.sim.URL() + "/v1.0/auditLogs/signInz" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSimRig(t, graphsim.Options{Seed: 7, Faults: tt.faults})
			link := r.firstPage()
			if tt.link != nil {
				link = tt.link(r)
			}
			resp, err := r.client.Get(context.Background(), link)
			var ae *graph.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("Get = %v, %v; want *graph.APIError", resp, err)
			}
			if ae.Status != tt.status || ae.Code != tt.code || ae.Retryable != tt.retryable {
				t.Errorf("got status %d code %q retryable %v; want %d %q %v", ae.Status, ae.Code, ae.Retryable, tt.status, tt.code, tt.retryable)
			}
			if ae.RetryAfter < tt.retryAfterMin || ae.RetryAfter > tt.retryAfterMax {
				t.Errorf("RetryAfter %v, want in [%v, %v]", ae.RetryAfter, tt.retryAfterMin, tt.retryAfterMax)
			}
			if ae.RequestID == "" || ae.Message == "" {
				t.Errorf("RequestID %q, Message %q: both must be set", ae.RequestID, ae.Message)
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprintf("HTTP %d %s: ", tt.status, tt.code)) || !strings.Contains(msg, "(request-id "+ae.RequestID+")") {
				t.Errorf("Error() = %s", msg)
			}
			if tt.fix != "" && !strings.Contains(ae.Fix(), tt.fix) {
				t.Errorf("Fix() = %q, want it to mention %q", ae.Fix(), tt.fix)
			}
			if tt.retryable && ae.Fix() != "" {
				t.Errorf("a retryable error has a Fix: %q", ae.Fix())
			}
			if st := r.sim.Stats(); st.ByStatus[tt.status] != 1 || st.Unauthorized != 0 {
				t.Errorf("simulator saw %v; want exactly one %d", st.ByStatus, tt.status)
			}
		})
	}
}

// TestThrottleRetryAfterFollowsTheClock checks that the simulator's rate
// limit is reported with the exact wait the window still imposes.
func TestThrottleRetryAfterFollowsTheClock(t *testing.T) {
	r := newSimRig(t, graphsim.Options{Seed: 2, Throttle: true})
	link := r.firstPage()
	for i := range 5 {
		if _, err := r.client.Get(context.Background(), link); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
	}
	steps := []struct {
		advance time.Duration
		wait    time.Duration // 0: the request goes through
	}{
		{0, 10 * time.Second},
		{3500 * time.Millisecond, 6500 * time.Millisecond},
		{6499 * time.Millisecond, time.Millisecond},
		{time.Millisecond, 0},
	}
	for i, s := range steps {
		r.clk.Advance(s.advance)
		_, err := r.client.Get(context.Background(), link)
		var ae *graph.APIError
		switch {
		case s.wait == 0 && err != nil:
			t.Fatalf("step %d: %v", i, err)
		case s.wait != 0 && (!errors.As(err, &ae) || ae.Status != 429 || ae.RetryAfter != s.wait || !ae.Retryable):
			t.Fatalf("step %d: Get = %v (RetryAfter %v); want 429 with Retry-After %v", i, err, retryAfter(err), s.wait)
		}
	}
	if st := r.sim.Stats(); st.Throttled != 3 || st.Pages != 6 {
		t.Errorf("simulator stats %+v", st)
	}
}

func retryAfter(err error) time.Duration {
	var ae *graph.APIError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return -1
}

// TestAPIErrorFromOtherBodies covers error answers that are not Graph's
// usual envelope: proxies' HTML pages, request ids only in the body, long
// messages, and Retry-After as a date.
func TestAPIErrorFromOtherBodies(t *testing.T) {
	long := strings.Repeat("x", 1000)
	tests := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		wantCode   string
		wantMsg    string
		wantReqID  string
		retryable  bool
		retryAfter time.Duration
	}{
		{
			name: "HTML from a proxy", status: 502,
			header:  map[string]string{"Content-Type": "text/html", "request-id": "rid-header"},
			body:    "<html><body>Bad gateway</body></html>",
			wantMsg: "Bad Gateway", wantReqID: "rid-header", retryable: true,
		},
		{
			name: "empty body", status: 500,
			wantMsg: "Internal Server Error", retryable: true,
		},
		{
			name: "request id only in the body", status: 404,
			header:   map[string]string{"Content-Type": "application/json"},
			body:     `{"error":{"code":"ResourceNotFound","message":"Resource not found","innerError":{"request-id":"rid-body"}}}`,
			wantCode: "ResourceNotFound", wantMsg: "Resource not found", wantReqID: "rid-body",
		},
		{
			name: "header request id wins over the body's", status: 404,
			header:   map[string]string{"Content-Type": "application/json", "request-id": "rid-header"},
			body:     `{"error":{"code":"ResourceNotFound","message":"m","innerError":{"request-id":"rid-body"}}}`,
			wantCode: "ResourceNotFound", wantMsg: "m", wantReqID: "rid-header",
		},
		{
			name: "long message cut at 300 bytes", status: 400,
			header:   map[string]string{"Content-Type": "application/json"},
			body:     `{"error":{"code":"BadRequest","message":"` + long + `"}}`,
			wantCode: "BadRequest", wantMsg: long[:300] + "…",
		},
		{
			name: "429 with an HTTP date", status: 429,
			header:  map[string]string{"Retry-After": "Mon, 02 Mar 2026 08:00:45 GMT"},
			wantMsg: "Too Many Requests", retryable: true, retryAfter: 45 * time.Second,
		},
		{
			name: "503 with fractional seconds", status: 503,
			header:  map[string]string{"Retry-After": "0.25"},
			wantMsg: "Service Unavailable", retryable: true, retryAfter: 250 * time.Millisecond,
		},
		{
			name: "Retry-After is ignored on a 4xx other than 429", status: 400,
			header:  map[string]string{"Retry-After": "5"},
			wantMsg: "Bad Request",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			c, _ := f.client(t)
			c.Now = newClock().Now
			_, err := c.Get(context.Background(), f.srv.URL+signIns)
			var ae *graph.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("Get = %v; want *graph.APIError", err)
			}
			want := graph.APIError{Status: tt.status, Code: tt.wantCode, Message: tt.wantMsg, RequestID: tt.wantReqID, Retryable: tt.retryable, RetryAfter: tt.retryAfter}
			if *ae != want {
				t.Errorf("got  %+v\nwant %+v", *ae, want)
			}
		})
	}
}

func TestUnexpectedContentType(t *testing.T) {
	tests := []struct {
		contentType string
		ok          bool
	}{
		{"application/json", true},
		{"application/json; charset=utf-8", true},
		{"Application/JSON; odata.metadata=minimal", true},
		{"text/html; charset=utf-8", false},
		{"text/plain", false},
		{"application/problem+json", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.contentType, func(t *testing.T) {
			f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = []string{tt.contentType}
				w.Header().Set("request-id", "rid")
				_, _ = io.WriteString(w, `{"value":[]}`)
			})
			c, _ := f.client(t)
			resp, err := c.Get(context.Background(), f.srv.URL+signIns)
			if tt.ok {
				if err != nil || string(resp.Body) != `{"value":[]}` {
					t.Fatalf("Get = %v, %v", resp, err)
				}
				return
			}
			var ae *graph.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("Get = %v, %v; want *graph.APIError", resp, err)
			}
			if ae.Status != 200 || ae.Code != "UnexpectedContentType" || !ae.Retryable || ae.RequestID != "rid" || !strings.Contains(ae.Message, "not JSON") {
				t.Errorf("got %+v", *ae)
			}
		})
	}
}

// TestTruncatedBody pins what a body cut short looks like: the simulator
// declares the full Content-Length and stops halfway, so the connection
// closes early and the read fails with io.ErrUnexpectedEOF. The client
// returns a TransportError, never the half body.
func TestTruncatedBody(t *testing.T) {
	r := newSimRig(t, graphsim.Options{Seed: 3, Faults: graphsim.Faults{RateTruncated: 1}})
	rng := rand.New(rand.NewPCG(3, 4))
	now := r.clk.Now()
	r.sim.Add(graphsim.Generate(rng, now.Add(-30*time.Minute), now.Add(-time.Minute), 20, nil)...)
	resp, err := r.client.Get(context.Background(), r.firstPage())
	var te *graph.TransportError
	if !errors.As(err, &te) {
		t.Fatalf("Get = %v, %v; want *graph.TransportError", resp, err)
	}
	if resp != nil {
		t.Error("a response came with the transport error")
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("error %v does not wrap io.ErrUnexpectedEOF", err)
	}
	if te.RequestID == "" {
		t.Error("the request-id of the cut response is lost")
	}
	if !strings.Contains(err.Error(), "reading the response body") {
		t.Errorf("message: %s", err)
	}
	if st := r.sim.Stats(); st.Truncated != 1 || st.Pages != 0 {
		t.Errorf("simulator stats %+v", st)
	}
}

// TestExpiredTokenIsRefreshedOnce makes the simulator's clock pass the
// token's lifetime while the client still holds it: Graph answers 401, and
// Get fetches exactly one new token and succeeds.
func TestExpiredTokenIsRefreshedOnce(t *testing.T) {
	r := newSimRig(t, graphsim.Options{Seed: 4, TokenLifetime: 10 * time.Minute})
	link := r.firstPage()
	if _, err := r.client.Get(context.Background(), link); err != nil {
		t.Fatal(err)
	}
	before := r.sim.Stats()
	r.clk.Advance(10*time.Minute + time.Second)
	if _, err := r.client.Get(context.Background(), link); err != nil {
		t.Fatalf("Get after expiry: %v", err)
	}
	after := r.sim.Stats()
	if d := after.Tokens - before.Tokens; d != 1 {
		t.Errorf("%d tokens issued, want 1", d)
	}
	if d := after.Unauthorized - before.Unauthorized; d != 1 {
		t.Errorf("%d 401s, want 1", d)
	}
	if d := after.Pages - before.Pages; d != 1 {
		t.Errorf("%d pages, want 1", d)
	}
	if r.tokens.Fetches != 2 || r.tokens.Failures != 0 {
		t.Errorf("token source: %d fetches, %d failures", r.tokens.Fetches, r.tokens.Failures)
	}
}

// TestTokenRefusedTwice checks that a Graph host that refuses every token
// is asked exactly twice, each time with a different token.
func TestTokenRefusedTwice(t *testing.T) {
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("request-id", "rid")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"code":"InvalidAuthenticationToken","message":"Access token validation failure."}}`)
	})
	c, tokens := f.client(t)
	_, err := c.Get(context.Background(), f.srv.URL+signIns)
	var ae *graph.APIError
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Code != "InvalidAuthenticationToken" || ae.Retryable {
		t.Fatalf("Get = %v; want a non-retryable 401 InvalidAuthenticationToken", err)
	}
	if !strings.Contains(ae.Fix(), "graph_host and authority_host") {
		t.Errorf("Fix() = %q", ae.Fix())
	}
	f.mu.Lock()
	auths := slices.Clone(f.auths)
	f.mu.Unlock()
	if !slices.Equal(auths, []string{"Bearer fake-token-1", "Bearer fake-token-2"}) {
		t.Errorf("Graph saw %q", auths)
	}
	if tokens.Fetches != 2 {
		t.Errorf("%d token fetches, want 2", tokens.Fetches)
	}
}

// TestTokenFailureSendsNoGraphRequest checks that a refused or failed token
// request surfaces as *auth.Error and that Graph is not asked without one.
func TestTokenFailureSendsNoGraphRequest(t *testing.T) {
	t.Run("wrong secret", func(t *testing.T) {
		r := newSimRig(t, graphsim.Options{Seed: 5})
		tr := transport(t)
		tokens := auth.New(auth.Credentials{
			TenantID: graphsim.DefaultTenantID, ClientID: graphsim.DefaultClientID, Secret: "not-the-secret",
			AuthorityHost: r.sim.URL(), Scope: r.sim.URL() + "/.default", HTTPClient: &http.Client{Transport: tr},
		})
		c, err := graph.NewClient(r.sim.URL(), tokens, tr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Get(context.Background(), r.firstPage())
		var ae *auth.Error
		if !errors.As(err, &ae) || ae.Code != "AADSTS7000215" || ae.Temporary {
			t.Fatalf("Get = %v; want *auth.Error AADSTS7000215", err)
		}
		if st := r.sim.Stats(); st.Requests != 1 || st.TokenErrors != 1 {
			t.Errorf("simulator saw %d requests (%d token errors); want only the token request", st.Requests, st.TokenErrors)
		}
	})
	t.Run("unreachable authority", func(t *testing.T) {
		graphHost := startCounter(t)
		tr := transport(t)
		tokens := auth.New(auth.Credentials{
			TenantID: fakeTenant, ClientID: "client", Secret: "secret",
			AuthorityHost: "http://" + closedPort(t), Scope: graphHost.srv.URL + "/.default", HTTPClient: &http.Client{Transport: tr},
		})
		c, err := graph.NewClient(graphHost.srv.URL, tokens, tr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Get(context.Background(), graphHost.srv.URL+signIns)
		var ae *auth.Error
		if !errors.As(err, &ae) || !ae.Temporary || ae.Status != 0 {
			t.Fatalf("Get = %v; want a temporary *auth.Error", err)
		}
		if n := graphHost.count(); n != 0 {
			t.Errorf("Graph saw %d requests", n)
		}
	})
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestCanceledContext(t *testing.T) {
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"value":[]}`)
	})
	c, _ := f.client(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Get(ctx, f.srv.URL+signIns)
	var te *graph.TransportError
	if !errors.As(err, &te) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Get = %v; want a *graph.TransportError wrapping context.Canceled", err)
	}
	if strings.Contains(err.Error(), "fake-token") {
		t.Errorf("the token appears in the error: %s", err)
	}
	if _, g := f.counts(); g != 0 {
		t.Errorf("Graph saw %d requests", g)
	}
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// TestResponseOverMaxBodyIsRefused streams one byte more than MaxBody.
func TestResponseOverMaxBodyIsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 100 MiB through loopback and buffers it")
	}
	if raceEnabled() {
		// The limit is not about concurrency, and instrumented copies of
		// 100 MiB take longer than the rest of the package together.
		t.Skip("buffering 100 MiB under the race detector takes about 10 s; run without -race")
	}
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("request-id", "rid-big")
		w.Header().Set("Content-Length", fmt.Sprint(graph.MaxBody+1))
		chunk := make([]byte, 1<<20)
		for i := range chunk {
			chunk[i] = ' '
		}
		for range graph.MaxBody / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		_, _ = w.Write([]byte{' '})
	})
	c, _ := f.client(t)
	c.Timeout = time.Minute
	_, err := c.Get(context.Background(), f.srv.URL+signIns)
	var ae *graph.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("Get = %v; want *graph.APIError", err)
	}
	if ae.Code != "ResponseTooLarge" || ae.Status != 200 || ae.RequestID != "rid-big" || !strings.Contains(ae.Message, "100 MiB") {
		t.Errorf("got %+v", *ae)
	}
}
