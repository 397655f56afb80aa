package source

import (
	"net/url"
	"testing"
	"time"
)

func TestURLs(t *testing.T) {
	from := time.Date(2026, 3, 2, 8, 0, 0, 500, time.UTC)
	to := time.Date(2026, 3, 2, 8, 5, 0, 1, time.UTC)
	rows := map[string]string{
		"signins":                "https://graph.microsoft.com/v1.0/auditLogs/signIns?$filter=createdDateTime ge 2026-03-02T08:00:00Z and createdDateTime le 2026-03-02T08:05:01Z&$top=1000",
		"signins_noninteractive": "https://graph.microsoft.com/beta/auditLogs/signIns?$filter=(createdDateTime ge 2026-03-02T08:00:00Z and createdDateTime le 2026-03-02T08:05:01Z) and signInEventTypes/any(t: t eq 'nonInteractiveUser')&$top=1000",
		"directory_audits":       "https://graph.microsoft.com/v1.0/auditLogs/directoryAudits?$filter=activityDateTime ge 2026-03-02T08:00:00Z and activityDateTime le 2026-03-02T08:05:01Z&$top=1000",
		// Strict operators: one more second on each side, so nothing at
		// the bounds is left out.
		"provisioning":    "https://graph.microsoft.com/v1.0/auditLogs/provisioning?$filter=activityDateTime gt 2026-03-02T07:59:59Z and activityDateTime lt 2026-03-02T08:05:02Z&$top=1000",
		"risk_detections": "https://graph.microsoft.com/v1.0/identityProtection/riskDetections?$filter=lastUpdatedDateTime ge 2026-03-02T08:00:00Z and lastUpdatedDateTime le 2026-03-02T08:05:01Z&$top=500",
		"security_alerts": "https://graph.microsoft.com/v1.0/security/alerts_v2?$filter=lastUpdateDateTime ge 2026-03-02T08:00:00Z and lastUpdateDateTime le 2026-03-02T08:05:01Z&$top=1000",
	}
	for name, want := range rows {
		p, ok := Lookup(name)
		if !ok {
			t.Fatalf("no profile %s", name)
		}
		got, err := url.QueryUnescape(p.URL("https://graph.microsoft.com/", from, to, p.Top(1000)))
		if err != nil || got != want {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}

func TestProfiles(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range Profiles {
		if seen[p.Name] || (p.MaxTop < 1) != p.IsActivity() || p.TimeField == "" || p.Budget.Requests < 1 || p.Permission == "" {
			t.Errorf("profile %+v", p)
		}
		seen[p.Name] = true
	}
	if len(Profiles) != 13 {
		t.Fatalf("%d profiles", len(Profiles))
	}
	r, _ := Lookup("risk_detections")
	if r.Top(1000) != 500 || r.BudgetKey("a", "T", "C") != "identity_protection|a|t" {
		t.Fatal("risk detections: page limit or per-tenant budget")
	}
	s, _ := Lookup("signins")
	d, _ := Lookup("directory_audits")
	if s.BudgetKey("a", "t", "c") != d.BudgetKey("a", "t", "c") {
		t.Fatal("the reporting APIs share one budget per app and tenant")
	}
	if _, ok := Lookup("mail"); ok {
		t.Fatal("unknown source found")
	}
}

func TestActivityProfiles(t *testing.T) {
	types := map[string]string{}
	for _, p := range Profiles {
		if p.API != Graph && p.API != Activity {
			t.Errorf("%s: API %q", p.Name, p.API)
		}
		if p.IsActivity() {
			types[p.Name] = p.ContentType
			if p.TimeField != "CreationTime" || p.IDField != "Id" || p.Budget.Family != "management_activity" {
				t.Errorf("%+v", p)
			}
		}
	}
	want := map[string]string{"o365_azure_ad": "Audit.AzureActiveDirectory", "o365_exchange": "Audit.Exchange",
		"o365_sharepoint": "Audit.SharePoint", "o365_general": "Audit.General", "o365_dlp": "DLP.All"}
	if len(types) != len(want) {
		t.Fatalf("%v", types)
	}
	for k, v := range want {
		if types[k] != v {
			t.Errorf("%s: %q", k, types[k])
		}
	}
	a, _ := Lookup("o365_exchange")
	b, _ := Lookup("o365_dlp")
	s, _ := Lookup("signins")
	if a.BudgetKey("x", "t", "c") != b.BudgetKey("x", "t", "c") || a.BudgetKey("x", "t", "c") == s.BudgetKey("x", "t", "c") {
		t.Fatal("content types share one budget per tenant and app, apart from Graph's")
	}
}
