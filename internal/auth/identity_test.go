package auth_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/in-msgraph/in_msgraph/internal/auth"
	"github.com/in-msgraph/in_msgraph/internal/graphsim"
)

// projectedToken is a service account token as kubelet projects it for
// the Azure Workload Identity webhook.
func projectedToken(t *testing.T, iss string, now time.Time, life time.Duration) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"aud": []string{"api://AzureADTokenExchange"}, "iss": iss, "sub": "system:serviceaccount:logging:fluent-bit",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(life).Unix(),
	})
	tok.Header["kid"] = "k8s-signing-key"
	s, err := tok.SignedString(graphsim.TestKey(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const aksIssuer = "https://eastus.oic.prod-aks.azure.com/tenant/cluster/"

func workloadCreds(t *testing.T, sim *graphsim.Server, file string) auth.Credentials {
	creds := simCreds(t, sim)
	creds.Kind, creds.Secret, creds.FederatedTokenFile = auth.KindWorkloadIdentity, "", file
	return creds
}

// TestWorkloadIdentityRotation exchanges the projected token, then rotates
// it as kubelet does: the cached access token is kept until Invalidate,
// after which the new file content is sent.
func TestWorkloadIdentityRotation(t *testing.T) {
	clk := graphsim.NewClock(time.Now())
	first := projectedToken(t, aksIssuer, clk.Now(), 24*time.Hour)
	sim := graphsim.Start(t, graphsim.Options{Now: clk.Now, FederatedTokens: []string{first}})
	path := filepath.Join(t.TempDir(), "azure-identity-token")
	writeSecret(t, path, first)
	s := auth.New(workloadCreds(t, sim, path))
	tok1, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}

	clk.Advance(time.Hour)
	second := projectedToken(t, aksIssuer, clk.Now(), 24*time.Hour)
	writeSecret(t, path, second)
	sim.SetFederatedTokens(second) // the old token is no longer accepted
	cached, err := s.Token()
	if err != nil || cached.AccessToken != tok1.AccessToken {
		t.Fatalf("cached token: %v, %v", cached, err)
	}
	s.Invalidate()
	tok2, err := s.Token()
	if err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if tok2.AccessToken == tok1.AccessToken {
		t.Error("Invalidate did not fetch a new token")
	}
	if st := sim.Stats(); st.ByCredential[graphsim.CredentialFederated] != 2 || st.TokenErrors != 0 {
		t.Errorf("simulator stats %+v", st)
	}
	if s.Fetches != 2 || s.Failures != 0 {
		t.Errorf("%d fetches, %d failures", s.Fetches, s.Failures)
	}
	if code := getSignIns(t, sim, http.DefaultClient, tok2.AccessToken); code != http.StatusOK {
		t.Errorf("signIns with the token: %d", code)
	}
}

func TestWorkloadIdentityErrors(t *testing.T) {
	clk := graphsim.NewClock(time.Now())
	now := clk.Now()
	expired := projectedToken(t, aksIssuer, now.Add(-25*time.Hour), 24*time.Hour)
	foreign := projectedToken(t, "https://oidc.example.com/", now, time.Hour)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name    string
		content string // written to the token file unless file is set
		file    string
		status  int
		code    string
		cause   string // a prefix of Cause
		fix     string // a fragment of Fix
		sent    bool   // whether a token request was made
	}{
		{name: "unknown opaque token", content: "not-a-registered-token", status: 401, code: "AADSTS70021", sent: true,
			cause: "AADSTS70021: No matching federated identity record found for presented assertion.",
			fix:   "add a federated credential for this service account's issuer and subject"},
		{name: "token of an unknown issuer", content: foreign, status: 401, code: "AADSTS700211", sent: true,
			cause: "AADSTS700211: No matching federated identity record found for presented assertion issuer 'https://oidc.example.com/'.",
			fix:   "add a federated credential for this service account's issuer (the cluster's OIDC issuer URL)"},
		{name: "expired projected token", content: expired, status: 401, code: "AADSTS700024", sent: true,
			cause: "AADSTS700024: Client assertion is not within its valid time range.", fix: "kubelet refreshes it"},
		{name: "missing file", file: missing,
			cause: "the federated token file " + missing + " does not exist", fix: "check that the pod has the label azure.workload.identity/use"},
		{name: "empty file", file: empty,
			cause: "the federated token file " + empty + " is empty", fix: "Azure Workload Identity webhook"},
		{name: "no file configured", file: "-",
			cause: "no federated token file is set", fix: "AZURE_FEDERATED_TOKEN_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := graphsim.Start(t, graphsim.Options{Now: clk.Now, FederatedTokens: []string{expired}})
			file := tt.file
			switch file {
			case "":
				file = filepath.Join(t.TempDir(), "token")
				writeSecret(t, file, tt.content)
			case "-":
				file = ""
			}
			s := auth.New(workloadCreds(t, sim, file))
			_, err := s.Token()
			var ae *auth.Error
			if !errors.As(err, &ae) {
				t.Fatalf("Token error %v; want *auth.Error", err)
			}
			if ae.Status != tt.status || ae.Code != tt.code || ae.Temporary || !strings.HasPrefix(ae.Cause, tt.cause) || !strings.Contains(ae.Fix, tt.fix) {
				t.Errorf("got %+v\nwant status %d code %q cause %q… fix …%q…", *ae, tt.status, tt.code, tt.cause, tt.fix)
			}
			noSecrets(t, err, tt.content, expired, foreign)
			if sent := sim.Stats().Requests > 0; sent != tt.sent {
				t.Errorf("token request sent: %v, want %v", sent, tt.sent)
			}
			if s.Failures != 1 {
				t.Errorf("%d failures", s.Failures)
			}
		})
	}
}

func imdsCreds(t *testing.T, endpoint, resource, clientID string) auth.Credentials {
	return auth.Credentials{
		Kind:         auth.KindManagedIdentity,
		ClientID:     clientID,
		IMDSEndpoint: endpoint,
		Resource:     resource,
		HTTPClient:   httpClient(t),
		Timeout:      5 * time.Second,
	}
}

func TestManagedIdentityFromSimulator(t *testing.T) {
	const user = "12345678-aaaa-bbbb-cccc-1234567890ab"
	tests := []struct {
		name     string
		lifetime time.Duration
		margin   time.Duration
		clientID string
		resource string // "" for the simulator's URL with a slash
	}{
		{name: "system-assigned", lifetime: time.Hour, margin: 5 * time.Minute},
		{name: "user-assigned", lifetime: time.Hour, margin: 5 * time.Minute, clientID: user},
		{name: "short lifetime", lifetime: 10 * time.Minute, margin: time.Minute},
		{name: "long lifetime", lifetime: 24 * time.Hour, margin: 5 * time.Minute},
		{name: "public Graph resource", lifetime: time.Hour, margin: 5 * time.Minute, resource: "https://graph.microsoft.com/"},
		{name: "US Government resource", lifetime: time.Hour, margin: 5 * time.Minute, resource: "https://graph.microsoft.us/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := graphsim.Start(t, graphsim.Options{TokenLifetime: tt.lifetime, ManagedIdentityClientIDs: []string{user}})
			resource := tt.resource
			if resource == "" {
				resource = sim.URL() + "/"
			}
			creds := imdsCreds(t, sim.URL()+graphsim.IMDSPath, resource, tt.clientID)
			s := auth.New(creds)
			before := time.Now()
			tok, err := s.Token()
			after := time.Now()
			if err != nil {
				t.Fatal(err)
			}
			// expires_on has whole seconds.
			lo := before.Add(tt.lifetime - tt.margin - 2*time.Second)
			hi := after.Add(tt.lifetime - tt.margin + time.Second)
			if tok.Expiry.Before(lo) || tok.Expiry.After(hi) || tok.Type() != "Bearer" {
				t.Errorf("expiry %v is %v from now, want about %v", tok.Expiry, tok.Expiry.Sub(after), tt.lifetime-tt.margin)
			}
			if st := sim.Stats(); st.IMDSRequests != 1 || st.IMDSTokens != 1 || st.ByCredential[graphsim.CredentialManagedIdentity] != 1 {
				t.Errorf("simulator stats %+v", st)
			}
			if code := getSignIns(t, sim, creds.HTTPClient, tok.AccessToken); code != http.StatusOK {
				t.Errorf("signIns with the token: %d", code)
			}
			// Cached until invalidated.
			if again, err := s.Token(); err != nil || again.AccessToken != tok.AccessToken {
				t.Errorf("cached token: %v %v", again, err)
			}
			s.Invalidate()
			if again, err := s.Token(); err != nil || again.AccessToken == tok.AccessToken {
				t.Errorf("after Invalidate: %v %v", again, err)
			}
			if s.Fetches != 2 {
				t.Errorf("%d fetches", s.Fetches)
			}
		})
	}
}

func TestManagedIdentityRefusals(t *testing.T) {
	sim := graphsim.Start(t, graphsim.Options{})
	tests := []struct {
		name, clientID, resource string
		code, cause, fix         string
	}{
		{"unknown user-assigned identity", "99999999-0000-0000-0000-000000000000", sim.URL() + "/", "",
			"IMDS: Identity not found", "no managed identity with this client_id is assigned to this VM or node"},
		{"resource of another service", "", "https://management.azure.com/", "AADSTS500011",
			"IMDS: AADSTS500011: The resource principal named https://management.azure.com/ was not found", "graph_host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := auth.New(imdsCreds(t, sim.URL()+graphsim.IMDSPath, tt.resource, tt.clientID)).Token()
			var ae *auth.Error
			if !errors.As(err, &ae) {
				t.Fatalf("Token error %v; want *auth.Error", err)
			}
			if ae.Status != 400 || ae.Temporary || ae.Code != tt.code || !strings.HasPrefix(ae.Cause, tt.cause) || !strings.Contains(ae.Fix, tt.fix) {
				t.Errorf("got %+v", *ae)
			}
		})
	}

	// Our client always sends the Metadata header; IMDS refuses a request
	// without it.
	resp, err := http.Get(sim.URL() + graphsim.IMDSPath + "?api-version=2018-02-01&resource=" + url.QueryEscape(sim.URL()+"/"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || string(b) != `{"error":"invalid_request","error_description":"Required metadata header not specified"}` {
		t.Errorf("without Metadata: %d %s", resp.StatusCode, b)
	}
}

// TestManagedIdentityFaults makes IMDS fail as it does while updating or
// overloaded: every failure is Temporary for the caller to back off, and
// the next Token after the fault clears succeeds.
func TestManagedIdentityFaults(t *testing.T) {
	sim := graphsim.Start(t, graphsim.Options{})
	s := auth.New(imdsCreds(t, sim.URL()+graphsim.IMDSPath, sim.URL()+"/", ""))
	for i, tc := range []struct {
		f      graphsim.IMDSFaults
		status int
	}{
		{graphsim.IMDSFaults{Rate404: 1}, 404},
		{graphsim.IMDSFaults{Rate429: 1}, 429},
		{graphsim.IMDSFaults{Rate410: 1}, 410},
		{graphsim.IMDSFaults{Rate500: 1}, 500},
	} {
		sim.SetIMDSFaults(tc.f)
		_, err := s.Token()
		var ae *auth.Error
		if !errors.As(err, &ae) || !ae.Temporary || ae.Status != tc.status || !strings.HasPrefix(ae.Cause, "IMDS: ") {
			t.Errorf("fault %d: Token error %v", tc.status, err)
		}
		if s.Failures != i+1 {
			t.Errorf("%d failures", s.Failures)
		}
	}
	sim.SetIMDSFaults(graphsim.IMDSFaults{})
	if _, err := s.Token(); err != nil {
		t.Fatalf("after the faults cleared: %v", err)
	}
	if st := sim.Stats(); st.IMDSRequests != 5 || st.IMDSTokens != 1 {
		t.Errorf("simulator stats %+v", st)
	}
}

// imdsEndpoint is a hand-written IMDS that records requests and answers
// with a fixed reply.
type imdsEndpoint struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func startIMDS(t *testing.T, rep reply, header map[string]string) *imdsEndpoint {
	t.Helper()
	e := &imdsEndpoint{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.reqs = append(e.reqs, r.Clone(r.Context()))
		e.mu.Unlock()
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", rep.contentType)
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *imdsEndpoint) requests() []*http.Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.reqs)
}

func TestManagedIdentityAnswers(t *testing.T) {
	const token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.imds-access-token.sig"
	now := time.Now()
	unix := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	tests := []struct {
		name      string
		rep       reply
		header    map[string]string
		clientID  string
		expiry    time.Duration // from now, margin included; 0 for an error
		cause     string
		fix       string
		temporary bool
		status    int
	}{
		{name: "numbers as strings", rep: reply{200, "application/json", `{"access_token":"` + token + `","expires_in":"3599","expires_on":"` + unix(time.Hour) + `","token_type":"Bearer"}`},
			expiry: time.Hour - 5*time.Minute},
		{name: "numbers as numbers", rep: reply{200, "application/json", `{"access_token":"` + token + `","expires_in":3599,"expires_on":` + unix(time.Hour) + `}`},
			expiry: time.Hour - 5*time.Minute},
		{name: "expires_on preferred", rep: reply{200, "application/json", `{"access_token":"` + token + `","expires_in":"86400","expires_on":"` + unix(20*time.Minute) + `"}`},
			expiry: 18 * time.Minute},
		{name: "expires_in alone", rep: reply{200, "application/json", `{"access_token":"` + token + `","expires_in":"600"}`},
			expiry: 9 * time.Minute},
		{name: "expires_on in the past by this clock", rep: reply{200, "application/json", `{"access_token":"` + token + `","expires_in":"3600","expires_on":"` + unix(-time.Hour) + `"}`},
			expiry: 55 * time.Minute},
		{name: "no access_token", rep: reply{200, "application/json", `{"expires_in":"3600"}`},
			status: 200, cause: "IMDS: the answer has no access_token", fix: "imds_endpoint"},
		{name: "expires_on not a number", rep: reply{200, "application/json", `{"access_token":"` + token + `","expires_in":"3600","expires_on":"` + token + `"}`},
			status: 200, cause: "IMDS: expires_on is not a number of Unix seconds", fix: "imds_endpoint"},
		{name: "expires_in not a number", rep: reply{200, "application/json", `{"access_token":"` + token + `","expires_in":"soon"}`},
			status: 200, cause: "IMDS: expires_in is not a number of seconds", fix: "imds_endpoint"},
		{name: "no expiry", rep: reply{200, "application/json", `{"access_token":"` + token + `"}`},
			status: 200, cause: "IMDS: the answer has neither expires_on nor expires_in", fix: "imds_endpoint"},
		{name: "not JSON", rep: reply{200, "text/html", `<html>` + token + `</html>`},
			status: 200, cause: "IMDS: the answer is not a token response (not JSON)", fix: "imds_endpoint"},
		{name: "no system-assigned identity", rep: reply{400, "application/json", `{"error":"invalid_request","error_description":"Identity not found"}`},
			status: 400, cause: "IMDS: Identity not found", fix: "this VM or node has no system-assigned managed identity"},
		{name: "no such user-assigned identity", clientID: "mi", rep: reply{400, "application/json", `{"error":"invalid_request","error_description":"Identity not found"}`},
			status: 400, cause: "IMDS: Identity not found", fix: "no managed identity with this client_id"},
		{name: "header stripped", rep: reply{400, "application/json", `{"error":"bad_request_102","error_description":"Required metadata header not specified"}`},
			status: 400, cause: "IMDS: Required metadata header not specified", fix: "without a proxy"},
		{name: "redirect not followed", rep: reply{302, "text/plain", ""}, header: map[string]string{"Location": "/elsewhere"},
			status: 302, cause: "IMDS answered with a redirect (HTTP 302), which is not followed", fix: "imds_endpoint"},
		{name: "forbidden", rep: reply{403, "application/json", `{"error":"forbidden"}`},
			status: 403, cause: "IMDS: forbidden", fix: "check client_id, graph_host and imds_endpoint"},
		{name: "404 while updating", rep: reply{404, "text/plain", ""}, status: 404, cause: "IMDS: no error description", temporary: true},
		{name: "410 while upgrading", rep: reply{410, "application/json", `{"error":"gone"}`}, status: 410, cause: "IMDS: gone", temporary: true},
		{name: "429", rep: reply{429, "application/json", `{"error":"too_many_requests","error_description":"Slow down.\nTrace"}`}, status: 429, cause: "IMDS: Slow down.", temporary: true},
		{name: "503", rep: reply{503, "text/plain", "busy"}, status: 503, cause: "IMDS: no error description", temporary: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startIMDS(t, tt.rep, tt.header)
			s := auth.New(imdsCreds(t, e.srv.URL+"/metadata/identity/oauth2/token?existing=1", "https://graph.microsoft.com/", tt.clientID))
			tok, err := s.Token()
			reqs := e.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests", len(reqs))
			}
			r := reqs[0]
			q := r.URL.Query()
			if r.Method != http.MethodGet || r.URL.Path != "/metadata/identity/oauth2/token" || r.Header.Get("Metadata") != "true" ||
				q.Get("api-version") != "2018-02-01" || q.Get("resource") != "https://graph.microsoft.com/" || q.Get("existing") != "1" ||
				q.Has("client_id") != (tt.clientID != "") || q.Get("client_id") != tt.clientID {
				t.Errorf("request %s %s, Metadata %q", r.Method, r.URL, r.Header.Get("Metadata"))
			}
			if tt.expiry != 0 {
				if err != nil {
					t.Fatal(err)
				}
				if d := tok.Expiry.Sub(now.Add(tt.expiry)); d < -2*time.Second || d > 2*time.Second || tok.AccessToken != token {
					t.Errorf("expiry %v from now, want %v", tok.Expiry.Sub(now), tt.expiry)
				}
				return
			}
			var ae *auth.Error
			if !errors.As(err, &ae) {
				t.Fatalf("Token = %v, %v; want *auth.Error", tok, err)
			}
			if ae.Status != tt.status || ae.Cause != tt.cause || ae.Temporary != tt.temporary || !strings.Contains(ae.Fix, tt.fix) || tt.fix == "" && ae.Fix != "" {
				t.Errorf("got  %+v\nwant status %d cause %q temporary %v fix …%q…", *ae, tt.status, tt.cause, tt.temporary, tt.fix)
			}
			noSecrets(t, err, token)
		})
	}
}

// TestManagedIdentityBypassesProxy configures a proxy on the caller's
// transport: token endpoint requests go through it, IMDS requests never.
func TestManagedIdentityBypassesProxy(t *testing.T) {
	var mu sync.Mutex
	proxied := 0
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		proxied++
		mu.Unlock()
		http.Error(w, "proxy refuses", http.StatusBadGateway)
	}))
	t.Cleanup(proxy.Close)
	pu, _ := url.Parse(proxy.URL)
	tr := &http.Transport{Proxy: http.ProxyURL(pu)}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}

	sim := graphsim.Start(t, graphsim.Options{})
	creds := imdsCreds(t, sim.URL()+graphsim.IMDSPath, sim.URL()+"/", "")
	creds.HTTPClient = client
	if _, err := auth.New(creds).Token(); err != nil {
		t.Fatalf("IMDS through a proxied client: %v", err)
	}
	mu.Lock()
	n := proxied
	mu.Unlock()
	if n != 0 {
		t.Errorf("the IMDS request went through the proxy")
	}
	// The same client sends token endpoint requests through the proxy.
	sc := simCreds(t, sim)
	sc.HTTPClient = client
	if _, err := auth.New(sc).Token(); err == nil {
		t.Error("the token request did not go through the refusing proxy")
	}
	mu.Lock()
	n = proxied
	mu.Unlock()
	if n != 1 {
		t.Errorf("%d proxied requests, want 1", n)
	}
}

func TestManagedIdentityUnreachable(t *testing.T) {
	tests := []struct {
		name, endpoint, resource string
		temporary                bool
		cause, fix               string
	}{
		{"nothing listening", "http://" + closedPort(t) + "/metadata/identity/oauth2/token", "https://graph.microsoft.com/", true,
			"IMDS: ", "managed identity works only on an Azure VM, scale set or AKS node"},
		{"endpoint not a URL", "169.254.169.254/token", "https://graph.microsoft.com/", false,
			`the IMDS endpoint "169.254.169.254/token" is not an absolute URL`, "imds_endpoint"},
		{"no resource", "http://" + closedPort(t) + "/metadata/identity/oauth2/token", "", false,
			"no resource to ask IMDS for", "graph_host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := auth.New(imdsCreds(t, tt.endpoint, tt.resource, "")).Token()
			var ae *auth.Error
			if !errors.As(err, &ae) || ae.Temporary != tt.temporary || !strings.HasPrefix(ae.Cause, tt.cause) || !strings.Contains(ae.Fix, tt.fix) {
				t.Errorf("Token error %#v", err)
			}
		})
	}
}

// TestAssertionsRedacted has the token endpoint echo the assertion in its
// error description, as a verbose proxy or a future Entra message might:
// neither a certificate assertion nor a federated token may reach the
// error text.
func TestAssertionsRedacted(t *testing.T) {
	var mu sync.Mutex
	var sent []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		a := r.PostForm.Get("client_assertion")
		mu.Lock()
		sent = append(sent, a)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"invalid_client","error_description":"AADSTS70021: No matching federated identity record found for presented assertion '`+a+`'."}`)
	}))
	t.Cleanup(srv.Close)
	p := newPKI(t)
	fed := projectedToken(t, aksIssuer, time.Now(), time.Hour)
	file := filepath.Join(t.TempDir(), "token")
	writeSecret(t, file, fed)
	base := auth.Credentials{TenantID: "t", ClientID: "c", AuthorityHost: srv.URL, Scope: "https://graph.microsoft.com/.default", HTTPClient: httpClient(t), Timeout: 5 * time.Second}
	cert, wl := base, base
	cert.Kind, cert.Certificate = auth.KindCertificate, loadCert(t, p.leaf.CertPEM, p.leaf.KeyPKCS8PEM, "", true)
	wl.Kind, wl.FederatedTokenFile = auth.KindWorkloadIdentity, file
	for i, creds := range []auth.Credentials{cert, wl} {
		_, err := auth.New(creds).Token()
		var ae *auth.Error
		if !errors.As(err, &ae) || ae.Cause != "AADSTS70021: No matching federated identity record found for presented assertion '(redacted)'." {
			t.Errorf("Token error %v", err)
		}
		mu.Lock()
		a := sent[i]
		mu.Unlock()
		if a == "" {
			t.Fatal("no assertion sent")
		}
		noSecrets(t, err, a, fed, string(p.leaf.KeyPKCS8PEM))
	}
}
