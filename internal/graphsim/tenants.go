package graphsim

import (
	"fmt"
	"strings"
)

// Tenant is a tenant the application ClientID is consented in besides
// Options.TenantID, as a multi-tenant application with an administrator's
// consent in each: the same client ID, secret, certificates and federated
// tokens get tokens in every tenant. Each tenant's tokens, Graph events,
// Management Activity API subscriptions and content, per-tenant limits and
// paging are its own.
type Tenant struct {
	// ID is the tenant's GUID: the {tenant} of its token endpoint and of
	// its Management Activity API addresses, and its key in Stats.
	ID string
	// Aliases are the tenant's domains (contoso.onmicrosoft.com), also
	// accepted, in any case, as the {tenant} of its token endpoint and as
	// Event.Tenant and Blob.Tenant.
	Aliases []string
}

// NumberedTenant is tenant n (n ≥ 0) of a generated fleet: the GUID
// 00000000-0000-4000-8000-<n in 12 digits> and the domain
// tenant<n>.example.com, the same on every call.
func NumberedTenant(n int) Tenant {
	return Tenant{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", n%1e12), Aliases: []string{fmt.Sprintf("tenant%d.example.com", n)}}
}

// AddTenant makes tenant t known, as an administrator's consent does: from
// then on its token endpoint issues tokens. It is safe while the server
// runs. Adding a known tenant again adds its new aliases. Events and blobs
// added earlier under t.ID are served from then on; those added under an
// alias not yet known are not. AddTenant panics if t.ID is not a GUID or an
// alias already names another tenant. A Tenant whose ID is Options.TenantID
// adds aliases to the default tenant.
func (s *Server) AddTenant(t Tenant) {
	if !isGUID(t.ID) {
		panic(fmt.Sprintf("graphsim: AddTenant: tenant ID %q is not a GUID", t.ID))
	}
	s.tenantMu.Lock()
	defer s.tenantMu.Unlock()
	id := t.ID
	if known, ok := s.tenantIDs[strings.ToLower(id)]; ok {
		id = known
	}
	names := append([]string{id}, t.Aliases...)
	for _, a := range names {
		if known, ok := s.tenantIDs[strings.ToLower(a)]; a == "" || ok && known != id {
			panic(fmt.Sprintf("graphsim: AddTenant: alias %q of %s is empty or names tenant %s", a, t.ID, known))
		}
	}
	for _, a := range names {
		s.tenantIDs[strings.ToLower(a)] = id
	}
}

// canonicalTenant is the ID of the tenant t names (its ID or an alias, in
// any case), or "" if none does; "" names the default tenant.
func (s *Server) canonicalTenant(t string) string {
	if t == "" {
		return s.opts.TenantID
	}
	s.tenantMu.RLock()
	defer s.tenantMu.RUnlock()
	return s.tenantIDs[strings.ToLower(t)]
}

// knownTenant reports whether t, the {tenant} of a token endpoint path,
// names a known tenant.
func (s *Server) knownTenant(t string) bool { return t != "" && s.canonicalTenant(t) != "" }

// tenantKey is the key the data of tenant t (an ID or alias, "" the
// default tenant) is kept under: its ID in lower case, or for a tenant not
// known yet t in lower case, so that its data is served once a tenant of
// that ID is added.
func (s *Server) tenantKey(t string) string {
	if id := s.canonicalTenant(t); id != "" {
		return strings.ToLower(id)
	}
	return strings.ToLower(t)
}

// eventsKey is where the events of source name of the tenant of key
// (see tenantKey) are kept: the default tenant's under the source's name,
// every other one's under its key, "|" and the name, so that a query of
// one tenant never looks at another's events.
func (s *Server) eventsKey(key, name string) string {
	if key == strings.ToLower(s.opts.TenantID) {
		return name
	}
	return key + "|" + name
}

// sourceOf is the source of an events key.
func sourceOf(key string) string {
	if _, name, ok := strings.Cut(key, "|"); ok {
		return name
	}
	return key
}
