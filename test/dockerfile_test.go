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

// dockerStage is one FROM of the Dockerfile and what it does.
type dockerStage struct {
	image, name string
	copies      [][]string // COPY arguments, --from=... included
	runs        []string
	cmd, entry  []string
}

// parseDockerfile reads the ARG defaults and the stages (continuation
// lines joined); images are returned with the ARGs substituted.
func parseDockerfile(t *testing.T) (map[string]string, []*dockerStage) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := regexp.MustCompile(`\\\n\s*`).ReplaceAllString(string(raw), " ")
	args := map[string]string{}
	var stages []*dockerStage
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		var cur *dockerStage
		if len(stages) > 0 {
			cur = stages[len(stages)-1]
		}
		switch strings.ToUpper(instr) {
		case "ARG":
			if k, v, ok := strings.Cut(rest, "="); ok && cur == nil {
				args[k] = v
			}
		case "FROM":
			f := strings.Fields(rest)
			s := &dockerStage{image: os.Expand(f[0], func(k string) string { return args[k] })}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
		case "COPY":
			cur.copies = append(cur.copies, strings.Fields(rest))
		case "RUN":
			cur.runs = append(cur.runs, rest)
		case "CMD", "ENTRYPOINT":
			var v []string
			if err := yaml.Unmarshal([]byte(rest), &v); err != nil {
				t.Fatalf("%s %s is not the exec form: %v", instr, rest, err)
			}
			if strings.EqualFold(instr, "CMD") {
				cur.cmd = v
			} else {
				cur.entry = v
			}
		}
	}
	return args, stages
}

// TestDockerfile checks what docker build would only reveal on a machine
// with Docker: pinned base images of the versions the project supports, a
// reproducible cgo build of the shared object, and paths that agree with
// the configuration baked into the image, the .dockerignore and the Helm
// init container.
func TestDockerfile(t *testing.T) {
	_, stages := parseDockerfile(t)
	if len(stages) != 3 {
		t.Fatalf("%d stages, want build, plugin and the final image", len(stages))
	}
	build, pluginOnly, final := stages[0], stages[1], stages[2]

	// Pinned images: a full version, never a moving tag.
	pins := map[string]*regexp.Regexp{
		build.image:      regexp.MustCompile(`^golang:(\d+\.\d+)\.\d+-bookworm$`),
		pluginOnly.image: regexp.MustCompile(`^busybox:\d+\.\d+\.\d+$`),
		final.image:      regexp.MustCompile(`^fluent/fluent-bit:(\d+\.\d+\.\d+)$`),
	}
	for img, re := range pins {
		if !re.MatchString(img) {
			t.Errorf("base image %q is not pinned to a full version (%s)", img, re)
		}
	}
	if build.name != "build" || pluginOnly.name != "plugin" {
		t.Errorf("stages named %q and %q, want build and plugin (docs/deploy.md uses --target plugin)", build.name, pluginOnly.name)
	}
	gomod, err := os.ReadFile(filepath.Join(repoRoot(), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(string(gomod)); m == nil ||
		!strings.HasPrefix(build.image, "golang:"+m[1]+".") {
		t.Errorf("%s does not build with the Go of go.mod (%v)", build.image, m)
	}
	fbVersion := strings.TrimPrefix(final.image, "fluent/fluent-bit:")
	for _, f := range []string{"values.yaml", "init-container.yaml"} {
		raw, err := os.ReadFile(filepath.Join(repoRoot(), "examples", "helm", f))
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Image struct{ Tag string } `yaml:"image"`
		}
		if err := yaml.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if v.Image.Tag != fbVersion {
			t.Errorf("examples/helm/%s runs image tag %q, the Dockerfile Fluent Bit %s", f, v.Image.Tag, fbVersion)
		}
	}

	// The build: cgo, a shared object, no paths of the build machine.
	var goBuild string
	for _, r := range build.runs {
		if strings.Contains(r, "go build") {
			goBuild = r
		}
	}
	for _, want := range []string{"CGO_ENABLED=1", "-trimpath", "-buildmode=c-shared", "-o /out/in_msgraph.so", "./plugin"} {
		if !strings.Contains(goBuild, want) {
			t.Errorf("the go build lacks %q: %s", want, goBuild)
		}
	}

	// Everything the build compiles is copied into the build stage, and
	// the .dockerignore lets it through.
	var fromContext []string
	for _, s := range stages {
		for _, c := range s.copies {
			if !strings.HasPrefix(c[0], "--from=") {
				fromContext = append(fromContext, c[:len(c)-1]...)
			}
		}
	}
	list := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "./plugin")
	list.Dir = repoRoot()
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(repoRoot(), dir)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a module dependency: go mod download fetches it
		}
		if !slices.ContainsFunc(fromContext, func(src string) bool { return strings.HasPrefix(rel+"/", strings.TrimSuffix(src, "/")+"/") }) {
			t.Errorf("the plugin compiles %s, which no COPY brings into the image build", rel)
		}
	}
	ignore, err := os.ReadFile(filepath.Join(repoRoot(), ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range fromContext {
		if !dockerIncluded(string(ignore), strings.TrimSuffix(src, "/")) {
			t.Errorf(".dockerignore leaves %s out of the build context", src)
		}
	}

	// The final image: the object where the baked configuration loads it.
	var soDest, confDest string
	for _, c := range final.copies {
		switch {
		case c[0] == "--from=build" && c[1] == "/out/in_msgraph.so":
			soDest = c[2]
		case c[0] == "examples/container/fluent-bit.yaml":
			confDest = c[1]
		}
	}
	if soDest != imagePluginPath {
		t.Errorf("the image holds the plugin at %q, the examples load it from %s", soDest, imagePluginPath)
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot(), "examples", "container", "fluent-bit.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Plugins []string `yaml:"plugins"`
	}
	if err := yaml.Unmarshal(raw, &conf); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(conf.Plugins, soDest) {
		t.Errorf("the image's configuration loads %v, the image holds %s", conf.Plugins, soDest)
	}
	if !slices.Equal(final.entry, []string{"/fluent-bit/bin/fluent-bit"}) || !slices.Equal(final.cmd, []string{"-c", confDest}) {
		t.Errorf("ENTRYPOINT %v CMD %v do not start Fluent Bit on %s", final.entry, final.cmd, confDest)
	}

	// The plugin-only image: its CMD copies what it holds, and the Helm
	// init container copies from the same place.
	if len(pluginOnly.copies) != 1 || len(pluginOnly.cmd) != 3 || pluginOnly.cmd[1] != pluginOnly.copies[0][2] {
		t.Errorf("the plugin stage holds %v but its CMD is %v", pluginOnly.copies, pluginOnly.cmd)
	}
	helmInit, err := os.ReadFile(filepath.Join(repoRoot(), "examples", "helm", "init-container.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var iv struct {
		InitContainers []struct {
			Command []string `yaml:"command"`
		} `yaml:"initContainers"`
	}
	if err := yaml.Unmarshal(helmInit, &iv); err != nil {
		t.Fatal(err)
	}
	if len(iv.InitContainers) != 1 || len(pluginOnly.copies) != 1 || !slices.Contains(iv.InitContainers[0].Command, pluginOnly.copies[0][2]) {
		t.Errorf("the Helm init container runs %v, which does not copy the plugin stage's %v", iv.InitContainers, pluginOnly.copies)
	}
}

// dockerIncluded applies .dockerignore's patterns (the subset this
// repository uses: "*", "dir/", "**/x", "!path") to a path; the last
// matching pattern wins.
func dockerIncluded(ignore, path string) bool {
	included := true
	for _, line := range strings.Split(ignore, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		neg := strings.HasPrefix(line, "!")
		pat := strings.TrimSuffix(strings.TrimPrefix(line, "!"), "/")
		match := pat == "*" || pat == path || strings.HasPrefix(path, pat+"/")
		if !match && strings.HasPrefix(pat, "**/") {
			match, _ = filepath.Match(strings.TrimPrefix(pat, "**/"), filepath.Base(path))
		}
		if match {
			included = neg
		}
	}
	return included
}

// TestEveryExampleIsTested keeps the promise that every file in examples/
// is exercised by a test: a new example must be added to one of the lists.
func TestEveryExampleIsTested(t *testing.T) {
	tested := map[string]bool{
		// TestExamplesLoad
		"fluent-bit.yaml": true, "fluent-bit.conf": true, "plugins.conf": true, "demo.yaml": true, "all-sources.yaml": true, "o365.yaml": true, "many-tenants.yaml": true,
		// TestEndToEndManyTenants reads it as a tenants_file
		"tenants.txt": true,
		// TestGrafanaDashboard, TestPrometheusRules
		"grafana-dashboard.json": true, "prometheus-rules.yaml": true,
		// TestHelmValues and TestHelmPVC (test/helm)
		"helm/values.yaml": true, "helm/workload-identity.yaml": true, "helm/init-container.yaml": true, "helm/pvc.yaml": true,
		// TestExampleSyslogRuns, through syslog.yaml; system/fluent-bit.conf
		// loads system/plugins.conf in TestDeployExamplesLoad
		"outputs/syslog-json.lua": true, "system/plugins.conf": true,
		// Documentation of the systemd unit's environment file
		"system/fluent-bit.env": true,
	}
	for _, name := range deployExamples {
		tested[name] = true
	}
	root := filepath.Join(repoRoot(), "examples")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if !tested[filepath.ToSlash(rel)] {
			t.Errorf("examples/%s is exercised by no test", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
