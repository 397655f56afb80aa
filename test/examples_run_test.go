package test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
)

// The full runs below take an example as a user copies it and change only
// what ties it to a real tenant and host: Graph and the token endpoint
// become the simulator, the state file, buffers and output files move to a
// temporary directory, network outputs point at a local receiver, and the
// schedule is shortened so that a run takes seconds. Everything else (the
// plugins entry, filters, output options) runs as written.

// exampleRun is one example prepared for a run against a simulator.
type exampleRun struct {
	t    *testing.T
	name string
	dir  string    // the copy's directory (sibling files included)
	doc  yaml.Node // the parsed example, edited in place
	sim  *graphsim.Server
}

// prepareExample copies the example and points every msgraph input at sim.
func prepareExample(t *testing.T, name string, sim *graphsim.Server) *exampleRun {
	t.Helper()
	so := plugin(t)
	conf := localExample(t, name, so)
	raw, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	r := &exampleRun{t: t, name: name, dir: filepath.Dir(conf), sim: sim}
	if err := yaml.Unmarshal(raw, &r.doc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	secret := writeFile(t, filepath.Join(r.dir, "client-secret"), graphsim.DefaultClientSecret)
	if svc := mapGet(r.root(), "service"); svc != nil && mapGet(svc, "storage.path") != nil {
		mapSet(svc, "storage.path", filepath.Join(r.dir, "buffer"))
	}
	if svc := mapGet(r.root(), "service"); svc != nil && mapGet(svc, "http_port") != nil {
		mapSet(svc, "http_port", strconv.Itoa(freePort(t)))
		mapSet(svc, "http_listen", "127.0.0.1")
	}
	n := 0
	for _, in := range r.section("inputs") {
		if scalar(mapGet(in, "name")) != "msgraph" {
			continue
		}
		n++
		if scalar(mapGet(in, "client_secret_file")) == "" {
			t.Fatalf("%s: the input has no client_secret_file", name)
		}
		mapSet(in, "client_secret_file", secret)
		mapSet(in, "db", filepath.Join(r.dir, fmt.Sprintf("state-%d.db", n)))
		mapSet(in, "authority_host", sim.URL())
		mapSet(in, "graph_host", sim.URL())
		if strings.HasPrefix(scalar(mapGet(in, "source")), "o365_") {
			mapSet(in, "management_host", sim.ManageURL())
		}
		mapSet(in, "poll_interval", "1s")
		mapSet(in, "lookback", "5s")
		mapSet(in, "reconcile", "off")
		mapSet(in, "initial_lookback", "15m")
		if mapGet(in, "metrics_listen") != nil {
			mapDel(in, "metrics_listen")
		}
	}
	if n == 0 {
		t.Fatalf("%s has no msgraph input", name)
	}
	return r
}

func (r *exampleRun) root() *yaml.Node { return r.doc.Content[0] }

// section returns the items of pipeline.inputs, .filters or .outputs.
func (r *exampleRun) section(name string) []*yaml.Node {
	seq := mapGet(mapGet(r.root(), "pipeline"), name)
	if seq == nil {
		return nil
	}
	return seq.Content
}

// outputs returns the outputs with the given plugin name.
func (r *exampleRun) outputs(plugin string) []*yaml.Node {
	var out []*yaml.Node
	for _, o := range r.section("outputs") {
		if scalar(mapGet(o, "name")) == plugin {
			out = append(out, o)
		}
	}
	if len(out) == 0 {
		r.t.Fatalf("%s has no %s output", r.name, plugin)
	}
	return out
}

// start writes the edited copy and starts Fluent Bit on it; extra comes
// before -c (e.g. -e for an example loaded that way). Fluent Bit's log
// (stderr) goes to fb.out, and what its stdout outputs write to stdout: a
// record and a log line written at once would otherwise interleave.
func (r *exampleRun) start(extra ...string) (fb *fbProc, stdout *syncBuffer) {
	r.t.Helper()
	out, err := yaml.Marshal(&r.doc)
	if err != nil {
		r.t.Fatal(err)
	}
	conf := writeFile(r.t, filepath.Join(r.dir, "run-"+filepath.Base(r.name)), string(out))
	args := append(append([]string(nil), extra...), "-c", conf)
	return startFluentBitStdout(r.t, fluentBit(r.t), []string{"MSGRAPH_TENANT_ID=" + graphsim.DefaultTenantID, "MSGRAPH_CLIENT_ID=" + graphsim.DefaultClientID}, args...)
}

func mapGet(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if strings.EqualFold(m.Content[i].Value, key) {
			return m.Content[i+1]
		}
	}
	return nil
}

func mapSet(m *yaml.Node, key, value string) {
	if v := mapGet(m, key); v != nil {
		*v = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value}
		return
	}
	m.Content = append(m.Content,
		&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key},
		&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value})
}

func mapDel(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if strings.EqualFold(m.Content[i].Value, key) {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

func scalar(n *yaml.Node) string {
	if n == nil {
		return ""
	}
	return n.Value
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// exampleSim is a simulator holding n sign-ins created between from and to
// before now, all visible.
func exampleSim(t *testing.T, seed int64, n int, from, to time.Duration) *graphsim.Server {
	t.Helper()
	sim := graphsim.Start(t, graphsim.Options{Seed: seed})
	now := time.Now()
	rng := mrand.New(mrand.NewPCG(uint64(seed), 3))
	sim.Add(graphsim.Generate(rng, now.Add(-from), now.Add(-to), n, func(*mrand.Rand) time.Duration { return 0 })...)
	return sim
}

// jsonObjects decodes the complete lines of s that are JSON objects (Fluent
// Bit's own log lines, which start with "[", are skipped). Called on output
// still being written, it ignores the unfinished last line.
func jsonObjects(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	s = s[:strings.LastIndexByte(s, '\n')+1]
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Errorf("not a JSON object: %v: %.200s", err, line)
			continue
		}
		out = append(out, m)
	}
	return out
}

// splitHealth separates health records from events.
func splitHealth(recs []map[string]any) (events, health []map[string]any) {
	for _, r := range recs {
		if _, ok := r["msgraph_warning"]; ok {
			health = append(health, r)
		} else {
			events = append(events, r)
		}
	}
	return events, health
}

// waitFor polls cond every 200 ms until it holds or limit passes, failing
// at once if Fluent Bit exits.
func waitFor(t *testing.T, fb *fbProc, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v\n%s", what, limit, fb.out.String())
		}
		select {
		case err := <-fb.done:
			fb.done <- err
			t.Fatalf("fluent-bit exited (%v)\n%s", err, fb.out.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkEvents checks that got holds every simulator event exactly once,
// each equal, key for key and value for value, to the object Graph served.
// loose compares numbers as float64, for encoders that cannot tell 1 from
// 1.0.
func checkEvents(t *testing.T, sim *graphsim.Server, got []map[string]any, loose bool) {
	t.Helper()
	want := map[string]graphsim.Event{}
	for _, e := range sim.Events() {
		want[e.ID] = e
	}
	seen := map[string]int{}
	for _, g := range got {
		id, _ := g["id"].(string)
		seen[id]++
		w, ok := want[id]
		if !ok {
			t.Errorf("unknown record %v", g)
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(w.JSON))
		dec.UseNumber()
		var wm map[string]any
		if err := dec.Decode(&wm); err != nil {
			t.Fatal(err)
		}
		a, b := canon(any(wm)), canon(any(g))
		if loose {
			a, b = floats(a), floats(b)
		}
		if !sameValue(a, b) && seen[id] == 1 {
			t.Errorf("%s differs from what Graph served:\n got %v\nwant %v", id, g, wm)
		}
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("%s delivered %d times", id, seen[id])
		}
	}
}

// sameValue is reflect.DeepEqual except that floats may differ in the 17th
// significant digit: Fluent Bit's JSON encoder (stdout, file, HTTP
// outputs) writes doubles with 16 (-122.09027099609375 becomes
// -122.0902709960938).
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, e := range x {
			if f, ok := y[k]; !ok || !sameValue(e, f) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	case float64:
		y, ok := b.(float64)
		return ok && math.Abs(x-y) <= 1e-15*math.Max(math.Abs(x), math.Abs(y))
	}
	return reflect.DeepEqual(a, b)
}

// floats turns every number into a float64.
func floats(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = floats(e)
		}
	case []any:
		for i, e := range x {
			x[i] = floats(e)
		}
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	}
	return v
}

// TestExampleStdoutRuns runs examples/fluent-bit.yaml, loaded with -e as its
// header says: every sign-in appears once on stdout as the Graph object.
func TestExampleStdoutRuns(t *testing.T) {
	fluentBit(t)
	sim := exampleSim(t, 61, 120, 10*time.Minute, 0)
	r := prepareExample(t, "fluent-bit.yaml", sim)
	fb, stdout := r.start("-e", plugin(t))
	var events []map[string]any
	waitFor(t, fb, 60*time.Second, "120 records on stdout", func() bool {
		events, _ = splitHealth(jsonObjects(t, stdout.String()))
		return len(events) >= 120
	})
	fb.stop(t)
	events, _ = splitHealth(jsonObjects(t, stdout.String()))
	for _, e := range events {
		delete(e, "date") // json_lines adds the record time under "date"
	}
	checkEvents(t, sim, events, false)
}

// TestExampleFileRuns runs examples/outputs/file.yaml: the file holds every
// sign-in once, one Graph object per line.
func TestExampleFileRuns(t *testing.T) {
	fluentBit(t)
	sim := exampleSim(t, 62, 150, 10*time.Minute, 0)
	r := prepareExample(t, "outputs/file.yaml", sim)
	out := r.outputs("file")[0]
	logDir := filepath.Join(r.dir, "log", "msgraph") // does not exist: mkdir makes it
	mapSet(out, "path", logDir)
	path := filepath.Join(logDir, scalar(mapGet(out, "file")))
	fb, _ := r.start()
	read := func() []map[string]any {
		raw, _ := os.ReadFile(path)
		return jsonObjects(t, string(raw))
	}
	waitFor(t, fb, 60*time.Second, "150 records in "+path, func() bool { return len(read()) >= 150 })
	fb.stop(t)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
		if !strings.HasPrefix(line, "{") {
			t.Fatalf("line %d is not one JSON object: %.200s", i+1, line)
		}
	}
	events, health := splitHealth(read())
	if len(health) > 0 {
		t.Errorf("health records in the file: %v", health)
	}
	checkEvents(t, sim, events, false)
}

// TestExampleHealthRoutingRuns runs examples/health-routing.yaml while the
// newest event is older than drift_warning: events reach stdout, the
// drift_exceeded record reaches the health file and only it.
func TestExampleHealthRoutingRuns(t *testing.T) {
	fluentBit(t)
	sim := exampleSim(t, 63, 80, 10*time.Minute, 3*time.Minute)
	r := prepareExample(t, "health-routing.yaml", sim)
	for _, in := range r.section("inputs") {
		mapSet(in, "drift_warning", "1m")
	}
	out := r.outputs("file")[0]
	mapSet(out, "path", r.dir)
	healthFile := filepath.Join(r.dir, scalar(mapGet(out, "file")))
	fb, stdout := r.start()
	readHealth := func() []map[string]any {
		raw, _ := os.ReadFile(healthFile)
		return jsonObjects(t, string(raw))
	}
	var events []map[string]any
	waitFor(t, fb, 60*time.Second, "80 events on stdout and a health record in "+healthFile, func() bool {
		events, _ = splitHealth(jsonObjects(t, stdout.String()))
		return len(events) >= 80 && len(readHealth()) > 0
	})
	fb.stop(t)
	events, onStdout := splitHealth(jsonObjects(t, stdout.String()))
	if len(onStdout) > 0 {
		t.Errorf("health records reached the events' output: %v", onStdout)
	}
	for _, e := range events {
		delete(e, "date")
	}
	checkEvents(t, sim, events, false)
	stray, inFile := splitHealth(readHealth())
	if len(stray) > 0 {
		t.Errorf("events in the health file: %v", stray)
	}
	codes := map[any]bool{}
	for _, h := range inFile {
		codes[h["msgraph_warning"]] = true
	}
	if !codes["drift_exceeded"] {
		t.Errorf("no drift_exceeded record in the health file: %v", inFile)
	}
}

// TestExampleContainerConfigRuns runs the image's own configuration
// (examples/container/fluent-bit.yaml, filesystem buffering included) and
// scrapes the plugin's metrics where it serves them.
func TestExampleContainerConfigRuns(t *testing.T) {
	fluentBit(t)
	sim := exampleSim(t, 64, 100, 10*time.Minute, 0)
	r := prepareExample(t, "container/fluent-bit.yaml", sim)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	for _, in := range r.section("inputs") {
		mapSet(in, "metrics_listen", addr)
	}
	fb, stdout := r.start()
	var events []map[string]any
	waitFor(t, fb, 60*time.Second, "100 records on stdout", func() bool {
		events, _ = splitHealth(jsonObjects(t, stdout.String()))
		return len(events) >= 100
	})
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fb.stop(t)
	for _, e := range events {
		delete(e, "date")
	}
	checkEvents(t, sim, events, false)
	if !regexp.MustCompile(`(?m)^msgraph_events_total\{[^}]*source="signins"[^}]*\} 100$`).Match(body) {
		t.Errorf("no msgraph_events_total of 100 for signins in\n%s", body)
	}
	checkScrapedNames(t, string(body))
	if _, err := os.Stat(filepath.Join(r.dir, "buffer")); err != nil {
		t.Errorf("storage.path was not used: %v", err)
	}
}

// TestExampleSyslogRuns runs examples/outputs/syslog.yaml against a TLS
// syslog receiver: every sign-in arrives once as an RFC 5424 message whose
// MSG is the Graph object in JSON and whose timestamp is its
// createdDateTime; the drift_exceeded record arrives as a warning.
func TestExampleSyslogRuns(t *testing.T) {
	fluentBit(t)
	sim := exampleSim(t, 65, 100, 10*time.Minute, 3*time.Minute)
	r := prepareExample(t, "outputs/syslog.yaml", sim)
	for _, in := range r.section("inputs") {
		mapSet(in, "drift_warning", "1m")
	}
	srv := startSyslogTLS(t)
	ca := writeFile(t, filepath.Join(r.dir, "siem-ca.pem"), string(srv.caPEM))
	for _, o := range r.outputs("syslog") {
		mapSet(o, "host", "127.0.0.1")
		mapSet(o, "port", strconv.Itoa(srv.port()))
		mapSet(o, "tls.ca_file", ca)
	}
	fb, _ := r.start()
	waitFor(t, fb, 60*time.Second, "100 sign-ins and a warning over syslog", func() bool {
		msgs := srv.messages()
		n, h := 0, 0
		for _, m := range msgs {
			if m.msgID == "signin" {
				n++
			} else {
				h++
			}
		}
		return n >= 100 && h > 0
	})
	fb.stop(t)
	byID := map[string]graphsim.Event{}
	for _, e := range sim.Events() {
		byID[e.ID] = e
	}
	var events []map[string]any
	warned := false
	for _, m := range srv.messages() {
		if m.appName != "msgraph" {
			t.Errorf("APP-NAME %q", m.appName)
		}
		var rec map[string]any
		dec := json.NewDecoder(strings.NewReader(m.msg))
		dec.UseNumber()
		if err := dec.Decode(&rec); err != nil {
			t.Errorf("MSG is not JSON: %v: %.300s", err, m.msg)
			continue
		}
		// The record was encoded before the key holding it was added.
		if _, ok := rec["syslog_json"]; ok {
			t.Errorf("MSG holds its own key: %.300s", m.msg)
		}
		switch m.msgID {
		case "signin":
			if m.pri != 13*8+6 {
				t.Errorf("PRI %d for an event", m.pri)
			}
			id, _ := rec["id"].(string)
			if w, ok := byID[id]; ok && !m.ts.Equal(w.Created.Truncate(time.Microsecond)) {
				t.Errorf("%s: TIMESTAMP %v, want %v", id, m.ts, w.Created)
			}
			events = append(events, rec)
		case "health":
			if m.pri != 13*8+4 {
				t.Errorf("PRI %d for a warning", m.pri)
			}
			if rec["msgraph_warning"] == "drift_exceeded" {
				warned = true
			}
		default:
			t.Errorf("MSGID %q", m.msgID)
		}
	}
	checkEvents(t, sim, events, true)
	if !warned {
		t.Error("no drift_exceeded warning arrived")
	}
}

// syslogMsg is one RFC 5424 message as the receiver parsed it.
type syslogMsg struct {
	pri            int
	ts             time.Time
	appName, msgID string
	msg            string
}

// syslogTLS is a syslog receiver on TCP with TLS, one message per line
// (Fluent Bit's framing), with its own CA.
type syslogTLS struct {
	ln    net.Listener
	caPEM []byte
	mu    sync.Mutex
	msgs  []syslogMsg
	errs  []error
	wg    sync.WaitGroup
}

// rfc5424 matches Fluent Bit's RFC 5424 line: the MSG follows the
// structured data ("-") and a UTF-8 byte order mark.
var rfc5424 = regexp.MustCompile(`^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) - \x{FEFF}(.*)$`)

func startSyslogTLS(t *testing.T) *syslogTLS {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	s := &syslogTLS{ln: ln, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, err := range s.errs {
			t.Errorf("syslog receiver: %v", err)
		}
	})
	return s
}

func (s *syslogTLS) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *syslogTLS) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			sc := bufio.NewScanner(c)
			sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
			for sc.Scan() {
				s.add(sc.Text())
			}
		}()
	}
}

func (s *syslogTLS) add(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := rfc5424.FindStringSubmatch(line)
	if m == nil {
		s.errs = append(s.errs, fmt.Errorf("not an RFC 5424 message with a MSG: %.300q", line))
		return
	}
	pri, _ := strconv.Atoi(m[1])
	ts, err := time.Parse(time.RFC3339Nano, m[2])
	if err != nil {
		s.errs = append(s.errs, fmt.Errorf("TIMESTAMP %q: %v", m[2], err))
	}
	s.msgs = append(s.msgs, syslogMsg{pri: pri, ts: ts, appName: m[4], msgID: m[6], msg: m[7]})
}

func (s *syslogTLS) messages() []syslogMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]syslogMsg(nil), s.msgs...)
}
