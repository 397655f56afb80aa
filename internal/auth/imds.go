package auth

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// imdsAPIVersion is the IMDS token API version whose response carries
// expires_in and expires_on as strings.
const imdsAPIVersion = "2018-02-01"

// maxIMDSBody caps what is read of an IMDS answer.
const maxIMDSBody = 1 << 20

// imdsClient returns the client for IMDS: the caller's transport settings
// (TLS, timeouts) without its proxy, since IMDS is a link-local address a
// proxy cannot reach, and without following redirects, which IMDS never
// sends. Keep-alives are off because a token is asked for about once an
// hour. A transport that is not an *http.Transport cannot be cloned, so
// the default transport is used instead.
func imdsClient(base *http.Client) *http.Client {
	var tr *http.Transport
	if base != nil {
		if t, ok := base.Transport.(*http.Transport); ok {
			tr = t.Clone()
		}
	}
	if tr == nil {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	}
	tr.Proxy = nil
	tr.DisableKeepAlives = true
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// imdsToken asks the Instance Metadata Service for a token of the VM's
// managed identity: the system-assigned one, or the user-assigned one
// whose client ID is Credentials.ClientID.
func (s *Source) imdsToken(ctx context.Context) (*oauth2.Token, error) {
	c := s.creds
	endpoint := cmp.Or(c.IMDSEndpoint, DefaultIMDSEndpoint)
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, &Error{Cause: fmt.Sprintf("the IMDS endpoint %q is not an absolute URL", endpoint),
			Fix: "set imds_endpoint to " + DefaultIMDSEndpoint + " or leave it unset"}
	}
	if c.Resource == "" {
		return nil, &Error{Cause: "no resource to ask IMDS for", Fix: "set graph_host"}
	}
	q := u.Query()
	q.Set("api-version", imdsAPIVersion)
	q.Set("resource", c.Resource)
	if c.ClientID != "" {
		q.Set("client_id", c.ClientID)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &Error{Cause: err.Error(), Fix: "check imds_endpoint"}
	}
	req.Header.Set("Metadata", "true")
	issued := time.Now()
	resp, err := s.imds.Do(req)
	if err != nil {
		return nil, &Error{Cause: "IMDS: " + err.Error(), Temporary: true,
			Fix: "check that " + u.Host + " is reachable: managed identity works only on an Azure VM, scale set or AKS node, and IMDS is never reached through a proxy"}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIMDSBody))
	if err != nil {
		return nil, &Error{Status: resp.StatusCode, Cause: "IMDS: reading the answer: " + err.Error(), Temporary: true}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, classifyIMDS(resp.StatusCode, body, c.ClientID)
	}
	return parseIMDSToken(body, issued)
}

// flexNumber is a number IMDS renders as a string ("3599"), which some
// other managed identity endpoints render as a JSON number.
type flexNumber struct {
	raw string
	set bool
}

func (n *flexNumber) UnmarshalJSON(b []byte) error {
	n.set = true
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &n.raw)
	}
	n.raw = string(b)
	return nil
}

func (n flexNumber) int() (int64, error) {
	return strconv.ParseInt(strings.TrimSpace(n.raw), 10, 64)
}

func parseIMDSToken(body []byte, issued time.Time) (*oauth2.Token, error) {
	bad := func(cause string) error {
		return &Error{Status: http.StatusOK, Cause: "IMDS: " + cause,
			Fix: "check that imds_endpoint is the IMDS token endpoint (" + DefaultIMDSEndpoint + ")"}
	}
	var r struct {
		AccessToken string     `json:"access_token"`
		ExpiresIn   flexNumber `json:"expires_in"`
		ExpiresOn   flexNumber `json:"expires_on"`
		TokenType   string     `json:"token_type"`
	}
	// The decoder's messages quote no part of the body, which holds the
	// access token.
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&r); err != nil {
		return nil, bad("the answer is not a token response (not JSON)")
	}
	if r.AccessToken == "" {
		return nil, bad("the answer has no access_token")
	}
	on, onErr := r.ExpiresOn.int()
	in, inErr := r.ExpiresIn.int()
	switch {
	case r.ExpiresOn.set && (onErr != nil || on <= 0):
		return nil, bad("expires_on is not a number of Unix seconds")
	case r.ExpiresIn.set && (inErr != nil || in <= 0):
		return nil, bad("expires_in is not a number of seconds")
	case !r.ExpiresOn.set && !r.ExpiresIn.set:
		return nil, bad("the answer has neither expires_on nor expires_in")
	}
	var exp time.Time
	switch {
	case r.ExpiresOn.set:
		// expires_on is exact whatever the request's latency; expires_in
		// takes over only when this machine's clock is so far behind IMDS
		// that the token would look expired on arrival.
		exp = time.Unix(on, 0)
		if !exp.After(issued) && r.ExpiresIn.set {
			exp = issued.Add(time.Duration(in) * time.Second)
		}
	default:
		exp = issued.Add(time.Duration(in) * time.Second)
	}
	return &oauth2.Token{AccessToken: r.AccessToken, TokenType: cmp.Or(r.TokenType, "Bearer"), Expiry: exp}, nil
}

// classifyIMDS turns an IMDS refusal into an Error. IMDS answers 404 and
// 410 while it is being updated, 429 when called too often and 5xx on
// internal errors: all pass, so they are Temporary and the caller backs
// off. 400 means the request names no identity the VM has.
func classifyIMDS(status int, body []byte, clientID string) error {
	var eb struct {
		Error string `json:"error"`
		Desc  string `json:"error_description"`
	}
	_ = json.Unmarshal(body, &eb)
	desc := firstSentence(strings.TrimSpace(eb.Desc))
	e := &Error{Status: status, Cause: "IMDS: " + cmp.Or(desc, eb.Error, "no error description")}
	if m := aadsts.FindStringSubmatch(eb.Desc); m != nil {
		e.Code = "AADSTS" + m[1]
		e.Fix = fixFor(KindManagedIdentity, m[1])
	}
	lower := strings.ToLower(eb.Error + " " + eb.Desc)
	switch {
	case status == http.StatusNotFound || status == http.StatusGone || status == http.StatusTooManyRequests || status >= 500:
		e.Temporary = true
		e.Fix = ""
	case status >= 300 && status < 400:
		e.Cause = fmt.Sprintf("IMDS answered with a redirect (HTTP %d), which is not followed", status)
		e.Fix = "set imds_endpoint to the IMDS token endpoint itself (" + DefaultIMDSEndpoint + ")"
	case strings.Contains(lower, "identity not found") && clientID != "":
		e.Fix = "no managed identity with this client_id is assigned to this VM or node: assign the user-assigned identity to the VM, scale set or AKS node pool, or correct client_id"
	case strings.Contains(lower, "identity not found"):
		e.Fix = "this VM or node has no system-assigned managed identity: enable it, or assign a user-assigned identity and set client_id to its client ID"
	case eb.Error == "bad_request_102" || strings.Contains(lower, "metadata header"):
		e.Fix = "the Metadata header did not reach IMDS: something between this machine and IMDS strips it; IMDS must be reached directly, without a proxy"
	}
	if e.Fix == "" && !e.Temporary {
		e.Fix = "check client_id, graph_host and imds_endpoint"
	}
	return e
}
