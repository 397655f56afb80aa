// Package config turns the key/value properties of a Fluent Bit input
// stanza into a validated Config. Parsing is strict: a value that does not
// parse, or settings that contradict each other, are errors naming the key,
// the value and what is allowed, never a silent fallback to a default.
package config

import (
	"cmp"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/auth"
	"github.com/in-msgraph/in_msgraph/internal/source"
)

// Getter reads one property; a missing key reads as "".
type Getter interface {
	Get(key string) string
}

// MapGetter is a Getter over a map with case-insensitive keys, for tests and
// tools.
type MapGetter map[string]string

// Get implements Getter.
func (m MapGetter) Get(key string) string {
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// SourceSignIns is the default source.
const SourceSignIns = "signins"

// Defaults, exported so that docs and tests name one value.
const (
	DefaultAuthorityHost = "https://login.microsoftonline.com"
	DefaultGraphHost     = "https://graph.microsoft.com"
	DefaultPollInterval  = 60 * time.Second
	DefaultLookback      = 30 * time.Minute
	DefaultMaxLookback   = 24 * time.Hour
	DefaultDriftWarning  = 45 * time.Minute
	DefaultPageSize      = 1000
	DefaultHTTPTimeout   = 30 * time.Second
	MaxInitialLookback   = 30 * 24 * time.Hour
)

// DefaultReconcile is the default list of reconcile delays.
var DefaultReconcile = []time.Duration{2 * time.Hour, 6 * time.Hour, 24 * time.Hour}

// Credential kinds (the auth key).
const (
	AuthClientSecret     = auth.KindClientSecret
	AuthCertificate      = auth.KindCertificate
	AuthWorkloadIdentity = auth.KindWorkloadIdentity
	AuthManagedIdentity  = auth.KindManagedIdentity
)

// DefaultIMDSEndpoint is Azure's Instance Metadata Service token endpoint.
const DefaultIMDSEndpoint = auth.DefaultIMDSEndpoint

// Cloud is a Microsoft cloud: where its tokens, its Graph and its Office
// 365 Management Activity API live.
type Cloud struct {
	Name           string
	AuthorityHost  string
	GraphHost      string
	ManagementHost string
}

// Clouds are the values of the cloud key (graph-api.md §8, and the
// Management Activity API reference's "Enterprise plan, GCC government
// plan, GCC High government plan, DoD government plan, Office 365 operated
// by 21Vianet" hosts). GCC tenants use the global Entra ID and Graph and
// a Management API host of their own.
var Clouds = []Cloud{
	{"global", "https://login.microsoftonline.com", "https://graph.microsoft.com", "https://manage.office.com"},
	{"gcc", "https://login.microsoftonline.com", "https://graph.microsoft.com", "https://manage-gcc.office.com"},
	{"usgov", "https://login.microsoftonline.us", "https://graph.microsoft.us", "https://manage.office365.us"},
	{"usgov_dod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us", "https://manage.protection.apps.mil"},
	{"china", "https://login.partner.microsoftonline.cn", "https://microsoftgraph.chinacloudapi.cn", "https://manage.office.cn"},
}

// MaxActivityAge is how far back the Management Activity API lists and
// serves content: 7 days.
const MaxActivityAge = 7 * 24 * time.Hour

// Config is the validated configuration of one input instance.
type Config struct {
	Auth             string // one of the Auth* kinds
	TenantID         string
	ClientID         string
	ClientSecret     string // empty when ClientSecretFile is set
	ClientSecretFile string
	// Certificate credential.
	CertificateFile      string
	PrivateKeyFile       string
	PrivateKeyPassword   string
	CertificateAlgorithm string // PS256 or RS256
	SendCertificateChain bool
	// Workload identity and managed identity.
	FederatedTokenFile string
	IMDSEndpoint       string
	Cloud              string
	AuthorityHost      string // scheme://host[:port], no trailing slash
	GraphHost          string // scheme://host[:port], no trailing slash
	// The Management Activity API (the o365_ sources): its host, the
	// publisher GUID sent as PublisherIdentifier, and whether a missing
	// subscription is started.
	ManagementHost  string
	PublisherID     string
	AutoSubscribe   bool
	TLSCAFile       string
	Source          string
	PollInterval    time.Duration
	Lookback        time.Duration
	MaxLookback     time.Duration
	Reconcile       []time.Duration // ascending; empty when off
	DriftWarning    time.Duration
	InitialLookback time.Duration
	PageSize        int
	DB              string
	HTTPTimeout     time.Duration
	HealthRecords   bool
	MetricsListen   string // host:port for Prometheus, \"\" when off

	// Many tenants (tenants.go). tenants (a comma-separated list) or
	// tenants_file (one tenant per line) replace tenant_id; exactly one of
	// the three is set. Tenants is the list as given, trimmed, in order
	// (for tenants_file the list read at start; ReadTenants reads it
	// again); TenantID is then empty, and ForTenant gives each tenant's
	// configuration.
	Tenants     []string
	TenantsFile string
	// TenantsRefresh is how often tenants_file is read again: 5m, from 10s
	// to 24h. It is checked whatever the input, and has no effect without
	// tenants_file (a tenants list is fixed until the next start).
	TenantsRefresh time.Duration
	// TenantKey is the top-level record key that holds the tenant (as
	// listed) in the records of a multi-tenant input: msgraph_tenant, or 1
	// to 64 letters, digits, '_' or '-', and not id nor the source's own
	// id or time field. It is checked whatever the input, and unused with
	// tenant_id.
	TenantKey string
	// AppBudget is the requests per 10 s that one client_id may send to
	// the identity and access reports (the sources that
	// source.Profile.AppBudgeted), across every tenant and every input of
	// the process: 122, Graph's own limit per application, from 1 to 122.
	AppBudget int
	// Shard (shard = i/n) keeps the part of the list whose hash modulo n
	// is i; only with tenants or tenants_file. Zero N: no shard.
	Shard Shard
	// MetricsTenantLabel adds a tenant label to the metrics (off).
	MetricsTenantLabel bool
	// IdlePollInterval is how often a tenant whose recent polls brought
	// nothing new is polled; its first new event returns it to
	// PollInterval. Unless set: 5m for a multi-tenant input (kept within
	// poll_interval and lookback), PollInterval (no stretching) for one
	// tenant. Set, it must be from poll_interval to lookback.
	IdlePollInterval time.Duration
	publisherSet     bool // publisher_id was given
}

// Error is a configuration error about one key.
type Error struct {
	Key     string
	Value   string
	Allowed string
}

func (e *Error) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("config: %s is not set: %s", e.Key, e.Allowed)
	}
	return fmt.Sprintf("config: %s = %q is invalid: %s", e.Key, e.Value, e.Allowed)
}

// Parse reads and validates every key. Workload identity takes its
// defaults from the environment the Azure Workload Identity webhook sets.
func Parse(g Getter) (Config, error) { return ParseEnv(g, os.Getenv) }

// ParseEnv is Parse with the environment given.
func ParseEnv(g Getter, env func(string) string) (Config, error) {
	p := parser{g: g}
	c := Config{
		Auth:                 strings.ToLower(p.str("auth")),
		TenantID:             p.str("tenant_id"),
		ClientID:             p.str("client_id"),
		ClientSecret:         g.Get("client_secret"),
		ClientSecretFile:     p.str("client_secret_file"),
		CertificateFile:      p.str("certificate_file"),
		PrivateKeyFile:       p.str("private_key_file"),
		PrivateKeyPassword:   g.Get("private_key_password"),
		CertificateAlgorithm: strings.ToUpper(p.str("certificate_algorithm")),
		SendCertificateChain: p.boolean("send_certificate_chain", false),
		FederatedTokenFile:   p.str("federated_token_file"),
		Cloud:                strings.ToLower(p.str("cloud")),
		TLSCAFile:            p.str("tls_ca_file"),
		Source:               strings.ToLower(p.str("source")),
		PollInterval:         p.duration("poll_interval", DefaultPollInterval),
		Lookback:             p.duration("lookback", DefaultLookback),
		MaxLookback:          p.duration("max_lookback", DefaultMaxLookback),
		Reconcile:            p.reconcile("reconcile"),
		DriftWarning:         p.duration("drift_warning", DefaultDriftWarning),
		PageSize:             p.integer("page_size", DefaultPageSize, 1, 1000),
		DB:                   p.str("db"),
		HTTPTimeout:          p.duration("http_timeout", DefaultHTTPTimeout),
		HealthRecords:        p.boolean("health_records", true),
		MetricsListen:        p.listen("metrics_listen"),
		TenantsFile:          p.str("tenants_file"),
		TenantsRefresh:       p.duration("tenants_refresh", DefaultTenantsRefresh),
		TenantKey:            cmp.Or(p.str("tenant_key"), DefaultTenantKey),
		AppBudget:            p.appBudget("app_budget"),
		Shard:                p.shard("shard"),
		MetricsTenantLabel:   p.boolean("metrics_tenant_label", false),
		IdlePollInterval:     p.duration("idle_poll_interval", 0),
	}
	// tenants given as only blanks or commas is set, and an error.
	tenantIDSet := c.TenantID != ""
	tenantsRaw := p.str("tenants")
	tenantsSet := g.Get("tenants") != ""
	c.Tenants = splitTenants(tenantsRaw)
	idleSet := p.str("idle_poll_interval") != ""
	multi := tenantsSet || c.TenantsFile != ""
	if c.Cloud == "" {
		c.Cloud = "global"
	}
	cloud, ok := findCloud(c.Cloud)
	if !ok && p.err == nil {
		p.fail("cloud", c.Cloud, "one of: global, gcc, usgov, usgov_dod, china")
	}
	if c.Auth == "" {
		c.Auth = AuthClientSecret
		if c.ClientSecret == "" && c.ClientSecretFile == "" && c.CertificateFile != "" {
			c.Auth = AuthCertificate
		}
	}
	authority := p.str("authority_host")
	if c.Auth == AuthWorkloadIdentity {
		// Config keys win over the webhook's environment; a list of
		// tenants replaces its tenant.
		if c.TenantID == "" && !multi {
			c.TenantID = strings.TrimSpace(env("AZURE_TENANT_ID"))
		}
		if c.ClientID == "" {
			c.ClientID = strings.TrimSpace(env("AZURE_CLIENT_ID"))
		}
		if c.FederatedTokenFile == "" {
			c.FederatedTokenFile = strings.TrimSpace(env("AZURE_FEDERATED_TOKEN_FILE"))
		}
		if authority == "" {
			authority = strings.TrimSpace(env("AZURE_AUTHORITY_HOST"))
		}
	}
	c.AuthorityHost = p.host("authority_host", authority, cloud.AuthorityHost)
	c.GraphHost = p.host("graph_host", p.str("graph_host"), cloud.GraphHost)
	c.ManagementHost = p.host("management_host", p.str("management_host"), cloud.ManagementHost)
	c.PublisherID = strings.ToLower(p.str("publisher_id"))
	c.publisherSet = c.PublisherID != ""
	c.AutoSubscribe = p.boolean("auto_subscribe", true)
	c.IMDSEndpoint = p.imds("imds_endpoint")
	c.InitialLookback = p.duration("initial_lookback", c.Lookback)
	if p.err != nil {
		return Config{}, p.err
	}
	// An unknown source is reported by Validate.
	prof, _ := source.Lookup(cmp.Or(c.Source, SourceSignIns))
	if err := c.validateTenants(tenantsRaw, tenantsSet, tenantIDSet, prof); err != nil {
		return Config{}, err
	}
	if multi {
		// The checks of one tenant apply to each: run them on the first.
		c.TenantID = c.Tenants[0]
	}
	err := c.Validate()
	if err == nil {
		err = c.idlePollInterval(idleSet)
	}
	if multi {
		c.TenantID = ""
		if !c.publisherSet {
			c.PublisherID = ""
		}
	}
	return c, err
}

func findCloud(name string) (Cloud, bool) {
	for _, c := range Clouds {
		if c.Name == name {
			return c, true
		}
	}
	return Clouds[0], false
}

// Validate checks the rules that involve more than one key.
func (c *Config) Validate() error {
	if err := c.validateAuth(); err != nil {
		return err
	}
	if c.TLSCAFile != "" {
		if _, err := ReadCAFile(c.TLSCAFile); err != nil {
			return &Error{Key: "tls_ca_file", Value: c.TLSCAFile, Allowed: err.Error()}
		}
	}
	if c.Source == "" {
		c.Source = SourceSignIns
	}
	prof, ok := source.Lookup(c.Source)
	if !ok {
		return &Error{Key: "source", Value: c.Source, Allowed: "one of: " + source.Names()}
	}
	if c.PollInterval < time.Second {
		return &Error{Key: "poll_interval", Value: FormatDuration(c.PollInterval), Allowed: "at least 1s (Fluent Bit calls the plugin once a second)"}
	}
	if c.Lookback <= c.PollInterval {
		return &Error{Key: "lookback", Value: FormatDuration(c.Lookback), Allowed: "must be longer than poll_interval (" + FormatDuration(c.PollInterval) + ")"}
	}
	if c.MaxLookback < c.Lookback {
		return &Error{Key: "max_lookback", Value: FormatDuration(c.MaxLookback), Allowed: "must be at least lookback (" + FormatDuration(c.Lookback) + ")"}
	}
	for i, d := range c.Reconcile {
		if d <= c.Lookback {
			return &Error{Key: "reconcile", Value: FormatDurations(c.Reconcile), Allowed: "each delay must be longer than lookback (" + FormatDuration(c.Lookback) + "); use off to disable"}
		}
		if i > 0 && d <= c.Reconcile[i-1] {
			return &Error{Key: "reconcile", Value: FormatDurations(c.Reconcile), Allowed: "delays must be listed in increasing order, e.g. 2h,6h,24h"}
		}
		if d > MaxInitialLookback {
			return &Error{Key: "reconcile", Value: FormatDurations(c.Reconcile), Allowed: "each delay must be at most 30d (Graph keeps sign-ins 30 days at most)"}
		}
	}
	if c.DriftWarning <= 0 {
		return &Error{Key: "drift_warning", Value: FormatDuration(c.DriftWarning), Allowed: "a positive duration such as 45m"}
	}
	if c.InitialLookback <= 0 || c.InitialLookback > MaxInitialLookback {
		return &Error{Key: "initial_lookback", Value: FormatDuration(c.InitialLookback), Allowed: "a duration above 0 and at most 30d (Graph's retention)"}
	}
	if c.HTTPTimeout < time.Second || c.HTTPTimeout > 10*time.Minute {
		return &Error{Key: "http_timeout", Value: FormatDuration(c.HTTPTimeout), Allowed: "between 1s and 10m"}
	}
	if prof.IsActivity() {
		return c.validateActivity()
	}
	return nil
}

// validateActivity checks what the Management Activity API needs: the
// tenant's GUID in its addresses, a publisher GUID, and windows within the
// 7 days it lists.
func (c *Config) validateActivity() error {
	if !IsGUID(c.TenantID) {
		return &Error{Key: "tenant_id", Value: c.TenantID, Allowed: "source " + c.Source + " needs the tenant's directory (tenant) id GUID: the Management Activity API's addresses hold it, a domain name is refused there"}
	}
	if c.PublisherID == "" {
		c.PublisherID = strings.ToLower(c.TenantID)
	}
	if !IsGUID(c.PublisherID) {
		return &Error{Key: "publisher_id", Value: c.PublisherID, Allowed: "a GUID: the tenant id of the organisation that collects (without it the requests share a global throttling pool)"}
	}
	week := FormatDuration(MaxActivityAge)
	if c.InitialLookback > MaxActivityAge {
		return &Error{Key: "initial_lookback", Value: FormatDuration(c.InitialLookback), Allowed: "at most " + week + " for source " + c.Source + ": the Management Activity API lists content of the last 7 days only"}
	}
	// Re-reads and sweeps keep a day's margin to the 7 days: a window
	// that waits in the queue must still be listable when its turn comes.
	if limit := MaxActivityAge - 24*time.Hour; c.Horizon() > limit {
		key, v := "max_lookback", FormatDuration(c.MaxLookback)
		if c.Horizon() != c.MaxLookback {
			key, v = "reconcile", FormatDurations(c.Reconcile)
		}
		return &Error{Key: key, Value: v, Allowed: "at most " + FormatDuration(limit) + " for source " + c.Source + ": the Management Activity API lists content of the last 7 days only, and a re-read must not come too close to that"}
	}
	return nil
}

// IsGUID reports whether s is a GUID in its 8-4-4-4-12 form.
func IsGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if r != '-' {
				return false
			}
		case !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F'):
			return false
		}
	}
	return true
}

func (c *Config) validateAuth() error {
	secret := c.ClientSecret != "" || c.ClientSecretFile != ""
	switch c.Auth {
	case AuthClientSecret, AuthCertificate, AuthWorkloadIdentity, AuthManagedIdentity:
	default:
		return &Error{Key: "auth", Value: c.Auth, Allowed: "one of: client_secret, certificate, workload_identity, managed_identity"}
	}
	if strings.ContainsAny(c.TenantID, "/?#% ") {
		return &Error{Key: "tenant_id", Value: c.TenantID, Allowed: "a tenant GUID or a domain name such as contoso.onmicrosoft.com"}
	}
	if c.Auth != AuthManagedIdentity {
		if c.TenantID == "" {
			hint := "set it to the directory (tenant) id GUID or a verified domain of the tenant"
			if c.Auth == AuthWorkloadIdentity {
				hint += " (or AZURE_TENANT_ID in the environment)"
			}
			hint += ", or set tenants (a comma-separated list) or tenants_file (a file with one tenant per line) to collect many tenants"
			return &Error{Key: "tenant_id", Allowed: hint}
		}
		if c.ClientID == "" {
			hint := "set it to the application (client) id of the app registration"
			if c.Auth == AuthWorkloadIdentity {
				hint += " (or AZURE_CLIENT_ID in the environment)"
			}
			return &Error{Key: "client_id", Allowed: hint}
		}
	}
	if c.Auth != AuthClientSecret && secret {
		return &Error{Key: "client_secret", Value: "(redacted)", Allowed: "not used with auth " + c.Auth + "; remove client_secret and client_secret_file"}
	}
	if c.Auth != AuthCertificate && (c.CertificateFile != "" || c.PrivateKeyFile != "") {
		return &Error{Key: "certificate_file", Value: c.CertificateFile + c.PrivateKeyFile, Allowed: "used only with auth certificate; set auth certificate or remove it"}
	}
	switch c.Auth {
	case AuthClientSecret:
		switch {
		case c.ClientSecret != "" && c.ClientSecretFile != "":
			return &Error{Key: "client_secret", Value: "(redacted)", Allowed: "set either client_secret or client_secret_file, not both"}
		case !secret:
			return &Error{Key: "client_secret", Allowed: "set client_secret, or client_secret_file to a file holding the secret (or choose another auth: certificate, workload_identity, managed_identity)"}
		}
		if c.ClientSecretFile != "" {
			if _, err := ReadSecretFile(c.ClientSecretFile); err != nil {
				return &Error{Key: "client_secret_file", Value: c.ClientSecretFile, Allowed: err.Error()}
			}
		}
	case AuthCertificate:
		if c.CertificateFile == "" {
			return &Error{Key: "certificate_file", Allowed: "set it to a PEM file with the certificate (and its private key, or set private_key_file)"}
		}
		switch c.CertificateAlgorithm {
		case "":
			c.CertificateAlgorithm = "PS256"
		case "PS256", "RS256":
		default:
			return &Error{Key: "certificate_algorithm", Value: c.CertificateAlgorithm, Allowed: "PS256 (the default) or RS256"}
		}
	case AuthWorkloadIdentity:
		if c.FederatedTokenFile == "" {
			return &Error{Key: "federated_token_file", Allowed: "set it, or AZURE_FEDERATED_TOKEN_FILE in the environment (the Azure Workload Identity webhook sets it when the pod has the label azure.workload.identity/use: \"true\")"}
		}
	}
	if c.Auth != AuthCertificate && c.CertificateAlgorithm != "" {
		return &Error{Key: "certificate_algorithm", Value: c.CertificateAlgorithm, Allowed: "used only with auth certificate"}
	}
	return nil
}

// Horizon is how far back any query of this configuration can reach once
// the plugin runs: the largest reconcile delay, or max_lookback without
// reconcile.
func (c *Config) Horizon() time.Duration {
	h := c.MaxLookback
	if n := len(c.Reconcile); n > 0 && c.Reconcile[n-1] > h {
		h = c.Reconcile[n-1]
	}
	return h
}

// Redacted lists the effective configuration as key=value pairs for the start
// log line. No secret is in it: client_secret and private_key_password read
// (redacted), and so does the user information of a URL.
func (c *Config) Redacted() string {
	secret := "(none)"
	if c.ClientSecret != "" {
		secret = "(redacted)"
	}
	db := c.DB
	if db == "" {
		db = "(memory only)"
	}
	rec := "off"
	if len(c.Reconcile) > 0 {
		rec = FormatDurations(c.Reconcile)
	}
	parts := []string{"source=" + c.Source, "auth=" + c.Auth}
	if c.MultiTenant() {
		parts = append(parts, c.redactedTenants()...)
	} else {
		parts = append(parts, "tenant_id="+c.TenantID)
	}
	parts = append(parts, "client_id="+c.ClientID)
	switch c.Auth {
	case AuthClientSecret:
		parts = append(parts, "client_secret="+secret)
		if c.ClientSecretFile != "" {
			parts = append(parts, "client_secret_file="+c.ClientSecretFile)
		}
	case AuthCertificate:
		parts = append(parts, "certificate_file="+c.CertificateFile)
		if c.PrivateKeyFile != "" {
			parts = append(parts, "private_key_file="+c.PrivateKeyFile)
		}
		if c.PrivateKeyPassword != "" {
			parts = append(parts, "private_key_password=(redacted)")
		}
		parts = append(parts, "certificate_algorithm="+c.CertificateAlgorithm, "send_certificate_chain="+strconv.FormatBool(c.SendCertificateChain))
	case AuthWorkloadIdentity:
		parts = append(parts, "federated_token_file="+c.FederatedTokenFile)
	case AuthManagedIdentity:
		parts = append(parts, "imds_endpoint="+redactURL(c.IMDSEndpoint))
	}
	parts = append(parts,
		"cloud="+c.Cloud,
		"authority_host="+c.AuthorityHost,
		"graph_host="+c.GraphHost,
		"poll_interval="+FormatDuration(c.PollInterval),
		"idle_poll_interval="+FormatDuration(c.IdlePollInterval),
		"lookback="+FormatDuration(c.Lookback),
		"max_lookback="+FormatDuration(c.MaxLookback),
		"reconcile="+rec,
		"drift_warning="+FormatDuration(c.DriftWarning),
		"initial_lookback="+FormatDuration(c.InitialLookback),
		"db="+db,
		"http_timeout="+FormatDuration(c.HTTPTimeout),
		"health_records="+strconv.FormatBool(c.HealthRecords),
	)
	p, ok := source.Lookup(c.Source)
	if ok && p.AppBudgeted() {
		parts = append(parts, "app_budget="+strconv.Itoa(c.AppBudget))
	}
	if ok && p.IsActivity() {
		// (page_size does not apply: blobs are fetched whole.)
		pub := c.PublisherID
		if pub == "" && c.MultiTenant() {
			pub = "(each tenant's id)"
		}
		parts = append(parts, "management_host="+c.ManagementHost, "publisher_id="+pub, "auto_subscribe="+strconv.FormatBool(c.AutoSubscribe))
	} else {
		parts = append(parts, "page_size="+strconv.Itoa(c.PageSize))
	}
	if c.TLSCAFile != "" {
		parts = append(parts, "tls_ca_file="+c.TLSCAFile)
	}
	if c.MetricsListen != "" {
		parts = append(parts, "metrics_listen="+c.MetricsListen)
	}
	return strings.Join(parts, " ")
}

// redactURL replaces the user information (a user name and password, or a
// token) of a URL.
func redactURL(v string) string {
	u, err := url.Parse(v)
	if err != nil {
		return "(redacted)"
	}
	if u.User == nil {
		return v
	}
	u.User = nil
	s := u.String()
	if i := strings.Index(s, "//"); i >= 0 {
		return s[:i+2] + "(redacted)@" + s[i+2:]
	}
	return "(redacted)"
}

// ReadSecretFile reads a secret from a file, trimming the surrounding white
// space that editors and `echo` add. The error never contains the content.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read the secret file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("the secret file %s is empty", path)
	}
	return s, nil
}

// ParseDuration accepts Go durations, a `d` suffix for days (also combined,
// as in 1d12h) and a bare number of seconds.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if n < 0 || n > float64(1<<62)/float64(time.Second) {
			return 0, fmt.Errorf("out of range")
		}
		return time.Duration(n * float64(time.Second)), nil
	}
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseFloat(s[:i], 64)
		if err != nil || n < 0 || n > 100000 {
			return 0, fmt.Errorf("bad day count")
		}
		days = time.Duration(n * float64(24*time.Hour))
		s = s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, fmt.Errorf("negative")
	}
	return days + d, nil
}

// FormatDuration prints a duration the way users write them (90s, 30m, 2h, 7d).
func FormatDuration(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// FormatDurations joins durations with commas.
func FormatDurations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = FormatDuration(d)
	}
	return strings.Join(parts, ",")
}

// parser collects the first error so that Parse reads as a list.
type parser struct {
	g   Getter
	err error
}

func (p *parser) fail(key, value, allowed string) {
	if p.err == nil {
		p.err = &Error{Key: key, Value: value, Allowed: allowed}
	}
}

func (p *parser) str(key string) string { return strings.TrimSpace(p.g.Get(key)) }

func (p *parser) duration(key string, def time.Duration) time.Duration {
	v := p.str(key)
	if v == "" {
		return def
	}
	d, err := ParseDuration(v)
	if err != nil {
		p.fail(key, v, "a duration such as 90s, 30m, 2h or 7d (a bare number means seconds)")
		return def
	}
	return d
}

func (p *parser) integer(key string, def, lo, hi int) int {
	v := p.str(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.fail(key, v, fmt.Sprintf("a whole number from %d to %d", lo, hi))
		return def
	}
	return n
}

func (p *parser) boolean(key string, def bool) bool {
	v := strings.ToLower(p.str(key))
	switch v {
	case "":
		return def
	case "on", "true", "yes", "1":
		return true
	case "off", "false", "no", "0":
		return false
	}
	p.fail(key, v, "on or off (also true/false, yes/no)")
	return def
}

func (p *parser) reconcile(key string) []time.Duration {
	v := strings.ToLower(p.str(key))
	switch v {
	case "":
		return append([]time.Duration(nil), DefaultReconcile...)
	case "off", "none", "false", "no":
		return nil
	}
	var out []time.Duration
	for _, part := range strings.Split(v, ",") {
		d, err := ParseDuration(part)
		if err != nil || d <= 0 {
			p.fail(key, v, "a comma-separated list of delays such as 2h,6h,24h, or off")
			return nil
		}
		out = append(out, d)
	}
	return out
}

// host parses scheme://host[:port] with an optional trailing slash; plain
// http is allowed only for loopback addresses (the simulator, a local proxy).
func (p *parser) host(key, v, def string) string {
	if v == "" {
		return def
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		p.fail(key, v, "a base URL such as https://graph.microsoft.com, with no path")
		return def
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			p.fail(key, v, "https is required; plain http is accepted only for loopback addresses")
			return def
		}
	default:
		p.fail(key, v, "a URL starting with https://")
		return def
	}
	return u.Scheme + "://" + strings.ToLower(u.Host)
}

// listen parses host:port for the metrics listener; off or empty is off.
func (p *parser) listen(key string) string {
	v := p.str(key)
	switch strings.ToLower(v) {
	case "", "off", "false", "no":
		return ""
	}
	_, port, err := net.SplitHostPort(v)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
		p.fail(key, v, "host:port such as 0.0.0.0:2021 or 127.0.0.1:2021, or off")
		return ""
	}
	return v
}

// imds parses the managed identity endpoint: a full URL; plain http is
// what IMDS speaks, on its link-local address or on loopback.
func (p *parser) imds(key string) string {
	v := p.str(key)
	if v == "" {
		return DefaultIMDSEndpoint
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || u.RawQuery != "" || (u.Scheme != "http" && u.Scheme != "https") {
		p.fail(key, v, "a URL such as "+DefaultIMDSEndpoint)
		return DefaultIMDSEndpoint
	}
	if u.Scheme == "http" {
		ip := net.ParseIP(u.Hostname())
		if !isLoopback(u.Hostname()) && (ip == nil || !ip.IsLinkLocalUnicast()) {
			p.fail(key, v, "plain http only for the link-local IMDS address 169.254.169.254 or loopback; use https otherwise")
			return DefaultIMDSEndpoint
		}
	}
	return v
}

// ReadCAFile reads PEM certificates to trust in addition to the system's.
func ReadCAFile(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the CA file: %w", err)
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("a certificate in the CA file cannot be parsed: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the CA file holds no PEM CERTIFICATE block")
	}
	return out, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
