// Package manage sends requests to the Office 365 Management Activity API:
// the subscriptions of a tenant, the listing of its content blobs by
// contentCreated (paged through the NextPageUri header), and the blobs
// themselves. As in package graph, the bearer token goes only to the
// configured host, bodies are read with a cap, errors are typed (graph's
// APIError and TransportError, with Service set) and nothing sleeps.
package manage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	jsoniter "github.com/json-iterator/go"

	"github.com/in-msgraph/in_msgraph/internal/auth"
	"github.com/in-msgraph/in_msgraph/internal/graph"
)

// Service names the API in errors and messages.
const Service = "the Management Activity API"

// MaxBody caps a listing or a blob; a larger one is refused.
const MaxBody = graph.MaxBody

// Client talks to one tenant's activity feed on one host.
type Client struct {
	host      *url.URL
	tenant    string
	publisher string
	tokens    *auth.Source
	http      *http.Client
	// Timeout bounds each request, body included.
	Timeout time.Duration
	// Now is the clock for Retry-After dates.
	Now func() time.Time
}

// NewClient returns a client for the feed of tenant (a GUID) on host
// (scheme://host[:port]); publisher is sent as PublisherIdentifier.
func NewClient(host, tenant, publisher string, tokens *auth.Source, transport http.RoundTripper, timeout time.Duration) (*Client, error) {
	u, err := url.Parse(host)
	if err != nil {
		return nil, err
	}
	return &Client{
		host:      u,
		tenant:    strings.ToLower(tenant),
		publisher: publisher,
		tokens:    tokens,
		http:      &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		Timeout:   timeout,
		Now:       time.Now,
	}, nil
}

// feed is the base of every address: {host}/api/v1.0/{tenant}/activity/feed.
func (c *Client) feed() string {
	return strings.TrimSuffix(c.host.String(), "/") + "/api/v1.0/" + c.tenant + "/activity/feed"
}

// Format is how the listing's startTime and endTime are written.
const Format = "2006-01-02T15:04:05"

// MaxWindow is the longest listing window the API accepts.
const MaxWindow = 24 * time.Hour

// ListURL is the first page of the blobs of contentType whose contentCreated
// lies in [from, to] (both inclusive). The API's window is [startTime,
// endTime) in whole seconds, so the bounds are widened to them: startTime
// is from's second, endTime the second after to's.
func (c *Client) ListURL(contentType string, from, to time.Time) string {
	start := from.UTC().Truncate(time.Second)
	end := to.UTC().Truncate(time.Second).Add(time.Second)
	q := url.Values{}
	q.Set("contentType", contentType)
	q.Set("startTime", start.Format(Format))
	q.Set("endTime", end.Format(Format))
	q.Set("PublisherIdentifier", c.publisher)
	return c.feed() + "/subscriptions/content?" + q.Encode()
}

// Span is the window ListURL asks for with these bounds: its length must
// stay within MaxWindow.
func Span(from, to time.Time) time.Duration {
	return to.UTC().Truncate(time.Second).Add(time.Second).Sub(from.UTC().Truncate(time.Second))
}

// Content is one item of a listing.
type Content struct {
	ContentType string    `json:"contentType"`
	ID          string    `json:"contentId"`
	URI         string    `json:"contentUri"`
	Created     time.Time `json:"-"`
	Expires     time.Time `json:"-"`
}

// Listing is one page of a content listing.
type Listing struct {
	Items []Content
	// Next is the NextPageUri header: the next page, or "" on the last.
	Next      string
	RequestID string
	// Invalid counts the items that could not be read (no contentId, no
	// contentUri or no readable contentCreated); Problem says why for the
	// first.
	Invalid int
	Problem string
}

// SameOrigin reports whether link points at the configured host (scheme,
// host and port), the only place the bearer token may go.
func (c *Client) SameOrigin(link string) bool { return graph.SameOrigin(c.host, link) }

// List reads one listing page (ListURL, or a NextPageUri).
func (c *Client) List(ctx context.Context, link string) (*Listing, error) {
	if !c.SameOrigin(link) {
		return nil, &graph.OriginError{Link: link, Host: c.host.String(), What: Service + "'s NextPageUri", Key: "management_host"}
	}
	res, err := c.do(ctx, http.MethodGet, link)
	if err != nil {
		return nil, err
	}
	l := &Listing{RequestID: res.requestID, Next: res.header.Get("NextPageUri")}
	var raw []struct {
		Content
		Created string `json:"contentCreated"`
		Expires string `json:"contentExpiration"`
	}
	// The items' strings are copies: the body's buffer goes back at once.
	err = jsoniter.ConfigCompatibleWithStandardLibrary.Unmarshal(res.body.Body, &raw)
	res.body.Release()
	if err != nil {
		return nil, &graph.TransportError{Service: Service, RequestID: res.requestID,
			Err: fmt.Errorf("the content listing could not be read (%v)", shorten(err.Error()))}
	}
	l.Items = make([]Content, 0, len(raw))
	for _, r := range raw {
		it := r.Content
		var problem string
		var perr error
		switch {
		case it.ID == "":
			problem = "an item has no contentId"
		case it.URI == "":
			problem = "an item has no contentUri"
		default:
			if it.Created, perr = ParseTime(r.Created); perr != nil {
				problem = fmt.Sprintf("an item has an unreadable contentCreated %q", shorten(r.Created))
			}
		}
		if problem != "" {
			if l.Invalid == 0 {
				l.Problem = problem
			}
			l.Invalid++
			continue
		}
		if it.Expires, perr = ParseTime(r.Expires); perr != nil {
			// Content is kept 7 days (the reference says so); an item
			// without a readable expiry is taken to have that.
			it.Expires = it.Created.Add(7 * 24 * time.Hour)
		}
		l.Items = append(l.Items, it)
	}
	return l, nil
}

// Blob fetches one content blob, a JSON array of audit records. The URI
// must be on the configured host: the token is never sent elsewhere. The
// caller releases the Response once it has decoded the body.
func (c *Client) Blob(ctx context.Context, uri string) (*graph.Response, error) {
	if !c.SameOrigin(uri) {
		return nil, &graph.OriginError{Link: uri, Host: c.host.String(), What: Service + "'s contentUri", Key: "management_host"}
	}
	// The publisher identifies itself on every request, blobs included.
	if u, err := url.Parse(uri); err == nil && u.Query().Get("PublisherIdentifier") == "" {
		q := u.Query()
		q.Set("PublisherIdentifier", c.publisher)
		u.RawQuery = q.Encode()
		uri = u.String()
	}
	res, err := c.do(ctx, http.MethodGet, uri)
	if err != nil {
		return nil, err
	}
	res.body.RequestID = res.requestID
	return res.body, nil
}

// Subscription is one content type's subscription.
type Subscription struct {
	ContentType string `json:"contentType"`
	Status      string `json:"status"`
}

// Subscriptions lists the tenant's subscriptions.
func (c *Client) Subscriptions(ctx context.Context) ([]Subscription, error) {
	res, err := c.do(ctx, http.MethodGet, c.feed()+"/subscriptions/list?PublisherIdentifier="+url.QueryEscape(c.publisher))
	if err != nil {
		return nil, err
	}
	var subs []Subscription
	err = jsoniter.ConfigCompatibleWithStandardLibrary.Unmarshal(res.body.Body, &subs)
	res.body.Release()
	if err != nil {
		return nil, &graph.TransportError{Service: Service, RequestID: res.requestID,
			Err: fmt.Errorf("the subscription list could not be read (%v)", shorten(err.Error()))}
	}
	return subs, nil
}

// Enabled reports whether contentType has an enabled subscription.
func Enabled(subs []Subscription, contentType string) bool {
	for _, s := range subs {
		if strings.EqualFold(s.ContentType, contentType) && strings.EqualFold(s.Status, "enabled") {
			return true
		}
	}
	return false
}

// Start starts the subscription to contentType. One that is enabled
// already (AF20024) is no error.
func (c *Client) Start(ctx context.Context, contentType string) error {
	q := url.Values{}
	q.Set("contentType", contentType)
	q.Set("PublisherIdentifier", c.publisher)
	res, err := c.do(ctx, http.MethodPost, c.feed()+"/subscriptions/start?"+q.Encode())
	if err == nil {
		res.body.Release()
	}
	var ae *graph.APIError
	if errors.As(err, &ae) && ae.Code == "AF20024" {
		return nil
	}
	return err
}

// StartURL is the address Start posts to, for messages that tell the
// user how to start a subscription by hand.
func (c *Client) StartURL(contentType string) string {
	return c.feed() + "/subscriptions/start?contentType=" + url.QueryEscape(contentType)
}

type response struct {
	body      *graph.Response // borrowed from graph's pool: released by the caller
	header    http.Header
	requestID string
}

// do sends one request; a 401 drops the cached token and retries once.
func (c *Client) do(ctx context.Context, method, link string) (*response, error) {
	res, err := c.once(ctx, method, link)
	var ae *graph.APIError
	if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
		c.tokens.Invalidate()
		res, err = c.once(ctx, method, link)
	}
	return res, err
}

func (c *Client) once(ctx context.Context, method, link string) (*response, error) {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	tok, err := c.tokens.Token()
	if err != nil {
		var ae *auth.Error
		if errors.As(err, &ae) {
			return nil, ae
		}
		return nil, &auth.Error{Cause: err.Error(), Temporary: true}
	}
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("")
	}
	req, err := http.NewRequestWithContext(ctx, method, link, body)
	if err != nil {
		return nil, err
	}
	tok.SetAuthHeader(req)
	req.Header.Set("Accept", "application/json")
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, &graph.TransportError{Service: Service, Err: graph.Scrub(err, tok)}
	}
	defer res.Body.Close()
	page, err := graph.ReadBody(res.Body, res.ContentLength)
	reqID := requestID(res.Header)
	if err != nil {
		return nil, &graph.TransportError{Service: Service, Err: fmt.Errorf("reading the response body: %w", graph.Scrub(err, tok)), RequestID: reqID}
	}
	if len(page.Body) > MaxBody {
		page.Release()
		return nil, &graph.APIError{Service: Service, Status: res.StatusCode, Code: "ResponseTooLarge", Message: fmt.Sprintf("the response is larger than %d MiB", MaxBody>>20), RequestID: reqID,
			Hint: "a content blob this large cannot be delivered; it is retried until it expires"}
	}
	if res.StatusCode/100 != 2 {
		defer page.Release() // the error holds copies only
		return nil, c.apiError(res, page.Body, reqID)
	}
	if method == http.MethodGet {
		ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
		if ct != "application/json" {
			page.Release()
			return nil, &graph.APIError{Service: Service, Status: res.StatusCode, Code: "UnexpectedContentType", Message: fmt.Sprintf("the response is %q, not JSON", ct), RequestID: reqID, Retryable: true}
		}
	}
	return &response{body: page, header: res.Header, requestID: reqID}, nil
}

// requestID is the id Microsoft logs the request under.
func requestID(h http.Header) string {
	for _, k := range []string{"request-id", "x-ms-request-id", "client-request-id"} {
		if v := h.Get(k); v != "" {
			return v
		}
	}
	return ""
}

func (c *Client) apiError(res *http.Response, body []byte, reqID string) *graph.APIError {
	e := &graph.APIError{Service: Service, Status: res.StatusCode, RequestID: reqID}
	var env struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		Message string `json:"Message"`
	}
	if jsoniter.ConfigCompatibleWithStandardLibrary.Unmarshal(body, &env) == nil {
		e.Code, e.Message = env.Error.Code, env.Error.Message
		if e.Message == "" {
			e.Message = env.Message
		}
	}
	if e.Message == "" {
		e.Message = http.StatusText(res.StatusCode)
	}
	e.Message = shorten(e.Message)
	switch {
	case e.Code == "AF429":
		e.Throttled, e.Retryable = true, true
	case res.StatusCode == http.StatusTooManyRequests:
		e.Throttled, e.Retryable = true, true
	case res.StatusCode >= 500:
		e.Retryable = true
	}
	if e.Retryable {
		e.RetryAfter = graph.ParseRetryAfter(res.Header.Get("Retry-After"), c.Now())
	}
	e.Hint = hint(e)
	return e
}

// hint says what the user can do about an error that retries do not clear.
func hint(e *graph.APIError) string {
	switch e.Code {
	case "AF20022", "AF20023":
		return "the subscription to this content type is not enabled: set auto_subscribe on, or start it (POST .../activity/feed/subscriptions/start?contentType=...)"
	case "AF10001":
		return "grant the app the application permission ActivityFeed.Read (ActivityFeed.ReadDlp for o365_dlp) of Office 365 Management APIs and give admin consent; the plugin resumes by itself"
	case "AF20010", "AF20011", "AF20012", "AF20013":
		return "check tenant_id (the tenant's GUID) and that the tenant has Microsoft 365 or Office 365 with unified audit logging turned on"
	case "AF20055", "AF20030", "AF20031", "AF20032", "AF20033":
		return "the listing window was refused; this is a plugin error if it persists"
	case "AF20051":
		return "the content expired before it could be fetched (content is kept 7 days)"
	}
	switch e.Status {
	case http.StatusUnauthorized:
		return "the token was refused: check that authority_host and management_host belong to the same cloud, and the app's ActivityFeed.Read permission"
	case http.StatusForbidden:
		return "check the app's ActivityFeed.Read (ActivityFeed.ReadDlp for o365_dlp) permission of Office 365 Management APIs, and that auditing is on in the tenant"
	case http.StatusNotFound:
		return "check management_host and tenant_id"
	}
	return ""
}

// ParseTime reads contentCreated and contentExpiration: RFC 3339 (the API
// writes 2026-12-01T10:00:00.000Z), or without a zone (UTC).
func ParseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse("2006-01-02T15:04:05.999999999", s)
	return t.UTC(), err
}

func shorten(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
