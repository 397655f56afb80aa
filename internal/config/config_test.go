package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func base() MapGetter {
	return MapGetter{
		"tenant_id":     "contoso.onmicrosoft.com",
		"client_id":     "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
		"client_secret": "s3cr3t-value",
	}
}

func with(kv ...string) MapGetter {
	m := base()
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "<unset>" {
			delete(m, kv[i])
			continue
		}
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestDefaults(t *testing.T) {
	c, err := Parse(base())
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Auth: "client_secret", Cloud: "global", IMDSEndpoint: DefaultIMDSEndpoint,
		TenantID: "contoso.onmicrosoft.com", ClientID: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", ClientSecret: "s3cr3t-value",
		AuthorityHost: DefaultAuthorityHost, GraphHost: DefaultGraphHost, Source: "signins",
		PollInterval: time.Minute, Lookback: 30 * time.Minute, MaxLookback: 24 * time.Hour,
		Reconcile:    []time.Duration{2 * time.Hour, 6 * time.Hour, 24 * time.Hour},
		DriftWarning: 45 * time.Minute, InitialLookback: 30 * time.Minute, PageSize: 1000,
		HTTPTimeout: 30 * time.Second, HealthRecords: true,
		TenantsRefresh: 5 * time.Minute, TenantKey: "msgraph_tenant", AppBudget: 122, IdlePollInterval: time.Minute,
	}
	if c.Redacted() != want.Redacted() || len(c.Reconcile) != 3 || c.MultiTenant() || c.Tenants != nil || c.Shard != (Shard{}) || c.MetricsTenantLabel ||
		c.TenantsRefresh != want.TenantsRefresh || c.TenantKey != want.TenantKey || c.AppBudget != want.AppBudget || c.IdlePollInterval != want.IdlePollInterval {
		t.Fatalf("defaults:\n got %s\nwant %s", c.Redacted(), want.Redacted())
	}
}

func TestKeysAreCaseInsensitive(t *testing.T) {
	c, err := Parse(MapGetter{"Tenant_ID": "t", "CLIENT_ID": "c", "Client_Secret": "x", "Poll_Interval": "2m", "LOOKBACK": "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if c.PollInterval != 2*time.Minute || c.Lookback != time.Hour || c.InitialLookback != time.Hour {
		t.Fatalf("got %v %v %v", c.PollInterval, c.Lookback, c.InitialLookback)
	}
}

func TestParseValues(t *testing.T) {
	c, err := Parse(with(
		"graph_host", "http://127.0.0.1:8080/", "authority_host", "http://localhost:9",
		"poll_interval", "30", "lookback", "1d", "max_lookback", "2d", "reconcile", "3d, 7d",
		"initial_lookback", "1d12h", "page_size", "500", "health_records", "off", "db", "/var/lib/x.db",
		"source", "SignIns", "drift_warning", "90m", "http_timeout", "1m",
	))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"graph_host", c.GraphHost, "http://127.0.0.1:8080"},
		{"authority_host", c.AuthorityHost, "http://localhost:9"},
		{"poll_interval", c.PollInterval, 30 * time.Second},
		{"lookback", c.Lookback, 24 * time.Hour},
		{"max_lookback", c.MaxLookback, 48 * time.Hour},
		{"reconcile", FormatDurations(c.Reconcile), "3d,7d"},
		{"initial_lookback", c.InitialLookback, 36 * time.Hour},
		{"page_size", c.PageSize, 500},
		{"health_records", c.HealthRecords, false},
		{"source", c.Source, "signins"},
		{"drift_warning", c.DriftWarning, 90 * time.Minute},
		{"horizon", c.Horizon(), 7 * 24 * time.Hour},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	c, err = Parse(with("reconcile", "off"))
	if err != nil || len(c.Reconcile) != 0 || c.Horizon() != 24*time.Hour {
		t.Fatalf("reconcile off: %v %v", c.Reconcile, err)
	}
}

func TestErrors(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	emptyFile := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(secretFile, []byte("abc\n"), 0o600)
	os.WriteFile(emptyFile, []byte(" \n"), 0o600)
	rows := []struct {
		name string
		g    MapGetter
		want string
	}{
		{"no tenant", with("tenant_id", "<unset>"), `config: tenant_id is not set: set it to the directory (tenant) id GUID or a verified domain of the tenant, or set tenants (a comma-separated list) or tenants_file (a file with one tenant per line) to collect many tenants`},
		{"bad tenant", with("tenant_id", "a/b"), `config: tenant_id = "a/b" is invalid: a tenant GUID or a domain name such as contoso.onmicrosoft.com`},
		{"no client", with("client_id", "<unset>"), `config: client_id is not set: set it to the application (client) id of the app registration`},
		{"no secret", with("client_secret", "<unset>"), `config: client_secret is not set: set client_secret, or client_secret_file to a file holding the secret (or choose another auth: certificate, workload_identity, managed_identity)`},
		{"both secrets", with("client_secret_file", secretFile), `config: client_secret = "(redacted)" is invalid: set either client_secret or client_secret_file, not both`},
		{"missing secret file", with("client_secret", "<unset>", "client_secret_file", "/nonexistent/s"), `config: client_secret_file = "/nonexistent/s" is invalid: cannot read the secret file: open /nonexistent/s: no such file or directory`},
		{"empty secret file", with("client_secret", "<unset>", "client_secret_file", emptyFile), `config: client_secret_file = "` + emptyFile + `" is invalid: the secret file ` + emptyFile + ` is empty`},
		{"http graph host", with("graph_host", "http://graph.microsoft.com"), `config: graph_host = "http://graph.microsoft.com" is invalid: https is required; plain http is accepted only for loopback addresses`},
		{"graph host with path", with("graph_host", "https://graph.microsoft.com/v1.0"), `config: graph_host = "https://graph.microsoft.com/v1.0" is invalid: a base URL such as https://graph.microsoft.com, with no path`},
		{"ftp authority", with("authority_host", "ftp://login"), `config: authority_host = "ftp://login" is invalid: a URL starting with https://`},
		{"unknown source", with("source", "mail"), `config: source = "mail" is invalid: one of: signins, signins_noninteractive, signins_service_principal, signins_managed_identity, directory_audits, provisioning, risk_detections, security_alerts, o365_azure_ad, o365_exchange, o365_sharepoint, o365_general, o365_dlp`},
		{"bad duration", with("poll_interval", "1 minute"), `config: poll_interval = "1 minute" is invalid: a duration such as 90s, 30m, 2h or 7d (a bare number means seconds)`},
		{"negative duration", with("lookback", "-5m"), `config: lookback = "-5m" is invalid: a duration such as 90s, 30m, 2h or 7d (a bare number means seconds)`},
		{"poll too short", with("poll_interval", "500ms"), `config: poll_interval = "500ms" is invalid: at least 1s (Fluent Bit calls the plugin once a second)`},
		{"lookback not above poll", with("poll_interval", "30m"), `config: lookback = "30m" is invalid: must be longer than poll_interval (30m)`},
		{"max below lookback", with("max_lookback", "10m"), `config: max_lookback = "10m" is invalid: must be at least lookback (30m)`},
		{"reconcile syntax", with("reconcile", "2h,x"), `config: reconcile = "2h,x" is invalid: a comma-separated list of delays such as 2h,6h,24h, or off`},
		{"reconcile below lookback", with("reconcile", "20m,2h"), `config: reconcile = "20m,2h" is invalid: each delay must be longer than lookback (30m); use off to disable`},
		{"reconcile order", with("reconcile", "6h,2h"), `config: reconcile = "6h,2h" is invalid: delays must be listed in increasing order, e.g. 2h,6h,24h`},
		{"reconcile too long", with("reconcile", "2h,31d"), `config: reconcile = "2h,31d" is invalid: each delay must be at most 30d (Graph keeps sign-ins 30 days at most)`},
		{"initial too long", with("initial_lookback", "31d"), `config: initial_lookback = "31d" is invalid: a duration above 0 and at most 30d (Graph's retention)`},
		{"initial zero", with("initial_lookback", "0"), `config: initial_lookback = "0s" is invalid: a duration above 0 and at most 30d (Graph's retention)`},
		{"page size", with("page_size", "1001"), `config: page_size = "1001" is invalid: a whole number from 1 to 1000`},
		{"page size text", with("page_size", "lots"), `config: page_size = "lots" is invalid: a whole number from 1 to 1000`},
		{"bool", with("health_records", "enabled"), `config: health_records = "enabled" is invalid: on or off (also true/false, yes/no)`},
		{"timeout", with("http_timeout", "0"), `config: http_timeout = "0s" is invalid: between 1s and 10m`},
		{"drift", with("drift_warning", "0"), `config: drift_warning = "0s" is invalid: a positive duration such as 45m`},
		{"metrics listen", with("metrics_listen", "2021"), `config: metrics_listen = "2021" is invalid: host:port such as 0.0.0.0:2021 or 127.0.0.1:2021, or off`},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			_, err := Parse(r.g)
			if err == nil {
				t.Fatalf("no error, want %s", r.want)
			}
			if err.Error() != r.want {
				t.Fatalf("error:\n got %s\nwant %s", err, r.want)
			}
			if strings.Contains(err.Error(), "s3cr3t-value") {
				t.Fatal("secret in error")
			}
		})
	}
}

func TestSecretFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(f, []byte("  from-file\n"), 0o600)
	c, err := Parse(with("client_secret", "<unset>", "client_secret_file", f))
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientSecret != "" || c.ClientSecretFile != f {
		t.Fatalf("got %+v", c)
	}
	s, _ := ReadSecretFile(f)
	if s != "from-file" {
		t.Fatalf("secret %q", s)
	}
}

func TestRedactedHidesSecret(t *testing.T) {
	c, err := Parse(base())
	if err != nil {
		t.Fatal(err)
	}
	r := c.Redacted()
	if strings.Contains(r, "s3cr3t") || !strings.Contains(r, "client_secret=(redacted)") {
		t.Fatal(r)
	}
}

// TestRedactedHasNoSecretValues: whatever the credential, the
// configuration line holds no secret, so that scrubbing it cannot matter.
func TestRedactedHasNoSecretValues(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "cert.pem")
	os.WriteFile(cert, []byte("not checked here"), 0o600)
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("F1le~Secret.Value\n"), 0o600)
	noEnv := func(string) string { return "" }
	rows := []struct {
		g    MapGetter
		want string
	}{
		{MapGetter{"tenant_id": "t", "client_id": "c", "client_secret": "Cl1ent~Secret.Value"}, "client_secret=(redacted)"},
		{MapGetter{"tenant_id": "t", "client_id": "c", "client_secret": "e"}, "client_secret=(redacted)"},
		{MapGetter{"tenant_id": "t", "client_id": "c", "client_secret_file": secretFile}, "client_secret=(none) client_secret_file=" + secretFile},
		{MapGetter{"auth": "certificate", "tenant_id": "t", "client_id": "c", "certificate_file": cert, "private_key_password": "K3y-Passw0rd!"}, "private_key_password=(redacted)"},
		{MapGetter{"auth": "managed_identity", "imds_endpoint": "http://us3r:Pa55-w0rd@127.0.0.1:9/metadata/identity/oauth2/token"}, "imds_endpoint=http://(redacted)@127.0.0.1:9/metadata/identity/oauth2/token"},
		{MapGetter{"auth": "managed_identity", "imds_endpoint": "https://T0ken-only@imds.example.com/token"}, "imds_endpoint=https://(redacted)@imds.example.com/token"},
	}
	for _, r := range rows {
		c, err := ParseEnv(r.g, noEnv)
		if err != nil {
			t.Fatal(err)
		}
		got := c.Redacted()
		if !strings.Contains(got, r.want) {
			t.Errorf("got %s\nwant fragment %s", got, r.want)
		}
		for _, s := range []string{"Cl1ent~Secret", "F1le~Secret", "K3y-Passw0rd", "us3r", "Pa55-w0rd", "T0ken-only", "=e "} {
			if strings.Contains(got, s) {
				t.Errorf("%q in the configuration line: %s", s, got)
			}
		}
	}
}

func TestParseDuration(t *testing.T) {
	rows := map[string]time.Duration{
		"90s": 90 * time.Second, "2h": 2 * time.Hour, "7d": 7 * 24 * time.Hour, "1d6h": 30 * time.Hour,
		"45": 45 * time.Second, "1.5": 1500 * time.Millisecond, " 30M ": 30 * time.Minute, "0.5d": 12 * time.Hour,
	}
	for in, want := range rows {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "x1d", "1d-1h", "-1", "1y", "1e300"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
	for d, want := range map[time.Duration]string{time.Minute: "1m", 90 * time.Second: "1m30s", 48 * time.Hour: "2d", 2 * time.Hour: "2h", 0: "0s", 36 * time.Hour: "36h"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestAuthKinds(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "cert.pem")
	os.WriteFile(cert, []byte("not checked here"), 0o600)
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("eyJ..."), 0o600)
	noEnv := func(string) string { return "" }
	webhook := func(k string) string {
		return map[string]string{
			"AZURE_TENANT_ID": "env-tenant", "AZURE_CLIENT_ID": "env-client",
			"AZURE_FEDERATED_TOKEN_FILE": tok, "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.us/",
		}[k]
	}
	rows := []struct {
		name string
		g    MapGetter
		env  func(string) string
		want string // Redacted() fragment, or the error
	}{
		{"certificate by default when only a certificate is set", MapGetter{"tenant_id": "t", "client_id": "c", "certificate_file": cert}, noEnv,
			"auth=certificate tenant_id=t client_id=c certificate_file=" + cert + " certificate_algorithm=PS256 send_certificate_chain=false"},
		{"certificate RS256 with chain and password", MapGetter{"auth": "Certificate", "tenant_id": "t", "client_id": "c", "certificate_file": cert, "private_key_file": cert, "private_key_password": "pw!", "certificate_algorithm": "rs256", "send_certificate_chain": "on"}, noEnv,
			"certificate_file=" + cert + " private_key_file=" + cert + " private_key_password=(redacted) certificate_algorithm=RS256 send_certificate_chain=true"},
		{"certificate needs a file", MapGetter{"auth": "certificate", "tenant_id": "t", "client_id": "c"}, noEnv,
			"config: certificate_file is not set: set it to a PEM file with the certificate (and its private key, or set private_key_file)"},
		{"certificate algorithm", MapGetter{"auth": "certificate", "tenant_id": "t", "client_id": "c", "certificate_file": cert, "certificate_algorithm": "ES256"}, noEnv,
			`config: certificate_algorithm = "ES256" is invalid: PS256 (the default) or RS256`},
		{"secret and certificate together", MapGetter{"tenant_id": "t", "client_id": "c", "client_secret": "s", "certificate_file": cert}, noEnv,
			`config: certificate_file = "` + cert + `" is invalid: used only with auth certificate; set auth certificate or remove it`},
		{"secret with certificate auth", MapGetter{"auth": "certificate", "tenant_id": "t", "client_id": "c", "client_secret": "s", "certificate_file": cert}, noEnv,
			`config: client_secret = "(redacted)" is invalid: not used with auth certificate; remove client_secret and client_secret_file`},
		{"workload identity from the webhook environment", MapGetter{"auth": "workload_identity"}, webhook,
			"auth=workload_identity tenant_id=env-tenant client_id=env-client federated_token_file=" + tok + " cloud=global authority_host=https://login.microsoftonline.us graph_host=https://graph.microsoft.com"},
		{"workload identity keys override the environment", MapGetter{"auth": "workload_identity", "tenant_id": "t", "client_id": "c", "federated_token_file": "/x", "authority_host": "https://login.microsoftonline.com"}, webhook,
			"tenant_id=t client_id=c federated_token_file=/x cloud=global authority_host=https://login.microsoftonline.com"},
		{"workload identity without environment", MapGetter{"auth": "workload_identity", "tenant_id": "t", "client_id": "c"}, noEnv,
			`config: federated_token_file is not set: set it, or AZURE_FEDERATED_TOKEN_FILE in the environment (the Azure Workload Identity webhook sets it when the pod has the label azure.workload.identity/use: "true")`},
		{"workload identity without tenant", MapGetter{"auth": "workload_identity", "client_id": "c", "federated_token_file": tok}, noEnv,
			"config: tenant_id is not set: set it to the directory (tenant) id GUID or a verified domain of the tenant (or AZURE_TENANT_ID in the environment), or set tenants (a comma-separated list) or tenants_file (a file with one tenant per line) to collect many tenants"},
		{"managed identity needs no ids", MapGetter{"auth": "managed_identity"}, noEnv,
			"auth=managed_identity tenant_id= client_id= imds_endpoint=" + DefaultIMDSEndpoint},
		{"managed identity user-assigned on a test endpoint", MapGetter{"auth": "managed_identity", "client_id": "mi", "imds_endpoint": "http://127.0.0.1:9/metadata/identity/oauth2/token"}, noEnv,
			"client_id=mi imds_endpoint=http://127.0.0.1:9/metadata/identity/oauth2/token"},
		{"imds over plain http elsewhere", MapGetter{"auth": "managed_identity", "imds_endpoint": "http://imds.example.com/token"}, noEnv,
			`config: imds_endpoint = "http://imds.example.com/token" is invalid: plain http only for the link-local IMDS address 169.254.169.254 or loopback; use https otherwise`},
		{"unknown auth", MapGetter{"auth": "kerberos", "tenant_id": "t", "client_id": "c"}, noEnv,
			`config: auth = "kerberos" is invalid: one of: client_secret, certificate, workload_identity, managed_identity`},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			c, err := ParseEnv(r.g, r.env)
			got := ""
			if err != nil {
				got = err.Error()
				if got != r.want {
					t.Fatalf("error:\n got %s\nwant %s", got, r.want)
				}
				return
			}
			got = c.Redacted()
			if !strings.Contains(got, r.want) {
				t.Fatalf("config:\n got %s\nwant fragment %s", got, r.want)
			}
			if strings.Contains(got, "pw!") {
				t.Fatal("password in the configuration line")
			}
		})
	}
}

func TestClouds(t *testing.T) {
	rows := map[string][3]string{
		"global":    {"https://login.microsoftonline.com", "https://graph.microsoft.com", "https://manage.office.com"},
		"gcc":       {"https://login.microsoftonline.com", "https://graph.microsoft.com", "https://manage-gcc.office.com"},
		"usgov":     {"https://login.microsoftonline.us", "https://graph.microsoft.us", "https://manage.office365.us"},
		"usgov_dod": {"https://login.microsoftonline.us", "https://dod-graph.microsoft.us", "https://manage.protection.apps.mil"},
		"china":     {"https://login.partner.microsoftonline.cn", "https://microsoftgraph.chinacloudapi.cn", "https://manage.office.cn"},
	}
	for name, want := range rows {
		c, err := Parse(with("cloud", strings.ToUpper(name)))
		if err != nil || c.AuthorityHost != want[0] || c.GraphHost != want[1] || c.ManagementHost != want[2] {
			t.Errorf("%s: %s %s %s %v", name, c.AuthorityHost, c.GraphHost, c.ManagementHost, err)
		}
	}
	// Explicit hosts still override the cloud's.
	c, err := Parse(with("cloud", "usgov", "graph_host", "https://proxy.example.com"))
	if err != nil || c.GraphHost != "https://proxy.example.com" || c.AuthorityHost != "https://login.microsoftonline.us" {
		t.Fatalf("override: %+v %v", c, err)
	}
	if _, err := Parse(with("cloud", "germany")); err == nil || err.Error() != `config: cloud = "germany" is invalid: one of: global, gcc, usgov, usgov_dod, china` {
		t.Fatalf("unknown cloud: %v", err)
	}
}

func TestTLSCAFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("hello"), 0o600)
	if _, err := Parse(with("tls_ca_file", bad)); err == nil || err.Error() != `config: tls_ca_file = "`+bad+`" is invalid: the CA file holds no PEM CERTIFICATE block` {
		t.Fatalf("%v", err)
	}
	if _, err := Parse(with("tls_ca_file", filepath.Join(dir, "none.pem"))); err == nil || !strings.Contains(err.Error(), "cannot read the CA file") {
		t.Fatalf("%v", err)
	}
}

// FuzzParse feeds arbitrary values to the parser: it must never panic, and
// whatever it accepts must satisfy the rules the rest of the plugin relies
// on.
func FuzzParse(f *testing.F) {
	f.Add("t", "c", "s", "60s", "30m", "2h,6h,24h", "1000", "https://graph.microsoft.com", "global", "")
	f.Add("contoso.onmicrosoft.com", "c", "", "1", "1d", "off", "1", "http://127.0.0.1:8080/", "usgov", "certificate")
	f.Add("t", "", "s", "1.5", "2", "3,4", "0", "ftp://x", "china", "managed_identity")
	f.Fuzz(func(t *testing.T, tenant, client, secret, poll, lookback, reconcile, pageSize, graphHost, cloud, auth string) {
		c, err := ParseEnv(MapGetter{
			"tenant_id": tenant, "client_id": client, "client_secret": secret, "poll_interval": poll,
			"lookback": lookback, "reconcile": reconcile, "page_size": pageSize, "graph_host": graphHost,
			"cloud": cloud, "auth": auth,
		}, func(string) string { return "" })
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || ce.Key == "" || !strings.HasPrefix(err.Error(), "config: "+ce.Key) {
				t.Fatalf("error without a key: %v", err)
			}
			// The error quotes the offending value (%q), so a "secret" that
			// is part of another key's value, raw or quoted, may appear.
			others := ""
			for _, v := range []string{tenant, client, poll, lookback, reconcile, pageSize, graphHost, cloud, auth} {
				others += v + fmt.Sprintf("%q", v) + strings.ToLower(v) + fmt.Sprintf("%q", strings.ToLower(v))
			}
			if len(secret) > 3 && strings.Contains(err.Error(), secret) && !strings.Contains(others, secret) && !strings.Contains(ce.Allowed, secret) {
				t.Fatalf("the secret is in the error: %v", err)
			}
			return
		}
		switch {
		case c.PollInterval < time.Second, c.Lookback <= c.PollInterval, c.MaxLookback < c.Lookback,
			c.PageSize < 1, c.PageSize > 1000, c.InitialLookback <= 0, c.InitialLookback > MaxInitialLookback:
			t.Fatalf("accepted an invalid configuration: %+v", c)
		case !strings.HasPrefix(c.GraphHost, "https://") && !strings.HasPrefix(c.GraphHost, "http://"):
			t.Fatalf("graph host %q", c.GraphHost)
		}
		for i, d := range c.Reconcile {
			if d <= c.Lookback || (i > 0 && d <= c.Reconcile[i-1]) {
				t.Fatalf("reconcile %v with lookback %v", c.Reconcile, c.Lookback)
			}
		}
	})
}

func TestActivityKeys(t *testing.T) {
	const tenant = "11111111-2222-3333-4444-555555555555"
	c, err := Parse(with("source", "o365_exchange", "tenant_id", tenant))
	if err != nil || c.ManagementHost != "https://manage.office.com" || c.PublisherID != tenant || !c.AutoSubscribe {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	if !strings.Contains(c.Redacted(), "management_host=https://manage.office.com publisher_id="+tenant+" auto_subscribe=true") {
		t.Fatalf("configuration line: %s", c.Redacted())
	}
	c, err = Parse(with("source", "o365_dlp", "tenant_id", tenant, "publisher_id", "AAAAAAAA-0000-0000-0000-000000000001",
		"auto_subscribe", "off", "management_host", "http://127.0.0.1:8080"))
	if err != nil || c.PublisherID != "aaaaaaaa-0000-0000-0000-000000000001" || c.AutoSubscribe || c.ManagementHost != "http://127.0.0.1:8080" {
		t.Fatalf("set: %+v %v", c, err)
	}
	for _, row := range []struct {
		kv   []string
		want string
	}{
		{[]string{"tenant_id", "contoso.onmicrosoft.com"}, `config: tenant_id = "contoso.onmicrosoft.com" is invalid: source o365_exchange needs the tenant's directory (tenant) id GUID`},
		{[]string{"tenant_id", tenant, "publisher_id", "contoso"}, `config: publisher_id = "contoso" is invalid: a GUID`},
		{[]string{"tenant_id", tenant, "initial_lookback", "8d"}, `config: initial_lookback = "8d" is invalid: at most 7d for source o365_exchange`},
		{[]string{"tenant_id", tenant, "max_lookback", "7d"}, `config: max_lookback = "7d" is invalid: at most 6d`},
		{[]string{"tenant_id", tenant, "reconcile", "2h,7d"}, `config: reconcile = "2h,7d" is invalid: at most 6d`},
		{[]string{"tenant_id", tenant, "management_host", "http://manage.example.com"}, `config: management_host = "http://manage.example.com" is invalid: https is required`},
		{[]string{"tenant_id", tenant, "auto_subscribe", "maybe"}, `config: auto_subscribe = "maybe" is invalid`},
	} {
		_, err := Parse(with(append([]string{"source", "o365_exchange"}, row.kv...)...))
		if err == nil || !strings.HasPrefix(err.Error(), row.want) {
			t.Errorf("%v: %v, want %s", row.kv, err, row.want)
		}
	}
	// Graph sources keep their limits and ignore the Management API keys.
	if _, err := Parse(with("tenant_id", "contoso.onmicrosoft.com", "initial_lookback", "20d")); err != nil {
		t.Fatal(err)
	}
}

// many is the base of a multi-tenant input: tenants instead of tenant_id.
func many(kv ...string) MapGetter {
	return with(append([]string{"tenant_id", "<unset>", "tenants", "contoso.onmicrosoft.com, fabrikam.onmicrosoft.com"}, kv...)...)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTenantsErrors(t *testing.T) {
	const g1, g2 = "11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-000000000000"
	list := writeFile(t, "tenants", "contoso.onmicrosoft.com\n")
	dir := t.TempDir()
	missing := filepath.Join(dir, "none")
	onlyComments := writeFile(t, "comments", "# the tenants of the fleet\n\n   \n  # none yet\n")
	dupFile := writeFile(t, "dup", "# customers\ncontoso.onmicrosoft.com\n\n"+g1+"  # first\nfabrikam.onmicrosoft.com\n"+strings.ToUpper(g1)+"\n")
	badFile := writeFile(t, "bad", "contoso.onmicrosoft.com\n\n# next\nfabrikam/x\n")
	commaFile := writeFile(t, "comma", "contoso.onmicrosoft.com, fabrikam.onmicrosoft.com\n")
	domainFile := writeFile(t, "domains", g1+"\ncontoso.onmicrosoft.com\n")
	const notBoth = "set either tenant_id (one tenant) or "
	rows := []struct {
		name string
		g    MapGetter
		want string
	}{
		{"tenant_id and tenants", many("tenant_id", "contoso.onmicrosoft.com"), `config: tenant_id = "contoso.onmicrosoft.com" is invalid: ` + notBoth + `tenants (many tenants), not both; remove tenant_id, or list that tenant in tenants`},
		{"tenant_id and tenants_file", with("tenants_file", list), `config: tenant_id = "contoso.onmicrosoft.com" is invalid: ` + notBoth + `tenants_file (many tenants), not both; remove tenant_id, or list that tenant in tenants_file`},
		{"tenants and tenants_file", many("tenants_file", list), `config: tenants = "contoso.onmicrosoft.com, fabrikam.onmicrosoft.com" is invalid: set either tenants or tenants_file, not both; remove one`},
		{"no tenant at all", with("tenant_id", "<unset>"), `config: tenant_id is not set: set it to the directory (tenant) id GUID or a verified domain of the tenant, or set tenants (a comma-separated list) or tenants_file (a file with one tenant per line) to collect many tenants`},
		{"empty tenants", many("tenants", " , ,"), `config: tenants = ", ," is invalid: lists no tenant: list the tenants comma-separated, GUIDs or domains such as contoso.onmicrosoft.com`},
		{"blank tenants", many("tenants", "   "), `config: tenants is not set: list the tenants comma-separated, GUIDs or domains such as contoso.onmicrosoft.com`},
		{"duplicate in tenants", many("tenants", g1+",contoso.onmicrosoft.com, "+strings.ToUpper(g1)), `config: tenants = "` + g1 + `,contoso.onmicrosoft.com, ` + strings.ToUpper(g1) + `" is invalid: tenant "` + strings.ToUpper(g1) + `" is listed twice (items 1 and 3): list each tenant once`},
		{"duplicate domain in tenants", many("tenants", "contoso.onmicrosoft.com,Contoso.OnMicrosoft.com"), `is invalid: tenant "Contoso.OnMicrosoft.com" is listed twice (items 1 and 2): list each tenant once`},
		{"bad tenant in tenants", many("tenants", "contoso.onmicrosoft.com,a/b"), `config: tenants = "contoso.onmicrosoft.com,a/b" is invalid: tenant "a/b" is not a tenant GUID or a domain name such as contoso.onmicrosoft.com`},
		{"spaces in tenants", many("tenants", "contoso.onmicrosoft.com fabrikam.onmicrosoft.com"), `config: tenants = "contoso.onmicrosoft.com fabrikam.onmicrosoft.com" is invalid: tenant "contoso.onmicrosoft.com fabrikam.onmicrosoft.com" holds a space, comma or semicolon: separate tenants with commas`},
		{"domain in tenants for o365", many("source", "o365_exchange", "tenants", g1+",contoso.onmicrosoft.com"), `config: tenants = "` + g1 + `,contoso.onmicrosoft.com" is invalid: tenant "contoso.onmicrosoft.com" is not a GUID: the o365_ sources need each tenant's directory (tenant) id, the Management Activity API's addresses hold it and refuse a domain name`},
		{"missing tenants_file", with("tenant_id", "<unset>", "tenants_file", missing), `config: tenants_file = "` + missing + `" is invalid: cannot read the tenants file: stat ` + missing + `: no such file or directory; give the path of a readable file with one tenant GUID or domain per line`},
		{"tenants_file a directory", with("tenant_id", "<unset>", "tenants_file", dir), `config: tenants_file = "` + dir + `" is invalid: it is a directory, not a file; give the path of a readable file with one tenant GUID or domain per line`},
		{"tenants_file of comments only", with("tenant_id", "<unset>", "tenants_file", onlyComments), `config: tenants_file = "` + onlyComments + `" is invalid: the file lists no tenant (only blank lines and comments): put one tenant GUID or domain per line; '#' starts a comment`},
		{"duplicate in tenants_file", with("tenant_id", "<unset>", "tenants_file", dupFile), `config: tenants_file = "` + dupFile + `" is invalid: lines 4 and 6 both list tenant "` + strings.ToUpper(g1) + `": list each tenant once`},
		{"bad tenant in tenants_file", with("tenant_id", "<unset>", "tenants_file", badFile), `config: tenants_file = "` + badFile + `" is invalid: line 4: "fabrikam/x" is not a tenant GUID or a domain name such as contoso.onmicrosoft.com`},
		{"comma in tenants_file", with("tenant_id", "<unset>", "tenants_file", commaFile), `config: tenants_file = "` + commaFile + `" is invalid: line 1: "contoso.onmicrosoft.com, fabrikam.onmicrosoft.com" holds a space, comma or semicolon: put one tenant per line`},
		{"domain in tenants_file for o365", with("source", "o365_general", "tenant_id", "<unset>", "tenants_file", domainFile), `config: tenants_file = "` + domainFile + `" is invalid: line 2: "contoso.onmicrosoft.com" is not a GUID: the o365_ sources need`},
		{"managed identity with tenants", MapGetter{"auth": "managed_identity", "tenants": g1 + "," + g2}, `config: auth = "managed_identity" is invalid: a managed identity has tokens for its own tenant only, so it cannot collect tenants or tenants_file; use a multi-tenant app registration (auth client_secret, certificate or workload_identity), or set tenant_id`},
		{"shard without a slash", many("shard", "1"), `config: shard = "1" is invalid: i/n, this input's shard number i counted from 0 and the number of shards n, e.g. 0/3, 1/3, 2/3`},
		{"shard not numbers", many("shard", "a/b"), `config: shard = "a/b" is invalid: i/n, this input's shard number i counted from 0 and the number of shards n, e.g. 0/3, 1/3, 2/3`},
		{"shard i not below n", many("shard", "3/3"), `config: shard = "3/3" is invalid: i must be from 0 and below n, e.g. 0/3, 1/3, 2/3`},
		{"shard i negative", many("shard", "-1/2"), `config: shard = "-1/2" is invalid: i must be from 0 and below n, e.g. 0/2, 1/2`},
		{"shard i not below large n", many("shard", "16/16"), `config: shard = "16/16" is invalid: i must be from 0 and below n, e.g. 0/16, 1/16, ... 15/16`},
		{"shard n zero", many("shard", "0/0"), `config: shard = "0/0" is invalid: n, the number of shards, must be from 1 to 1024, e.g. 0/3, 1/3, 2/3`},
		{"shard n too large", many("shard", "0/2000"), `config: shard = "0/2000" is invalid: n, the number of shards, must be from 1 to 1024, e.g. 0/3, 1/3, 2/3`},
		{"shard with tenant_id", with("shard", "0/2"), `config: shard = "0/2" is invalid: shard splits a list of tenants (tenants or tenants_file) between inputs, and this input has one tenant_id; remove shard, or list the tenants`},
		{"app_budget zero", many("app_budget", "0"), `config: app_budget = "0" is invalid: a whole number from 1 to 122: the requests per 10 s one client_id may send to Graph's identity and access reports across all its tenants; Graph throttles an application above 122, so lower it only to share that limit with other processes of the same client_id`},
		{"app_budget above Graph's", many("app_budget", "123"), `config: app_budget = "123" is invalid: a whole number from 1 to 122: `},
		{"app_budget text", with("app_budget", "lots"), `config: app_budget = "lots" is invalid: a whole number from 1 to 122`},
		{"tenants_refresh too short", with("tenant_id", "<unset>", "tenants_file", list, "tenants_refresh", "5s"), `config: tenants_refresh = "5s" is invalid: between 10s and 24h: how often tenants_file is read again (5m unless set)`},
		{"tenants_refresh too long", with("tenant_id", "<unset>", "tenants_file", list, "tenants_refresh", "2d"), `config: tenants_refresh = "2d" is invalid: between 10s and 24h`},
		{"tenants_refresh syntax", many("tenants_refresh", "often"), `config: tenants_refresh = "often" is invalid: a duration such as 90s, 30m, 2h or 7d (a bare number means seconds)`},
		{"idle below poll_interval", many("idle_poll_interval", "30s"), `config: idle_poll_interval = "30s" is invalid: at least poll_interval (1m): it is how often a quiet tenant is polled, less often than a busy one; set it to poll_interval or longer, or remove it`},
		{"idle zero", with("idle_poll_interval", "0"), `config: idle_poll_interval = "0s" is invalid: at least poll_interval (1m)`},
		{"idle above lookback", many("idle_poll_interval", "1h"), `config: idle_poll_interval = "1h" is invalid: at most lookback (30m): a quiet tenant is still polled at least once every lookback; shorten it, or raise lookback`},
		{"tenant_key empty of letters", many("tenant_key", "tenant id"), `config: tenant_key = "tenant id" is invalid: a record key of 1 to 64 letters, digits, '_' or '-', such as msgraph_tenant`},
		{"tenant_key with a dot", many("tenant_key", "msgraph.tenant"), `config: tenant_key = "msgraph.tenant" is invalid: a record key of 1 to 64 letters`},
		{"tenant_key too long", many("tenant_key", strings.Repeat("k", 65)), `config: tenant_key = "` + strings.Repeat("k", 65) + `" is invalid: a record key of 1 to 64 letters`},
		{"tenant_key the id", many("tenant_key", "id"), `config: tenant_key = "id" is invalid: the records of source signins have a key id of their own; choose another name, such as msgraph_tenant`},
		{"tenant_key the time field", many("tenant_key", "createdDateTime"), `config: tenant_key = "createdDateTime" is invalid: the records of source signins have a key createdDateTime of their own`},
		{"tenant_key the o365 time field", many("source", "o365_exchange", "tenants", g1, "tenant_key", "creationtime"), `config: tenant_key = "creationtime" is invalid: the records of source o365_exchange have a key CreationTime of their own`},
		{"metrics_tenant_label", many("metrics_tenant_label", "sometimes"), `config: metrics_tenant_label = "sometimes" is invalid: on or off (also true/false, yes/no)`},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			_, err := Parse(r.g)
			if err == nil {
				t.Fatalf("no error, want %s", r.want)
			}
			if !strings.HasPrefix(err.Error(), r.want) && !(strings.HasPrefix(r.want, "is invalid") && strings.Contains(err.Error(), r.want)) {
				t.Fatalf("error:\n got %s\nwant %s", err, r.want)
			}
			var ce *Error
			if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "config: "+ce.Key) {
				t.Fatalf("not an *Error naming its key: %v", err)
			}
			if strings.Contains(err.Error(), "s3cr3t-value") {
				t.Fatal("secret in error")
			}
		})
	}
}

func TestTenantsDefaults(t *testing.T) {
	c, err := Parse(many())
	if err != nil {
		t.Fatal(err)
	}
	if !c.MultiTenant() || c.TenantID != "" || strings.Join(c.Tenants, "|") != "contoso.onmicrosoft.com|fabrikam.onmicrosoft.com" || c.TenantsFile != "" ||
		c.TenantsRefresh != DefaultTenantsRefresh || c.TenantKey != DefaultTenantKey || c.AppBudget != 122 || c.Shard != (Shard{}) ||
		c.MetricsTenantLabel || c.IdlePollInterval != 5*time.Minute || c.PublisherID != "" {
		t.Fatalf("defaults: %+v", c)
	}
	// A list of one is still a multi-tenant input.
	c, err = Parse(many("tenants", "contoso.onmicrosoft.com,"))
	if err != nil || !c.MultiTenant() || len(c.Tenants) != 1 {
		t.Fatalf("one tenant: %v %v", c.Tenants, err)
	}
	// The idle default stays within poll_interval and lookback.
	for _, r := range []struct{ poll, lookback, want string }{{"10m", "1h", "10m"}, {"1m", "3m", "3m"}, {"30s", "10m", "5m"}} {
		c, err := Parse(many("poll_interval", r.poll, "lookback", r.lookback))
		if err != nil || FormatDuration(c.IdlePollInterval) != r.want {
			t.Errorf("poll %s lookback %s: idle %v, want %s (%v)", r.poll, r.lookback, c.IdlePollInterval, r.want, err)
		}
	}
	// One tenant: no stretching unless asked; tenant_id is unchanged.
	c, err = Parse(with("poll_interval", "2m"))
	if err != nil || c.MultiTenant() || c.IdlePollInterval != 2*time.Minute || c.TenantID != "contoso.onmicrosoft.com" {
		t.Fatalf("one tenant: %+v %v", c, err)
	}
	c, err = Parse(with("idle_poll_interval", "10m", "tenants_refresh", "1m"))
	if err != nil || c.IdlePollInterval != 10*time.Minute {
		t.Fatalf("one tenant, idle set: %+v %v", c, err)
	}
}

func TestTenantsValues(t *testing.T) {
	const g1 = "11111111-2222-3333-4444-555555555555"
	c, err := Parse(many("tenants", " "+g1+" ,contoso.onmicrosoft.com,\n fabrikam.onmicrosoft.com ", "shard", " 1 / 4 ", "app_budget", "60",
		"metrics_tenant_label", "on", "tenant_key", "tenant", "idle_poll_interval", "10m", "tenants_refresh", "1m"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Tenants, "|") != g1+"|contoso.onmicrosoft.com|fabrikam.onmicrosoft.com" || c.Shard != (Shard{1, 4}) || c.AppBudget != 60 ||
		!c.MetricsTenantLabel || c.TenantKey != "tenant" || c.IdlePollInterval != 10*time.Minute || c.TenantsRefresh != time.Minute {
		t.Fatalf("values: %+v", c)
	}
	// A file: comments, blank lines, white space, CRLF and a byte order
	// mark.
	f := writeFile(t, "tenants", "\uFEFF# the fleet\r\n"+g1+"\r\n\r\n  contoso.onmicrosoft.com   # a customer\r\n\tfabrikam.onmicrosoft.com\n#"+
		"retired.onmicrosoft.com\nlast.onmicrosoft.com")
	c, err = Parse(with("tenant_id", "<unset>", "tenants_file", f, "tenants_refresh", "30s"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.MultiTenant() || c.TenantsFile != f || c.TenantsRefresh != 30*time.Second ||
		strings.Join(c.Tenants, "|") != g1+"|contoso.onmicrosoft.com|fabrikam.onmicrosoft.com|last.onmicrosoft.com" {
		t.Fatalf("file: %+v", c)
	}
	list, err := ReadTenants(f, false)
	if err != nil || len(list) != 4 {
		t.Fatalf("ReadTenants: %v %v", list, err)
	}
	if _, err := ReadTenants(f, true); err == nil || err.Error() != `config: tenants_file = "`+f+`" is invalid: line 4: "contoso.onmicrosoft.com" is not a GUID: the o365_ sources need each tenant's directory (tenant) id, the Management Activity API's addresses hold it and refuse a domain name` {
		t.Fatalf("ReadTenants with GUIDs required: %v", err)
	}
	// Workload identity: a list replaces the webhook's tenant.
	tok := writeFile(t, "token", "eyJ...")
	env := func(k string) string {
		return map[string]string{"AZURE_TENANT_ID": "env-tenant", "AZURE_CLIENT_ID": "env-client", "AZURE_FEDERATED_TOKEN_FILE": tok}[k]
	}
	c, err = ParseEnv(MapGetter{"auth": "workload_identity", "tenants": "contoso.onmicrosoft.com"}, env)
	if err != nil || c.TenantID != "" || c.ClientID != "env-client" || !c.MultiTenant() {
		t.Fatalf("workload identity: %+v %v", c, err)
	}
}

func TestShardKeeps(t *testing.T) {
	const n = 4
	counts := make([]int, n)
	for k := range 500 {
		tenant := fmt.Sprintf("%08x-%04x-4abc-8def-%012x", k*2654435761&0xffffffff, k, k)
		if k%2 == 1 {
			tenant = fmt.Sprintf("tenant%d.onmicrosoft.com", k)
		}
		in := 0
		for i := range n {
			if (Shard{I: i, N: n}).Keeps(tenant) {
				counts[i]++
				in++
			}
			if (Shard{I: i, N: n}).Keeps(tenant) != (Shard{I: i, N: n}).Keeps(strings.ToUpper(tenant)) {
				t.Fatalf("%s: the case of a tenant changes its shard", tenant)
			}
		}
		if in != 1 {
			t.Fatalf("%s is in %d shards", tenant, in)
		}
		if !(Shard{}).Keeps(tenant) {
			t.Fatal("no shard must keep every tenant")
		}
	}
	for i, got := range counts {
		if got < 125*7/10 || got > 125*13/10 {
			t.Errorf("shard %d/%d keeps %d of 500 tenants, want 125 ± 30 %%: %v", i, n, got, counts)
		}
	}
	// The hash is part of the contract: these never change.
	for tenant, want := range map[string]int{"contoso.onmicrosoft.com": fnvMod("contoso.onmicrosoft.com", 3), "11111111-2222-3333-4444-555555555555": fnvMod("11111111-2222-3333-4444-555555555555", 3)} {
		if !(Shard{I: want, N: 3}).Keeps(tenant) {
			t.Errorf("%s not in shard %d/3", tenant, want)
		}
	}
	if (Shard{}).String() != "none" || (Shard{2, 3}).String() != "2/3" {
		t.Fatal("Shard.String")
	}
}

// fnvMod is FNV-1a 64 written out, so that a change of Keeps's hash fails.
func fnvMod(s string, n int) int {
	h := uint64(14695981039346656037)
	for _, b := range []byte(strings.ToLower(s)) {
		h ^= uint64(b)
		h *= 1099511628211
	}
	return int(h % uint64(n))
}

func TestForTenant(t *testing.T) {
	const g1, g2, pub = "11111111-2222-3333-4444-555555555555", "AAAAAAAA-2222-3333-4444-555555555555", "99999999-0000-0000-0000-000000000001"
	c, err := Parse(many("source", "o365_exchange", "tenants", g1+","+g2, "shard", "0/1"))
	if err != nil {
		t.Fatal(err)
	}
	one := c.ForTenant(g2)
	if one.TenantID != g2 || one.PublisherID != strings.ToLower(g2) || one.MultiTenant() || one.Shard != (Shard{}) || one.Source != "o365_exchange" ||
		one.TenantKey != DefaultTenantKey || one.IdlePollInterval != c.IdlePollInterval {
		t.Fatalf("ForTenant: %+v", one)
	}
	if c.TenantID != "" || len(c.Tenants) != 2 || c.PublisherID != "" || !c.MultiTenant() {
		t.Fatalf("ForTenant changed its receiver: %+v", c)
	}
	if err := one.Validate(); err != nil {
		t.Fatalf("a tenant's configuration does not validate: %v", err)
	}
	// A publisher_id that was set is kept.
	c, err = Parse(many("source", "o365_exchange", "tenants", g1+","+g2, "publisher_id", pub))
	if err != nil || c.PublisherID != pub || c.ForTenant(g1).PublisherID != pub {
		t.Fatalf("publisher_id set: %+v %v", c, err)
	}
	// Graph sources have no publisher.
	c, err = Parse(many())
	if err != nil || c.ForTenant("fabrikam.onmicrosoft.com").TenantID != "fabrikam.onmicrosoft.com" || c.ForTenant("fabrikam.onmicrosoft.com").PublisherID != "" {
		t.Fatalf("graph source: %+v %v", c, err)
	}
	// tenants_file: the copy names no file.
	f := writeFile(t, "tenants", "contoso.onmicrosoft.com\n")
	c, err = Parse(with("tenant_id", "<unset>", "tenants_file", f))
	if err != nil || !c.MultiTenant() || c.ForTenant("contoso.onmicrosoft.com").MultiTenant() {
		t.Fatalf("tenants_file: %+v %v", c, err)
	}
}

func TestTenantsRedacted(t *testing.T) {
	c, err := Parse(many("tenants", "a.onmicrosoft.com,b.onmicrosoft.com,c.onmicrosoft.com,d.onmicrosoft.com,e.onmicrosoft.com", "shard", "1/2", "metrics_tenant_label", "on"))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Redacted()
	want := "source=signins auth=client_secret tenants=5:a.onmicrosoft.com,b.onmicrosoft.com,c.onmicrosoft.com,... tenant_key=msgraph_tenant shard=1/2 metrics_tenant_label=true client_id="
	if !strings.HasPrefix(r, want) || !strings.Contains(r, " poll_interval=1m idle_poll_interval=5m lookback=30m") || !strings.Contains(r, " app_budget=122") ||
		strings.Contains(r, "tenant_id=") || strings.Contains(r, "d.onmicrosoft.com") || strings.Contains(r, "s3cr3t") {
		t.Fatalf("configuration line:\n got %s\nwant %s...", r, want)
	}
	f := writeFile(t, "tenants", "11111111-2222-3333-4444-555555555555\n")
	c, err = Parse(with("source", "o365_dlp", "tenant_id", "<unset>", "tenants_file", f))
	if err != nil {
		t.Fatal(err)
	}
	r = c.Redacted()
	if !strings.Contains(r, "tenants_file="+f+" tenants=1:11111111-2222-3333-4444-555555555555 tenants_refresh=5m tenant_key=msgraph_tenant shard=none metrics_tenant_label=false client_id=") ||
		!strings.Contains(r, "publisher_id=(each tenant's id)") || strings.Contains(r, "app_budget") {
		t.Fatalf("configuration line: %s", r)
	}
	// One tenant: tenant_id as before, and no multi-tenant keys.
	c, _ = Parse(base())
	if r := c.Redacted(); !strings.Contains(r, "tenant_id=contoso.onmicrosoft.com client_id=") || strings.Contains(r, "tenant_key") || strings.Contains(r, "tenants") {
		t.Fatalf("one tenant: %s", r)
	}
}

// FuzzTenants feeds arbitrary values to the keys of many tenants: never a
// panic, every error an *Error naming its key, and whatever is accepted
// keeps the contract.
func FuzzTenants(f *testing.F) {
	f.Add("contoso.onmicrosoft.com,fabrikam.onmicrosoft.com", "", "", "1/3", "122", "5m", "msgraph_tenant", "", "signins")
	f.Add("", "# x\n11111111-2222-3333-4444-555555555555\n", "", "", "1", "10s", "", "2m", "o365_exchange")
	f.Add("a,A", "a\nb\n", "t", "3/3", "123", "0", "id", "30s", "")
	f.Add(" , ", "", "", "0/0", "0", "1d", "k.k", "1h", "directory_audits")
	f.Fuzz(func(t *testing.T, tenants, file, tenantID, shard, appBudget, refresh, tenantKey, idle, src string) {
		g := MapGetter{"client_id": "c", "client_secret": "s3cr3t-value", "tenant_id": tenantID, "tenants": tenants,
			"shard": shard, "app_budget": appBudget, "tenants_refresh": refresh, "tenant_key": tenantKey, "idle_poll_interval": idle, "source": src}
		if file != "" {
			g["tenants_file"] = writeFile(t, "tenants", file)
		}
		c, err := ParseEnv(g, func(string) string { return "" })
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || ce.Key == "" || !strings.HasPrefix(err.Error(), "config: "+ce.Key) {
				t.Fatalf("error without a key: %v", err)
			}
			if strings.Contains(err.Error(), "s3cr3t-value") && !strings.Contains(tenants+file+tenantID+shard+appBudget+refresh+tenantKey+idle+src, "s3cr3t-value") {
				t.Fatalf("the secret is in the error: %v", err)
			}
			return
		}
		multi := strings.TrimSpace(tenants) != "" || file != ""
		switch {
		case c.MultiTenant() != multi, multi && (len(c.Tenants) == 0 || c.TenantID != ""), !multi && c.Shard.N != 0:
			t.Fatalf("tenants: %+v", c)
		case c.AppBudget < 1 || c.AppBudget > 122, c.Shard.N < 0 || c.Shard.N > MaxShards || (c.Shard.N > 0 && (c.Shard.I < 0 || c.Shard.I >= c.Shard.N)):
			t.Fatalf("limits: %+v", c)
		case c.TenantsRefresh < 10*time.Second || c.TenantsRefresh > 24*time.Hour, c.IdlePollInterval < c.PollInterval, c.IdlePollInterval > c.Lookback:
			t.Fatalf("durations: %+v", c)
		case c.TenantKey == "" || len(c.TenantKey) > 64:
			t.Fatalf("tenant_key %q", c.TenantKey)
		}
		seen := map[string]bool{}
		for _, tn := range c.Tenants {
			if tn == "" || tn != strings.TrimSpace(tn) || seen[strings.ToLower(tn)] {
				t.Fatalf("tenants %q", c.Tenants)
			}
			seen[strings.ToLower(tn)] = true
			if one := c.ForTenant(tn); one.TenantID != tn || one.MultiTenant() {
				t.Fatalf("ForTenant(%q): %+v", tn, one)
			}
		}
	})
}
