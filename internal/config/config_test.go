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
	}
	if c.Redacted() != want.Redacted() || len(c.Reconcile) != 3 {
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
		{"no tenant", with("tenant_id", "<unset>"), `config: tenant_id is not set: set it to the directory (tenant) id GUID or a verified domain of the tenant`},
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
			"config: tenant_id is not set: set it to the directory (tenant) id GUID or a verified domain of the tenant (or AZURE_TENANT_ID in the environment)"},
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
