package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// pluginMetrics are the metric families the plugin serves on
// metrics_listen; the dashboard and the alert rules may use only these.
var pluginMetrics = []string{
	"msgraph_requests_total",
	"msgraph_throttled_total",
	"msgraph_retry_after_seconds_total",
	"msgraph_events_total",
	"msgraph_duplicates_total",
	"msgraph_late_arrivals_total",
	"msgraph_token_refreshes_total",
	"msgraph_token_failures_total",
	"msgraph_warnings_total",
	"msgraph_lateness_seconds",
	"msgraph_commit_duration_seconds",
	"msgraph_lookback_seconds",
	"msgraph_last_success_timestamp_seconds",
	"msgraph_backlog_seconds",
	"msgraph_dedup_ids",
}

var scrapedFamily = regexp.MustCompile(`(?m)^# TYPE (msgraph_\w+) (\w+)$`)

// checkScrapedNames checks a scrape of the plugin against pluginMetrics:
// every msgraph_ family it serves is known (so the dashboard cannot miss a
// renamed one), and the ones every working input has are there.
func checkScrapedNames(t *testing.T, body string) {
	t.Helper()
	served := map[string]bool{}
	for _, m := range scrapedFamily.FindAllStringSubmatch(body, -1) {
		served[m[1]] = true
		if !slices.Contains(pluginMetrics, m[1]) {
			t.Errorf("the plugin serves %s, which the dashboard and rules do not know", m[1])
		}
	}
	for _, name := range []string{"msgraph_requests_total", "msgraph_events_total", "msgraph_lateness_seconds",
		"msgraph_commit_duration_seconds", "msgraph_lookback_seconds", "msgraph_last_success_timestamp_seconds",
		"msgraph_backlog_seconds", "msgraph_dedup_ids", "msgraph_token_refreshes_total"} {
		if !served[name] {
			t.Errorf("the scrape lacks %s:\n%s", name, strings.TrimSpace(body))
		}
	}
}

var metricRef = regexp.MustCompile(`\bmsgraph_[a-z_]+`)

// referencedMetrics returns the metric families a PromQL expression names
// (a histogram's _bucket, _sum and _count series count as the histogram).
func referencedMetrics(expr string) []string {
	var out []string
	for _, m := range metricRef.FindAllString(expr, -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base := strings.TrimSuffix(m, suffix); base != m && slices.Contains(pluginMetrics, base) {
				m = base
			}
		}
		out = append(out, m)
	}
	return out
}

// grafanaVars stands in for Grafana's variables so that a panel query is
// plain PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h",
	"$input", ".*", "$source", ".*")

type dashPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"`
}

// TestGrafanaDashboard checks examples/grafana-dashboard.json: valid JSON
// that Grafana can import, every query over the plugin's metrics only,
// every metric shown, and (with promtool) every query valid PromQL.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(), "examples", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID           string      `json:"uid"`
		Title         string      `json:"title"`
		SchemaVersion int         `json:"schemaVersion"`
		Panels        []dashPanel `json:"panels"`
		Templating    struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 30 {
		t.Errorf("uid %q, title %q, schemaVersion %d", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]bool{}
	used := map[string]bool{}
	var exprs []string
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if q, ok := v.Query.(map[string]any); ok {
			expr, _ := q["query"].(string)
			for _, m := range referencedMetrics(expr) {
				if !slices.Contains(pluginMetrics, m) {
					t.Errorf("variable %s queries %s, which the plugin does not serve", v.Name, m)
				}
			}
		}
	}
	if !vars["datasource"] || !vars["input"] || !vars["source"] {
		t.Errorf("variables %v, want datasource, input and source", vars)
	}
	ids := map[int]bool{}
	titles := map[string]bool{}
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d twice", p.ID)
			}
			ids[p.ID] = true
			titles[p.Title] = true
			if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
			}
			walk(p.Panels)
			if p.Type == "row" || p.Type == "alertlist" || p.Type == "text" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q does not use the datasource variable", p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				ms := referencedMetrics(tg.Expr)
				if len(ms) == 0 {
					t.Errorf("panel %q query %s: no plugin metric", p.Title, tg.RefID)
				}
				for _, m := range ms {
					if !slices.Contains(pluginMetrics, m) {
						t.Errorf("panel %q queries %s, which the plugin does not serve", p.Title, m)
					}
					used[m] = true
				}
				if !strings.Contains(tg.Expr, `input=~"$input"`) || !strings.Contains(tg.Expr, `source=~"$source"`) {
					t.Errorf("panel %q query %s ignores the input or source variable: %s", p.Title, tg.RefID, tg.Expr)
				}
				exprs = append(exprs, grafanaVars.Replace(tg.Expr))
			}
		}
	}
	walk(d.Panels)
	for _, m := range pluginMetrics {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
	for _, q := range []string{"0.5", "0.95", "0.99"} {
		if !slices.ContainsFunc(exprs, func(e string) bool {
			return strings.Contains(e, "histogram_quantile("+q+",") && strings.Contains(e, "msgraph_lateness_seconds_bucket")
		}) {
			t.Errorf("no lateness p%s panel", strings.TrimPrefix(q, "0."))
		}
	}
	// promtool checks PromQL inside a rule file: each query becomes a
	// recording rule.
	if promtool := findPromtool(t); promtool != "" {
		var rules strings.Builder
		rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
		for i, e := range exprs {
			q, _ := json.Marshal(e)
			fmt.Fprintf(&rules, "      - record: dashboard:query%d\n        expr: %s\n", i, q)
		}
		f := writeFile(t, filepath.Join(t.TempDir(), "dashboard-rules.yaml"), rules.String())
		if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
			t.Errorf("a dashboard query is not valid PromQL: %v\n%s", err, out)
		}
	}
}

// findPromtool returns $PROMTOOL or promtool on PATH, or "" saying so.
func findPromtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	t.Log("no promtool (PROMTOOL or PATH; Debian's prometheus package has it): PromQL is not checked")
	return ""
}

// TestPrometheusRules checks examples/prometheus-rules.yaml: valid YAML
// with the alerts the deployment guide promises, over the plugin's
// metrics only; with promtool, `promtool check rules` and the unit tests
// of testdata/prometheus-rules.test.yaml, which feed made-up series and
// check when each alert fires.
func TestPrometheusRules(t *testing.T) {
	path := filepath.Join(repoRoot(), "examples", "prometheus-rules.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("prometheus-rules.yaml: %v", err)
	}
	alerts := map[string]string{}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("group %s: a rule without alert or expr", g.Name)
				continue
			}
			alerts[r.Alert] = r.Expr
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("%s: no severity label or summary", r.Alert)
			}
			ms := referencedMetrics(r.Expr)
			if len(ms) == 0 {
				t.Errorf("%s: no plugin metric in %s", r.Alert, r.Expr)
			}
			for _, m := range ms {
				if !slices.Contains(pluginMetrics, m) {
					t.Errorf("%s uses %s, which the plugin does not serve", r.Alert, m)
				}
			}
		}
	}
	for name, metric := range map[string]string{
		"MsgraphNoSuccessfulPoll": "msgraph_last_success_timestamp_seconds",
		"MsgraphLateArrivals":     "msgraph_late_arrivals_total",
		"MsgraphThrottled":        "msgraph_throttled_total",
		"MsgraphTokenFailures":    "msgraph_token_failures_total",
	} {
		if !strings.Contains(alerts[name], metric) {
			t.Errorf("no alert %s over %s", name, metric)
		}
	}
	if promtool := findPromtool(t); promtool != "" {
		if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
			t.Errorf("promtool check rules: %v\n%s", err, out)
		}
		cmd := exec.Command(promtool, "test", "rules", "prometheus-rules.test.yaml")
		cmd.Dir = filepath.Join(repoRoot(), "test", "testdata")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool test rules: %v\n%s", err, out)
		}
	}
}
