// Package graph sends requests to Microsoft Graph: one GET per call, with
// the bearer token attached only for the configured Graph host, a capped
// body read, and typed errors that say whether and when to retry. Waiting
// is the caller's business: nothing here sleeps.
package graph

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	jsoniter "github.com/json-iterator/go"
	"golang.org/x/net/http/httpproxy"
	"golang.org/x/oauth2"

	"github.com/in-msgraph/in_msgraph/internal/auth"
)

// MaxBody caps a response body; a larger page is refused (and the caller
// asks again for smaller pages).
const MaxBody = 100 << 20

// Client sends GET requests to one Graph host.
type Client struct {
	host   *url.URL
	tokens *auth.Source
	http   *http.Client
	// Timeout bounds each request, body included.
	Timeout time.Duration
	// Now is the clock for Retry-After dates.
	Now func() time.Time
}

// NewClient returns a client for graphHost (scheme://host[:port]).
func NewClient(graphHost string, tokens *auth.Source, transport http.RoundTripper, timeout time.Duration) (*Client, error) {
	u, err := url.Parse(graphHost)
	if err != nil {
		return nil, err
	}
	return &Client{
		host:    u,
		tokens:  tokens,
		http:    &http.Client{Transport: transport, CheckRedirect: noRedirect},
		Timeout: timeout,
		Now:     time.Now,
	}, nil
}

// Redirects would carry the bearer token elsewhere; Graph does not send
// them for these APIs.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// NewTransport is the HTTP transport for Graph and the token endpoint:
// https_proxy and no_proxy from the environment honoured, TLS always
// verified, against the system's roots plus extraCAs (for a proxy that
// intercepts TLS), idle connections reused.
func NewTransport(extraCAs ...*x509.Certificate) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// The environment is read now, for this transport: net/http reads it
	// once per process, which would make every later change invisible.
	proxy := httpproxy.FromEnvironment().ProxyFunc()
	t.Proxy = func(r *http.Request) (*url.URL, error) { return proxy(r.URL) }
	t.MaxIdleConnsPerHost = 4
	t.ResponseHeaderTimeout = 0 // bounded by the request context instead
	if len(extraCAs) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for _, c := range extraCAs {
			pool.AddCert(c)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return t
}

// Response is a successful page. Its Body is in a buffer borrowed from a
// pool shared by every Client: Release gives it back once the body has
// been decoded.
type Response struct {
	Body      []byte
	RequestID string
	buf       *[]byte // the borrowed buffer; nil once released
}

// SameOrigin reports whether link points at the Graph host (scheme, host
// and port), the only place the bearer token may go.
func (c *Client) SameOrigin(link string) bool { return SameOrigin(c.host, link) }

// SameOrigin reports whether link has host's scheme, host and port, and no
// user information: the test every client of a Microsoft API applies
// before a link gets its bearer token.
func SameOrigin(host *url.URL, link string) bool {
	u, err := url.Parse(link)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Scheme, host.Scheme) && strings.EqualFold(u.Hostname(), host.Hostname()) &&
		port(u) == port(host) && u.User == nil
}

// port is the URL's port, or its scheme's default.
func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

// Get fetches one page. A 401 drops the cached token and retries once with
// a fresh one.
func (c *Client) Get(ctx context.Context, link string) (*Response, error) {
	if !c.SameOrigin(link) {
		return nil, &OriginError{Link: link, Host: c.host.String()}
	}
	resp, err := c.get(ctx, link)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
		c.tokens.Invalidate()
		resp, err = c.get(ctx, link)
	}
	return resp, err
}

func (c *Client) get(ctx context.Context, link string) (*Response, error) {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	tok, err := c.tokens.Token()
	if err != nil {
		return nil, unwrapAuth(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	if err != nil {
		return nil, err
	}
	tok.SetAuthHeader(req)
	req.Header.Set("Accept", "application/json")
	res, err := c.http.Do(req)
	if err != nil {
		return nil, &TransportError{Err: Scrub(err, tok)}
	}
	defer res.Body.Close()
	page, err := ReadBody(res.Body, res.ContentLength)
	reqID := res.Header.Get("request-id")
	if err != nil {
		return nil, &TransportError{Err: fmt.Errorf("reading the response body: %w", Scrub(err, tok)), RequestID: reqID}
	}
	if len(page.Body) > MaxBody {
		page.Release()
		return nil, &APIError{Status: res.StatusCode, Code: "ResponseTooLarge", Message: fmt.Sprintf("the response is larger than %d MiB", MaxBody>>20), RequestID: reqID}
	}
	if res.StatusCode != http.StatusOK {
		defer page.Release() // the error holds copies only
		return nil, c.apiError(res, page.Body, reqID)
	}
	ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if ct != "application/json" {
		page.Release()
		return nil, &APIError{Status: res.StatusCode, Code: "UnexpectedContentType", Message: fmt.Sprintf("the response is %q, not JSON", ct), RequestID: reqID, Retryable: true}
	}
	page.RequestID = reqID
	return page, nil
}

// unwrapAuth finds the *auth.Error inside oauth2's wrapping.
func unwrapAuth(err error) error {
	var ae *auth.Error
	if errors.As(err, &ae) {
		return ae
	}
	return &auth.Error{Cause: err.Error(), Temporary: true}
}

// Scrub removes the access token from an error's text.
func Scrub(err error, tok *oauth2.Token) error {
	if tok == nil || tok.AccessToken == "" || !strings.Contains(err.Error(), tok.AccessToken) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), tok.AccessToken, "(redacted)"))
}

func (c *Client) apiError(res *http.Response, body []byte, reqID string) *APIError {
	e := &APIError{Status: res.StatusCode, RequestID: reqID}
	var env struct {
		Error struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			InnerError struct {
				RequestID string `json:"request-id"`
			} `json:"innerError"`
		} `json:"error"`
	}
	if jsoniter.ConfigCompatibleWithStandardLibrary.Unmarshal(body, &env) == nil {
		e.Code, e.Message = env.Error.Code, env.Error.Message
		if e.RequestID == "" {
			e.RequestID = env.Error.InnerError.RequestID
		}
	}
	if e.Message == "" {
		e.Message = http.StatusText(res.StatusCode)
	}
	if len(e.Message) > 300 {
		e.Message = e.Message[:300] + "…"
	}
	switch {
	case res.StatusCode == http.StatusTooManyRequests, res.StatusCode >= 500:
		e.Retryable = true
		e.RetryAfter = ParseRetryAfter(res.Header.Get("Retry-After"), c.Now())
	}
	return e
}

// ParseRetryAfter reads Retry-After as (fractional) seconds or an HTTP date;
// it returns 0 when absent or unreadable.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if !(f > 0) || math.IsInf(f, 0) { // also NaN
			return 0
		}
		return min(time.Duration(min(f, 3600)*float64(time.Second)), time.Hour)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), time.Hour)
	}
	return 0
}

// APIError is a non-200 answer from Graph (or, with Service set, from
// another Microsoft API).
type APIError struct {
	Status     int
	Code       string // Graph error code, e.g. Authentication_MSGraphPermissionMissing
	Message    string
	RequestID  string
	Retryable  bool
	RetryAfter time.Duration // from Retry-After, 0 when absent
	// Throttled marks throttling answered with another status than 429
	// (the Management Activity API's 403 AF429).
	Throttled bool
	// Service names the API when it is not Graph; Hint is its fix.
	Service, Hint string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%s answered HTTP %d", cmp.Or(e.Service, "Graph"), e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	s += ": " + e.Message
	if e.RequestID != "" {
		s += " (request-id " + e.RequestID + ")"
	}
	return s
}

// Fix says what the user can do about a non-retryable error.
func (e *APIError) Fix() string {
	if e.Service != "" {
		return e.Hint
	}
	switch e.Code {
	case "Authentication_RequestFromNonPremiumTenantOrB2CTenant":
		return "reading sign-in logs through Graph needs a Microsoft Entra ID P1 or P2 licence in the tenant (B2C tenants cannot); assign one, then the plugin resumes by itself"
	case "Authentication_MSGraphPermissionMissing", "Authentication_ApplicationHasNoReadAuditLogDataAccess", "Authentication_ApplicationHasNoDirectoryReadAccess", "Authorization_RequestDenied":
		return "grant the app the application permissions AuditLog.Read.All and Directory.Read.All in Microsoft Graph and give admin consent; the plugin resumes by itself"
	case "InvalidAuthenticationToken":
		return "the token was refused twice: check that graph_host and authority_host belong to the same cloud"
	}
	switch {
	case e.Status == http.StatusBadRequest:
		return "the query was refused: check source and page_size"
	case e.Status == http.StatusForbidden:
		return "check the app's Graph permissions (AuditLog.Read.All, Directory.Read.All) and the tenant's licence"
	case e.Status == http.StatusNotFound:
		return "check graph_host"
	}
	return ""
}

// TransportError is a network failure, a timeout or a cut-off body.
type TransportError struct {
	Err       error
	RequestID string
	Service   string // "" is Graph
}

func (e *TransportError) Error() string {
	return "request to " + cmp.Or(e.Service, "Graph") + " failed: " + e.Err.Error()
}
func (e *TransportError) Unwrap() error { return e.Err }

// OriginError is a link that points away from the configured host: a
// nextLink away from graph_host, or (What and Key set) another API's link
// away from its host key.
type OriginError struct{ Link, Host, What, Key string }

func (e *OriginError) Error() string {
	u, _ := url.Parse(e.Link)
	where := "an unreadable address"
	if u != nil {
		where = u.Scheme + "://" + u.Host
	}
	return fmt.Sprintf("%s points to %s, not to %s %s; it was not followed, so the bearer token is not sent there",
		cmp.Or(e.What, "Graph's @odata.nextLink"), where, cmp.Or(e.Key, "graph_host"), e.Host)
}
