package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The places the deployment examples load the plugin from: the container
// image's and a system package's. Tests point them at the built object.
const (
	imagePluginPath  = "/fluent-bit/plugins/in_msgraph.so"
	systemPluginPath = "/usr/local/lib/fluent-bit/in_msgraph.so"
	systemPluginsCfg = "/etc/fluent-bit/plugins.conf"
)

// deployExamples are the configurations under examples/ that name the
// plugin themselves (a `plugins:` list or Plugins_File), as a user copies
// them into the container image, a Kubernetes ConfigMap or /etc/fluent-bit.
var deployExamples = []string{
	"container/fluent-bit.yaml",
	"system/fluent-bit.conf",
	"system/fluent-bit.yaml",
	"health-routing.yaml",
	"outputs/file.yaml",
	"outputs/splunk.yaml",
	"outputs/elasticsearch.yaml",
	"outputs/opensearch.yaml",
	"outputs/syslog.yaml",
	"outputs/sentinel.yaml",
	"outputs/kafka.yaml",
	"outputs/forward.yaml",
}

// exampleEnv is what the examples read from the environment, with
// placeholder values: --dry-run connects to nothing.
var exampleEnv = []string{
	"MSGRAPH_TENANT_ID=contoso.onmicrosoft.com",
	"MSGRAPH_CLIENT_ID=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
	"SPLUNK_HEC_HOST=splunk.example.com", "SPLUNK_HEC_TOKEN=00000000-0000-0000-0000-000000000000",
	"ES_HOST=es.example.com", "ES_USER=fluent-bit", "ES_PASSWORD=x",
	"OPENSEARCH_HOST=os.example.com", "OPENSEARCH_USER=fluent-bit", "OPENSEARCH_PASSWORD=x",
	"SYSLOG_HOST=siem.example.com",
	"AZURE_LOGS_TENANT_ID=contoso.onmicrosoft.com", "AZURE_LOGS_CLIENT_ID=bbbbbbbb-cccc-dddd-eeee-ffffffffffff",
	"AZURE_LOGS_CLIENT_SECRET=x", "AZURE_DCE_URL=https://msgraph-x1y2.westeurope-1.ingest.monitor.azure.com",
	"AZURE_DCR_ID=dcr-00000000000000000000000000000000",
	"KAFKA_BROKERS=kafka-1.example.com:9093,kafka-2.example.com:9093", "KAFKA_USER=fluent-bit", "KAFKA_PASSWORD=x",
	"FORWARD_HOST=aggregator.example.com", "FORWARD_SHARED_KEY=x",
}

// TestDeployExamplesLoad has Fluent Bit check each deployment example
// (--dry-run parses it, loads the plugin it names and checks every
// property of the built-in plugins), with the plugin path pointed at the
// built object. An example whose output this Fluent Bit was built without
// (kafka needs librdkafka) is skipped, saying so.
func TestDeployExamplesLoad(t *testing.T) {
	bin := fluentBit(t)
	so := plugin(t)
	help, _ := exec.Command(bin, "--help").CombinedOutput()
	have := helpPlugins(string(help))
	for _, name := range deployExamples {
		t.Run(name, func(t *testing.T) {
			for _, out := range exampleOutputs(t, name) {
				if !have["Outputs"][out] {
					t.Skipf("%s was built without the %s output (`fluent-bit --help` does not list it): %s is not checked here", bin, out, name)
				}
			}
			conf := localExample(t, name, so)
			raw, err := os.ReadFile(conf)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(raw), so) && !strings.Contains(string(raw), filepath.Join(filepath.Dir(conf), "plugins.conf")) {
				t.Fatalf("%s names the plugin neither as %s nor as %s (through %s)", name, imagePluginPath, systemPluginPath, systemPluginsCfg)
			}
			cmd := exec.Command(bin, "-c", conf, "--dry-run")
			cmd.Dir = filepath.Dir(conf)
			cmd.Env = append(os.Environ(), exampleEnv...)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "configuration test is successful") {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// TestHelpPlugins checks the reading of `fluent-bit --help` on the layout
// of v5.1 (a bold section title, then one plugin per indented line).
func TestHelpPlugins(t *testing.T) {
	help := "\x1b[1mFilters\x1b[0m\n  rewrite_tag             Rewrite records tags\n\n" +
		"\x1b[1mOutputs\x1b[0m\n  kafka-rest              Kafka REST Proxy\n  syslog                  Syslog\n\n\x1b[1mInternal\x1b[0m\n Event Loop  = epoll\n"
	got := helpPlugins(help)
	if !got["Outputs"]["syslog"] || !got["Outputs"]["kafka-rest"] || got["Outputs"]["kafka"] || !got["Filters"]["rewrite_tag"] || got["Outputs"]["rewrite_tag"] {
		t.Fatalf("helpPlugins = %v", got)
	}
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// helpPlugins reads the plugin lists of `fluent-bit --help`: section
// (Inputs, Processors, Filters, Outputs) to plugin names.
func helpPlugins(help string) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	var section map[string]bool
	for _, line := range strings.Split(ansi.ReplaceAllString(help, ""), "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			section = nil
		case !strings.HasPrefix(line, " "):
			section = map[string]bool{}
			out[strings.TrimSpace(line)] = section
		case section != nil && strings.HasPrefix(line, "  "):
			if f := strings.Fields(line); len(f) > 0 {
				section[f[0]] = true
			}
		}
	}
	return out
}

// exampleOutputs lists the output plugins a YAML example uses.
func exampleOutputs(t *testing.T, name string) []string {
	t.Helper()
	if !strings.HasSuffix(name, ".yaml") {
		return nil
	}
	var doc struct {
		Pipeline struct {
			Outputs []map[string]any `yaml:"outputs"`
		} `yaml:"pipeline"`
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot(), "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var names []string
	for _, o := range doc.Pipeline.Outputs {
		if n, _ := o["name"].(string); n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		t.Fatalf("%s has no outputs", name)
	}
	return names
}

// localExample copies an example and the files beside it (plugins.conf, a
// Lua script) into a temporary directory, pointing the plugin paths at so,
// and returns the copy's path.
func localExample(t *testing.T, name, so string) string {
	t.Helper()
	src := filepath.Dir(filepath.Join(repoRoot(), "examples", name))
	dir := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.NewReplacer(imagePluginPath, so, systemPluginPath, so,
			systemPluginsCfg, filepath.Join(dir, "plugins.conf")).Replace(string(raw))
		writeFile(t, filepath.Join(dir, e.Name()), s)
	}
	return filepath.Join(dir, filepath.Base(name))
}
