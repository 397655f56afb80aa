// Package auth obtains Microsoft Entra ID access tokens for Microsoft Graph
// through golang.org/x/oauth2: with the client credentials flow and a
// client secret, a certificate-signed client assertion or a federated
// (AKS workload identity) token, or from the Azure Instance Metadata
// Service for a managed identity. Tokens are cached by
// oauth2.ReuseTokenSource and refreshed before they expire; a secret file
// and a federated token file are read again for every token request, so a
// rotated Kubernetes secret or projected token is picked up without a
// restart.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/in-msgraph/in_msgraph/internal/logging"
)

// Credential kinds, the values of Credentials.Kind.
const (
	KindClientSecret     = "client_secret"
	KindCertificate      = "certificate"
	KindWorkloadIdentity = "workload_identity"
	KindManagedIdentity  = "managed_identity"
)

// DefaultIMDSEndpoint is the token endpoint of the Azure Instance Metadata
// Service, reachable from Azure VMs, scale sets and AKS nodes.
const DefaultIMDSEndpoint = "http://169.254.169.254/metadata/identity/oauth2/token"

// jwtBearer is the client_assertion_type of certificate and federated
// assertions.
const jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Credentials say who asks for tokens, and where.
type Credentials struct {
	// Context, when set, bounds every token request: cancelling it (the
	// input stopping) ends a request under way.
	Context context.Context
	// Kind is KindClientSecret (also when empty), KindCertificate,
	// KindWorkloadIdentity or KindManagedIdentity.
	Kind     string
	TenantID string
	// ClientID is the application; for a managed identity, the client ID
	// of a user-assigned identity, or empty for the system-assigned one.
	ClientID   string
	Secret     string                 // the client secret, or
	SecretFile func() (string, error) // a reader of the secret file
	// Certificate signs the client assertions of KindCertificate.
	Certificate *Certificate
	// FederatedTokenFile holds the federated token of KindWorkloadIdentity;
	// it is read again for every token request.
	FederatedTokenFile string
	// IMDSEndpoint is the managed identity token endpoint
	// (DefaultIMDSEndpoint when empty).
	IMDSEndpoint string
	// Resource is what a managed identity asks IMDS for: the Graph host
	// with a trailing slash, e.g. https://graph.microsoft.com/.
	Resource      string
	AuthorityHost string        // e.g. https://login.microsoftonline.com
	Scope         string        // e.g. https://graph.microsoft.com/.default
	HTTPClient    *http.Client  // used for token requests
	Timeout       time.Duration // per token request
	// Now is the clock of the assertion claims (nil means time.Now).
	Now func() time.Time
}

// TokenURL is the v2.0 token endpoint of the tenant.
func (c Credentials) TokenURL() string {
	return strings.TrimSuffix(c.AuthorityHost, "/") + "/" + c.TenantID + "/oauth2/v2.0/token"
}

func (c Credentials) kind() string {
	if c.Kind == "" {
		return KindClientSecret
	}
	return c.Kind
}

func (c Credentials) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Source is an oauth2.TokenSource that can be told to drop its cached token
// (after Graph answered 401).
type Source struct {
	creds Credentials
	imds  *http.Client // for KindManagedIdentity
	mu    sync.Mutex
	reuse oauth2.TokenSource
	// Fetches counts token requests that succeeded, Failures those refused.
	Fetches, Failures int
}

// New returns a caching token source.
func New(c Credentials) *Source {
	s := &Source{creds: c}
	if c.kind() == KindManagedIdentity {
		s.imds = imdsClient(c.HTTPClient)
	}
	s.reuse = s.newReuse()
	return s
}

func (s *Source) newReuse() oauth2.TokenSource {
	// The early-expiry margin is applied by fetch, relative to each
	// token's lifetime; ReuseTokenSource only needs to honour it.
	return oauth2.ReuseTokenSourceWithExpiry(nil, fetcher{s}, time.Nanosecond)
}

// Token returns a valid token, fetching one when needed.
func (s *Source) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	r := s.reuse
	s.mu.Unlock()
	return r.Token()
}

// Counts returns the token requests that succeeded and failed so far.
func (s *Source) Counts() (ok, failed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Fetches, s.Failures
}

// Invalidate forgets the cached token, so the next Token call fetches one.
func (s *Source) Invalidate() {
	s.mu.Lock()
	s.reuse = s.newReuse()
	s.mu.Unlock()
}

type fetcher struct{ s *Source }

func (f fetcher) Token() (*oauth2.Token, error) {
	s := f.s
	c := s.creds
	ctx := c.Context
	if ctx == nil {
		ctx = context.Background()
	}
	if c.HTTPClient != nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, c.HTTPClient)
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	issued := time.Now()
	var tok *oauth2.Token
	var err error
	switch c.kind() {
	case KindClientSecret:
		tok, err = s.secretToken(ctx)
	case KindCertificate:
		tok, err = s.certificateToken(ctx)
	case KindWorkloadIdentity:
		tok, err = s.workloadToken(ctx)
	case KindManagedIdentity:
		tok, err = s.imdsToken(ctx)
	default:
		err = &Error{Cause: fmt.Sprintf("unknown credential kind %q", c.Kind),
			Fix: "use client_secret, certificate, workload_identity or managed_identity"}
	}
	if err != nil {
		s.count(false)
		return nil, err
	}
	s.count(true)
	if !tok.Expiry.IsZero() {
		// Refresh before expiry: a tenth of the lifetime, at most 5 minutes,
		// so that a token is never sent in its last moments.
		life := tok.Expiry.Sub(issued)
		tok.Expiry = tok.Expiry.Add(-min(life/10, 5*time.Minute))
	}
	return tok, nil
}

func (s *Source) secretToken(ctx context.Context) (*oauth2.Token, error) {
	c := s.creds
	secret := c.Secret
	if c.SecretFile != nil {
		v, err := c.SecretFile()
		if err != nil {
			return nil, &Error{Cause: "client_secret_file: " + err.Error(), Fix: "make the secret file readable by Fluent Bit"}
		}
		secret = v
	}
	return s.clientCredentials(ctx, secret, nil, secret)
}

// clientCredentials runs the client credentials grant with either a secret
// or the assertion in params; redact lists what must not appear in errors.
func (s *Source) clientCredentials(ctx context.Context, secret string, params url.Values, redact ...string) (*oauth2.Token, error) {
	c := s.creds
	cfg := clientcredentials.Config{
		ClientID:       c.ClientID,
		ClientSecret:   secret,
		TokenURL:       c.TokenURL(),
		Scopes:         []string{c.Scope},
		EndpointParams: params,
		AuthStyle:      oauth2.AuthStyleInParams,
	}
	tok, err := cfg.Token(ctx)
	if err != nil {
		return nil, classify(c.kind(), err, redact...)
	}
	return tok, nil
}

func (s *Source) count(ok bool) {
	s.mu.Lock()
	if ok {
		s.Fetches++
	} else {
		s.Failures++
	}
	s.mu.Unlock()
}

// Error is a token request that failed, with what to do about it.
type Error struct {
	Status int    // HTTP status of the token endpoint, 0 for network errors
	Code   string // AADSTS code, e.g. AADSTS7000215
	Cause  string // what Entra ID said, first sentence
	Fix    string // what the user should change
	// Temporary is set for network errors and 5xx, which are retried.
	Temporary bool
}

func (e *Error) Error() string {
	msg := "token request failed"
	if e.Code != "" {
		msg += " with " + e.Code
	}
	if e.Status != 0 {
		msg += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	msg += ": " + e.Cause
	if e.Fix != "" {
		msg += "; " + e.Fix
	}
	return msg
}

var aadsts = regexp.MustCompile(`AADSTS(\d+)`)

// fixes maps AADSTS codes to what the user must change.
var fixes = map[string]string{
	"7000215": "the client secret is wrong: use the secret's Value (not its Secret ID) from the app registration's Certificates & secrets page",
	"7000222": "the client secret has expired: create a new secret in the app registration and update client_secret",
	"700016":  "the application was not found in this tenant: check client_id and tenant_id, and that the app is consented in this tenant",
	"90002":   "the tenant was not found: check tenant_id (a GUID or a verified domain) and that authority_host is the tenant's cloud",
	"900023":  "tenant_id is not a valid tenant GUID or domain",
	"90013":   "tenant_id is not valid",
	"70011":   "the scope is invalid: check graph_host (the scope is graph_host/.default)",
	"500011":  "the Graph resource was not found in this tenant's cloud: check that graph_host and authority_host belong to the same cloud",
	"7000218": "no credential was sent: set client_secret or client_secret_file",
	"7000216": "no credential was sent: set client_secret or client_secret_file",
	"7000112": "the application is disabled in this tenant: re-enable it in Entra ID > Enterprise applications",
	"53003":   "a Conditional Access policy blocked the token: exclude this workload identity or allow its network location",
	"700024":  "the client assertion is not valid: check the clock of this machine",
	"1002012": "the scope is invalid: check graph_host",
	"700027":  "the certificate is not registered on the app or the assertion signature is invalid: upload this certificate (its thumbprint is logged at start) to the app registration's Certificates & secrets page",
	"700023":  "the assertion's audience is not this tenant's token endpoint: check tenant_id, and that authority_host is the tenant's cloud",
	"700021":  "the assertion was made for another application: check client_id",
	"700025":  "the app registration is a public client, which cannot use a secret or certificate: set Allow public client flows to No on its Authentication page",
	"50012":   "the certificate or its chain was refused: check that the certificate uploaded to the app registration is the one in certificate_file",
	"700211":  "no federated credential on the app matches the token's issuer: add a federated credential for this service account's issuer (the cluster's OIDC issuer URL) and subject (system:serviceaccount:NAMESPACE:NAME)",
	"700212":  "no federated credential on the app matches the token's audience: the federated credential's audience must be api://AzureADTokenExchange",
	"700213":  "no federated credential on the app matches the token's subject: it must be system:serviceaccount:NAMESPACE:NAME of this pod's service account, exactly (case-sensitive)",
	"70021":   "no federated credential on the app matches the token: add a federated credential for this service account's issuer and subject, with audience api://AzureADTokenExchange",
	"50027":   "the client assertion is not a valid JWT",
}

// kindFixes override fixes where the same code means something else for a
// credential kind.
var kindFixes = map[string]map[string]string{
	KindCertificate: {
		"700024": "the client assertion is outside its valid time range: check the clock of this machine (NTP)",
	},
	KindWorkloadIdentity: {
		"700024": "the projected service account token has expired: kubelet refreshes it well before expiry, so check that federated_token_file is the file the Azure Workload Identity webhook mounts (not a copy), and the clock of this machine",
		"50027":  "the federated token file does not hold a JWT: it must be the projected service account token the Azure Workload Identity webhook mounts",
	},
}

// defaultFixes are given for codes without a fix.
var defaultFixes = map[string]string{
	KindClientSecret:     "check tenant_id, client_id and the client secret",
	KindCertificate:      "check tenant_id, client_id, and that the certificate is uploaded to the app registration",
	KindWorkloadIdentity: "check tenant_id, client_id, and the app's federated credential for this service account",
}

func fixFor(kind, code string) string {
	if f, ok := kindFixes[kind][code]; ok {
		return f
	}
	return fixes[code]
}

func classify(kind string, err error, secrets ...string) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		e := &Error{Status: 0, Cause: strings.TrimSpace(re.ErrorDescription)}
		if re.Response != nil {
			e.Status = re.Response.StatusCode
		}
		if m := aadsts.FindStringSubmatch(re.ErrorDescription); m != nil {
			e.Code = "AADSTS" + m[1]
			e.Fix = fixFor(kind, m[1])
		}
		e.Cause = firstSentence(e.Cause)
		if e.Cause == "" {
			e.Cause = re.ErrorCode
		}
		if e.Cause == "" {
			e.Cause = "the token endpoint answered without an error description"
		}
		if e.Status >= 500 || e.Status == 429 {
			e.Temporary = true
		}
		if e.Fix == "" && !e.Temporary {
			e.Fix = defaultFixes[kind]
		}
		e.Cause = redact(e.Cause, secrets...)
		return e
	}
	return &Error{Cause: redact(err.Error(), secrets...), Fix: "check that authority_host is reachable from this machine (proxy, DNS, firewall)", Temporary: true}
}

// firstSentence drops the trace, correlation and timestamp lines Entra
// appends to a description.
func firstSentence(s string) string {
	if i := strings.Index(s, "\n"); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	if i := strings.Index(s, " Trace ID:"); i >= 0 {
		s = s[:i]
	}
	return s
}

// redact scrubs the secrets from an error's text, as the log lines are
// (a secret too short to tell apart from ordinary text is left, and the
// configuration warns of it).
func redact(s string, secrets ...string) string { return logging.ScrubText(s, secrets...) }
