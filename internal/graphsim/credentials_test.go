package graphsim

import (
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/youmark/pkcs8"
)

// assertionSpec describes a client assertion to sign in a test.
type assertionSpec struct {
	alg    string          // PS256 (default) or RS256 or anything jwt knows
	key    *rsa.PrivateKey // signer
	header map[string]any  // merged into the header
	claims jwt.MapClaims   // the claims, verbatim
}

func sign(t *testing.T, a assertionSpec) string {
	t.Helper()
	m := jwt.GetSigningMethod(a.alg)
	if m == nil {
		t.Fatalf("no signing method %q", a.alg)
	}
	tok := jwt.NewWithClaims(m, a.claims)
	for k, v := range a.header {
		tok.Header[k] = v
	}
	var key any = a.key
	if strings.HasPrefix(a.alg, "HS") {
		key = []byte("a shared secret")
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func x5tS256(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func x5t(c *x509.Certificate) string {
	sum := sha1.Sum(c.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func x5c(certs ...*x509.Certificate) []string {
	var out []string
	for _, c := range certs {
		out = append(out, base64.StdEncoding.EncodeToString(c.Raw))
	}
	return out
}

func assertionForm(s *Server, assertion string) url.Values {
	return url.Values{
		"grant_type":            {"client_credentials"},
		"client_id":             {DefaultClientID},
		"client_assertion_type": {JWTBearer},
		"client_assertion":      {assertion},
		"scope":                 {"https://graph.microsoft.com/.default"},
	}
}

// checkRefusal asserts Entra's error shape with the given status, error and
// AADSTS code, and returns the description.
func checkRefusal(t *testing.T, code int, body map[string]any, status int, errCode string, aadsts int) string {
	t.Helper()
	desc, _ := body["error_description"].(string)
	if code != status || body["error"] != errCode {
		t.Errorf("status %d error %v, want %d %s (%s)", code, body["error"], status, errCode, desc)
	}
	if prefix := "AADSTS" + strconv.Itoa(aadsts) + ": "; !strings.HasPrefix(desc, prefix) {
		t.Errorf("error_description %q, want prefix %q", desc, prefix)
	}
	if codes, _ := body["error_codes"].([]any); len(codes) != 1 || codes[0] != float64(aadsts) {
		t.Errorf("error_codes = %v, want [%d]", body["error_codes"], aadsts)
	}
	return desc
}

func TestCertificateAssertion(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	year := func(from time.Time) TestCertificateOptions {
		return TestCertificateOptions{NotBefore: from.Add(-time.Hour), NotAfter: from.AddDate(1, 0, 0)}
	}
	registered := NewTestCertificateWith(t, year(now))
	ca := NewTestCertificateWith(t, TestCertificateOptions{Key: TestKey(t, 1), CA: true, CommonName: "graphsim test CA", NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(2, 0, 0)})
	o := year(now)
	o.Key, o.Issuer = TestKey(t, 2), ca
	issued := NewTestCertificateWith(t, o) // signed by ca
	other := NewTestCertificateWith(t, year(now))
	o = year(now.AddDate(-2, 0, 0)) // expired a year ago by the simulator's clock
	o.Key = TestKey(t, 3)
	expired := NewTestCertificateWith(t, o)

	s := Start(t, Options{Now: clk.Now, ClientCertificates: []*x509.Certificate{registered.Cert, issued.Cert, expired.Cert}})
	aud := s.URL() + "/" + DefaultTenantID + "/oauth2/v2.0/token"
	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{
			"aud": aud, "iss": DefaultClientID, "sub": DefaultClientID, "jti": "3d1c1b2c-5b6e-4f7a-8b9c-0d1e2f3a4b5c",
			"nbf": now.Unix(), "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		}
		if edit != nil {
			edit(c)
		}
		return c
	}
	ps256 := func(edit func(jwt.MapClaims)) assertionSpec {
		return assertionSpec{alg: "PS256", key: registered.Key, header: map[string]any{"x5t#S256": x5tS256(registered.Cert)}, claims: claims(edit)}
	}
	tamper := func(a string) string {
		// Flip one bit in the middle of the signature.
		i := strings.LastIndexByte(a, '.') + 10
		c := byte('A')
		if a[i] == 'A' {
			c = 'B'
		}
		return a[:i] + string(c) + a[i+1:]
	}
	type refusal struct {
		status  int
		errCode string
		aadsts  int
		text    string // a fragment of the description
	}
	tests := []struct {
		name   string
		spec   assertionSpec
		edit   func(string) string // of the signed assertion
		form   func(url.Values)
		refuse *refusal
	}{
		{name: "PS256 with x5t#S256", spec: ps256(nil)},
		{name: "RS256 with x5t", spec: assertionSpec{alg: "RS256", key: registered.Key, header: map[string]any{"x5t": x5t(registered.Cert)}, claims: claims(nil)}},
		{name: "x5c alone", spec: assertionSpec{alg: "PS256", key: registered.Key, header: map[string]any{"x5c": x5c(registered.Cert)}, claims: claims(nil)}},
		{name: "x5c chain with thumbprint", spec: assertionSpec{alg: "PS256", key: issued.Key, header: map[string]any{"x5t#S256": x5tS256(issued.Cert), "x5c": x5c(issued.Cert, ca.Cert)}, claims: claims(nil)}},
		{name: "aud in its https form", spec: ps256(func(c jwt.MapClaims) { c["aud"] = strings.Replace(aud, "http://", "https://", 1) })},
		{name: "aud as an array", spec: ps256(func(c jwt.MapClaims) { c["aud"] = []string{aud} })},
		{name: "no nbf, lifetime from iat", spec: ps256(func(c jwt.MapClaims) { delete(c, "nbf") })},
		{name: "nbf within the skew", spec: ps256(func(c jwt.MapClaims) {
			c["nbf"] = now.Add(4 * time.Minute).Unix()
			c["exp"] = now.Add(9 * time.Minute).Unix()
		})},

		{name: "unregistered certificate", spec: assertionSpec{alg: "PS256", key: other.Key, header: map[string]any{"x5t#S256": x5tS256(other.Cert)}, claims: claims(nil)},
			refuse: &refusal{401, "invalid_client", 700027, "not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '" + strings.ToUpper(hex.EncodeToString(sha256Sum(other.Cert)))}},
		{name: "tampered signature", spec: ps256(nil), edit: tamper,
			refuse: &refusal{401, "invalid_client", 700027, "failed signature validation"}},
		{name: "claims changed after signing", spec: ps256(nil), edit: func(a string) string {
			parts := strings.Split(a, ".")
			parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"aud":"` + aud + `","iss":"` + DefaultClientID + `","sub":"` + DefaultClientID + `","jti":"x","exp":` + strconv.FormatInt(now.Add(time.Hour).Unix(), 10) + `}`))
			return strings.Join(parts, ".")
		}, refuse: &refusal{401, "invalid_client", 700027, "failed signature validation"}},
		{name: "signed with another key", spec: assertionSpec{alg: "PS256", key: other.Key, header: map[string]any{"x5t#S256": x5tS256(issued.Cert)}, claims: claims(nil)},
			refuse: &refusal{401, "invalid_client", 700027, "failed signature validation"}},
		{name: "PS256 with a SHA-1 thumbprint only", spec: assertionSpec{alg: "PS256", key: registered.Key, header: map[string]any{"x5t": x5t(registered.Cert)}, claims: claims(nil)},
			refuse: &refusal{401, "invalid_client", 700027, "The key was not found"}},
		{name: "HS256", spec: assertionSpec{alg: "HS256", header: map[string]any{"x5t#S256": x5tS256(registered.Cert)}, claims: claims(nil)},
			refuse: &refusal{401, "invalid_client", 700027, "failed signature validation"}},
		{name: "x5c chain out of order", spec: assertionSpec{alg: "PS256", key: issued.Key, header: map[string]any{"x5t#S256": x5tS256(issued.Cert), "x5c": x5c(ca.Cert, issued.Cert)}, claims: claims(nil)},
			refuse: &refusal{401, "invalid_client", 700027, "first certificate in x5c"}},
		{name: "x5c chain with a foreign issuer", spec: assertionSpec{alg: "PS256", key: issued.Key, header: map[string]any{"x5t#S256": x5tS256(issued.Cert), "x5c": x5c(issued.Cert, other.Cert)}, claims: claims(nil)},
			refuse: &refusal{401, "invalid_client", 50012, "chain"}},
		{name: "x5c not base64", spec: assertionSpec{alg: "PS256", key: registered.Key, header: map[string]any{"x5c": []string{"%%%"}}, claims: claims(nil)},
			refuse: &refusal{400, "invalid_request", 50027, "x5c"}},
		{name: "expired certificate", spec: assertionSpec{alg: "PS256", key: expired.Key, header: map[string]any{"x5t#S256": x5tS256(expired.Cert)}, claims: claims(nil)},
			refuse: &refusal{401, "invalid_client", 700027, "The key used is expired"}},
		{name: "wrong aud", spec: ps256(func(c jwt.MapClaims) {
			c["aud"] = "https://login.microsoftonline.com/" + DefaultTenantID + "/oauth2/v2.0/token"
		}),
			refuse: &refusal{401, "invalid_client", 700023, "audience claim does not match"}},
		{name: "aud of the v1 endpoint", spec: ps256(func(c jwt.MapClaims) { c["aud"] = s.URL() + "/" + DefaultTenantID + "/oauth2/token" }),
			refuse: &refusal{401, "invalid_client", 700023, "audience"}},
		{name: "sub differs from iss", spec: ps256(func(c jwt.MapClaims) { c["sub"] = "someone-else" }),
			refuse: &refusal{401, "invalid_client", 50048, "Subject must match Issuer"}},
		{name: "iss and sub of another client", spec: ps256(func(c jwt.MapClaims) { c["iss"], c["sub"] = "other-app", "other-app" }),
			refuse: &refusal{401, "invalid_client", 700021, "doesn't match 'client_id'"}},
		{name: "no jti", spec: ps256(func(c jwt.MapClaims) { delete(c, "jti") }),
			refuse: &refusal{400, "invalid_request", 50027, "jti"}},
		{name: "no exp", spec: ps256(func(c jwt.MapClaims) { delete(c, "exp") }),
			refuse: &refusal{400, "invalid_request", 50027, "exp"}},
		{name: "expired exp", spec: ps256(func(c jwt.MapClaims) {
			c["nbf"], c["iat"], c["exp"] = now.Add(-10*time.Minute).Unix(), now.Add(-10*time.Minute).Unix(), now.Add(-time.Second).Unix()
		}), refuse: &refusal{401, "invalid_client", 700024, "not within its valid time range. Current time: 2025-03-01T12:00:00.0000000Z"}},
		{name: "exp exactly now", spec: ps256(func(c jwt.MapClaims) { c["nbf"], c["exp"] = now.Add(-time.Minute).Unix(), now.Unix() }),
			refuse: &refusal{401, "invalid_client", 700024, "valid time range"}},
		{name: "nbf beyond the skew", spec: ps256(func(c jwt.MapClaims) {
			c["nbf"] = now.Add(6 * time.Minute).Unix()
			c["exp"] = now.Add(10 * time.Minute).Unix()
		}), refuse: &refusal{401, "invalid_client", 700024, "valid time range"}},
		{name: "lifetime too long", spec: ps256(func(c jwt.MapClaims) { c["exp"] = now.Add(11 * time.Minute).Unix() }),
			refuse: &refusal{401, "invalid_client", 700024, "at most 10m0s"}},
		{name: "lifetime too long without nbf", spec: ps256(func(c jwt.MapClaims) {
			delete(c, "nbf")
			c["exp"] = now.Add(time.Hour).Unix()
		}), refuse: &refusal{401, "invalid_client", 700024, "at most 10m0s"}},

		{name: "no assertion type", spec: ps256(nil), form: func(f url.Values) { f.Del("client_assertion_type") },
			refuse: &refusal{400, "invalid_request", 90014, "client_assertion_type"}},
		{name: "unknown assertion type", spec: ps256(nil), form: func(f url.Values) { f.Set("client_assertion_type", "urn:x") },
			refuse: &refusal{400, "invalid_request", 90023, "urn:x"}},
		{name: "assertion and secret", spec: ps256(nil), form: func(f url.Values) { f.Set("client_secret", DefaultClientSecret) },
			refuse: &refusal{400, "invalid_request", 90023, "both"}},
		{name: "assertion type without assertion", spec: ps256(nil), form: func(f url.Values) { f.Del("client_assertion") },
			refuse: &refusal{400, "invalid_client", 7000216, "'client_assertion', 'client_secret'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := sign(t, tt.spec)
			if tt.edit != nil {
				a = tt.edit(a)
			}
			form := assertionForm(s, a)
			if tt.form != nil {
				tt.form(form)
			}
			before := s.Stats()
			code, body := postToken(t, s, DefaultTenantID, form, false)
			if tt.refuse == nil {
				if code != http.StatusOK || body["access_token"] == nil {
					t.Fatalf("status %d, body %v", code, body)
				}
				if got := s.Stats().ByCredential[CredentialCertificate] - before.ByCredential[CredentialCertificate]; got != 1 {
					t.Errorf("%d certificate tokens counted", got)
				}
				// The token works on Graph.
				if resp, b := get(t, signInsURL(s, nil), body["access_token"].(string)); resp.StatusCode != http.StatusOK {
					t.Errorf("signIns with the token: %d %s", resp.StatusCode, b)
				}
				return
			}
			desc := checkRefusal(t, code, body, tt.refuse.status, tt.refuse.errCode, tt.refuse.aadsts)
			if !strings.Contains(desc, tt.refuse.text) {
				t.Errorf("description %q lacks %q", desc, tt.refuse.text)
			}
			if strings.Contains(desc, a) {
				t.Errorf("the assertion is echoed in %q", desc)
			}
		})
	}
}

func sha256Sum(c *x509.Certificate) []byte {
	sum := sha256.Sum256(c.Raw)
	return sum[:]
}

// TestCertificateRotation registers a certificate at run time.
func TestCertificateRotation(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	c := NewTestCertificate(t, now.Add(-time.Hour), now.Add(time.Hour))
	s := Start(t, Options{Now: clk.Now})
	a := sign(t, assertionSpec{alg: "PS256", key: c.Key, header: map[string]any{"x5t#S256": x5tS256(c.Cert)}, claims: jwt.MapClaims{
		"aud": s.URL() + "/" + DefaultTenantID + "/oauth2/v2.0/token", "iss": DefaultClientID, "sub": DefaultClientID,
		"jti": "1", "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}})
	code, body := postToken(t, s, DefaultTenantID, assertionForm(s, a), false)
	checkRefusal(t, code, body, 401, "invalid_client", 700027)
	s.SetClientCertificates(c.Cert)
	if code, body := postToken(t, s, DefaultTenantID, assertionForm(s, a), false); code != http.StatusOK {
		t.Fatalf("after registering: %d %v", code, body)
	}
	// The certificate's validity is checked by the simulator's clock.
	clk.Advance(2 * time.Hour)
	code, body = postToken(t, s, DefaultTenantID, assertionForm(s, a), false)
	checkRefusal(t, code, body, 401, "invalid_client", 700027)
}

func TestFederatedToken(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	// A projected service account token as kubelet writes it: a JWT that
	// names no certificate.
	k8s := func(iss string, exp time.Time) string {
		return sign(t, assertionSpec{alg: "RS256", key: TestKey(t, 1), header: map[string]any{"kid": "k8s"}, claims: jwt.MapClaims{
			"aud": []string{"api://AzureADTokenExchange"}, "iss": iss, "sub": "system:serviceaccount:logging:fluent-bit",
			"iat": now.Add(-time.Hour).Unix(), "exp": exp.Unix(),
		}})
	}
	const issuer = "https://eastus.oic.prod-aks.azure.com/tenant/cluster/"
	current := k8s(issuer, now.Add(23*time.Hour))
	expired := k8s(issuer, now.Add(-time.Minute))
	s := Start(t, Options{Now: clk.Now, FederatedTokens: []string{current, "opaque-token", expired}})
	tests := []struct {
		name      string
		assertion string
		aadsts    int // 0 for success
		text      string
	}{
		{"projected token", current, 0, ""},
		{"opaque token", "opaque-token", 0, ""},
		{"expired token", expired, 700024, "not within its valid time range"},
		{"unknown JWT", k8s("https://oidc.example.com/", now.Add(time.Hour)), 700211, "issuer 'https://oidc.example.com/'"},
		{"unknown opaque token", "some-other-token", 70021, "No matching federated identity record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := postToken(t, s, DefaultTenantID, assertionForm(s, tt.assertion), false)
			if tt.aadsts == 0 {
				if code != http.StatusOK {
					t.Fatalf("status %d body %v", code, body)
				}
				return
			}
			desc := checkRefusal(t, code, body, 401, "invalid_client", tt.aadsts)
			if !strings.Contains(desc, tt.text) {
				t.Errorf("description %q lacks %q", desc, tt.text)
			}
			if strings.Contains(desc, tt.assertion) {
				t.Errorf("the token is echoed in %q", desc)
			}
		})
	}
	if got := s.Stats().ByCredential[CredentialFederated]; got != 2 {
		t.Errorf("%d federated tokens counted, want 2", got)
	}

	// kubelet rotates the token: the old one is no longer registered.
	rotated := k8s(issuer, now.Add(24*time.Hour))
	s.SetFederatedTokens(rotated)
	code, body := postToken(t, s, DefaultTenantID, assertionForm(s, current), false)
	checkRefusal(t, code, body, 401, "invalid_client", 700211)
	if code, body := postToken(t, s, DefaultTenantID, assertionForm(s, rotated), false); code != http.StatusOK {
		t.Errorf("rotated token: %d %v", code, body)
	}
}

// TestNationalCloudScopes accepts the Graph scopes of every cloud and of
// the host the request came in on, as it would through a proxy that maps
// national-cloud names to the simulator.
func TestNationalCloudScopes(t *testing.T) {
	s := Start(t, Options{Now: newClock().Now})
	for _, tc := range []struct {
		scope, host string
		ok          bool
	}{
		{"https://graph.microsoft.com/.default", "", true},
		{"https://graph.microsoft.us/.default", "", true},
		{"https://dod-graph.microsoft.us/.default", "", true},
		{"https://microsoftgraph.chinacloudapi.cn/.default", "", true},
		{"https://graph.example.net/.default", "graph.example.net", true},
		{"http://graph.example.net/.default", "graph.example.net", true},
		{"https://graph.example.net/.default", "", false},
		{"https://graph.microsoft.us", "", false},
		{"https://graph.windows.net/.default", "", false},
	} {
		form := tokenForm(s)
		form.Set("scope", tc.scope)
		req, err := http.NewRequest(http.MethodPost, s.URL()+"/"+DefaultTenantID+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if (resp.StatusCode == http.StatusOK) != tc.ok {
			t.Errorf("scope %s via host %q: status %d, want ok=%v", tc.scope, tc.host, resp.StatusCode, tc.ok)
		}
	}
}

// imdsGet asks the simulator's IMDS for a token.
func imdsGet(t *testing.T, s *Server, q url.Values, metadata bool) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL()+IMDSPath+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if metadata {
		req.Header.Set("Metadata", "true")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("IMDS body %q: %v", b, err)
	}
	return resp.StatusCode, body
}

func TestIMDS(t *testing.T) {
	clk := newClock()
	const user = "12345678-aaaa-bbbb-cccc-1234567890ab"
	s := Start(t, Options{Now: clk.Now, TokenLifetime: 90 * time.Minute, ManagedIdentityClientIDs: []string{user}})
	query := func(kv ...string) url.Values {
		q := url.Values{"api-version": {"2018-02-01"}, "resource": {"https://graph.microsoft.com/"}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				q.Del(kv[i])
			} else {
				q.Set(kv[i], kv[i+1])
			}
		}
		return q
	}
	tests := []struct {
		name     string
		q        url.Values
		metadata bool
		status   int
		err      string // error, or client_id on success
		desc     string
	}{
		{"system-assigned", query(), true, 200, SystemAssignedClientID, ""},
		{"user-assigned", query("client_id", strings.ToUpper(user)), true, 200, user, ""},
		{"resource without a trailing slash", query("resource", "https://graph.microsoft.com"), true, 200, SystemAssignedClientID, ""},
		{"national cloud resource", query("resource", "https://graph.microsoft.us/"), true, 200, SystemAssignedClientID, ""},
		{"simulator as resource", query("resource", s.URL()+"/"), true, 200, SystemAssignedClientID, ""},
		{"no Metadata header", query(), false, 400, "invalid_request", "Required metadata header not specified"},
		{"unknown user-assigned identity", query("client_id", "99999999-0000-0000-0000-000000000000"), true, 400, "invalid_request", "Identity not found"},
		{"object_id", query("object_id", "99999999-0000-0000-0000-000000000000"), true, 400, "invalid_request", "Identity not found"},
		{"no api-version", query("api-version", ""), true, 400, "invalid_request", "api-version"},
		{"no resource", query("resource", ""), true, 400, "invalid_request", "resource"},
		{"foreign resource", query("resource", "https://management.azure.com/"), true, 400, "invalid_resource", "AADSTS500011"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := imdsGet(t, s, tt.q, tt.metadata)
			if code != tt.status {
				t.Fatalf("status %d, want %d: %v", code, tt.status, body)
			}
			if code != http.StatusOK {
				if body["error"] != tt.err || !strings.Contains(body["error_description"].(string), tt.desc) {
					t.Errorf("body %v, want error %s and a description with %q", body, tt.err, tt.desc)
				}
				return
			}
			now := clk.Now()
			want := map[string]string{
				"client_id":     tt.err,
				"expires_in":    "5400",
				"expires_on":    strconv.FormatInt(now.Add(90*time.Minute).Unix(), 10),
				"not_before":    strconv.FormatInt(now.Unix(), 10),
				"resource":      tt.q.Get("resource"),
				"token_type":    "Bearer",
				"refresh_token": "",
			}
			for k, v := range want {
				// The numbers are strings, as IMDS renders them.
				if got, ok := body[k].(string); !ok || got != v {
					t.Errorf("%s = %#v, want %q", k, body[k], v)
				}
			}
			tok, _ := body["access_token"].(string)
			if resp, b := get(t, signInsURL(s, nil), tok); resp.StatusCode != http.StatusOK {
				t.Errorf("signIns with the IMDS token: %d %s", resp.StatusCode, b)
			}
		})
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL()+IMDSPath+"?"+query().Encode(), nil)
	req.Header.Set("Metadata", "true")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	st := s.Stats()
	if st.IMDSRequests != len(tests)+1 || st.IMDSTokens != 5 || st.ByCredential[CredentialManagedIdentity] != 5 || st.Tokens != 0 {
		t.Errorf("stats: %d IMDS requests, %d IMDS tokens, by credential %v, %d token endpoint tokens",
			st.IMDSRequests, st.IMDSTokens, st.ByCredential, st.Tokens)
	}
}

func TestIMDSFaults(t *testing.T) {
	s := Start(t, Options{Now: newClock().Now, Seed: 3})
	q := url.Values{"api-version": {"2018-02-01"}, "resource": {"https://graph.microsoft.com/"}}
	for _, tc := range []struct {
		f      IMDSFaults
		status int
	}{
		{IMDSFaults{Rate404: 1}, 404},
		{IMDSFaults{Rate429: 1}, 429},
		{IMDSFaults{Rate410: 1}, 410},
		{IMDSFaults{Rate500: 1}, 500},
		{IMDSFaults{}, 200},
	} {
		s.SetIMDSFaults(tc.f)
		if code, body := imdsGet(t, s, q, true); code != tc.status {
			t.Errorf("faults %+v: status %d, want %d (%v)", tc.f, code, tc.status, body)
		}
	}
	// The Metadata header is checked before any fault.
	s.SetIMDSFaults(IMDSFaults{Rate500: 1})
	if code, _ := imdsGet(t, s, q, false); code != 400 {
		t.Errorf("no header under faults: %d", code)
	}
}

func TestTestCertificate(t *testing.T) {
	now := time.Now()
	c := NewTestCertificate(t, now.Add(-time.Hour), now.Add(time.Hour))
	if c.Key != TestKey(t, 0) || !c.Key.PublicKey.Equal(c.Cert.PublicKey) {
		t.Error("the certificate is not for TestKey(0)")
	}
	if c.Cert.NotBefore.Unix() != now.Add(-time.Hour).Unix() || c.Cert.NotAfter.Unix() != now.Add(time.Hour).Unix() {
		t.Errorf("validity %v to %v", c.Cert.NotBefore, c.Cert.NotAfter)
	}
	for _, tc := range []struct {
		pem, typ string
	}{{string(c.CertPEM), "CERTIFICATE"}, {string(c.KeyPKCS8PEM), "PRIVATE KEY"}, {string(c.KeyPKCS1PEM), "RSA PRIVATE KEY"}} {
		if b, _ := pem.Decode([]byte(tc.pem)); b == nil || b.Type != tc.typ {
			t.Errorf("want one %s block", tc.typ)
		}
	}
	enc := c.EncryptedKeyPEM(t, "pässword")
	b, _ := pem.Decode(enc)
	if b == nil || b.Type != "ENCRYPTED PRIVATE KEY" {
		t.Fatalf("encrypted key PEM %q", enc)
	}
	k, err := pkcs8.ParsePKCS8PrivateKeyRSA(b.Bytes, []byte("pässword"))
	if err != nil || !k.Equal(c.Key) {
		t.Errorf("decrypt: %v", err)
	}
	if _, err := pkcs8.ParsePKCS8PrivateKeyRSA(b.Bytes, []byte("wrong")); err == nil {
		t.Error("a wrong password decrypted the key")
	}
	ca := NewTestCertificateWith(t, TestCertificateOptions{Key: TestKey(t, 1), CA: true, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	leaf := NewTestCertificateWith(t, TestCertificateOptions{Key: TestKey(t, 2), Issuer: ca, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err := leaf.Cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("leaf not signed by the CA: %v", err)
	}
}
