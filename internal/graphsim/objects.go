package graphsim

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// millisLayout is the three-digit form Graph uses for some secondary
// times (activity times of alerts), so clients meet both precisions.
const millisLayout = "2006-01-02T15:04:05.000Z"

// GenerateSource returns n events of source, oldest first, with their time
// drawn uniformly in [from, to) (rounded down to 100 ns) and visible
// late(r) after it; a nil late makes them visible at once. Each event of a
// versioned source is the first version of a new object; see Update.
// An unknown source panics.
func GenerateSource(r *rand.Rand, source string, from, to time.Time, n int, late Lateness) []Event {
	name := canonical(source)
	if _, ok := sourceTable[name]; !ok {
		panic(fmt.Sprintf("graphsim.GenerateSource: unknown source %q", source))
	}
	events := make([]Event, 0, max(n, 0))
	span := to.Sub(from)
	for range n {
		c := from
		if span > 0 {
			c = from.Add(time.Duration(r.Int64N(int64(span))))
		}
		c = c.UTC().Truncate(100 * time.Nanosecond)
		id := newObjectID(r, name)
		v := c
		if late != nil {
			v = c.Add(late(r))
		}
		events = append(events, Event{ID: id, Source: name, Created: c, Visible: v, JSON: Object(r, name, id, c)})
	}
	slices.SortFunc(events, compareEvents)
	return events
}

// newObjectID draws an id in the form each API uses, so that a client
// assuming GUIDs everywhere fails here rather than in production.
func newObjectID(r *rand.Rand, source string) string {
	switch source {
	case SourceDirectoryAudits:
		const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		var tag [5]byte
		for i := range tag {
			tag[i] = letters[r.IntN(len(letters))]
		}
		return fmt.Sprintf("Directory_%s_%s_%d", NewID(r), tag[:], r.IntN(1e9))
	case SourceRiskDetections:
		return fmt.Sprintf("%016x%016x%016x%016x", r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64())
	case SourceSecurityAlerts:
		return fmt.Sprintf("da%018d_%d", r.Uint64()%1e18, int32(r.Uint32()))
	}
	return NewID(r)
}

// Object returns the JSON object Graph serves for source, with id and with
// t in the source's time field (see TimeField); other values are drawn
// from r. "signins" gives SignIn's v1.0 interactive sign-in; the other
// sign-in sources give beta sign-ins carrying signInEventTypes. For a
// versioned source the values fixed when the object is first logged
// (what, who, where, and the offsets of its creation times before t) are
// derived from id alone, so every version of one id agrees on them; r
// draws only the state. An unknown source panics.
func Object(r *rand.Rand, source, id string, t time.Time) []byte {
	t = t.UTC()
	switch name := canonical(source); name {
	case SourceSignIns:
		return SignIn(r, id, t)
	case SourceSignInsNonInteractive, SourceSignInsServicePrincipal, SourceSignInsManagedIdentity:
		return betaSignInObject(r, name, id, t)
	case SourceDirectoryAudits:
		return directoryAuditObject(r, id, t)
	case SourceProvisioning:
		return provisioningObject(r, id, t)
	case SourceRiskDetections:
		d := newRiskDetection(id, t)
		state := "atRisk"
		if r.IntN(5) == 0 {
			state = riskStates[r.IntN(len(riskStates))].state
		}
		d.setState(r, state)
		return mustMarshal(d)
	case SourceSecurityAlerts:
		a := newAlert(id, t)
		status := "new"
		if r.IntN(4) == 0 {
			status = alertStatuses[1+r.IntN(len(alertStatuses)-1)]
		}
		a.setStatus(r, status, t)
		return mustMarshal(a)
	}
	panic(fmt.Sprintf("graphsim.Object: unknown source %q", source))
}

// Update returns a new version of e, an event of a versioned source, last
// updated at t (rounded down to 100 ns) and visible late(r) after it (at
// once for a nil late). The new version keeps e's creation-time values and
// moves its state (riskState, or an alert's status, classification and
// determination) to a different one. t should be after e.Created, or the
// new version is not the current one. A source that is not versioned
// panics.
func Update(r *rand.Rand, e Event, t time.Time, late Lateness) Event {
	name := canonical(e.Source)
	if !Versioned(name) {
		panic(fmt.Sprintf("graphsim.Update: source %q is not versioned", e.Source))
	}
	t = t.UTC().Truncate(100 * time.Nanosecond)
	var js []byte
	switch name {
	case SourceRiskDetections:
		var d riskDetection
		if json.Unmarshal(e.JSON, &d) != nil || d.ID != e.ID {
			// Test events may carry any JSON; start again from the id.
			d = newRiskDetection(e.ID, t)
		}
		d.LastUpdatedDateTime = t.Format(DateTimeLayout)
		d.setState(r, otherThan(r, d.RiskState, riskStateNames()))
		js = mustMarshal(d)
	case SourceSecurityAlerts:
		var a alert
		if json.Unmarshal(e.JSON, &a) != nil || a.ID != e.ID {
			a = newAlert(e.ID, t)
		}
		a.setStatus(r, otherThan(r, a.Status, alertStatuses), t)
		js = mustMarshal(a)
	}
	v := t
	if late != nil {
		v = t.Add(late(r))
	}
	return Event{ID: e.ID, Source: e.Source, Created: t, Visible: v, JSON: js}
}

func otherThan(r *rand.Rand, cur string, all []string) string {
	others := slices.DeleteFunc(slices.Clone(all), func(s string) bool { return s == cur })
	return others[r.IntN(len(others))]
}

// idRand is a source seeded by id alone, for the values every version of
// an object shares.
func idRand(id string) *rand.Rand {
	sum := sha256.Sum256([]byte("graphsim object " + id))
	return rand.New(rand.NewPCG(binary.LittleEndian.Uint64(sum[:8]), binary.LittleEndian.Uint64(sum[8:16])))
}

func mustMarshal(v any) []byte {
	b, err := marshal(v)
	if err != nil {
		panic(err) // the generator types always marshal
	}
	return b
}

// jsonText is v as the JSON text Graph nests inside string properties
// (modifiedProperties values, additionalInfo), which doubles the escapes.
func jsonText(v any) string { return string(mustMarshal(v)) }

func randIP(r *rand.Rand) string {
	if r.IntN(8) == 0 {
		return fmt.Sprintf("2001:db8:%x::%x", r.IntN(0x10000), r.IntN(0x10000))
	}
	return fmt.Sprintf("%d.%d.%d.%d", 20+r.IntN(200), r.IntN(256), r.IntN(256), 1+r.IntN(254))
}

func randLocation(r *rand.Rand) location {
	place := simPlaces[r.IntN(len(simPlaces))]
	l := location{City: place.city, State: place.state, CountryOrRegion: place.country}
	l.GeoCoordinates.Latitude = float64(float32(place.lat + (r.Float64()-0.5)/10))
	l.GeoCoordinates.Longitude = float64(float32(place.lon + (r.Float64()-0.5)/10))
	return l
}

func pickOne[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func ptr[T any](v T) *T { return &v }

// ---- beta sign-ins -------------------------------------------------------

type betaSignIn struct {
	ID                                   string            `json:"id"`
	CreatedDateTime                      string            `json:"createdDateTime"`
	UserDisplayName                      string            `json:"userDisplayName"`
	UserPrincipalName                    string            `json:"userPrincipalName"`
	UserID                               string            `json:"userId"`
	UserType                             string            `json:"userType"`
	AppID                                string            `json:"appId"`
	AppDisplayName                       string            `json:"appDisplayName"`
	IPAddress                            string            `json:"ipAddress"`
	AutonomousSystemNumber               int               `json:"autonomousSystemNumber"`
	ClientAppUsed                        string            `json:"clientAppUsed"`
	ClientCredentialType                 string            `json:"clientCredentialType"`
	UserAgent                            string            `json:"userAgent"`
	CorrelationID                        string            `json:"correlationId"`
	OriginalRequestID                    string            `json:"originalRequestId"`
	UniqueTokenIdentifier                string            `json:"uniqueTokenIdentifier"`
	ConditionalAccessStatus              string            `json:"conditionalAccessStatus"`
	IsInteractive                        bool              `json:"isInteractive"`
	SignInEventTypes                     []string          `json:"signInEventTypes"`
	AuthenticationProtocol               string            `json:"authenticationProtocol"`
	IncomingTokenType                    string            `json:"incomingTokenType"`
	AuthenticationRequirement            string            `json:"authenticationRequirement"`
	TokenIssuerName                      string            `json:"tokenIssuerName"`
	TokenIssuerType                      string            `json:"tokenIssuerType"`
	ProcessingTimeInMilliseconds         int               `json:"processingTimeInMilliseconds"`
	HomeTenantID                         string            `json:"homeTenantId"`
	ResourceTenantID                     string            `json:"resourceTenantId"`
	CrossTenantAccessType                string            `json:"crossTenantAccessType"`
	RiskDetail                           string            `json:"riskDetail"`
	RiskLevelAggregated                  string            `json:"riskLevelAggregated"`
	RiskLevelDuringSignIn                string            `json:"riskLevelDuringSignIn"`
	RiskState                            string            `json:"riskState"`
	RiskEventTypesV2                     []string          `json:"riskEventTypes_v2"`
	ResourceDisplayName                  string            `json:"resourceDisplayName"`
	ResourceID                           string            `json:"resourceId"`
	ServicePrincipalID                   string            `json:"servicePrincipalId"`
	ServicePrincipalName                 string            `json:"servicePrincipalName"`
	ServicePrincipalCredentialKeyID      string            `json:"servicePrincipalCredentialKeyId"`
	ServicePrincipalCredentialThumbprint string            `json:"servicePrincipalCredentialThumbprint"`
	FederatedCredentialID                string            `json:"federatedCredentialId"`
	ManagedServiceIdentity               managedIdentity   `json:"managedServiceIdentity"`
	Status                               status            `json:"status"`
	DeviceDetail                         device            `json:"deviceDetail"`
	Location                             location          `json:"location"`
	AppliedConditionalAccessPolicies     []caPolicy        `json:"appliedConditionalAccessPolicies"`
	AuthenticationDetails                []authDetail      `json:"authenticationDetails"`
	AuthenticationProcessingDetails      []keyValue        `json:"authenticationProcessingDetails"`
	NetworkLocationDetails               []networkLocation `json:"networkLocationDetails"`
}

type managedIdentity struct {
	MsiType              string  `json:"msiType"`
	AssociatedResourceID *string `json:"associatedResourceId"`
	FederatedTokenID     *string `json:"federatedTokenId"`
	FederatedTokenIssuer *string `json:"federatedTokenIssuer"`
}

type authDetail struct {
	AuthenticationStepDateTime     string `json:"authenticationStepDateTime"`
	AuthenticationMethod           string `json:"authenticationMethod"`
	AuthenticationMethodDetail     string `json:"authenticationMethodDetail"`
	Succeeded                      bool   `json:"succeeded"`
	AuthenticationStepResultDetail string `json:"authenticationStepResultDetail"`
	AuthenticationStepRequirement  string `json:"authenticationStepRequirement"`
}

type keyValue struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type networkLocation struct {
	NetworkType  string   `json:"networkType"`
	NetworkNames []string `json:"networkNames"`
}

var (
	simUserAgents = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
		"Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17126; Pro)",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Outlook-iOS/723.4027091.prod.iphone (4.2405.0)",
		"Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/UQ1A.240205.004)",
		`Teams/1.6.00.4472 (Windows; "Zoë's PC"; C:\Program Files\Teams)`,
		"Windows-AzureAD-Authentication-Provider/1.0",
	}
	simServicePrincipals = []string{
		"Contoso Backup Agent",
		"Réplication Café Sync",
		`Deploy "prod" \ pipeline`,
		"データ連携サービス",
		"Ωmega reporting 📊",
		"Fluent Bit log shipper",
	}
	simManagedIdentities = []struct{ name, kind, group string }{
		{"vm-web-01", "Microsoft.Compute/virtualMachines", "rg-web"},
		{"func-ingest-straße", "Microsoft.Web/sites", "rg-ingest"},
		{"aks-agentpool-東京", "Microsoft.ContainerService/managedClusters", "rg-aks"},
		{"logic-nightly-export", "Microsoft.Logic/workflows", "rg-integration"},
	}
	simSPFailures = []struct {
		code            int
		reason, details string
	}{
		{7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.", "The client secret is wrong:\n\"value\" ≠ \"secret ID\""},
		{700027, "Client assertion failed signature validation.", `Key was found, but use of the key to verify the signature failed. Thumbprint: C:\certs\app.pfx`},
		{7000222, "The provided client secret keys are expired.", "Visit the Azure portal to create new keys for your app, or consider using certificate credentials for added security."},
	}
	simNonInteractiveFailures = []struct {
		code            int
		reason, details string
	}{
		{50173, "The provided grant has expired due to it being revoked, a fresh auth token is needed.", "The user changed their password\tor an admin revoked their sessions."},
		{70044, "The session has expired or is invalid due to sign-in frequency checks by conditional access.", `Policy "Sign-in frequency 8h ⏱" requires reauthentication`},
		{50133, "Session is invalid due to expiration or recent password change.", ""},
	}
)

// betaSignInObject builds a beta sign-in of a non-interactive user, a
// service principal or a managed identity.
func betaSignInObject(r *rand.Rand, name, id string, t time.Time) []byte {
	res := pickOne(r, simResources)
	s := betaSignIn{
		ID:                               id,
		CreatedDateTime:                  t.Format(DateTimeLayout),
		IPAddress:                        randIP(r),
		AutonomousSystemNumber:           pickOne(r, []int{8075, 3320, 7922, 16509, 13335, 2914}),
		ClientCredentialType:             "none",
		CorrelationID:                    NewID(r),
		OriginalRequestID:                NewID(r),
		UniqueTokenIdentifier:            fmt.Sprintf("%016x%06x", r.Uint64(), r.IntN(1<<24)),
		ConditionalAccessStatus:          "notApplied",
		SignInEventTypes:                 []string{sourceTable[name].eventType},
		AuthenticationProtocol:           "none",
		IncomingTokenType:                "none",
		AuthenticationRequirement:        "singleFactorAuthentication",
		TokenIssuerType:                  "AzureAD",
		ProcessingTimeInMilliseconds:     5 + r.IntN(400),
		HomeTenantID:                     DefaultTenantID,
		ResourceTenantID:                 DefaultTenantID,
		CrossTenantAccessType:            "none",
		RiskDetail:                       "none",
		RiskLevelAggregated:              "none",
		RiskLevelDuringSignIn:            "none",
		RiskState:                        "none",
		RiskEventTypesV2:                 []string{},
		ResourceDisplayName:              res[0],
		ResourceID:                       res[1],
		ManagedServiceIdentity:           managedIdentity{MsiType: "none"},
		Location:                         randLocation(r),
		AppliedConditionalAccessPolicies: []caPolicy{},
		AuthenticationDetails:            []authDetail{},
		AuthenticationProcessingDetails:  []keyValue{},
		NetworkLocationDetails:           []networkLocation{},
	}
	fail := func(code int, reason, details string) {
		s.Status = status{ErrorCode: code, FailureReason: &reason, AdditionalDetails: &details}
	}
	switch name {
	case SourceSignInsNonInteractive:
		u := pickOne(r, simUsers)
		app := pickOne(r, simApps)
		dev := pickOne(r, simDevices)
		s.UserDisplayName, s.UserPrincipalName, s.UserID, s.UserType = u[0], u[1]+"@contoso.com", stableID(u[1]), "member"
		s.AppID, s.AppDisplayName = app[1], app[0]
		s.ClientAppUsed = "Mobile Apps and Desktop clients"
		s.UserAgent = pickOne(r, simUserAgents)
		s.IncomingTokenType = pickOne(r, []string{"refreshToken", "primaryRefreshToken", "none"})
		s.DeviceDetail = device{OperatingSystem: dev[0], Browser: dev[1]}
		if r.IntN(2) == 0 {
			devName := pickOne(r, simDeviceNames)
			compliant, managed, trust := r.IntN(2) == 0, true, "Azure AD registered"
			s.DeviceDetail.DeviceID, s.DeviceDetail.DisplayName = NewID(r), &devName
			s.DeviceDetail.IsCompliant, s.DeviceDetail.IsManaged, s.DeviceDetail.TrustType = &compliant, &managed, &trust
		}
		s.AuthenticationDetails = append(s.AuthenticationDetails, authDetail{
			AuthenticationStepDateTime:     t.Format(DateTimeLayout),
			AuthenticationMethod:           "Previously satisfied",
			Succeeded:                      true,
			AuthenticationStepResultDetail: "First factor requirement satisfied by claim in the token",
			AuthenticationStepRequirement:  "Primary authentication",
		})
		scopes := jsonText([]string{"email", "openid", "profile", "User.Read", "Files.ReadWrite.All"}[:2+r.IntN(4)])
		s.AuthenticationProcessingDetails = append(s.AuthenticationProcessingDetails,
			keyValue{"Legacy TLS (TLS 1.0, 1.1, 3DES)", "False"},
			keyValue{"Is CAE Token", pickOne(r, []string{"True", "False"})},
			keyValue{"Oauth Scope Info", scopes})
		if r.IntN(3) == 0 {
			s.NetworkLocationDetails = append(s.NetworkLocationDetails,
				networkLocation{NetworkType: "namedNetwork", NetworkNames: []string{pickOne(r, []string{"HQ Zürich", "東京 office", "VPN \"egress\""})}})
		}
		if r.IntN(6) == 0 {
			f := pickOne(r, simNonInteractiveFailures)
			fail(f.code, f.reason, f.details)
		}
	case SourceSignInsServicePrincipal:
		sp := pickOne(r, simServicePrincipals)
		s.AppID, s.AppDisplayName = stableID("app/"+sp), sp
		s.ServicePrincipalID, s.ServicePrincipalName = stableID("sp/"+sp), sp
		s.ClientCredentialType = pickOne(r, []string{"clientSecret", "certificate", "federatedIdentityCredential"})
		s.ServicePrincipalCredentialKeyID = stableID("key/" + sp + "/" + s.ClientCredentialType)
		switch s.ClientCredentialType {
		case "certificate":
			sum := sha256.Sum256([]byte(sp))
			s.ServicePrincipalCredentialThumbprint = strings.ToUpper(fmt.Sprintf("%x", sum[:20]))
		case "federatedIdentityCredential":
			s.FederatedCredentialID = stableID("fic/" + sp)
		}
		s.UserAgent = pickOne(r, []string{"", "azsdk-go-azidentity/v1.7.0 (go1.22.1; linux)", "python-requests/2.31.0"})
		if r.IntN(6) == 0 {
			f := pickOne(r, simSPFailures)
			fail(f.code, f.reason, f.details)
		}
	case SourceSignInsManagedIdentity:
		mi := pickOne(r, simManagedIdentities)
		s.AppID, s.AppDisplayName = stableID("mi-app/"+mi.name), mi.name
		s.ServicePrincipalID, s.ServicePrincipalName = stableID("mi/"+mi.name), mi.name
		s.ClientCredentialType = "managedIdentity"
		resID := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/%s/%s", stableID("sub"), mi.group, mi.kind, mi.name)
		s.ManagedServiceIdentity = managedIdentity{MsiType: pickOne(r, []string{"systemAssigned", "userAssigned"}), AssociatedResourceID: &resID}
		s.IPAddress = fmt.Sprintf("10.%d.%d.%d", r.IntN(256), r.IntN(256), 1+r.IntN(254))
		if r.IntN(20) == 0 {
			fail(500011, "The resource principal named https://vault.azure.net was not found in the tenant.", "")
		}
	}
	return mustMarshal(s)
}

// ---- directory audits -----------------------------------------------------

type directoryAudit struct {
	ID                  string           `json:"id"`
	Category            string           `json:"category"`
	CorrelationID       string           `json:"correlationId"`
	Result              string           `json:"result"`
	ResultReason        string           `json:"resultReason"`
	ActivityDisplayName string           `json:"activityDisplayName"`
	ActivityDateTime    string           `json:"activityDateTime"`
	LoggedByService     string           `json:"loggedByService"`
	OperationType       string           `json:"operationType"`
	InitiatedBy         auditInitiator   `json:"initiatedBy"`
	TargetResources     []targetResource `json:"targetResources"`
	AdditionalDetails   []keyValue       `json:"additionalDetails"`
}

type auditInitiator struct {
	User *auditUser `json:"user"`
	App  *auditApp  `json:"app"`
}

type auditUser struct {
	ID                string  `json:"id"`
	DisplayName       *string `json:"displayName"`
	UserPrincipalName string  `json:"userPrincipalName"`
	IPAddress         string  `json:"ipAddress"`
	UserType          string  `json:"userType"`
	HomeTenantID      string  `json:"homeTenantId"`
	HomeTenantName    *string `json:"homeTenantName"`
}

type auditApp struct {
	AppID                *string `json:"appId"`
	DisplayName          string  `json:"displayName"`
	ServicePrincipalID   string  `json:"servicePrincipalId"`
	ServicePrincipalName *string `json:"servicePrincipalName"`
}

type targetResource struct {
	ID                 string             `json:"id"`
	DisplayName        *string            `json:"displayName"`
	Type               string             `json:"type"`
	UserPrincipalName  *string            `json:"userPrincipalName"`
	GroupType          *string            `json:"groupType"`
	ModifiedProperties []modifiedProperty `json:"modifiedProperties"`
}

type modifiedProperty struct {
	DisplayName string  `json:"displayName"`
	OldValue    *string `json:"oldValue"`
	NewValue    *string `json:"newValue"`
}

var (
	simActivities = []struct {
		category, name, service, op, target string
		props                               []string
	}{
		{"GroupManagement", "Add member to group", "Core Directory", "Assign", "User", []string{"Group.ObjectID", "Group.DisplayName"}},
		{"UserManagement", "Update user", "Core Directory", "Update", "User", []string{"DisplayName", "Department", "AccountEnabled", "Included Updated Properties"}},
		{"UserManagement", "Add user", "Core Directory", "Add", "User", []string{"AccountEnabled", "DisplayName", "UserPrincipalName", "UserType"}},
		{"GroupManagement", "Add group", "Core Directory", "Add", "Group", []string{"DisplayName", "MailNickname", "SecurityEnabled"}},
		{"ApplicationManagement", "Consent to application", "Core Directory", "Assign", "ServicePrincipal", []string{"ConsentContext.IsAdminConsent", "ConsentAction.Permissions"}},
		{"RoleManagement", "Add member to role", "Core Directory", "Assign", "User", []string{"Role.ObjectID", "Role.DisplayName", "Role.WellKnownObjectName"}},
		{"Policy", "Update conditional access policy", "Conditional Access", "Update", "Policy", []string{"ConditionalAccessPolicy"}},
		{"UserManagement", "Reset password (self-service)", "Self-service Password Management", "Update", "User", nil},
		{"Device", "Register device", "Device Registration Service", "Add", "Device", []string{"DeviceOSType", "DeviceTrustType", "CloudDisplayName"}},
		// Graph's own activity name ends in a space after an en dash.
		{"ApplicationManagement", "Update application – Certificates and secrets management ", "Core Directory", "Update", "Application", []string{"KeyDescription"}},
	}
	simGroups       = []string{"All Employees", "Équipe Paris", "Finance — EMEA", `Admins "Tier 0"`, "東京チーム", "Project Ωmega", `Build\Agents`}
	simDepartments  = []string{"Finance", "Ventes & Marketing", "研究開発", `R&D "Labs"`, "Ελληνικό τμήμα", "IT\nOps"}
	simRoles        = []string{"Global Administrator", "User Administrator", "Security Reader", "Reports Reader", "Application Administrator"}
	simAuditApps    = []string{"Microsoft Substrate Management", "Azure AD Cloud Sync", `Contoso "HR" connector`, "Microsoft Intune", "Gestión de identidades ñ"}
	simAuditReasons = []string{
		"Microsoft.Online.Workflows.ObjectAlreadyExistsException",
		"User's password does not meet complexity requirements – «Passwort zu kurz»",
		`Failed to resolve "Finance — EMEA" under C:\sync\map.json`,
		"",
	}
)

func directoryAuditObject(r *rand.Rand, id string, t time.Time) []byte {
	act := pickOne(r, simActivities)
	a := directoryAudit{
		ID:                  id,
		Category:            act.category,
		CorrelationID:       NewID(r),
		Result:              "success",
		ActivityDisplayName: act.name,
		ActivityDateTime:    t.Format(DateTimeLayout),
		LoggedByService:     act.service,
		OperationType:       act.op,
		TargetResources:     []targetResource{},
		AdditionalDetails:   []keyValue{},
	}
	if r.IntN(10) == 0 {
		a.Result, a.ResultReason = "failure", pickOne(r, simAuditReasons)
	}
	if r.IntN(10) < 7 {
		u := pickOne(r, simUsers)
		user := &auditUser{ID: stableID(u[1]), UserPrincipalName: u[1] + "@contoso.com", IPAddress: randIP(r),
			UserType: "Member", HomeTenantID: DefaultTenantID}
		if r.IntN(3) == 0 {
			user.DisplayName = ptr(u[0])
		}
		if r.IntN(2) == 0 {
			user.HomeTenantName = ptr("Contoso Ltd. — Zürich")
		}
		a.InitiatedBy.User = user
	} else {
		name := pickOne(r, simAuditApps)
		app := &auditApp{DisplayName: name, ServicePrincipalID: stableID("sp/" + name)}
		if r.IntN(2) == 0 {
			app.AppID, app.ServicePrincipalName = ptr(stableID("app/"+name)), ptr(name)
		}
		a.InitiatedBy.App = app
	}

	target := targetResource{Type: act.target, ModifiedProperties: []modifiedProperty{}}
	switch act.target {
	case "User":
		u := pickOne(r, simUsers)
		target.ID, target.UserPrincipalName = stableID(u[1]), ptr(u[1]+"@contoso.com")
		if r.IntN(2) == 0 {
			target.DisplayName = ptr(u[0])
		}
	case "Group":
		g := pickOne(r, simGroups)
		target.ID, target.DisplayName, target.GroupType = stableID("group/"+g), ptr(g), ptr(pickOne(r, []string{"unifiedGroups", "azureAD"}))
	case "Policy":
		name := pickOne(r, simPolicies).name
		target.ID, target.DisplayName = stableID("policy/"+name), ptr(name)
	default:
		name := pickOne(r, simServicePrincipals)
		target.ID, target.DisplayName = stableID(act.target+"/"+name), ptr(name)
	}
	for _, p := range act.props {
		old, cur := auditValues(r, p, act.op)
		target.ModifiedProperties = append(target.ModifiedProperties, modifiedProperty{DisplayName: p, OldValue: old, NewValue: cur})
	}
	a.TargetResources = append(a.TargetResources, target)
	if act.name == "Add member to group" {
		g := pickOne(r, simGroups)
		a.TargetResources = append(a.TargetResources, targetResource{ID: stableID("group/" + g), DisplayName: ptr(g),
			Type: "Group", GroupType: ptr("unifiedGroups"), ModifiedProperties: []modifiedProperty{}})
	}
	if r.IntN(2) == 0 {
		a.AdditionalDetails = append(a.AdditionalDetails, keyValue{"User-Agent", pickOne(r, simUserAgents)})
	}
	if act.target == "User" {
		a.AdditionalDetails = append(a.AdditionalDetails, keyValue{"UserType", "Member"})
	}
	return mustMarshal(a)
}

// auditValues draws a modifiedProperty's old and new values, which Graph
// sends as JSON text inside a string: an Add starts from "[]", an Assign
// has no old value, an Update replaces one value with another.
func auditValues(r *rand.Rand, prop, op string) (*string, *string) {
	draw := func() any {
		switch prop {
		case "DisplayName", "CloudDisplayName":
			return []string{pickOne(r, simUsers)[0]}
		case "Department":
			return []string{pickOne(r, simDepartments)}
		case "AccountEnabled", "SecurityEnabled", "ConsentContext.IsAdminConsent":
			return []bool{r.IntN(2) == 0}
		case "Group.DisplayName":
			return []string{pickOne(r, simGroups)}
		case "Role.DisplayName", "Role.WellKnownObjectName":
			return []string{pickOne(r, simRoles)}
		case "Included Updated Properties":
			return "DisplayName, Department, AccountEnabled"
		case "ConsentAction.Permissions":
			return []string{fmt.Sprintf("[] => [[Id: %s, ClientId: %s, Scope: User.Read Mail.Read offline_access, ]]; ", NewID(r), NewID(r))}
		case "ConditionalAccessPolicy":
			p := pickOne(r, simPolicies)
			return map[string]any{"id": stableID(p.name), "displayName": p.name, "state": pickOne(r, []string{"enabled", "enabledForReportingButNotEnforced"}),
				"conditions":    map[string]any{"users": map[string]any{"includeUsers": []string{"All"}}, "clientAppTypes": []string{"all"}},
				"grantControls": map[string]any{"operator": "OR", "builtInControls": append([]string{}, p.grant...)}}
		case "UserPrincipalName":
			return []string{pickOne(r, simUsers)[1] + "@contoso.com"}
		case "UserType":
			return []string{pickOne(r, []string{"Member", "Guest"})}
		case "DeviceOSType":
			return []string{pickOne(r, simDevices)[0]}
		case "DeviceTrustType":
			return []string{pickOne(r, []string{"Workplace", "AzureAd", "ServerAd"})}
		case "KeyDescription":
			return []string{fmt.Sprintf("[KeyIdentifier=%s,KeyType=Password,KeyUsage=Verify,DisplayName=%s]", NewID(r), pickOne(r, []string{"prod secret", "clé «test»", `CI\CD`}))}
		}
		return []string{NewID(r)}
	}
	switch {
	case prop == "Included Updated Properties":
		return nil, ptr(jsonText(draw()))
	case op == "Add":
		return ptr("[]"), ptr(jsonText(draw()))
	case op == "Assign":
		return nil, ptr(jsonText(draw()))
	}
	return ptr(jsonText(draw())), ptr(jsonText(draw()))
}

// ---- provisioning --------------------------------------------------------

type provisioningSummary struct {
	ID                     string              `json:"id"`
	ActivityDateTime       string              `json:"activityDateTime"`
	TenantID               string              `json:"tenantId"`
	JobID                  string              `json:"jobId"`
	CycleID                string              `json:"cycleId"`
	ChangeID               string              `json:"changeId"`
	ProvisioningAction     string              `json:"provisioningAction"`
	DurationInMilliseconds int                 `json:"durationInMilliseconds"`
	ProvisioningStatusInfo provisioningStatus  `json:"provisioningStatusInfo"`
	ProvisioningSteps      []provisioningStep  `json:"provisioningSteps"`
	ModifiedProperties     []modifiedProperty  `json:"modifiedProperties"`
	ServicePrincipal       idName              `json:"servicePrincipal"`
	SourceSystem           provisioningSystem  `json:"sourceSystem"`
	TargetSystem           provisioningSystem  `json:"targetSystem"`
	InitiatedBy            provisioningInitBy  `json:"initiatedBy"`
	SourceIdentity         provisionedIdentity `json:"sourceIdentity"`
	TargetIdentity         provisionedIdentity `json:"targetIdentity"`
}

type provisioningStatus struct {
	Status           string             `json:"status"`
	ErrorInformation *provisioningError `json:"errorInformation"`
}

type provisioningError struct {
	ErrorCode         string  `json:"errorCode"`
	Reason            string  `json:"reason"`
	AdditionalDetails *string `json:"additionalDetails"`
	ErrorCategory     string  `json:"errorCategory"`
	RecommendedAction *string `json:"recommendedAction"`
}

type provisioningStep struct {
	Name                 string            `json:"name"`
	ProvisioningStepType string            `json:"provisioningStepType"`
	Status               string            `json:"status"`
	Description          string            `json:"description"`
	Details              map[string]string `json:"details"`
}

type idName struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
}

type provisioningSystem struct {
	ID          string            `json:"id"`
	DisplayName string            `json:"displayName"`
	Details     map[string]string `json:"details"`
}

type provisioningInitBy struct {
	ID            string `json:"id"`
	DisplayName   string `json:"displayName"`
	InitiatorType string `json:"initiatorType"`
}

type provisionedIdentity struct {
	ID           string            `json:"id"`
	DisplayName  string            `json:"displayName"`
	IdentityType string            `json:"identityType"`
	Details      map[string]string `json:"details"`
}

var (
	// Inbound apps are HR systems feeding the directory; the others
	// receive users from it.
	simProvisioningApps = []struct {
		name, job string
		inbound   bool
	}{
		{"Workday", "Workday", true},
		{"SAP SuccessFactors", "SuccessFactorsToAD", true},
		{"ServiceNow", "ServiceNowOutDelta", false},
		{"Salesforce", "SalesforceOutDelta", false},
		{"Amazon Web Services (AWS)", "aws", false},
		{"Slack — Équipe", "slack", false},
	}
	simProvisioningErrors = []provisioningError{
		{ErrorCode: "SalesforceDuplicateUsername", Reason: "Message: Salesforce returned an error response with the HTTP status code 400. «Nom d’utilisateur déjà utilisé»", ErrorCategory: "nonServiceFailure"},
		{ErrorCode: "AzureActiveDirectoryCannotUpdateObjectsOriginatedInExternalService", Reason: "The user is synchronized from on-premises Active Directory.\nUpdate it in C:\\Windows\\ADUC instead.", ErrorCategory: "nonServiceFailure"},
		{ErrorCode: "SystemForCrossDomainIdentityManagementServiceIncompatible", Reason: `The SCIM endpoint rejected the schema "urn:ietf:params:scim:schemas:core:2.0:User".`, ErrorCategory: "nonServiceFailure"},
		{ErrorCode: "HttpTimeout", Reason: "The request to the target system timed out after 100 seconds.", ErrorCategory: "transientFailure"},
	}
)

func provisioningObject(r *rand.Rand, id string, t time.Time) []byte {
	app := pickOne(r, simProvisioningApps)
	aad := provisioningSystem{ID: stableID("aad"), DisplayName: "Azure Active Directory", Details: map[string]string{}}
	ext := provisioningSystem{ID: stableID("system/" + app.name), DisplayName: app.name, Details: map[string]string{
		"ApplicationId": stableID("app/" + app.name), "ServicePrincipalId": stableID("sp/" + app.name), "ServicePrincipalDisplayName": app.name,
	}}
	u := pickOne(r, simUsers)
	kind := pickOne(r, []string{"User", "User", "User", "Group"})
	name := u[0]
	if kind == "Group" {
		name = pickOne(r, simGroups)
	}
	action := pickOne(r, []string{"create", "update", "update", "update", "delete", "disable", "other"})
	p := provisioningSummary{
		ID:                     id,
		ActivityDateTime:       t.Format(DateTimeLayout),
		TenantID:               DefaultTenantID,
		JobID:                  fmt.Sprintf("%s.%s.%s", app.job, strings.ReplaceAll(DefaultTenantID, "-", ""), stableID("job/"+app.name)),
		CycleID:                NewID(r),
		ChangeID:               NewID(r),
		ProvisioningAction:     action,
		DurationInMilliseconds: 200 + r.IntN(6000),
		ProvisioningStatusInfo: provisioningStatus{Status: "success"},
		ModifiedProperties:     []modifiedProperty{},
		ServicePrincipal:       idName{ID: stableID("sp/" + app.name), DisplayName: app.name},
		InitiatedBy:            provisioningInitBy{ID: "", DisplayName: "Azure AD Provisioning Service", InitiatorType: "system"},
		SourceIdentity:         provisionedIdentity{ID: stableID(kind + "/" + name), DisplayName: name, IdentityType: kind, Details: map[string]string{}},
		TargetIdentity:         provisionedIdentity{ID: stableID("target/" + kind + "/" + name), DisplayName: "", IdentityType: kind, Details: map[string]string{}},
	}
	p.SourceSystem, p.TargetSystem = aad, ext
	if app.inbound {
		p.SourceSystem, p.TargetSystem = ext, aad
	}
	if kind == "User" {
		p.SourceIdentity.Details["UserPrincipalName"] = u[1] + "@contoso.com"
	}
	switch roll := r.IntN(10); {
	case roll == 0:
		e := pickOne(r, simProvisioningErrors)
		if r.IntN(2) == 0 {
			e.RecommendedAction = ptr("Remove the conflicting user from \"" + app.name + "\" or from the scope of provisioning.")
		}
		p.ProvisioningStatusInfo = provisioningStatus{Status: "failure", ErrorInformation: &e}
	case roll == 1:
		p.ProvisioningStatusInfo.Status = "skipped"
	case roll == 2:
		e := provisioningError{ErrorCode: "MissingAttribute", Reason: "The attribute 'department' is empty; the default «N/A» was used.", ErrorCategory: "nonServiceFailure"}
		p.ProvisioningStatusInfo = provisioningStatus{Status: "warning", ErrorInformation: &e}
	}

	change := map[string]string{"create": "Add", "delete": "Delete"}[action]
	if change == "" {
		change = "Update"
	}
	step := func(stepName, typ, desc string) {
		p.ProvisioningSteps = append(p.ProvisioningSteps, provisioningStep{Name: stepName, ProvisioningStepType: typ, Status: "success",
			Description: desc, Details: map[string]string{}})
	}
	step("EntryImport"+change, "import", fmt.Sprintf("Received %s '%s' change of type (%s) from %s", kind, name, change, p.SourceSystem.DisplayName))
	step("EntrySynchronization"+change, "matching", fmt.Sprintf("%s '%s' will be %sd in %s", kind, name, strings.ToLower(change), p.TargetSystem.DisplayName))
	if p.ProvisioningStatusInfo.Status != "skipped" {
		step("EntryExport"+change, "export", fmt.Sprintf("%s '%s' was %sd in %s", kind, name, strings.ToLower(change), p.TargetSystem.DisplayName))
		p.ProvisioningSteps[len(p.ProvisioningSteps)-1].Details["ReportableIdentifier"] = name
		if p.ProvisioningStatusInfo.Status == "failure" {
			last := &p.ProvisioningSteps[len(p.ProvisioningSteps)-1]
			last.Status, last.Description = "failure", fmt.Sprintf("Failed to %s %s '%s' in %s", strings.ToLower(change), kind, name, p.TargetSystem.DisplayName)
		}
	} else {
		p.ProvisioningSteps[len(p.ProvisioningSteps)-1].Status = "skipped"
	}
	if action != "delete" {
		p.ModifiedProperties = append(p.ModifiedProperties,
			modifiedProperty{DisplayName: "objectId", NewValue: ptr(p.SourceIdentity.ID)},
			modifiedProperty{DisplayName: "displayName", NewValue: ptr(name)})
		if kind == "User" {
			p.ModifiedProperties = append(p.ModifiedProperties,
				modifiedProperty{DisplayName: "department", OldValue: ptr(pickOne(r, simDepartments)), NewValue: ptr(pickOne(r, simDepartments))},
				modifiedProperty{DisplayName: "accountEnabled", OldValue: nil, NewValue: ptr(strconv.FormatBool(action != "disable"))})
		}
	}
	return mustMarshal(p)
}

// ---- risk detections -----------------------------------------------------

type riskDetection struct {
	ID                  string    `json:"id"`
	RequestID           *string   `json:"requestId"`
	CorrelationID       *string   `json:"correlationId"`
	RiskEventType       string    `json:"riskEventType"`
	RiskState           string    `json:"riskState"`
	RiskLevel           string    `json:"riskLevel"`
	RiskDetail          string    `json:"riskDetail"`
	Source              string    `json:"source"`
	DetectionTimingType string    `json:"detectionTimingType"`
	Activity            string    `json:"activity"`
	TokenIssuerType     string    `json:"tokenIssuerType"`
	IPAddress           string    `json:"ipAddress"`
	ActivityDateTime    string    `json:"activityDateTime"`
	DetectedDateTime    string    `json:"detectedDateTime"`
	LastUpdatedDateTime string    `json:"lastUpdatedDateTime"`
	UserID              string    `json:"userId"`
	UserDisplayName     string    `json:"userDisplayName"`
	UserPrincipalName   string    `json:"userPrincipalName"`
	AdditionalInfo      string    `json:"additionalInfo"`
	Location            *location `json:"location"`
}

var (
	simRiskEvents = []struct {
		kind, timing, source, activity string
	}{
		{"unfamiliarFeatures", "realtime", "IdentityProtection", "signin"},
		{"anonymizedIPAddress", "realtime", "IdentityProtection", "signin"},
		{"unlikelyTravel", "offline", "IdentityProtection", "signin"},
		{"maliciousIPAddress", "offline", "IdentityProtection", "signin"},
		{"passwordSpray", "offline", "IdentityProtection", "signin"},
		{"anomalousToken", "offline", "IdentityProtection", "signin"},
		{"leakedCredentials", "offline", "IdentityProtection", "user"},
		{"mcasImpossibleTravel", "offline", "MicrosoftCloudAppSecurity", "signin"},
		{"investigationsThreatIntelligence", "offline", "IdentityProtection", "signin"},
	}
	// riskStates pairs each state with the details that lead to it.
	riskStates = []struct {
		state   string
		details []string
	}{
		{"atRisk", []string{"none"}},
		{"confirmedCompromised", []string{"adminConfirmedSigninCompromised", "adminConfirmedUserCompromised"}},
		{"remediated", []string{"userPerformedSecuredPasswordChange", "userPassedMFADrivenByRiskBasedPolicy", "adminGeneratedTemporaryPassword"}},
		{"dismissed", []string{"adminDismissedAllRiskForUser", "aiConfirmedSigninSafe"}},
		{"confirmedSafe", []string{"adminConfirmedSigninSafe"}},
	}
)

func riskStateNames() []string {
	names := make([]string, len(riskStates))
	for i, s := range riskStates {
		names[i] = s.state
	}
	return names
}

// newRiskDetection builds the values fixed at detection from id alone,
// with lastUpdatedDateTime t and no state yet.
func newRiskDetection(id string, t time.Time) riskDetection {
	r := idRand(id)
	ev := pickOne(r, simRiskEvents)
	u := pickOne(r, simUsers)
	// A detection is last updated some minutes after it is detected; an
	// offline one is detected hours after the activity.
	detected := t.Add(-time.Duration(r.Int64N(int64(10 * time.Minute)))).Truncate(100 * time.Nanosecond)
	activity := detected.Add(-time.Duration(r.Int64N(int64(2 * time.Second))))
	if ev.timing == "offline" {
		activity = detected.Add(-5*time.Minute - time.Duration(r.Int64N(int64(48*time.Hour)))).Truncate(100 * time.Nanosecond)
	}
	d := riskDetection{
		ID:                  id,
		RiskEventType:       ev.kind,
		RiskLevel:           pickOne(r, []string{"low", "medium", "medium", "high"}),
		Source:              ev.source,
		DetectionTimingType: ev.timing,
		Activity:            ev.activity,
		TokenIssuerType:     "AzureAD",
		ActivityDateTime:    activity.Format(DateTimeLayout),
		DetectedDateTime:    detected.Format(DateTimeLayout),
		LastUpdatedDateTime: t.Format(DateTimeLayout),
		UserID:              stableID(u[1]),
		UserDisplayName:     u[0],
		UserPrincipalName:   u[1] + "@contoso.com",
	}
	info := []infoItem{}
	if ev.activity == "signin" {
		d.RequestID, d.CorrelationID = ptr(NewID(r)), ptr(NewID(r))
		d.IPAddress = randIP(r)
		l := randLocation(r)
		d.Location = &l
		info = append(info, infoItem{"userAgent", pickOne(r, simUserAgents)})
		if ev.kind == "unlikelyTravel" || ev.kind == "mcasImpossibleTravel" {
			other := pickOne(r, simPlaces)
			info = append(info,
				infoItem{"relatedLocation", map[string]any{"clientIP": randIP(r), "latitude": other.lat, "longitude": other.lon,
					"asn": 8075, "countryCode": other.country, "state": other.state, "city": other.city}},
				infoItem{"relatedEventTimeInUtc", activity.Add(-43 * time.Minute).Format(DateTimeLayout)})
		}
	}
	if ev.source == "MicrosoftCloudAppSecurity" {
		info = append(info, infoItem{"alertUrl", "https://contoso.portal.cloudappsecurity.com/#/alerts/" + id[:min(24, len(id))]})
	}
	d.AdditionalInfo = jsonText(info)
	return d
}

// infoItem is one entry of a detection's additionalInfo, which Graph
// serializes with capitalised keys into a string.
type infoItem struct {
	Key   string `json:"Key"`
	Value any    `json:"Value"`
}

func (d *riskDetection) setState(r *rand.Rand, state string) {
	for _, s := range riskStates {
		if s.state == state {
			d.RiskState, d.RiskDetail = state, pickOne(r, s.details)
			return
		}
	}
}

// ---- security alerts -----------------------------------------------------

type alert struct {
	ODataType          string            `json:"@odata.type"`
	ID                 string            `json:"id"`
	ProviderAlertID    string            `json:"providerAlertId"`
	IncidentID         string            `json:"incidentId"`
	Status             string            `json:"status"`
	Severity           string            `json:"severity"`
	Classification     string            `json:"classification"`
	Determination      string            `json:"determination"`
	ServiceSource      string            `json:"serviceSource"`
	DetectionSource    string            `json:"detectionSource"`
	DetectorID         string            `json:"detectorId"`
	TenantID           string            `json:"tenantId"`
	Title              string            `json:"title"`
	Description        string            `json:"description"`
	RecommendedActions string            `json:"recommendedActions"`
	Category           string            `json:"category"`
	AssignedTo         *string           `json:"assignedTo"`
	AlertWebURL        string            `json:"alertWebUrl"`
	IncidentWebURL     string            `json:"incidentWebUrl"`
	ActorDisplayName   *string           `json:"actorDisplayName"`
	ThreatDisplayName  *string           `json:"threatDisplayName"`
	ThreatFamilyName   *string           `json:"threatFamilyName"`
	MitreTechniques    []string          `json:"mitreTechniques"`
	CreatedDateTime    string            `json:"createdDateTime"`
	LastUpdateDateTime string            `json:"lastUpdateDateTime"`
	ResolvedDateTime   *string           `json:"resolvedDateTime"`
	FirstActivity      string            `json:"firstActivityDateTime"`
	LastActivity       string            `json:"lastActivityDateTime"`
	Comments           []alertComment    `json:"comments"`
	Evidence           []json.RawMessage `json:"evidence"`
	SystemTags         []string          `json:"systemTags"`
}

type alertComment struct {
	Comment              string `json:"comment"`
	CreatedByDisplayName string `json:"createdByDisplayName"`
	CreatedDateTime      string `json:"createdDateTime"`
}

var (
	alertStatuses = []string{"new", "inProgress", "resolved"}
	// Resolving an alert classifies it; each classification has its own
	// determinations.
	alertVerdicts = map[string][]string{
		"truePositive":                  {"malware", "phishing", "compromisedAccount", "multiStagedAttack", "maliciousUserActivity", "apt", "unwantedSoftware"},
		"falsePositive":                 {"notMalicious", "notEnoughDataToValidate"},
		"informationalExpectedActivity": {"securityTesting", "lineOfBusinessApplication", "confirmedActivity", "securityPersonnel"},
	}
	alertClassifications = []string{"truePositive", "falsePositive", "informationalExpectedActivity"}
	simAlertTemplates    = []struct {
		service, detection, title, description, category string
		mitre, evidence                                  []string
	}{
		{"microsoftDefenderForEndpoint", "antivirus", "Suspicious execution of hidden file",
			"A hidden file has been launched. This activity could indicate a compromised host. Attackers often hide files associated with malicious tools to evade file system inspection and defenses.",
			"DefenseEvasion", []string{"T1564.001"}, []string{"device", "file", "process"}},
		{"microsoftDefenderForEndpoint", "microsoftDefenderForEndpoint", "Suspicious PowerShell command line",
			`A suspicious PowerShell activity was observed on the machine: "powershell.exe -NoP -W Hidden -Enc SQBFAFgA…" run by %s.`,
			"Execution", []string{"T1059.001", "T1027"}, []string{"device", "process", "user"}},
		// Defender's own title carries a zero-width space.
		{"microsoftDefenderForOffice365", "microsoftDefenderForOffice365", "Email messages containing malicious URL removed after delivery\u200b",
			"Emails with malicious URL that were delivered and later removed -V1.0.0.3 — recipient %s",
			"InitialAccess", []string{"T1566.002"}, []string{"mailbox", "url"}},
		{"azureAdIdentityProtection", "azureAdIdentityProtection", "Unfamiliar sign-in properties",
			"The sign-in of %s had properties not seen recently for the user.",
			"InitialAccess", []string{"T1078"}, []string{"user", "ip"}},
		{"microsoftDefenderForIdentity", "microsoftDefenderForIdentity", "Suspected DCSync attack (replication of directory services)",
			"%s sent a replication request from DESKTOP-7Q2K1LM to DC01.contoso.local.",
			"CredentialAccess", []string{"T1003.006"}, []string{"user", "device"}},
		{"microsoftDefenderForCloudApps", "microsoftDefenderForCloudApps", "Impossible travel activity",
			"The user %s performed activities from Zürich, CH and 東京, JP within 43 minutes.",
			"InitialAccess", []string{"T1078.004"}, []string{"user", "ip"}},
	}
	simAnalysts     = []string{"Zoë Ångström", "soc-tier1@contoso.com", "José Núñez", "山田 太郎", "Automation"}
	simAlertRemarks = []string{
		"Faux positif — outil de test interne.",
		`Benign: "pentest" by the red team, see \\fs01\soc\2025\pt-07.docx`,
		"調査中。ユーザーに連絡済み。",
		"Device isolated.\nPassword reset requested.",
		"Closing: expected activity 👍",
	}
	simFilePaths = []string{`C:\Program Files\temp`, `C:\Users\Zoë\AppData\Local\Temp`, `C:\Windows\System32`, `D:\Финансы\макросы`, "/home/søren/.cache"}
	simFileNames = []string{"MsSense.exe", "invoice_2025.pdf.exe", "макрос.xlsm", "update\u00a0helper.ps1", "svchost.exe"}
)

// newAlert builds the values an alert has when first raised, from id
// alone, with lastUpdateDateTime t and no status yet.
func newAlert(id string, t time.Time) alert {
	r := idRand(id)
	tpl := pickOne(r, simAlertTemplates)
	u := pickOne(r, simUsers)
	created := t.Add(-time.Duration(r.Int64N(int64(2 * time.Minute)))).Truncate(100 * time.Nanosecond)
	first := created.Add(-time.Minute - time.Duration(r.Int64N(int64(6*time.Hour)))).Truncate(time.Millisecond)
	last := first.Add(time.Duration(r.Int64N(int64(created.Sub(first))))).Truncate(time.Millisecond)
	incident := strconv.Itoa(10000 + r.IntN(90000))
	desc := tpl.description
	if strings.Contains(desc, "%s") {
		desc = fmt.Sprintf(desc, u[0]+" ("+u[1]+"@contoso.com)")
	}
	a := alert{
		ODataType:       "#microsoft.graph.security.alert",
		ID:              id,
		ProviderAlertID: id,
		IncidentID:      incident,
		Severity:        pickOne(r, []string{"informational", "low", "medium", "high"}),
		ServiceSource:   tpl.service,
		DetectionSource: tpl.detection,
		DetectorID:      stableID("detector/" + tpl.title),
		TenantID:        DefaultTenantID,
		Title:           tpl.title,
		Description:     desc,
		RecommendedActions: "Collect artifacts and determine scope\n\u2022\tReview the machine timeline for suspicious activities.\n" +
			"\u2022\tContact the user to verify intent.\n\u2022\tBlock communication with relevant URLs or IPs at the organization\u2019s perimeter.",
		Category:           tpl.category,
		AlertWebURL:        "https://security.microsoft.com/alerts/" + id + "?tid=" + DefaultTenantID,
		IncidentWebURL:     "https://security.microsoft.com/incidents/" + incident + "?tid=" + DefaultTenantID,
		MitreTechniques:    slices.Clone(tpl.mitre),
		CreatedDateTime:    created.Format(DateTimeLayout),
		LastUpdateDateTime: t.Format(DateTimeLayout),
		FirstActivity:      first.Format(millisLayout),
		LastActivity:       last.Format(millisLayout),
		Comments:           []alertComment{},
		Evidence:           []json.RawMessage{},
		SystemTags:         []string{},
	}
	if tpl.service != "microsoftDefenderForEndpoint" {
		a.ProviderAlertID = stableID("provider/" + id)
	}
	if r.IntN(3) == 0 {
		a.ThreatDisplayName, a.ThreatFamilyName = ptr("Trojan:Win32/Wacatac.B!ml"), ptr("Wacatac")
	}
	if r.IntN(5) == 0 {
		a.ActorDisplayName = ptr("Storm-0558 «test»")
		a.SystemTags = append(a.SystemTags, "Defender Experts")
	}
	device := fmt.Sprintf("%x", sha256.Sum256([]byte("device/"+id)))[:40]
	for _, kind := range tpl.evidence {
		ev := map[string]any{
			"createdDateTime":          created.Format(DateTimeLayout),
			"verdict":                  pickOne(r, []string{"unknown", "suspicious", "malicious"}),
			"remediationStatus":        pickOne(r, []string{"none", "remediated", "prevented"}),
			"remediationStatusDetails": nil,
			"roles":                    []string{},
			"detailedRoles":            []string{},
			"tags":                     []string{},
		}
		account := map[string]any{"accountName": u[1], "domainName": "CONTOSO", "userSid": fmt.Sprintf("S-1-5-21-%d-%d-%d-%d", r.Uint32(), r.Uint32(), r.Uint32(), 1000+r.IntN(9000)),
			"azureAdUserId": stableID(u[1]), "userPrincipalName": u[1] + "@contoso.com", "displayName": u[0]}
		file := map[string]any{"sha1": fmt.Sprintf("%016x%016x%08x", r.Uint64(), r.Uint64(), r.Uint32()), "sha256": fmt.Sprintf("%016x%016x%016x%016x", r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64()),
			"fileName": pickOne(r, simFileNames), "filePath": pickOne(r, simFilePaths), "fileSize": 1024 + r.IntN(8<<20),
			"filePublisher": pickOne(r, []any{"Microsoft Corporation", nil}), "signer": nil, "issuer": nil}
		switch kind {
		case "device":
			ev["@odata.type"] = "#microsoft.graph.security.deviceEvidence"
			ev["firstSeenDateTime"] = created.Add(-time.Duration(r.Int64N(int64(400 * 24 * time.Hour)))).Format(DateTimeLayout)
			ev["mdeDeviceId"], ev["azureAdDeviceId"] = device, stableID("aad-device/"+id)
			ev["deviceDnsName"] = pickOne(r, []string{"desktop-7q2k1lm.contoso.local", "zoës-macbook", "lab-kiosk-03"})
			ev["osPlatform"], ev["osBuild"], ev["version"] = pickOne(r, []string{"Windows10", "Windows11", "macOS"}), 22000+r.IntN(1000), "22H2"
			ev["healthStatus"], ev["riskScore"], ev["onboardingStatus"], ev["defenderAvStatus"] = "active", pickOne(r, []string{"low", "medium", "high"}), "onboarded", "updated"
			ev["rbacGroupId"], ev["rbacGroupName"] = 75, "UnassignedGroup"
			ev["ipInterfaces"] = []string{randIP(r)}
			ev["loggedOnUsers"] = []map[string]string{{"accountName": u[1], "domainName": "CONTOSO"}}
			ev["roles"] = []string{"compromised"}
		case "file":
			ev["@odata.type"] = "#microsoft.graph.security.fileEvidence"
			ev["detectionStatus"], ev["mdeDeviceId"], ev["fileDetails"] = "detected", device, file
		case "process":
			ev["@odata.type"] = "#microsoft.graph.security.processEvidence"
			ev["processId"], ev["parentProcessId"] = 1000+r.IntN(60000), 4+r.IntN(1000)
			ev["processCommandLine"] = pickOne(r, []string{`"MsSense.exe"`, `powershell.exe -NoP -W Hidden -Enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA`, `cmd.exe /c "echo %USERNAME% > C:\temp\ü.txt"`})
			ev["processCreationDateTime"] = last.Format(DateTimeLayout)
			ev["parentProcessCreationDateTime"] = first.Format(DateTimeLayout)
			ev["detectionStatus"], ev["mdeDeviceId"], ev["imageFile"], ev["userAccount"] = "detected", device, file, account
		case "user":
			ev["@odata.type"] = "#microsoft.graph.security.userEvidence"
			ev["userAccount"] = account
		case "mailbox":
			ev["@odata.type"] = "#microsoft.graph.security.mailboxEvidence"
			ev["primaryAddress"], ev["displayName"], ev["userAccount"] = u[1]+"@contoso.com", u[0], account
		case "url":
			ev["@odata.type"] = "#microsoft.graph.security.urlEvidence"
			ev["url"] = pickOne(r, []string{"https://contoso-login.example/ü?next=%2Fowa", "http://bit.example/x?a=1&b=<2>"})
		case "ip":
			place := pickOne(r, simPlaces)
			ev["@odata.type"] = "#microsoft.graph.security.ipEvidence"
			ev["ipAddress"], ev["countryLetterCode"] = randIP(r), place.country
		}
		a.Evidence = append(a.Evidence, mustMarshal(ev))
	}
	return a
}

// setStatus moves the alert to status at t: resolving classifies it,
// reopening clears the verdict, and analysts sometimes leave a comment.
func (a *alert) setStatus(r *rand.Rand, status string, t time.Time) {
	a.Status = status
	a.LastUpdateDateTime = t.Format(DateTimeLayout)
	switch status {
	case "new":
		a.Classification, a.Determination, a.AssignedTo, a.ResolvedDateTime = "unknown", "unknown", nil, nil
	case "inProgress":
		a.Classification, a.Determination, a.ResolvedDateTime = "unknown", "unknown", nil
		a.AssignedTo = ptr(pickOne(r, simAnalysts))
	case "resolved":
		a.Classification = pickOne(r, alertClassifications)
		a.Determination = pickOne(r, alertVerdicts[a.Classification])
		a.ResolvedDateTime = ptr(t.Format(DateTimeLayout))
		if a.AssignedTo == nil {
			a.AssignedTo = ptr(pickOne(r, simAnalysts))
		}
	}
	if status != "new" && r.IntN(2) == 0 {
		a.Comments = append(a.Comments, alertComment{Comment: pickOne(r, simAlertRemarks),
			CreatedByDisplayName: *a.AssignedTo, CreatedDateTime: t.Format(DateTimeLayout)})
	}
}
