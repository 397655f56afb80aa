package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExamplesLoad has Fluent Bit parse every example configuration with
// the plugin loaded (--dry-run checks the configuration and exits).
func TestExamplesLoad(t *testing.T) {
	bin := fluentBit(t)
	so := plugin(t)
	env := append(os.Environ(),
		"MSGRAPH_TENANT_ID=contoso.onmicrosoft.com",
		"MSGRAPH_CLIENT_ID=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
		"MSGRAPH_DEMO_URL=http://127.0.0.1:18080",
	)
	for _, name := range []string{"fluent-bit.yaml", "fluent-bit.conf", "demo.yaml", "all-sources.yaml", "o365.yaml", "many-tenants.yaml"} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(bin, "-e", so, "-c", filepath.Join(repoRoot(), "examples", name), "--dry-run")
			if strings.HasSuffix(name, ".conf") {
				// The classic file loads the plugin through its
				// plugins.conf, whose Path is relative to the working
				// directory: run it as a user would, beside a plugins.conf
				// naming the built object.
				dir := t.TempDir()
				conf, err := os.ReadFile(filepath.Join(repoRoot(), "examples", name))
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, name), string(conf))
				writeFile(t, filepath.Join(dir, "plugins.conf"), "[PLUGINS]\n    Path "+so+"\n")
				cmd = exec.Command(bin, "-c", filepath.Join(dir, name), "--dry-run")
				cmd.Dir = dir
			}
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "configuration test is successful") {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// TestBadConfigStopsFluentBit checks that a wrong value stops Fluent Bit at
// start with one line naming the key, the value and what is allowed.
func TestBadConfigStopsFluentBit(t *testing.T) {
	bin := fluentBit(t)
	so := plugin(t)
	cmd := exec.Command(bin, "-e", so, "-i", "msgraph", "-p", "tenant_id=t", "-p", "client_id=c",
		"-p", "client_secret=s", "-p", "lookback=5m", "-p", "poll_interval=10m", "-o", "null")
	out := mustFailAtStart(t, cmd)
	want := `config: lookback = "5m" is invalid: must be longer than poll_interval (10m)`
	if !strings.Contains(string(out), want) {
		t.Fatalf("output lacks %q:\n%s", want, out)
	}
	if strings.Contains(string(out), "client_secret=s") {
		t.Fatal("the secret was printed")
	}
}

// mustFailAtStart runs Fluent Bit, which must stop within 30 s with a
// status other than 0, as it does for an invalid configuration, and
// returns what it wrote.
func mustFailAtStart(t *testing.T, cmd *exec.Cmd) []byte {
	t.Helper()
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("Fluent Bit kept running with an invalid configuration")
	}
	if err == nil {
		t.Fatalf("Fluent Bit exited 0 with an invalid configuration:\n%s", out)
	}
	return out
}
