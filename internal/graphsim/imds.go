package graphsim

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// IMDSPath is the path of the Azure Instance Metadata Service token
// endpoint, served on the same server as Graph.
const IMDSPath = "/metadata/identity/oauth2/token"

// SystemAssignedClientID is the client ID of the simulated VM's
// system-assigned managed identity.
const SystemAssignedClientID = "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff"

// IMDSFaults selects injected IMDS failures, as per-request probabilities.
// IMDS answers 404 and 410 while it is being updated or the identity is
// being set up, 429 when called too often, and 5xx on internal errors;
// clients are expected to retry all of them with back-off.
type IMDSFaults struct {
	Rate404 float64
	Rate429 float64
	Rate410 float64
	Rate500 float64
}

// imds implements the managed identity token endpoint of IMDS
// (api-version 2018-02-01): a GET with the Metadata header, the resource
// as a query parameter, an optional client_id selecting a user-assigned
// identity, and numbers rendered as strings in the response.
func (s *Server) imds(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.IMDSRequests++
	f := s.imdsFault
	u := 1.0
	if f.Rate404+f.Rate429+f.Rate410+f.Rate500 > 0 {
		// Drawn only when faults are on, so that IMDS traffic does not
		// shift the Graph fault sequence of a seeded run.
		u = s.rng.Float64()
	}
	s.mu.Unlock()

	if r.Method != http.MethodGet {
		imdsError(w, http.StatusMethodNotAllowed, "invalid_request", "The requested method is not supported for this endpoint; use GET.")
		return
	}
	if r.Header.Get("Metadata") != "true" {
		imdsError(w, http.StatusBadRequest, "invalid_request", "Required metadata header not specified")
		return
	}
	switch {
	case u < f.Rate404:
		imdsError(w, http.StatusNotFound, "not_found", "The managed identity endpoint is being updated; try again later.")
		return
	case u < f.Rate404+f.Rate429:
		imdsError(w, http.StatusTooManyRequests, "too_many_requests", "Too many requests to the managed identity endpoint; try again later.")
		return
	case u < f.Rate404+f.Rate429+f.Rate410:
		imdsError(w, http.StatusGone, "gone", "The managed identity endpoint is being upgraded; it will be back within 70 seconds.")
		return
	case u < f.Rate404+f.Rate429+f.Rate410+f.Rate500:
		imdsError(w, http.StatusInternalServerError, "unknown_error", "An unexpected error occurred while fetching the access token.")
		return
	}
	q := r.URL.Query()
	resource := q.Get("resource")
	clientID := q.Get("client_id")
	switch {
	case q.Get("api-version") == "":
		imdsError(w, http.StatusBadRequest, "invalid_request", "Required query variable 'api-version' is missing")
		return
	case resource == "":
		imdsError(w, http.StatusBadRequest, "invalid_request", "Required query variable 'resource' is missing")
		return
	case !s.isGraphHost(r, strings.TrimSuffix(resource, "/")):
		imdsError(w, http.StatusBadRequest, "invalid_resource",
			fmt.Sprintf("AADSTS500011: The resource principal named %s was not found in the tenant named %s. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.", resource, s.opts.TenantID))
		return
	case q.Has("object_id") || q.Has("msi_res_id") || q.Has("mi_res_id"):
		// The simulator knows identities by client ID only.
		imdsError(w, http.StatusBadRequest, "invalid_request", "Identity not found")
		return
	case clientID != "" && !slices.ContainsFunc(s.opts.ManagedIdentityClientIDs, func(id string) bool { return strings.EqualFold(id, clientID) }):
		imdsError(w, http.StatusBadRequest, "invalid_request", "Identity not found")
		return
	}
	client := SystemAssignedClientID
	if clientID != "" {
		client = strings.ToLower(clientID)
	}
	tok, exp := s.grant(client, CredentialManagedIdentity)
	s.mu.Lock()
	s.stats.IMDSTokens++
	s.mu.Unlock()
	life := int64(s.opts.TokenLifetime.Seconds())
	writeJSON(w, http.StatusOK, "application/json; charset=utf-8", struct {
		AccessToken  string `json:"access_token"`
		ClientID     string `json:"client_id"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    string `json:"expires_in"`
		ExpiresOn    string `json:"expires_on"`
		ExtExpiresIn string `json:"ext_expires_in"`
		NotBefore    string `json:"not_before"`
		Resource     string `json:"resource"`
		TokenType    string `json:"token_type"`
	}{
		AccessToken:  tok,
		ClientID:     client,
		ExpiresIn:    strconv.FormatInt(life, 10),
		ExpiresOn:    strconv.FormatInt(exp.Unix(), 10),
		ExtExpiresIn: strconv.FormatInt(life, 10),
		NotBefore:    strconv.FormatInt(exp.Unix()-life, 10),
		Resource:     resource,
		TokenType:    "Bearer",
	})
}

func imdsError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, "application/json; charset=utf-8", struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}{code, desc})
}
