package auth_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/auth"
	"github.com/in-msgraph/in_msgraph/internal/config"
	"github.com/in-msgraph/in_msgraph/internal/graphsim"
)

// httpClient returns a client with a private transport whose idle
// connections are closed before the test's servers shut down.
func httpClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// simCreds are credentials the simulator accepts.
func simCreds(t *testing.T, sim *graphsim.Server) auth.Credentials {
	return auth.Credentials{
		TenantID:      graphsim.DefaultTenantID,
		ClientID:      graphsim.DefaultClientID,
		Secret:        graphsim.DefaultClientSecret,
		AuthorityHost: sim.URL(),
		Scope:         sim.URL() + "/.default",
		HTTPClient:    httpClient(t),
		Timeout:       5 * time.Second,
	}
}

// tokenEndpoint is a hand-written token endpoint that records the form of
// every request and answers with reply (a token when reply is nil).
type tokenEndpoint struct {
	srv   *httptest.Server
	mu    sync.Mutex
	forms []map[string]string
	basic []bool
}

type reply struct {
	status      int
	contentType string
	body        string
}

func startTokenEndpoint(t *testing.T, rep *reply) *tokenEndpoint {
	t.Helper()
	e := &tokenEndpoint{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		form := map[string]string{"path": r.URL.Path, "method": r.Method}
		for k := range r.PostForm {
			form[k] = r.PostForm.Get(k)
		}
		_, _, basic := r.BasicAuth()
		e.mu.Lock()
		e.forms = append(e.forms, form)
		e.basic = append(e.basic, basic)
		n := len(e.forms)
		e.mu.Unlock()
		if rep != nil {
			w.Header().Set("Content-Type", rep.contentType)
			w.WriteHeader(rep.status)
			_, _ = io.WriteString(w, rep.body)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		fmt.Fprintf(w, `{"token_type":"Bearer","expires_in":3600,"ext_expires_in":3600,"access_token":"tok-%d"}`, n)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *tokenEndpoint) requests() []map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.forms)
}

func (e *tokenEndpoint) creds(t *testing.T) auth.Credentials {
	return auth.Credentials{
		TenantID:      "contoso.onmicrosoft.com",
		ClientID:      "client-id",
		Secret:        "s3cret-value",
		AuthorityHost: e.srv.URL,
		Scope:         "https://graph.microsoft.com/.default",
		HTTPClient:    httpClient(t),
		Timeout:       5 * time.Second,
	}
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

func TestTokenURL(t *testing.T) {
	tests := []struct {
		authority, tenant, want string
	}{
		{"https://login.microsoftonline.com", "contoso.onmicrosoft.com", "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"},
		{"https://login.microsoftonline.com/", graphsim.DefaultTenantID, "https://login.microsoftonline.com/" + graphsim.DefaultTenantID + "/oauth2/v2.0/token"},
		{"https://login.microsoftonline.us", "t", "https://login.microsoftonline.us/t/oauth2/v2.0/token"},
		{"http://127.0.0.1:9999", "t", "http://127.0.0.1:9999/t/oauth2/v2.0/token"},
	}
	for _, tt := range tests {
		c := auth.Credentials{AuthorityHost: tt.authority, TenantID: tt.tenant}
		if got := c.TokenURL(); got != tt.want {
			t.Errorf("TokenURL(%q, %q) = %q, want %q", tt.authority, tt.tenant, got, tt.want)
		}
	}
}

func TestTokenFromSimulator(t *testing.T) {
	tests := []struct {
		name     string
		opts     graphsim.Options
		edit     func(*auth.Credentials)
		lifetime time.Duration
		margin   time.Duration // how much earlier than Entra's expiry the token is dropped
	}{
		{name: "defaults", lifetime: time.Hour, margin: 5 * time.Minute},
		{name: "short lifetime keeps a tenth", opts: graphsim.Options{TokenLifetime: 10 * time.Minute},
			lifetime: 10 * time.Minute, margin: time.Minute},
		{name: "very short lifetime", opts: graphsim.Options{TokenLifetime: 100 * time.Second},
			lifetime: 100 * time.Second, margin: 10 * time.Second},
		{name: "long lifetime is capped at five minutes early", opts: graphsim.Options{TokenLifetime: 24 * time.Hour},
			lifetime: 24 * time.Hour, margin: 5 * time.Minute},
		{name: "tenant as a domain", opts: graphsim.Options{TenantAliases: []string{"contoso.onmicrosoft.com"}},
			edit:     func(c *auth.Credentials) { c.TenantID = "contoso.onmicrosoft.com" },
			lifetime: time.Hour, margin: 5 * time.Minute},
		{name: "secret that needs form encoding", opts: graphsim.Options{ClientSecret: "a+b/c=d&e%f g~"},
			edit:     func(c *auth.Credentials) { c.Secret = "a+b/c=d&e%f g~" },
			lifetime: time.Hour, margin: 5 * time.Minute},
		{name: "public Graph scope", edit: func(c *auth.Credentials) { c.Scope = "https://graph.microsoft.com/.default" },
			lifetime: time.Hour, margin: 5 * time.Minute},
		{name: "authority with a trailing slash", edit: func(c *auth.Credentials) { c.AuthorityHost += "/" },
			lifetime: time.Hour, margin: 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := graphsim.Start(t, tt.opts)
			creds := simCreds(t, sim)
			if tt.edit != nil {
				tt.edit(&creds)
			}
			s := auth.New(creds)
			before := time.Now()
			tok, err := s.Token()
			after := time.Now()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(tok.AccessToken, "gsim.") || tok.Type() != "Bearer" || !tok.Valid() {
				t.Errorf("token %q of type %q, valid %v", tok.AccessToken, tok.Type(), tok.Valid())
			}
			// Expiry is Entra's expiry less the margin; the wall clock
			// moved between before and after, so allow that span.
			lo := before.Add(tt.lifetime - tt.margin - time.Second)
			hi := after.Add(tt.lifetime - tt.margin + time.Second)
			if tok.Expiry.Before(lo) || tok.Expiry.After(hi) {
				t.Errorf("expiry %v is %v from now, want about %v", tok.Expiry, tok.Expiry.Sub(after), tt.lifetime-tt.margin)
			}
			if s.Fetches != 1 || s.Failures != 0 {
				t.Errorf("%d fetches, %d failures", s.Fetches, s.Failures)
			}
			if st := sim.Stats(); st.Tokens != 1 || st.TokenErrors != 0 {
				t.Errorf("simulator issued %d tokens, refused %d", st.Tokens, st.TokenErrors)
			}
		})
	}
}

// TestTokenErrorsFromSimulator checks the classification of Entra's
// refusals as the simulator renders them.
func TestTokenErrorsFromSimulator(t *testing.T) {
	const wrongSecret = "Wr0ng~Secret.Value_123"
	tests := []struct {
		name string
		edit func(*auth.Credentials)
		code string
		fix  string // a fragment of Fix
	}{
		{"wrong secret", func(c *auth.Credentials) { c.Secret = wrongSecret }, "AADSTS7000215", "Value"},
		{"unknown client", func(c *auth.Credentials) { c.ClientID = "99999999-0000-0000-0000-000000000000" }, "AADSTS700016", "client_id"},
		{"unknown tenant", func(c *auth.Credentials) { c.TenantID = "00000000-0000-0000-0000-000000000000" }, "AADSTS90002", "tenant_id"},
		{"scope of another host", func(c *auth.Credentials) { c.Scope = "https://graph.example.net/.default" }, "AADSTS70011", "graph_host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := graphsim.Start(t, graphsim.Options{})
			creds := simCreds(t, sim)
			tt.edit(&creds)
			s := auth.New(creds)
			tok, err := s.Token()
			var ae *auth.Error
			if !errors.As(err, &ae) {
				t.Fatalf("Token = %v, %v; want *auth.Error", tok, err)
			}
			if ae.Code != tt.code || ae.Status != http.StatusBadRequest || ae.Temporary {
				t.Errorf("got code %q status %d temporary %v; want %q 400 false", ae.Code, ae.Status, ae.Temporary, tt.code)
			}
			if !strings.Contains(ae.Fix, tt.fix) {
				t.Errorf("Fix %q does not mention %q", ae.Fix, tt.fix)
			}
			// Entra's trace, correlation and timestamp tail is dropped.
			if !strings.HasPrefix(ae.Cause, tt.code+": ") || strings.Contains(ae.Cause, "Trace ID") || strings.Contains(ae.Cause, "Timestamp") {
				t.Errorf("Cause %q", ae.Cause)
			}
			msg := err.Error()
			if want := "token request failed with " + tt.code + " (HTTP 400): " + ae.Cause + "; " + ae.Fix; msg != want {
				t.Errorf("Error() = %q\nwant      %q", msg, want)
			}
			if strings.Contains(msg, creds.Secret) {
				t.Errorf("the secret appears in %q", msg)
			}
			if s.Fetches != 0 || s.Failures != 1 {
				t.Errorf("%d fetches, %d failures", s.Fetches, s.Failures)
			}
		})
	}
}

// TestTokenErrorsFromOtherAnswers covers answers the simulator does not
// give: a secret echoed back, server errors, bodies without a description.
func TestTokenErrorsFromOtherAnswers(t *testing.T) {
	const secret = "s3cret-value"
	entra := func(code, desc string) string {
		return fmt.Sprintf(`{"error":%q,"error_description":%q,"error_codes":[0]}`, code, desc)
	}
	tests := []struct {
		name      string
		rep       reply
		status    int
		code      string
		cause     string
		fix       string // a fragment of Fix, "" for none
		temporary bool
	}{
		{
			name:   "secret echoed in the description",
			rep:    reply{401, "application/json", entra("invalid_client", "AADSTS7000215: Invalid client secret '"+secret+"' provided. Trace ID: 1")},
			status: 401, code: "AADSTS7000215", cause: "AADSTS7000215: Invalid client secret '(redacted)' provided.", fix: "Value",
		},
		{
			name:   "expired secret, description on several lines",
			rep:    reply{401, "application/json", entra("invalid_client", "AADSTS7000222: The provided client secret keys are expired.\r\nTrace ID: 1\r\nCorrelation ID: 2")},
			status: 401, code: "AADSTS7000222", cause: "AADSTS7000222: The provided client secret keys are expired.", fix: "expired",
		},
		{
			name:   "Conditional Access",
			rep:    reply{400, "application/json", entra("invalid_grant", "AADSTS53003: Access has been blocked by Conditional Access policies.")},
			status: 400, code: "AADSTS53003", cause: "AADSTS53003: Access has been blocked by Conditional Access policies.", fix: "Conditional Access",
		},
		{
			name:   "unknown AADSTS code",
			rep:    reply{400, "application/json", entra("invalid_request", "AADSTS1234567: Something new.")},
			status: 400, code: "AADSTS1234567", cause: "AADSTS1234567: Something new.", fix: "check tenant_id, client_id and the client secret",
		},
		{
			name:   "error code without description",
			rep:    reply{400, "application/json", `{"error":"invalid_request"}`},
			status: 400, cause: "invalid_request", fix: "check tenant_id, client_id and the client secret",
		},
		{
			name:   "HTML error page",
			rep:    reply{400, "text/html", "<html>nope</html>"},
			status: 400, cause: "the token endpoint answered without an error description", fix: "check tenant_id",
		},
		{
			name:   "503 is temporary",
			rep:    reply{503, "application/json", entra("temporarily_unavailable", "AADSTS90033: A transient error has occurred.")},
			status: 503, code: "AADSTS90033", cause: "AADSTS90033: A transient error has occurred.", temporary: true,
		},
		{
			name:   "500 without a body is temporary",
			rep:    reply{500, "text/plain", ""},
			status: 500, cause: "the token endpoint answered without an error description", temporary: true,
		},
		{
			name:   "429 is temporary",
			rep:    reply{429, "application/json", entra("temporarily_unavailable", "AADSTS50196: The server terminated an operation because it encountered a client request loop.")},
			status: 429, code: "AADSTS50196", cause: "AADSTS50196: The server terminated an operation because it encountered a client request loop.", temporary: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startTokenEndpoint(t, &tt.rep)
			s := auth.New(e.creds(t))
			_, err := s.Token()
			var ae *auth.Error
			if !errors.As(err, &ae) {
				t.Fatalf("Token error %v; want *auth.Error", err)
			}
			if ae.Status != tt.status || ae.Code != tt.code || ae.Cause != tt.cause || ae.Temporary != tt.temporary {
				t.Errorf("got  status %d code %q cause %q temporary %v\nwant status %d code %q cause %q temporary %v",
					ae.Status, ae.Code, ae.Cause, ae.Temporary, tt.status, tt.code, tt.cause, tt.temporary)
			}
			if tt.fix == "" && ae.Fix != "" || !strings.Contains(ae.Fix, tt.fix) {
				t.Errorf("Fix %q, want one mentioning %q", ae.Fix, tt.fix)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the secret appears in %q", err)
			}
		})
	}
}

func TestUnreachableAuthority(t *testing.T) {
	creds := auth.Credentials{
		TenantID:      "contoso.onmicrosoft.com",
		ClientID:      "client-id",
		Secret:        "s3cret-value",
		AuthorityHost: "http://" + closedPort(t),
		Scope:         "https://graph.microsoft.com/.default",
		HTTPClient:    httpClient(t),
		Timeout:       5 * time.Second,
	}
	s := auth.New(creds)
	_, err := s.Token()
	var ae *auth.Error
	if !errors.As(err, &ae) {
		t.Fatalf("Token error %v; want *auth.Error", err)
	}
	if !ae.Temporary || ae.Status != 0 || ae.Code != "" || !strings.Contains(ae.Fix, "reachable") {
		t.Errorf("got %+v", *ae)
	}
	if strings.Contains(err.Error(), creds.Secret) {
		t.Errorf("the secret appears in %q", err)
	}
	if s.Failures != 1 || s.Fetches != 0 {
		t.Errorf("%d fetches, %d failures", s.Fetches, s.Failures)
	}
}

// TestRequestForm checks what is sent: the client-credentials grant with
// the credentials in the form body, not in a Basic header.
func TestRequestForm(t *testing.T) {
	e := startTokenEndpoint(t, nil)
	if _, err := auth.New(e.creds(t)).Token(); err != nil {
		t.Fatal(err)
	}
	reqs := e.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	want := map[string]string{
		"path":          "/contoso.onmicrosoft.com/oauth2/v2.0/token",
		"method":        "POST",
		"grant_type":    "client_credentials",
		"client_id":     "client-id",
		"client_secret": "s3cret-value",
		"scope":         "https://graph.microsoft.com/.default",
	}
	for k, v := range want {
		if reqs[0][k] != v {
			t.Errorf("%s = %q, want %q", k, reqs[0][k], v)
		}
	}
	e.mu.Lock()
	basic := e.basic[0]
	e.mu.Unlock()
	if basic {
		t.Error("credentials sent in a Basic header")
	}
}

func TestCachedTokenIsReused(t *testing.T) {
	sim := graphsim.Start(t, graphsim.Options{})
	s := auth.New(simCreds(t, sim))
	steps := []struct {
		invalidate  bool
		wantFetches int
		sameAsLast  bool
	}{
		{false, 1, false},
		{false, 1, true},
		{false, 1, true},
		{true, 2, false},
		{false, 2, true},
		{true, 3, false},
		{true, 4, false}, // Invalidate twice in a row costs one fetch each
	}
	last := ""
	for i, st := range steps {
		if st.invalidate {
			s.Invalidate()
		}
		tok, err := s.Token()
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if s.Fetches != st.wantFetches {
			t.Errorf("step %d: %d fetches, want %d", i, s.Fetches, st.wantFetches)
		}
		if (tok.AccessToken == last) != st.sameAsLast {
			t.Errorf("step %d: token reused %v, want %v", i, tok.AccessToken == last, st.sameAsLast)
		}
		last = tok.AccessToken
	}
	if got := sim.Stats().Tokens; got != 4 {
		t.Errorf("simulator issued %d tokens, want 4", got)
	}
}

// TestConcurrentCallersShareOneFetch runs Token from many goroutines, as
// several collect callbacks might, and expects a single token request.
func TestConcurrentCallersShareOneFetch(t *testing.T) {
	sim := graphsim.Start(t, graphsim.Options{})
	s := auth.New(simCreds(t, sim))
	const n = 8
	toks := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tok, err := s.Token()
			errs[i] = err
			if err == nil {
				toks[i] = tok.AccessToken
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || toks[i] != toks[0] {
			t.Fatalf("caller %d: token %q, error %v; want %q", i, toks[i], errs[i], toks[0])
		}
	}
	if s.Fetches != 1 || sim.Stats().Tokens != 1 {
		t.Errorf("%d fetches, %d issued; want 1", s.Fetches, sim.Stats().Tokens)
	}
	// Invalidate racing with Token is safe, and every caller gets a token.
	for range n {
		wg.Go(func() {
			s.Invalidate()
			if _, err := s.Token(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

func writeSecret(t *testing.T, path, secret string) {
	t.Helper()
	// A trailing newline, as `echo` and editors leave it.
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSecretFileRotation rotates the secret file under a cached token: the
// cache keeps serving until Invalidate, then the new secret is sent.
func TestSecretFileRotation(t *testing.T) {
	e := startTokenEndpoint(t, nil)
	path := filepath.Join(t.TempDir(), "secret")
	writeSecret(t, path, "old-secret")
	creds := e.creds(t)
	creds.Secret = ""
	reads := 0
	creds.SecretFile = func() (string, error) {
		reads++
		return config.ReadSecretFile(path)
	}
	s := auth.New(creds)
	first, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	writeSecret(t, path, "new-secret")
	cached, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	if cached.AccessToken != first.AccessToken || reads != 1 {
		t.Errorf("the cached token was not reused (%d file reads)", reads)
	}
	s.Invalidate()
	fresh, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	if fresh.AccessToken == first.AccessToken || reads != 2 {
		t.Errorf("Invalidate did not lead to a fetch (%d file reads)", reads)
	}
	var sent []string
	for _, r := range e.requests() {
		sent = append(sent, r["client_secret"])
	}
	if !slices.Equal(sent, []string{"old-secret", "new-secret"}) {
		t.Errorf("secrets sent: %q", sent)
	}
}

// TestSecretFileFixedAfterRefusal replaces a wrong secret in the file: the
// refusal is not cached, so the next Token reads the file again and the
// simulator, which knows only the new secret, accepts it.
func TestSecretFileFixedAfterRefusal(t *testing.T) {
	sim := graphsim.Start(t, graphsim.Options{ClientSecret: "new-secret"})
	path := filepath.Join(t.TempDir(), "secret")
	writeSecret(t, path, "old-secret")
	creds := simCreds(t, sim)
	creds.Secret = ""
	creds.SecretFile = func() (string, error) { return config.ReadSecretFile(path) }
	s := auth.New(creds)
	_, err := s.Token()
	var ae *auth.Error
	if !errors.As(err, &ae) || ae.Code != "AADSTS7000215" {
		t.Fatalf("Token with the old secret: %v; want AADSTS7000215", err)
	}
	if strings.Contains(err.Error(), "old-secret") {
		t.Errorf("the secret appears in %q", err)
	}
	writeSecret(t, path, "new-secret")
	if _, err := s.Token(); err != nil {
		t.Fatalf("Token with the new secret: %v", err)
	}
	if s.Fetches != 1 || s.Failures != 1 {
		t.Errorf("%d fetches, %d failures", s.Fetches, s.Failures)
	}
	if st := sim.Stats(); st.Tokens != 1 || st.TokenErrors != 1 {
		t.Errorf("simulator issued %d, refused %d", st.Tokens, st.TokenErrors)
	}
}

func TestSecretFileUnreadable(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, cause string
	}{
		{"missing", filepath.Join(dir, "missing"), "client_secret_file: cannot read the secret file"},
		{"empty", empty, "client_secret_file: the secret file " + empty + " is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startTokenEndpoint(t, nil)
			creds := e.creds(t)
			creds.Secret = ""
			creds.SecretFile = func() (string, error) { return config.ReadSecretFile(tt.path) }
			s := auth.New(creds)
			_, err := s.Token()
			var ae *auth.Error
			if !errors.As(err, &ae) {
				t.Fatalf("Token error %v; want *auth.Error", err)
			}
			if !strings.HasPrefix(ae.Cause, tt.cause) || ae.Temporary || !strings.Contains(ae.Fix, "readable") {
				t.Errorf("got %+v", *ae)
			}
			if n := len(e.requests()); n != 0 {
				t.Errorf("%d token requests sent without a secret", n)
			}
			if s.Failures != 1 {
				t.Errorf("%d failures", s.Failures)
			}
		})
	}
}
