package graphsim

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

const (
	tokenPathSuffix = "/oauth2/v2.0/token"
	maxTokens       = 4096
)

// token implements the client-credentials grant of the Entra v2.0 token
// endpoint, with the error codes a misconfigured client actually meets.
func (s *Server) token(w http.ResponseWriter, r *http.Request, tenant string) {
	if r.Method != http.MethodPost {
		s.tokenError(w, r, http.StatusBadRequest, "invalid_request", 900561,
			"The endpoint only accepts POST, OPTIONS requests. Received a "+r.Method+" request.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		s.tokenError(w, r, http.StatusBadRequest, "invalid_request", 900144,
			"The request body must contain the following parameter: 'grant_type'.")
		return
	}
	form := r.PostForm
	if !s.knownTenant(tenant) {
		s.tokenError(w, r, http.StatusBadRequest, "invalid_request", 90002,
			fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	switch gt := form.Get("grant_type"); gt {
	case "client_credentials":
	case "":
		s.tokenError(w, r, http.StatusBadRequest, "invalid_request", 900144,
			"The request body must contain the following parameter: 'grant_type'.")
		return
	default:
		s.tokenError(w, r, http.StatusBadRequest, "unsupported_grant_type", 70003,
			"The app requested an unsupported grant type '"+gt+"'.")
		return
	}
	clientID, secret := form.Get("client_id"), form.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		// RFC 6749 §2.3.1: Basic credentials are form-encoded first.
		if v, err := url.QueryUnescape(u); err == nil {
			clientID = v
		}
		if v, err := url.QueryUnescape(p); err == nil {
			secret = v
		}
	}
	assertion, assertionType := form.Get("client_assertion"), form.Get("client_assertion_type")
	var cred string
	switch {
	case clientID == "":
		s.tokenError(w, r, http.StatusBadRequest, "invalid_request", 900144,
			"The request body must contain the following parameter: 'client_id'.")
		return
	case !strings.EqualFold(clientID, s.opts.ClientID):
		s.tokenError(w, r, http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", clientID, tenant))
		return
	case secret != "" && (assertion != "" || assertionType != ""):
		// Entra authenticates a client with exactly one credential; a
		// client that sends two has mixed up its configuration.
		s.tokenError(w, r, http.StatusBadRequest, "invalid_request", 90023,
			"The request contains both 'client_secret' and 'client_assertion'; present exactly one client credential.")
		return
	case secret == "" && assertion == "":
		s.tokenError(w, r, http.StatusBadRequest, "invalid_client", 7000216,
			"'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.")
		return
	case secret != "" && secret != s.opts.ClientSecret:
		s.tokenError(w, r, http.StatusBadRequest, "invalid_client", 7000215,
			fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", s.opts.ClientID))
		return
	case secret != "":
		cred = CredentialSecret
	default:
		c, rej := s.checkAssertion(r, clientID, assertionType, assertion)
		if rej != nil {
			s.tokenError(w, r, rej.status, rej.code, rej.aadsts, rej.msg)
			return
		}
		cred = c
	}
	api, resource, ok := s.scopeAPI(r, form.Get("scope"))
	if !ok {
		if form.Get("scope") == "" {
			s.tokenError(w, r, http.StatusBadRequest, "invalid_scope", 70011,
				"The provided request must include a 'scope' input parameter.")
		} else {
			s.tokenError(w, r, http.StatusBadRequest, "invalid_scope", 70011,
				fmt.Sprintf("The provided value for the input parameter 'scope' is not valid. The scope %s is not valid.", form.Get("scope")))
		}
		return
	}
	s.issue(w, cred, api, resource, s.canonicalTenant(tenant))
}

// Credentials a token can be issued for, as counted in Stats.ByCredential.
const (
	CredentialSecret          = "client_secret"
	CredentialCertificate     = "certificate"
	CredentialFederated       = "federated"
	CredentialManagedIdentity = "managed_identity"
)

// graphHosts are the Graph hosts of the national clouds, whose scopes and
// resources the simulator accepts as its own so that a client configured
// for any cloud can be pointed at it (through a proxy that resolves those
// names to the simulator).
var graphHosts = []string{
	"https://graph.microsoft.com",
	"https://graph.microsoft.us",
	"https://dod-graph.microsoft.us",
	"https://microsoftgraph.chinacloudapi.cn",
}

// APIs a token can be for.
const (
	apiGraph  = "graph"
	apiManage = "manage"
)

// scopeAPI accepts the national clouds' Graph hosts, the simulator's own
// URL and the host the request came in on, so a client configured for any
// of them can be exercised, and the Management Activity API hosts and
// ManageURL. It returns the API the token is for and its resource.
func (s *Server) scopeAPI(r *http.Request, scope string) (api, resource string, ok bool) {
	host, ok := strings.CutSuffix(scope, "/.default")
	switch {
	case !ok:
		return "", "", false
	case s.isManageHost(host):
		return apiManage, host, true
	case s.isGraphHost(r, host):
		return apiGraph, host, true
	}
	return "", "", false
}

// isGraphHost reports whether u (a scheme and host, without a trailing
// slash) names this Graph service.
func (s *Server) isGraphHost(r *http.Request, u string) bool {
	if slices.Contains(graphHosts, u) {
		return true
	}
	if own := s.URL(); own != "" && u == own {
		return true
	}
	// Behind a TLS-terminating proxy the request arrives over plain HTTP
	// although the client used https.
	return u == baseURL(r) || u == "https://"+r.Host
}

func (s *Server) issue(w http.ResponseWriter, cred, api, resource, tenant string) {
	tok, _ := s.grantIn(tenant, s.opts.ClientID, cred, api, resource)
	secs := int(s.opts.TokenLifetime / time.Second)
	s.mu.Lock()
	s.stats.Tokens++
	if api == apiManage {
		s.stats.ManageTokens++
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, "application/json; charset=utf-8", struct {
		TokenType    string `json:"token_type"`
		ExpiresIn    int    `json:"expires_in"`
		ExtExpiresIn int    `json:"ext_expires_in"`
		AccessToken  string `json:"access_token"`
	}{"Bearer", secs, secs, tok})
}

// grant mints an access token for client that Graph accepts until it
// expires, and returns it with its expiry.
func (s *Server) grant(client, cred string) (string, time.Time) {
	return s.grantFor(client, cred, apiGraph, "")
}

// grantFor mints an access token for client that api accepts until it
// expires, and returns it with its expiry.
func (s *Server) grantFor(client, cred, api, resource string) (string, time.Time) {
	return s.grantIn(s.opts.TenantID, client, cred, api, resource)
}

// grantIn is grantFor in tenant (canonical).
func (s *Server) grantIn(tenant, client, cred, api, resource string) (string, time.Time) {
	tok := "gsim." + rand.Text() + rand.Text()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	if len(s.tokens) >= maxTokens {
		for k, g := range s.tokens {
			if !now.Before(g.expires) {
				delete(s.tokens, k)
			}
		}
	}
	exp := now.Add(s.opts.TokenLifetime)
	s.tokens[tok] = grant{tenant: tenant, client: client, expires: exp, api: api, resource: resource}
	s.stats.ByCredential[cred]++
	s.stats.TokensByTenant[tenant]++
	return tok, exp
}

func (s *Server) tokenError(w http.ResponseWriter, r *http.Request, status int, code string, aadsts int, msg string) {
	traceID := s.newID()
	corrID := r.Header.Get("client-request-id")
	if corrID == "" {
		corrID = s.newID()
	}
	s.mu.Lock()
	now := s.opts.Now().UTC()
	s.stats.TokenErrors++
	s.mu.Unlock()
	ts := now.Format("2006-01-02 15:04:05Z")
	w.Header().Set("x-ms-request-id", traceID)
	writeJSON(w, status, "application/json; charset=utf-8", struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
		ErrorCodes       []int  `json:"error_codes"`
		Timestamp        string `json:"timestamp"`
		TraceID          string `json:"trace_id"`
		CorrelationID    string `json:"correlation_id"`
		ErrorURI         string `json:"error_uri"`
	}{
		Error: code,
		ErrorDescription: fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s",
			aadsts, msg, traceID, corrID, ts),
		ErrorCodes:    []int{aadsts},
		Timestamp:     ts,
		TraceID:       traceID,
		CorrelationID: corrID,
		ErrorURI:      fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", aadsts),
	})
}

// writeJSON encodes v without HTML escaping, as Microsoft's services do.
func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func marshal(v any) ([]byte, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return []byte(strings.TrimSuffix(b.String(), "\n")), nil
}
