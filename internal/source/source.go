// Package source describes each audit log the plugin can collect as data:
// which API serves it (Microsoft Graph, or the Office 365 Management
// Activity API), where it lives, which time field filters it and with
// which operators, how large a page may be, which request budget it draws
// from, and what identifies one event (or one update of a changing
// object). Adding a source is a row in Profiles.
package source

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Budget is a request budget shared by the sources of one family.
type Budget struct {
	Family   string        // reports, identity_protection, security
	Requests int           // requests allowed per Window
	Window   time.Duration //
	PerApp   bool          // counted per app and tenant (else per tenant)
	// RetryAfter is false when the service's 429s carry no Retry-After.
	RetryAfter bool
}

// Budgets, from graph-api.md §4.
var (
	reports            = Budget{"reports", 5, 10 * time.Second, true, true}
	identityProtection = Budget{"identity_protection", 1, time.Second, false, false}
	security           = Budget{"security", 150, time.Minute, true, true}
	// The Management Activity API allows 2 000 requests a minute per
	// tenant to a publisher that identifies itself (PublisherIdentifier);
	// it answers more with 403 AF429, without Retry-After.
	management = Budget{"management_activity", 2000, time.Minute, true, false}
)

// The APIs a source can come from.
const (
	Graph    = "graph"
	Activity = "activity" // the Office 365 Management Activity API
)

// Profile is one source.
type Profile struct {
	Name string
	// API is Graph or Activity; ContentType names an Activity source's
	// content type (Audit.Exchange).
	API         string
	ContentType string
	Version     string // v1.0 or beta
	Path        string // below the version, e.g. /auditLogs/signIns
	TimeField   string // filtered, and the record time
	// IDField holds the identity: "id" when empty.
	IDField string
	// Strict: the time field accepts only gt and lt (not ge and le).
	Strict bool
	// Extra is a filter clause ANDed with the time range.
	Extra  string
	MaxTop int
	// Versioned objects change over their life; one update is identified
	// by (id, time field), so every change arrives once.
	Versioned bool
	// NoNextLink: the service may answer a full page without a nextLink
	// instead of paging; the client narrows the range to get the rest.
	NoNextLink bool
	Budget     Budget
	// Permission and Licence, for the documentation and error messages.
	Permission string
	Licence    string
}

// Profiles lists every source.
var Profiles = []Profile{
	{Name: "signins", API: Graph, Version: "v1.0", Path: "/auditLogs/signIns", TimeField: "createdDateTime", MaxTop: 1000, Budget: reports,
		Permission: "AuditLog.Read.All and Directory.Read.All", Licence: "Microsoft Entra ID P1 or P2"},
	signInType("signins_noninteractive", "nonInteractiveUser"),
	signInType("signins_service_principal", "servicePrincipal"),
	signInType("signins_managed_identity", "managedIdentity"),
	{Name: "directory_audits", API: Graph, Version: "v1.0", Path: "/auditLogs/directoryAudits", TimeField: "activityDateTime", MaxTop: 1000, Budget: reports,
		Permission: "AuditLog.Read.All and Directory.Read.All", Licence: "any Microsoft Entra ID edition"},
	{Name: "provisioning", API: Graph, Version: "v1.0", Path: "/auditLogs/provisioning", TimeField: "activityDateTime", Strict: true, MaxTop: 1000, Budget: reports,
		Permission: "AuditLog.Read.All and Directory.Read.All", Licence: "Microsoft Entra ID P1 or P2"},
	{Name: "risk_detections", API: Graph, Version: "v1.0", Path: "/identityProtection/riskDetections", TimeField: "lastUpdatedDateTime", MaxTop: 500, Versioned: true, Budget: identityProtection,
		Permission: "IdentityRiskEvent.Read.All", Licence: "Microsoft Entra ID P1 or P2 (P2 for full details)"},
	{Name: "security_alerts", API: Graph, Version: "v1.0", Path: "/security/alerts_v2", TimeField: "lastUpdateDateTime", MaxTop: 1000, Versioned: true, NoNextLink: true, Budget: security,
		Permission: "SecurityAlert.Read.All", Licence: "Microsoft Defender XDR (Microsoft 365 E5 or a Defender product)"},
	activity("o365_azure_ad", "Audit.AzureActiveDirectory", "ActivityFeed.Read"),
	activity("o365_exchange", "Audit.Exchange", "ActivityFeed.Read"),
	activity("o365_sharepoint", "Audit.SharePoint", "ActivityFeed.Read"),
	activity("o365_general", "Audit.General", "ActivityFeed.Read"),
	activity("o365_dlp", "DLP.All", "ActivityFeed.ReadDlp"),
}

// activity is a content type of the Management Activity API. Its listing
// is filtered on contentCreated (when a blob became available), its
// records are identified by Id and timed by CreationTime.
func activity(name, contentType, permission string) Profile {
	return Profile{Name: name, API: Activity, ContentType: contentType, Version: "v1.0", Path: "/activity/feed/subscriptions/content",
		TimeField: "CreationTime", IDField: "Id", Budget: management,
		Permission: permission + " (Office 365 Management APIs)", Licence: "Microsoft 365 or Office 365 with auditing on (E3/E5, Business Premium and the like)"}
}

func signInType(name, eventType string) Profile {
	return Profile{Name: name, API: Graph, Version: "beta", Path: "/auditLogs/signIns", TimeField: "createdDateTime",
		Extra: "signInEventTypes/any(t: t eq '" + eventType + "')", MaxTop: 1000, Budget: reports,
		Permission: "AuditLog.Read.All and Directory.Read.All", Licence: "Microsoft Entra ID P1 or P2"}
}

// Names lists the source names, comma-separated, for error messages.
func Names() string {
	n := make([]string, len(Profiles))
	for i, p := range Profiles {
		n[i] = p.Name
	}
	return strings.Join(n, ", ")
}

// Lookup finds a profile by name.
func Lookup(name string) (Profile, bool) {
	for _, p := range Profiles {
		if p.Name == name {
			return p, true
		}
	}
	return Profile{}, false
}

// IsActivity reports whether the source comes from the Management Activity
// API.
func (p Profile) IsActivity() bool { return p.API == Activity }

// Top is the page size to ask for: page_size, capped at what the endpoint
// accepts (a larger $top is a 400).
func (p Profile) Top(pageSize int) int { return min(pageSize, p.MaxTop) }

// URL is the first page of the events whose time field lies in [from, to]
// (both inclusive). Bounds are widened to whole seconds, as Graph's filter
// literals have none; with strict operators they are widened one second
// more, so gt and lt still cover the closed range without a gap. The
// overlap is absorbed by de-duplication.
func (p Profile) URL(host string, from, to time.Time, top int) string {
	from = from.UTC().Truncate(time.Second)
	if t := to.UTC().Truncate(time.Second); t.Before(to) {
		to = t.Add(time.Second)
	}
	lo, hi := "ge", "le"
	if p.Strict {
		from, to = from.Add(-time.Second), to.Add(time.Second)
		lo, hi = "gt", "lt"
	}
	const layout = "2006-01-02T15:04:05Z"
	filter := fmt.Sprintf("%s %s %s and %s %s %s", p.TimeField, lo, from.UTC().Format(layout), p.TimeField, hi, to.UTC().Format(layout))
	if p.Extra != "" {
		filter = "(" + filter + ") and " + p.Extra
	}
	q := url.Values{}
	q.Set("$filter", filter)
	q.Set("$top", strconv.Itoa(top))
	// url.Values escapes '$' in keys; Graph accepts both, but the plain
	// form is what its documentation shows.
	enc := strings.NewReplacer("%24filter", "$filter", "%24top", "$top").Replace(q.Encode())
	return strings.TrimSuffix(host, "/") + "/" + p.Version + p.Path + "?" + enc
}

// BudgetKey names the budget an input draws from: per app and tenant, or
// per tenant for services that count all apps together.
func (p Profile) BudgetKey(authority, tenant, client string) string {
	k := p.Budget.Family + "|" + authority + "|" + strings.ToLower(tenant)
	if p.Budget.PerApp {
		k += "|" + strings.ToLower(client)
	}
	return k
}

// AppBudgeted reports whether the source also counts against Graph's
// limit per application across every tenant (app_budget): the identity and
// access reports do.
func (p Profile) AppBudgeted() bool { return p.Budget.Family == reports.Family }

// AppBudgetKey names the budget of one application across tenants.
func AppBudgetKey(authority, client string) string {
	return "app|" + reports.Family + "|" + authority + "|" + strings.ToLower(client)
}

// AppWindow is the window of app_budget.
const AppWindow = 10 * time.Second
