// Package auth obtains Microsoft Entra ID access tokens for Microsoft Graph
// with the OAuth 2.0 client credentials flow, through golang.org/x/oauth2.
// Tokens are cached by oauth2.ReuseTokenSource and refreshed before they
// expire; a secret kept in a file is read again for every token request, so
// a rotated Kubernetes secret is picked up without a restart.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Credentials say who asks for tokens, and where.
type Credentials struct {
	TenantID      string
	ClientID      string
	Secret        string                 // the client secret, or
	SecretFile    func() (string, error) // a reader of the secret file
	AuthorityHost string                 // e.g. https://login.microsoftonline.com
	Scope         string                 // e.g. https://graph.microsoft.com/.default
	HTTPClient    *http.Client           // used for token requests
	Timeout       time.Duration          // per token request
}

// TokenURL is the v2.0 token endpoint of the tenant.
func (c Credentials) TokenURL() string {
	return strings.TrimSuffix(c.AuthorityHost, "/") + "/" + c.TenantID + "/oauth2/v2.0/token"
}

// Source is an oauth2.TokenSource that can be told to drop its cached token
// (after Graph answered 401).
type Source struct {
	creds Credentials
	mu    sync.Mutex
	reuse oauth2.TokenSource
	// Fetches counts token requests that succeeded, Failures those refused.
	Fetches, Failures int
}

// New returns a caching token source.
func New(c Credentials) *Source {
	s := &Source{creds: c}
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
	secret := c.Secret
	if c.SecretFile != nil {
		v, err := c.SecretFile()
		if err != nil {
			s.count(false)
			return nil, &Error{Cause: "client_secret_file: " + err.Error(), Fix: "make the secret file readable by Fluent Bit"}
		}
		secret = v
	}
	cfg := clientcredentials.Config{
		ClientID:     c.ClientID,
		ClientSecret: secret,
		TokenURL:     c.TokenURL(),
		Scopes:       []string{c.Scope},
		AuthStyle:    oauth2.AuthStyleInParams,
	}
	ctx := context.Background()
	if c.HTTPClient != nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, c.HTTPClient)
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	issued := time.Now()
	tok, err := cfg.Token(ctx)
	if err != nil {
		s.count(false)
		return nil, classify(err, secret)
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
}

func classify(err error, secret string) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		e := &Error{Status: 0, Cause: strings.TrimSpace(re.ErrorDescription)}
		if re.Response != nil {
			e.Status = re.Response.StatusCode
		}
		if m := aadsts.FindStringSubmatch(re.ErrorDescription); m != nil {
			e.Code = "AADSTS" + m[1]
			e.Fix = fixes[m[1]]
		}
		// Keep the first sentence: Entra appends trace and timestamp lines.
		if i := strings.Index(e.Cause, "\n"); i >= 0 {
			e.Cause = strings.TrimSpace(e.Cause[:i])
		}
		if i := strings.Index(e.Cause, " Trace ID:"); i >= 0 {
			e.Cause = e.Cause[:i]
		}
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
			e.Fix = "check tenant_id, client_id and the client secret"
		}
		e.Cause = redact(e.Cause, secret)
		return e
	}
	return &Error{Cause: redact(err.Error(), secret), Fix: "check that authority_host is reachable from this machine (proxy, DNS, firewall)", Temporary: true}
}

func redact(s, secret string) string {
	if secret != "" {
		s = strings.ReplaceAll(s, secret, "(redacted)")
	}
	return s
}
