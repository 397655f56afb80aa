package config

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/in-msgraph/in_msgraph/internal/source"
)

// Many tenants in one input: tenants or tenants_file replace tenant_id.
const (
	DefaultTenantKey        = "msgraph_tenant"
	DefaultTenantsRefresh   = 5 * time.Minute
	MinTenantsRefresh       = 10 * time.Second
	MaxTenantsRefresh       = 24 * time.Hour
	DefaultIdlePollInterval = 5 * time.Minute
	// DefaultAppBudget is also the most app_budget may be: the requests
	// per 10 s that Graph's identity and access reports allow one
	// application across all its tenants; above it Graph answers 429.
	DefaultAppBudget = 122
	MaxShards        = 1024
	MaxTenantKey     = 64       // bytes
	MaxTenantsFile   = 16 << 20 // bytes read of a tenants_file at most
	// shownTenants is how many tenants the configuration line names.
	shownTenants = 3
)

// Shard is shard = i/n: the input keeps the tenants whose hash modulo N is
// I. N is 0 when there is no shard (every tenant is kept).
type Shard struct{ I, N int }

// Keeps reports whether the shard keeps tenant t: the FNV-1a 64-bit hash
// of t in lower case, modulo N, is I. The hash is part of the contract:
// it is the same in every version and on every machine, so the pods of a
// fleet, whatever their version, split one list alike and a tenant keeps
// its shard (and its state) across upgrades. N == 0 keeps every tenant.
func (s Shard) Keeps(t string) bool {
	if s.N <= 0 {
		return true
	}
	h := fnv.New64a()
	h.Write([]byte(strings.ToLower(t)))
	return h.Sum64()%uint64(s.N) == uint64(s.I)
}

// String is the shard as written in the configuration ("1/3"), or "none".
func (s Shard) String() string {
	if s.N == 0 {
		return "none"
	}
	return strconv.Itoa(s.I) + "/" + strconv.Itoa(s.N)
}

// MultiTenant reports whether the input collects a list of tenants
// (tenants or tenants_file), even a list of one.
func (c Config) MultiTenant() bool { return len(c.Tenants) > 0 || c.TenantsFile != "" }

// ForTenant is the configuration of tenant t's stream in a multi-tenant
// input: a copy with TenantID t and, for the o365_ sources when
// publisher_id was not set, PublisherID t in lower case (as a single
// tenant_id defaults it); a publisher_id that was set is kept. The copy
// describes one tenant: Tenants, TenantsFile and Shard are cleared, so its
// MultiTenant is false; every other key (tenant_key, app_budget,
// idle_poll_interval, ...) is kept.
func (c Config) ForTenant(t string) Config {
	c.TenantID = t
	if !c.publisherSet {
		c.PublisherID = ""
		if p, ok := source.Lookup(c.Source); ok && p.IsActivity() {
			c.PublisherID = strings.ToLower(t)
		}
	}
	c.Tenants = nil
	c.TenantsFile = ""
	c.Shard = Shard{}
	return c
}

// listedTenant checks one tenant of tenants or tenants_file: what
// tenant_id accepts, without blanks or control characters, and a GUID
// when requireGUID. sep is how the list separates tenants, for the hint.
func listedTenant(t string, requireGUID bool, sep string) string {
	switch {
	case strings.ContainsAny(t, " \t\r\n,;"):
		return "holds a space, comma or semicolon: " + sep
	case strings.ContainsFunc(t, func(r rune) bool { return r < ' ' || r == 0x7f || r == utf8.RuneError }),
		strings.ContainsAny(t, "/?#%"):
		return "is not a tenant GUID or a domain name such as contoso.onmicrosoft.com"
	case requireGUID && !IsGUID(t):
		return "is not a GUID: the o365_ sources need each tenant's directory (tenant) id, the Management Activity API's addresses hold it and refuse a domain name"
	}
	return ""
}

// splitTenants splits the tenants key at commas; empty items (a trailing
// comma) are skipped.
func splitTenants(v string) []string {
	var out []string
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// checkTenantList checks the tenants key's list: each tenant valid, none
// twice (compared case-insensitively). It returns what is wrong, or "".
func checkTenantList(list []string, requireGUID bool) string {
	if len(list) == 0 {
		return "lists no tenant: list the tenants comma-separated, GUIDs or domains such as contoso.onmicrosoft.com"
	}
	seen := make(map[string]int, len(list))
	for i, t := range list {
		if why := listedTenant(t, requireGUID, "separate tenants with commas"); why != "" {
			return fmt.Sprintf("tenant %q %s", t, why)
		}
		k := strings.ToLower(t)
		if j, dup := seen[k]; dup {
			return fmt.Sprintf("tenant %q is listed twice (items %d and %d): list each tenant once", t, j+1, i+1)
		}
		seen[k] = i
	}
	return ""
}

// ReadTenants reads and checks a tenants_file, at start and at every
// tenants_refresh: one tenant per line, a GUID or a domain such as
// contoso.onmicrosoft.com (a GUID only when requireGUID, which is true
// for the o365_ sources: source.Profile.IsActivity). '#' starts a comment
// to the end of its line, blank lines are ignored and the white space
// around a tenant is trimmed. The tenants are returned in the file's
// order, spelt as written. A file that cannot be read (missing, a
// directory, larger than 16 MiB), a bad tenant, a tenant listed twice
// (compared case-insensitively) or a file that lists no tenant is an
// *Error with Key tenants_file naming the file and, for a tenant, its
// line.
func ReadTenants(path string, requireGUID bool) ([]string, error) {
	bad := func(format string, a ...any) error {
		return &Error{Key: "tenants_file", Value: path, Allowed: fmt.Sprintf(format, a...)}
	}
	const fix = "give the path of a readable file with one tenant GUID or domain per line"
	// Stat first: opening a pipe would wait for a writer.
	st, err := os.Stat(path)
	if err != nil {
		return nil, bad("cannot read the tenants file: %v; %s", err, fix)
	}
	if st.IsDir() {
		return nil, bad("it is a directory, not a file; %s", fix)
	}
	if !st.Mode().IsRegular() {
		return nil, bad("it is not a regular file; %s", fix)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, bad("cannot read the tenants file: %v; %s", err, fix)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, MaxTenantsFile+1))
	if err != nil {
		return nil, bad("cannot read the tenants file: %v; %s", err, fix)
	}
	if len(raw) > MaxTenantsFile {
		return nil, bad("the file is larger than %d MiB; %s", MaxTenantsFile>>20, fix)
	}
	raw = bytes.TrimPrefix(raw, []byte("\uFEFF")) // a byte order mark
	var list []string
	seen := map[string]int{} // tenant in lower case: its line
	for i, line := range strings.Split(string(raw), "\n") {
		n := i + 1
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		t := strings.TrimSpace(line)
		if t == "" {
			continue
		}
		if why := listedTenant(t, requireGUID, "put one tenant per line"); why != "" {
			return nil, bad("line %d: %q %s", n, t, why)
		}
		k := strings.ToLower(t)
		if first, dup := seen[k]; dup {
			return nil, bad("lines %d and %d both list tenant %q: list each tenant once", first, n, t)
		}
		seen[k] = n
		list = append(list, t)
	}
	if len(list) == 0 {
		return nil, bad("the file lists no tenant (only blank lines and comments): put one tenant GUID or domain per line; '#' starts a comment")
	}
	return list, nil
}

// shard parses shard = i/n.
func (p *parser) shard(key string) Shard {
	v := p.str(key)
	if v == "" {
		return Shard{}
	}
	is, ns, ok := strings.Cut(v, "/")
	i, err1 := strconv.Atoi(strings.TrimSpace(is))
	n, err2 := strconv.Atoi(strings.TrimSpace(ns))
	switch {
	case !ok || err1 != nil || err2 != nil:
		p.fail(key, v, "i/n, this input's shard number i counted from 0 and the number of shards n, e.g. 0/3, 1/3, 2/3")
	case n < 1 || n > MaxShards:
		p.fail(key, v, fmt.Sprintf("n, the number of shards, must be from 1 to %d, e.g. 0/3, 1/3, 2/3", MaxShards))
	case i < 0 || i >= n:
		p.fail(key, v, "i must be from 0 and below n, e.g. "+shardExamples(n))
	default:
		return Shard{I: i, N: n}
	}
	return Shard{}
}

// shardExamples lists the shards of n: "0/3, 1/3, 2/3", or the first two
// and the last for a larger n.
func shardExamples(n int) string {
	f := func(i int) string { return strconv.Itoa(i) + "/" + strconv.Itoa(n) }
	switch {
	case n == 1:
		return f(0)
	case n <= 4:
		parts := make([]string, n)
		for i := range parts {
			parts[i] = f(i)
		}
		return strings.Join(parts, ", ")
	}
	return f(0) + ", " + f(1) + ", ... " + f(n-1)
}

// appBudget parses app_budget.
func (p *parser) appBudget(key string) int {
	v := p.str(key)
	if v == "" {
		return DefaultAppBudget
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > DefaultAppBudget {
		p.fail(key, v, fmt.Sprintf("a whole number from 1 to %d: the requests per 10 s one client_id may send to Graph's identity and access reports across all its tenants; Graph throttles an application above %d, so lower it only to share that limit with other processes of the same client_id", DefaultAppBudget, DefaultAppBudget))
		return DefaultAppBudget
	}
	return n
}

// checkTenantKey checks tenant_key: a plain record key, not one the
// source's records already have.
func checkTenantKey(k string, prof source.Profile) error {
	bad := func(why string) error {
		return &Error{Key: "tenant_key", Value: k, Allowed: why}
	}
	if len(k) > MaxTenantKey || strings.ContainsFunc(k, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '-')
	}) {
		return bad(fmt.Sprintf("a record key of 1 to %d letters, digits, '_' or '-', such as %s", MaxTenantKey, DefaultTenantKey))
	}
	for _, f := range []string{"id", prof.IDField, prof.TimeField} {
		if f != "" && strings.EqualFold(k, f) {
			return bad("the records of source " + prof.Name + " have a key " + f + " of their own; choose another name, such as " + DefaultTenantKey)
		}
	}
	return nil
}

// validateTenants checks the keys of many tenants and reads the list:
// tenant_id, tenants and tenants_file exclude one another; shard needs a
// list. tenantsSet and tenantIDSet say which keys were given.
func (c *Config) validateTenants(tenantsRaw string, tenantsSet, tenantIDSet bool, prof source.Profile) error {
	if c.TenantsRefresh < MinTenantsRefresh || c.TenantsRefresh > MaxTenantsRefresh {
		return &Error{Key: "tenants_refresh", Value: FormatDuration(c.TenantsRefresh), Allowed: "between 10s and 24h: how often tenants_file is read again (5m unless set)"}
	}
	if err := checkTenantKey(c.TenantKey, prof); err != nil {
		return err
	}
	if !tenantsSet && c.TenantsFile == "" {
		if c.Shard.N != 0 {
			return &Error{Key: "shard", Value: c.Shard.String(), Allowed: "shard splits a list of tenants (tenants or tenants_file) between inputs, and this input has one tenant_id; remove shard, or list the tenants"}
		}
		return nil
	}
	switch {
	case tenantIDSet:
		key := "tenants"
		if !tenantsSet {
			key = "tenants_file"
		}
		return &Error{Key: "tenant_id", Value: c.TenantID, Allowed: "set either tenant_id (one tenant) or " + key + " (many tenants), not both; remove tenant_id, or list that tenant in " + key}
	case tenantsSet && c.TenantsFile != "":
		return &Error{Key: "tenants", Value: tenantsRaw, Allowed: "set either tenants or tenants_file, not both; remove one"}
	case c.Auth == AuthManagedIdentity:
		return &Error{Key: "auth", Value: c.Auth, Allowed: "a managed identity has tokens for its own tenant only, so it cannot collect tenants or tenants_file; use a multi-tenant app registration (auth client_secret, certificate or workload_identity), or set tenant_id"}
	}
	if tenantsSet {
		if why := checkTenantList(c.Tenants, prof.IsActivity()); why != "" {
			if tenantsRaw == "" {
				return &Error{Key: "tenants", Allowed: "list the tenants comma-separated, GUIDs or domains such as contoso.onmicrosoft.com"}
			}
			return &Error{Key: "tenants", Value: tenantsRaw, Allowed: why}
		}
		return nil
	}
	list, err := ReadTenants(c.TenantsFile, prof.IsActivity())
	if err != nil {
		return err
	}
	c.Tenants = list
	return nil
}

// idlePollInterval is idle_poll_interval, given (set) or by default: 5m
// for many tenants (within poll_interval and lookback), poll_interval for
// one.
func (c *Config) idlePollInterval(set bool) error {
	switch {
	case !set && c.MultiTenant():
		c.IdlePollInterval = max(c.PollInterval, min(DefaultIdlePollInterval, c.Lookback))
		return nil
	case !set:
		c.IdlePollInterval = c.PollInterval
		return nil
	}
	d := c.IdlePollInterval
	if d < c.PollInterval {
		return &Error{Key: "idle_poll_interval", Value: FormatDuration(d), Allowed: "at least poll_interval (" + FormatDuration(c.PollInterval) + "): it is how often a quiet tenant is polled, less often than a busy one; set it to poll_interval or longer, or remove it"}
	}
	if d > c.Lookback {
		return &Error{Key: "idle_poll_interval", Value: FormatDuration(d), Allowed: "at most lookback (" + FormatDuration(c.Lookback) + "): a quiet tenant is still polled at least once every lookback; shorten it, or raise lookback"}
	}
	return nil
}

// redactedTenants is the tenants part of the configuration line: the
// count, then the first few tenants.
func (c *Config) redactedTenants() []string {
	var parts []string
	if c.TenantsFile != "" {
		parts = append(parts, "tenants_file="+c.TenantsFile)
	}
	n := len(c.Tenants)
	list := strings.Join(c.Tenants[:min(n, shownTenants)], ",")
	if n > shownTenants {
		list += ",..."
	}
	parts = append(parts, "tenants="+strconv.Itoa(n)+":"+list)
	if c.TenantsFile != "" {
		parts = append(parts, "tenants_refresh="+FormatDuration(c.TenantsRefresh))
	}
	return append(parts, "tenant_key="+c.TenantKey, "shard="+c.Shard.String(), "metrics_tenant_label="+strconv.FormatBool(c.MetricsTenantLabel))
}
