package graphsim

import (
	"slices"
	"time"
)

// The plugin's source names: one per kind of record it collects.
const (
	SourceSignIns                 = "signins"
	SourceSignInsNonInteractive   = "signins_noninteractive"
	SourceSignInsServicePrincipal = "signins_service_principal"
	SourceSignInsManagedIdentity  = "signins_managed_identity"
	SourceDirectoryAudits         = "directory_audits"
	SourceProvisioning            = "provisioning"
	SourceRiskDetections          = "risk_detections"
	SourceSecurityAlerts          = "security_alerts"
)

// Sources lists every source the simulator serves, in the plugin's order.
var Sources = []string{
	SourceSignIns, SourceSignInsNonInteractive, SourceSignInsServicePrincipal, SourceSignInsManagedIdentity,
	SourceDirectoryAudits, SourceProvisioning, SourceRiskDetections, SourceSecurityAlerts,
}

// source is what the simulator knows about one kind of record. The
// server never reads the exported Sources, which a test may modify.
type source struct {
	name      string
	timeField string
	// eventType is the signInEventTypes member of a sign-in source.
	eventType string
	// versioned sources hold objects that change after they are first
	// logged; Graph lists only their current version.
	versioned bool
}

var sourceTable = map[string]source{
	SourceSignIns:                 {SourceSignIns, "createdDateTime", "interactiveUser", false},
	SourceSignInsNonInteractive:   {SourceSignInsNonInteractive, "createdDateTime", "nonInteractiveUser", false},
	SourceSignInsServicePrincipal: {SourceSignInsServicePrincipal, "createdDateTime", "servicePrincipal", false},
	SourceSignInsManagedIdentity:  {SourceSignInsManagedIdentity, "createdDateTime", "managedIdentity", false},
	SourceDirectoryAudits:         {SourceDirectoryAudits, "activityDateTime", "", false},
	SourceProvisioning:            {SourceProvisioning, "activityDateTime", "", false},
	SourceRiskDetections:          {SourceRiskDetections, "lastUpdatedDateTime", "", true},
	SourceSecurityAlerts:          {SourceSecurityAlerts, "lastUpdateDateTime", "", true},
}

// canonical maps the empty source of events made before sources existed
// to sign-ins.
func canonical(name string) string {
	if name == "" {
		return SourceSignIns
	}
	return name
}

func lookupSource(name string) (source, bool) {
	s, ok := sourceTable[canonical(name)]
	return s, ok
}

// Versioned reports whether a source's objects change over their life, so
// that several Events may share an ID (see Event).
func Versioned(source string) bool { return sourceTable[canonical(source)].versioned }

// TimeField is the JSON property holding a source's Event.Created, the
// property its $filter bounds; "" for an unknown source.
func TimeField(source string) string { return sourceTable[canonical(source)].timeField }

// throttle is one of Graph's documented rate-limit families.
type throttle struct {
	name   string
	limit  int
	window time.Duration
	// perApp budgets each (tenant, client) separately; otherwise every
	// application of the tenant shares one budget.
	perApp bool
	// retryAfter is false where Graph documents a 429 without Retry-After.
	retryAfter bool
}

var (
	// Identity and access reports: one budget for signIns, directoryAudits
	// and provisioning together.
	reportsThrottle = &throttle{name: "reports", limit: 5, window: 10 * time.Second, perApp: true, retryAfter: true}
	// Identity Protection: per tenant, whichever application asks.
	identityProtectionThrottle = &throttle{name: "identityProtection", limit: 1, window: time.Second}
	securityThrottle           = &throttle{name: "security", limit: 150, window: time.Minute, perApp: true, retryAfter: true}
)

// endpoint is one Graph list path.
type endpoint struct {
	// context is the $metadata fragment of @odata.context; "" omits the
	// property, as the riskDetections sample does.
	context   string
	timeField string
	ops       []string // operators accepted on timeField
	// maxTop and defaultTop are the documented limits, before
	// Options.MaxPageSize lowers them.
	maxTop, defaultTop int
	throttle           *throttle
	// sources are served when no signInEventTypes clause selects others.
	sources []string
	// eventTypes accepts the signInEventTypes lambda (beta signIns only).
	eventTypes bool
	orderBy    bool
	// paged endpoints answer with @odata.nextLink; the others return at
	// most $top objects and nothing more.
	paged bool
	// licence endpoints need Entra ID P1/P2, so Faults.Licence403 applies.
	licence    bool
	permission string
}

var (
	signInsEndpoint = endpoint{
		context: "auditLogs/signIns", timeField: "createdDateTime", ops: []string{"ge", "le", "eq"},
		maxTop: 1000, throttle: reportsThrottle, sources: []string{SourceSignIns},
		orderBy: true, paged: true, licence: true, permission: "AuditLog.Read.All",
	}
	betaSignInsEndpoint = func() endpoint { e := signInsEndpoint; e.eventTypes = true; return e }()

	endpoints = map[string]endpoint{
		"/v1.0/auditLogs/signIns": signInsEndpoint,
		"/beta/auditLogs/signIns": betaSignInsEndpoint,
		// Audit logs come with every edition, so no licence error.
		"/v1.0/auditLogs/directoryAudits": {
			context: "auditLogs/directoryAudits", timeField: "activityDateTime", ops: []string{"ge", "le", "eq"},
			maxTop: 1000, throttle: reportsThrottle, sources: []string{SourceDirectoryAudits},
			orderBy: true, paged: true, permission: "AuditLog.Read.All",
		},
		"/v1.0/auditLogs/provisioning": {
			context: "auditLogs/provisioning", timeField: "activityDateTime", ops: []string{"gt", "lt", "eq"},
			maxTop: 1000, throttle: reportsThrottle, sources: []string{SourceProvisioning},
			orderBy: true, paged: true, licence: true, permission: "AuditLog.Read.All",
		},
		"/v1.0/identityProtection/riskDetections": {
			timeField: "lastUpdatedDateTime", ops: []string{"ge", "le", "gt", "lt"},
			maxTop: 500, defaultTop: 20, throttle: identityProtectionThrottle, sources: []string{SourceRiskDetections},
			paged: true, licence: true, permission: "IdentityRiskEvent.Read.All",
		},
		"/v1.0/security/alerts_v2": {
			context: "security/alerts_v2", timeField: "lastUpdateDateTime", ops: []string{"ge", "le", "gt", "lt"},
			maxTop: 1000, throttle: securityThrottle, sources: []string{SourceSecurityAlerts},
			permission: "SecurityAlert.Read.All",
		},
	}
)

func (e endpoint) acceptsOp(op string) bool { return slices.Contains(e.ops, op) }

// signInEventTypes are the members Graph accepts in the lambda; a member
// no source carries (unknownFutureValue) selects nothing.
var signInEventTypes = []string{"interactiveUser", "nonInteractiveUser", "servicePrincipal", "managedIdentity", "unknownFutureValue"}

// sourcesForEventTypes returns the sign-in sources carrying any of types,
// in table order.
func sourcesForEventTypes(types map[string]bool) []string {
	var out []string
	for _, name := range []string{SourceSignIns, SourceSignInsNonInteractive, SourceSignInsServicePrincipal, SourceSignInsManagedIdentity} {
		if types[sourceTable[name].eventType] {
			out = append(out, name)
		}
	}
	return out
}
