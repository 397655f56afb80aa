// Package test holds the tests that run the built plugin: the C-ABI test,
// which drives the shared object from a small C host the way Fluent Bit's
// Go proxy does, and the end-to-end tests with a real Fluent Bit.
package test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/records"
)

var (
	buildOnce sync.Once
	pluginSO  string
	buildErr  error
)

// plugin returns the path of the shared object: $MSGRAPH_PLUGIN when set
// (relative to the repository; make test builds it first), else one built once for this test run.
func plugin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MSGRAPH_PLUGIN"); p != "" {
		if !filepath.IsAbs(p) {
			p = filepath.Join(repoRoot(), p)
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("MSGRAPH_PLUGIN: %v", err)
		}
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "in_msgraph-test-")
		if err != nil {
			buildErr = err
			return
		}
		pluginSO = filepath.Join(dir, "in_msgraph.so")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", pluginSO, "./plugin")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build -buildmode=c-shared: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return pluginSO
}

// fluentBitScript unpacks one of the Fluent Bit binaries kept beside the
// repository (5.1.1 unless FLUENT_BIT_VERSION says otherwise) and prints
// its path; relative to the repository.
const fluentBitScript = "../shared/tools/fluent-bit/install.sh"

var (
	fbOnce  sync.Once
	fbPath  string // the binary found, or ""
	fbSkip  string // why there is none, when none exists
	fbError error  // a binary or script that was named or found but fails
)

// fluentBit returns the Fluent Bit the end-to-end tests run: $FLUENT_BIT,
// else fluent-bit on PATH, else the binary fluentBitScript unpacks (the
// order .ci/run and the Makefile follow). It must have Go plugin support
// (FLB_PROXY_GO, the -e option). The test is skipped, saying why, only
// when none of them exists; one that exists but does not work fails it.
func fluentBit(t *testing.T) string {
	t.Helper()
	fbOnce.Do(func() { fbPath, fbSkip, fbError = findFluentBit() })
	switch {
	case fbError != nil:
		t.Fatal(fbError)
	case fbPath == "":
		t.Skip(fbSkip)
	}
	return fbPath
}

func findFluentBit() (path, skip string, err error) {
	if bin := os.Getenv("FLUENT_BIT"); bin != "" {
		if err := goPluginSupport(bin); err != nil {
			return "", "", fmt.Errorf("FLUENT_BIT=%s: %v", bin, err)
		}
		return bin, "", nil
	}
	onPath := "no fluent-bit on PATH"
	if bin, err := exec.LookPath("fluent-bit"); err == nil {
		err := goPluginSupport(bin)
		if err == nil {
			return bin, "", nil
		}
		onPath = fmt.Sprintf("%s on PATH cannot be used: %v", bin, err)
	}
	script := filepath.Join(repoRoot(), filepath.FromSlash(fluentBitScript))
	if _, err := os.Stat(script); err != nil {
		return "", fmt.Sprintf("no Fluent Bit for the end-to-end tests: FLUENT_BIT is not set, %s, and there is no %s; "+
			"set FLUENT_BIT to a Fluent Bit built with Go plugin support (FLB_PROXY_GO=On)", onPath, fluentBitScript), nil
	}
	var stderr bytes.Buffer
	cmd := exec.Command(script)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("%s: %v\n%s", fluentBitScript, err, stderr.Bytes())
	}
	lines := strings.Fields(string(out))
	if len(lines) == 0 {
		return "", "", fmt.Errorf("%s printed no path", fluentBitScript)
	}
	bin := lines[len(lines)-1]
	if err := goPluginSupport(bin); err != nil {
		return "", "", fmt.Errorf("%s (from %s): %v", bin, fluentBitScript, err)
	}
	return bin, "", nil
}

// goPluginSupport reports whether bin runs and loads Go plugins (-e).
func goPluginSupport(bin string) error {
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil && len(out) == 0 {
		return fmt.Errorf("it does not run: %v", err)
	}
	if !strings.Contains(string(out), "--plugin") {
		return fmt.Errorf("it was built without Go plugin support (FLB_PROXY_GO): it has no -e/--plugin option")
	}
	return nil
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// liveSim starts the simulator on the real clock with n sign-ins created
// over the last span, all visible now.
func liveSim(t *testing.T, opts graphsim.Options, n int, span time.Duration) *graphsim.Server {
	t.Helper()
	sim := graphsim.Start(t, opts)
	now := time.Now()
	rng := rand.New(rand.NewPCG(uint64(opts.Seed), 7))
	sim.Add(graphsim.Generate(rng, now.Add(-span), now, n, func(*rand.Rand) time.Duration { return 0 })...)
	return sim
}

// frames reads the C host's output: uint32 instance, uint64 length, bytes.
func frames(t *testing.T, r io.Reader) map[uint32][]records.Event {
	t.Helper()
	out := map[uint32][]records.Event{}
	for {
		var hdr [12]byte
		if _, err := io.ReadFull(r, hdr[:]); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatalf("frame header: %v", err)
		}
		inst := binary.LittleEndian.Uint32(hdr[:4])
		buf := make([]byte, binary.LittleEndian.Uint64(hdr[4:]))
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatalf("frame body: %v", err)
		}
		evs, err := records.DecodeEvents(buf)
		if err != nil {
			t.Fatalf("instance %d sent a batch that is not valid msgpack records: %v", inst, err)
		}
		out[inst] = append(out[inst], evs...)
	}
}

// sameJSON compares a Graph object with a delivered record field by field:
// same keys, same values, same types (integers as integers).
func sameJSON(t *testing.T, raw []byte, fields map[string]any) bool {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var want any
	if err := dec.Decode(&want); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(canon(want), canon(any(fields)))
}

// canon maps JSON numbers and msgpack integers onto one representation:
// integers as int64 (uint64 above its range), the rest float64.
func canon(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = canon(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = canon(e)
		}
		return out
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return u
		}
		f, _ := x.Float64()
		return f
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
	}
	return v
}
