package graphsim

import (
	"crypto/sha256"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// NewID returns a random version 4 GUID in Graph's lowercase text form.
func NewID(r *rand.Rand) string {
	var b [16]byte
	for i := 0; i < 16; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return formatGUID(b)
}

func formatGUID(b [16]byte) string {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// stableID gives a fixed GUID per name, so a simulated user keeps one
// userId across sign-ins.
func stableID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return formatGUID([16]byte(sum[:16]))
}

// Lateness draws how long after its createdDateTime an event becomes
// visible to queries.
type Lateness func(r *rand.Rand) time.Duration

// RealisticLateness models Entra's documented reporting latency (P95 2 min,
// P99 5 min for scale = time.Minute): a log-normal body with P95 ≈ 2*scale
// and P99 ≈ 5*scale, plus 0.3% stragglers spread up to 60*scale.
func RealisticLateness(scale time.Duration) Lateness {
	// The parameters put the mixture's P95 and P99 on target once the
	// straggler mass above 5*scale is counted.
	const median, sigma = 0.283, 1.169
	return func(r *rand.Rand) time.Duration {
		if r.Float64() < 0.003 {
			return 5*scale + time.Duration(r.Float64()*float64(55*scale))
		}
		d := time.Duration(float64(scale) * median * math.Exp(sigma*r.NormFloat64()))
		return min(d, 60*scale)
	}
}

// Generate returns n sign-ins, oldest first, created uniformly in
// [from, to) (rounded down to 100 ns) and visible late(r) after creation;
// a nil late makes them visible at once. It is GenerateSource for
// "signins".
func Generate(r *rand.Rand, from, to time.Time, n int, late Lateness) []Event {
	return GenerateSource(r, SourceSignIns, from, to, n, late)
}

type signIn struct {
	ID                               string     `json:"id"`
	CreatedDateTime                  string     `json:"createdDateTime"`
	UserDisplayName                  string     `json:"userDisplayName"`
	UserPrincipalName                string     `json:"userPrincipalName"`
	UserID                           string     `json:"userId"`
	AppID                            string     `json:"appId"`
	AppDisplayName                   string     `json:"appDisplayName"`
	IPAddress                        string     `json:"ipAddress"`
	ClientAppUsed                    string     `json:"clientAppUsed"`
	CorrelationID                    string     `json:"correlationId"`
	ConditionalAccessStatus          string     `json:"conditionalAccessStatus"`
	IsInteractive                    bool       `json:"isInteractive"`
	RiskDetail                       string     `json:"riskDetail"`
	RiskLevelAggregated              string     `json:"riskLevelAggregated"`
	RiskLevelDuringSignIn            string     `json:"riskLevelDuringSignIn"`
	RiskState                        string     `json:"riskState"`
	RiskEventTypes                   []string   `json:"riskEventTypes"`
	RiskEventTypesV2                 []string   `json:"riskEventTypes_v2"`
	ResourceDisplayName              string     `json:"resourceDisplayName"`
	ResourceID                       string     `json:"resourceId"`
	Status                           status     `json:"status"`
	DeviceDetail                     device     `json:"deviceDetail"`
	Location                         location   `json:"location"`
	AppliedConditionalAccessPolicies []caPolicy `json:"appliedConditionalAccessPolicies"`
}

type status struct {
	ErrorCode         int     `json:"errorCode"`
	FailureReason     *string `json:"failureReason"`
	AdditionalDetails *string `json:"additionalDetails"`
}

type device struct {
	DeviceID        string  `json:"deviceId"`
	DisplayName     *string `json:"displayName"`
	OperatingSystem string  `json:"operatingSystem"`
	Browser         string  `json:"browser"`
	IsCompliant     *bool   `json:"isCompliant"`
	IsManaged       *bool   `json:"isManaged"`
	TrustType       *string `json:"trustType"`
}

type location struct {
	City            string `json:"city"`
	State           string `json:"state"`
	CountryOrRegion string `json:"countryOrRegion"`
	GeoCoordinates  struct {
		Altitude  *float64 `json:"altitude"`
		Latitude  float64  `json:"latitude"`
		Longitude float64  `json:"longitude"`
	} `json:"geoCoordinates"`
}

type caPolicy struct {
	ID                      string   `json:"id"`
	DisplayName             string   `json:"displayName"`
	EnforcedGrantControls   []string `json:"enforcedGrantControls"`
	EnforcedSessionControls []string `json:"enforcedSessionControls"`
	Result                  string   `json:"result"`
}

// The value pools mix plain ASCII with accents, CJK, Greek, emoji, quotes,
// backslashes and control characters so that every client-side JSON path
// (escapes, multi-byte UTF-8, surrogate pairs) is exercised.
var (
	simUsers = [][2]string{
		{"Test Contoso", "testaccount1"},
		{"Zoë Ångström", "zoe.angstrom"},
		{"José Núñez", "jose.nunez"},
		{"山田 太郎", "taro.yamada"},
		{"Søren Ødegård", "soren.odegard"},
		{`Danny "The Admin" O'Brien`, "danny.obrien"},
		{"Ελένη Παπαδοπούλου", "eleni.papadopoulou"},
		{`Build\Agent 07`, "svc-build07"},
		{"Amélie 🚀 Laurent", "amelie.laurent"},
		{"Megan Bowen", "meganb"},
	}
	simApps = [][2]string{
		{"Graph explorer", "de8bc8b5-d9f9-48b1-a8ad-b748da725064"},
		{"Microsoft Teams", "1fec8e78-bce4-4aaf-ab1b-5451cc387264"},
		{"Azure Portal", "c44b4083-3bb0-49c1-b47d-974e53cbdf3c"},
		{"Microsoft Office", "d3590ed6-52b3-4102-aeff-aad2292ab01c"},
		{"Office 365 Exchange Online", "00000002-0000-0ff1-ce00-000000000000"},
	}
	simResources = [][2]string{
		{"Microsoft Graph", "00000003-0000-0000-c000-000000000000"},
		{"Office 365 Exchange Online", "00000002-0000-0ff1-ce00-000000000000"},
		{"Office 365 SharePoint Online", "00000003-0000-0ff1-ce00-000000000000"},
		{"Windows Azure Service Management API", "797f4846-ba00-4fd7-ba43-dac1f8f63013"},
	}
	simPlaces = []struct {
		city, state, country string
		lat, lon             float64
	}{
		{"Redmond", "Washington", "US", 47.6805, -122.1209},
		{"東京", "東京都", "JP", 35.6895, 139.6917},
		{"Zürich", "Zürich", "CH", 47.3769, 8.5417},
		{"São Paulo", "São Paulo", "BR", -23.5505, -46.6333},
		{"Kraków", "Małopolskie", "PL", 50.0647, 19.9450},
		{"Reykjavík", "Höfuðborgarsvæðið", "IS", 64.1466, -21.9426},
		{"Dublin", "Dublin", "IE", 53.3498, -6.2603},
	}
	simDevices = [][3]string{ // operatingSystem, browser, clientAppUsed
		{"Windows 10", "Edge 80.0.361", "Browser"},
		{"Windows 10", "Rich Client 5.2.8.0", "Mobile Apps and Desktop clients"},
		{"MacOs", "Safari 17.1", "Browser"},
		{"Ios", "Mobile Safari", "Browser"},
		{"Android", "Chrome Mobile 120.0.6099", "Mobile Apps and Desktop clients"},
		{"Linux", "Firefox 121.0", "Browser"},
	}
	simDeviceNames = []string{"DESKTOP-7Q2K1LM", "Zoë's 💻 MacBook", `LAB\KIOSK-03`, "iPhone de José", "tab\there"}
	simFailures    = []struct {
		code            int
		reason, details string
	}{
		{50126, "Error validating credentials due to invalid username or password.", "The user didn't enter the right credentials. \tIt's expected to see some number of these errors in your logs due to users making mistakes."},
		{50074, "Strong Authentication is required.", "MFA required in Azure AD\nUser did not pass the MFA challenge (non interactive)."},
		{50053, "Account is locked because user tried to sign in too many times with an incorrect user ID or password.", `Blocked by "Smart Lockout" for C:\Users\svc\AppData\Local\Temp\x.ps1`},
		{53003, "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.", "Device state: \u0001unregistered\u0001; policy: \"Block legacy auth\""},
	}
	simPolicies = []struct {
		name           string
		grant, session []string
	}{
		{"SharePoint limited access for guest workers", nil, []string{"SignInFrequency"}},
		{"Require MFA for admins", []string{"Mfa"}, nil},
		{"Block legacy authentication", []string{"Block"}, nil},
		{`Require compliant device — "Finance" \ HR`, []string{"RequireCompliantDevice", "RequireDomainJoinedDevice"}, nil},
		{"東京 office: trusted locations only", []string{"Mfa"}, []string{"PersistentBrowserSessionMode"}},
		{"Sign-in frequency 8h ⏱", nil, []string{"SignInFrequency", "ApplicationEnforcedRestrictions"}},
		{"Require terms of use for guests", []string{"Terms of Use"}, nil},
		{"Block access from untrusted countries", []string{"Block"}, nil},
		{"Require approved client app on mobile", []string{"RequireApprovedApp", "RequireCompliantApp"}, nil},
		{"Risky sign-ins: require MFA (report-only)", []string{"Mfa"}, nil},
		{"Defender for Cloud Apps session proxy", nil, []string{"CloudAppSecurity"}},
		{"Passwordless for Ωmega project", []string{"PasswordlessMfa"}, nil},
	}
	simPolicyResults = []string{"success", "failure", "notApplied", "notEnabled", "reportOnlySuccess", "reportOnlyNotApplied"}
)

// SignIn returns a v1.0 interactive signIn object for id and created, 1.5
// to 5 KB long, with values drawn from r. Key order is fixed.
func SignIn(r *rand.Rand, id string, created time.Time) []byte {
	pick := func(n int) int { return r.IntN(n) }
	u := simUsers[pick(len(simUsers))]
	app := simApps[pick(len(simApps))]
	res := simResources[pick(len(simResources))]
	place := simPlaces[pick(len(simPlaces))]
	dev := simDevices[pick(len(simDevices))]

	s := signIn{
		ID:                      id,
		CreatedDateTime:         created.UTC().Format(DateTimeLayout),
		UserDisplayName:         u[0],
		UserPrincipalName:       u[1] + "@contoso.com",
		UserID:                  stableID(u[1]),
		AppID:                   app[1],
		AppDisplayName:          app[0],
		IPAddress:               fmt.Sprintf("%d.%d.%d.%d", 20+pick(200), pick(256), pick(256), 1+pick(254)),
		ClientAppUsed:           dev[2],
		CorrelationID:           NewID(r),
		ConditionalAccessStatus: []string{"success", "notApplied", "failure"}[pick(3)],
		IsInteractive:           true,
		RiskDetail:              "none",
		RiskLevelAggregated:     "none",
		RiskLevelDuringSignIn:   "none",
		RiskState:               "none",
		RiskEventTypes:          []string{},
		RiskEventTypesV2:        []string{},
		ResourceDisplayName:     res[0],
		ResourceID:              res[1],
		DeviceDetail:            device{OperatingSystem: dev[0], Browser: dev[1]},
		Location:                location{City: place.city, State: place.state, CountryOrRegion: place.country},
	}
	if pick(8) == 0 {
		s.IPAddress = fmt.Sprintf("2001:db8:%x::%x", pick(0x10000), pick(0x10000))
	}
	if pick(20) == 0 {
		s.RiskLevelAggregated, s.RiskLevelDuringSignIn, s.RiskState = "medium", "medium", "atRisk"
		s.RiskEventTypes = []string{"unfamiliarFeatures"}
		s.RiskEventTypesV2 = []string{"unfamiliarFeatures"}
	}
	if pick(4) == 0 {
		f := simFailures[pick(len(simFailures))]
		s.Status = status{ErrorCode: f.code, FailureReason: &f.reason, AdditionalDetails: &f.details}
	}
	if pick(2) == 0 {
		name := simDeviceNames[pick(len(simDeviceNames))]
		compliant, managed, trust := pick(2) == 0, true, "Azure AD joined"
		s.DeviceDetail.DeviceID = NewID(r)
		s.DeviceDetail.DisplayName = &name
		s.DeviceDetail.IsCompliant, s.DeviceDetail.IsManaged, s.DeviceDetail.TrustType = &compliant, &managed, &trust
	}
	// Graph's coordinates are float32 values widened to float64, hence the
	// long decimal expansions.
	s.Location.GeoCoordinates.Latitude = float64(float32(place.lat + (r.Float64()-0.5)/10))
	s.Location.GeoCoordinates.Longitude = float64(float32(place.lon + (r.Float64()-0.5)/10))

	// A tenant's policies each appear once, in a varying order.
	order := r.Perm(len(simPolicies))
	s.AppliedConditionalAccessPolicies = []caPolicy{}
	addPolicy := func() {
		p := simPolicies[order[len(s.AppliedConditionalAccessPolicies)]]
		s.AppliedConditionalAccessPolicies = append(s.AppliedConditionalAccessPolicies, caPolicy{
			ID:                      stableID(p.name),
			DisplayName:             p.name,
			EnforcedGrantControls:   append([]string{}, p.grant...),
			EnforcedSessionControls: append([]string{}, p.session...),
			Result:                  simPolicyResults[pick(len(simPolicyResults))],
		})
	}
	for range 1 + pick(len(simPolicies)) {
		addPolicy()
	}
	for {
		b, err := marshal(s)
		if err != nil {
			panic(err) // the types above always marshal
		}
		if len(b) >= 1536 || len(s.AppliedConditionalAccessPolicies) == len(simPolicies) {
			return b
		}
		addPolicy()
	}
}
