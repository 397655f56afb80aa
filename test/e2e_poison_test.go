package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/records"
)

// poison is a sign-in that Fluent Bit's outputs cannot carry as Graph
// sends it, or that cannot be delivered at all.
type poison struct {
	id      string
	members string // JSON members beside id and createdDateTime
	first   bool   // the members come before id and createdDateTime
	// What the plugin must do with it: skip it, or deliver it with a
	// subtree as JSON text, numbers as their text, text with U+FFFD.
	skip, deep, number, text bool
}

// poisons are the records the test mixes with ordinary sign-ins: nesting
// on both sides of records.SafeDepth and past the depths at which
// Fluent Bit's encoders crash (17 and 28) or drop records (64), up to the
// deepest the decoder accepts (512) and past it; numbers float64 cannot
// hold; invalid UTF-8 and lone surrogate escapes.
func poisons() []poison {
	deep := func(levels int) poison {
		return poison{id: fmt.Sprintf("nested-%d", levels), members: `"x":` + nestedJSON(levels-1), deep: levels > records.SafeDepth}
	}
	tooDeep := func(levels int, first bool) poison {
		return poison{id: fmt.Sprintf("nested-%d", levels), members: `"x":` + nestedJSON(levels-1), first: first, skip: true}
	}
	return []poison{
		deep(records.SafeDepth), // the deepest record delivered as it is
		deep(records.SafeDepth + 1),
		deep(20),
		deep(40),
		deep(70),
		deep(512),
		tooDeep(513, false),
		tooDeep(600, true), // its id after the deep member
		tooDeep(601, false),
		{id: "number-1E400", members: `"riskScore":1E400,"ok":1.5e300`, number: true},
		{id: "number--1E400", members: `"riskScore":-1E400,"ok":-4.9e-324`, number: true},
		{id: "number-1e-400", members: `"riskScore":1e-400,"zero":0e-400`, number: true},
		{id: "text-utf8", members: "\"userDisplayName\":\"ab\xff\xfe c\xe2\x82 d\xc0\xaf\"", text: true},
		{id: "text-surrogate", members: `"userDisplayName":"x\ud800y\udc00z\ud83d\ude00"`, text: true},
	}
}

// nestedJSON returns a JSON value whose deepest container is levels deep
// (the value itself being level 1): objects and arrays in turn, each with
// values of its own beside the next level.
func nestedJSON(levels int) string {
	var b strings.Builder
	for k := 1; k <= levels; k++ {
		if k%2 == 1 {
			fmt.Fprintf(&b, `{"level":%d,"s":"é \"q\" \\ / \u00e9","next":`, k)
		} else {
			fmt.Fprintf(&b, `[%d,1.5e-3,true,null,`, k)
		}
	}
	b.WriteString(`"leaf"`)
	for k := levels; k >= 1; k-- {
		b.WriteByte("]}"[k%2])
	}
	return b.String()
}

// TestEndToEndPoisonRecords sends one Graph page of sign-ins that mixes
// ordinary ones with poisons (an ordinary one before and after each)
// through a real Fluent Bit to its stdout output (json_lines) and its file
// output (plain: one JSON object a line). The page is one batch, so one
// chunk: an encoder that choked on one record and dropped the rest of the
// chunk would lose the neighbours. In both outputs every line must be
// valid JSON (and UTF-8), every deliverable record must arrive exactly
// once as Graph sent it, changed only as the plugin documents, the records
// nested more than 512 levels must be absent and named in an
// invalid_records health record, and the changed ones counted and named in
// an altered_records one.
func TestEndToEndPoisonRecords(t *testing.T) {
	bin := fluentBit(t)
	so := plugin(t)
	sim := graphsim.Start(t, graphsim.Options{Seed: 31})
	rng := rand.New(rand.NewPCG(31, 1))

	// One slot a second, oldest first: ordinary, poison, ordinary, ...
	base := time.Now().Add(-3 * time.Minute).Truncate(time.Second)
	slot := 0
	next := func() time.Time { slot++; return base.Add(time.Duration(slot) * time.Second) }
	var evs []graphsim.Event
	beside := map[string][]string{} // ordinary id -> the poisons next to it
	last := ""                      // the latest ordinary id
	ordinary := func(prev string) {
		at := next()
		e := graphsim.Generate(rng, at, at.Add(time.Millisecond), 1, nil)
		if prev != "" {
			beside[last] = append(beside[last], prev)
			beside[e[0].ID] = []string{prev}
		}
		last = e[0].ID
		evs = append(evs, e...)
	}
	cases := poisons()
	ordinary("")
	for _, c := range cases {
		at := next()
		head := fmt.Sprintf(`"id":%q,"createdDateTime":%q`, c.id, at.UTC().Format(graphsim.DateTimeLayout))
		body := "{" + head + "," + c.members + "}"
		if c.first {
			body = "{" + c.members + "," + head + "}"
		}
		evs = append(evs, graphsim.Event{ID: c.id, Created: at, Visible: at, JSON: []byte(body)})
		ordinary(c.id)
	}
	sim.Add(evs...)
	want := map[string]graphsim.Event{} // the records that must arrive
	skipped := map[string]bool{}        // those that must not
	for _, e := range evs {
		want[e.ID] = e
	}
	for _, c := range cases {
		if c.skip {
			skipped[c.id] = true
			delete(want, c.id)
		}
	}

	dir := t.TempDir()
	fileOut := filepath.Join(dir, "records.json")
	conf := writeFile(t, filepath.Join(dir, "fluent-bit.yaml"), fmt.Sprintf(`service:
  flush: 1
  grace: 2
  log_level: info
plugins:
  - %s
pipeline:
  inputs:
    - name: msgraph
      tag: entra.signins
      log_level: debug
      tenant_id: %s
      client_id: %s
      client_secret: %s
      authority_host: %s
      graph_host: %s
      poll_interval: 1s
      lookback: 5s
      reconcile: off
      initial_lookback: 10m
      db: %s
  outputs:
    - name: stdout
      match: '*'
      format: json_lines
    - name: file
      match: '*'
      path: %s
      file: %s
      format: plain
`, so, graphsim.DefaultTenantID, graphsim.DefaultClientID, graphsim.DefaultClientSecret, sim.URL(), sim.URL(),
		filepath.Join(dir, "state.db"), dir, filepath.Base(fileOut)))

	fb, stdout := startFluentBitStdout(t, bin, nil, "-c", conf)
	file := func() string { b, _ := os.ReadFile(fileOut); return string(b) }
	// Until every record and both health records are in both outputs; on
	// a timeout or a crash the checks below say what is missing.
	deadline := time.Now().Add(20 * time.Second)
	exited := false
	for !arrivedAll(stdout.String(), want) || !arrivedAll(file(), want) {
		if time.Now().After(deadline) {
			t.Errorf("not every record in both outputs within 20s")
			break
		}
		select {
		case err := <-fb.done:
			t.Errorf("fluent-bit exited (%v)", err)
			exited = true
		case <-time.After(200 * time.Millisecond):
		}
		if exited {
			break
		}
	}
	if !exited {
		fb.run(t, 3*time.Second) // a duplicate, or a record that should not come, would show now
		fb.stop(t)
	}
	log := fb.out.String()
	checkLog(t, log, graphsim.DefaultClientSecret)

	// The whole page was one batch: the plugin read every deliverable
	// record in one page, and all the other pages were empty.
	var pages []int
	for _, m := range pageLine.FindAllStringSubmatch(log, -1) {
		if n, _ := strconv.Atoi(m[1]); n > 0 {
			pages = append(pages, n)
		}
	}
	if len(pages) != 1 || pages[0] != len(want) {
		t.Errorf("the %d deliverable records came in pages of %v events, not in one page (one batch, one chunk)", len(want), pages)
	}

	for _, out := range []struct{ name, text string }{{"stdout", stdout.String()}, {"file", file()}} {
		lines, events, health := checkPoisonOutput(t, out.name, out.text, want, skipped, beside)
		var codes []string
		for _, h := range health {
			codes = append(codes, fmt.Sprint(h["msgraph_warning"]))
		}
		t.Logf("%s: %d lines; %d records of %d sign-ins sent (%d skipped); health records %v", out.name, lines, events, len(evs), len(skipped), codes)
		checkPoisonHealth(t, out.name, health, cases)
	}
	if t.Failed() {
		t.Log(log)
	}
}

// pageLine is the plugin's debug line for each page it read.
var pageLine = regexp.MustCompile(`query \S+: page of (\d+) events`)

// arrivedAll reports whether the complete lines of out hold every id of
// want and both an invalid_records and an altered_records health record.
func arrivedAll(out string, want map[string]graphsim.Event) bool {
	have := map[string]bool{}
	for _, l := range strings.Split(out[:strings.LastIndexByte(out, '\n')+1], "\n") {
		var r struct {
			ID      string `json:"id"`
			Warning string `json:"msgraph_warning"`
		}
		if json.Unmarshal([]byte(l), &r) == nil {
			have[r.ID], have["health:"+r.Warning] = true, true
		}
	}
	for id := range want {
		if !have[id] {
			return false
		}
	}
	return have["health:invalid_records"] && have["health:altered_records"]
}

// checkPoisonOutput checks one output's text: every line a JSON object in
// valid UTF-8, every record of want there once and as the plugin delivers
// it, none of skipped. It returns the number of lines and of records, and
// the health records.
func checkPoisonOutput(t *testing.T, name, out string, want map[string]graphsim.Event, skipped map[string]bool, beside map[string][]string) (lines, events int, health []map[string]any) {
	t.Helper()
	all := strings.Split(out, "\n")
	if cut := all[len(all)-1]; cut != "" {
		t.Errorf("%s: the last line is cut: %.200q", name, cut)
	}
	var valid strings.Builder
	for i, l := range all[:len(all)-1] {
		if !json.Valid([]byte(l)) || !utf8.ValidString(l) || !strings.HasPrefix(l, "{") {
			t.Errorf("%s: line %d is not a JSON object in UTF-8: %.300q", name, i+1, l)
			continue
		}
		valid.WriteString(l + "\n")
	}
	recs, health := splitHealth(jsonObjects(t, valid.String()))
	seen := map[string]int{}
	for _, g := range recs {
		id, _ := g["id"].(string)
		seen[id]++
		w, ok := want[id]
		switch {
		case skipped[id]:
			t.Errorf("%s: %s, which is nested more than 512 levels, was delivered", name, id)
			continue
		case !ok:
			t.Errorf("%s: a record that is none of the sign-ins sent: %.300v", name, g)
			continue
		case seen[id] > 1:
			continue
		}
		delete(g, "date") // json_lines adds the record time under "date"
		for _, d := range delivered("", decodeJSON(t, w.JSON), g, 1) {
			t.Errorf("%s: %s: %s", name, id, d)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(want)) {
		switch n := seen[id]; {
		case n == 0 && beside[id] != nil:
			t.Errorf("%s: %s, the ordinary sign-in next to %s, is missing", name, id, strings.Join(beside[id], " and "))
		case n != 1:
			t.Errorf("%s: %s arrived %d times", name, id, n)
		}
	}
	return len(all) - 1, len(recs), health
}

// checkPoisonHealth checks that one invalid_records record counts and
// names the skipped poisons, and one altered_records record counts and
// names the altered ones, each kind of change apart, and names no other.
func checkPoisonHealth(t *testing.T, name string, health []map[string]any, cases []poison) {
	t.Helper()
	byCode := map[string][]map[string]any{}
	for _, h := range health {
		code, _ := h["msgraph_warning"].(string)
		byCode[code] = append(byCode[code], h)
	}
	var skipped, deep, numbers, text, unaltered []string
	for _, c := range cases {
		for _, k := range []struct {
			on  bool
			ids *[]string
		}{{c.skip, &skipped}, {c.deep, &deep}, {c.number, &numbers}, {c.text, &text}, {!c.skip && !c.deep && !c.number && !c.text, &unaltered}} {
			if k.on {
				*k.ids = append(*k.ids, c.id)
			}
		}
	}
	// An id as the messages and the ids field list it.
	listed := func(s, id string) bool { return strings.Contains(s+",", id+",") || strings.Contains(s, id+")") }

	if inv := byCode["invalid_records"]; len(inv) != 1 {
		t.Errorf("%s: %d invalid_records health records, want 1: %v", name, len(inv), inv)
	} else {
		if n := fmt.Sprint(inv[0]["count"]); n != strconv.Itoa(len(skipped)) {
			t.Errorf("%s: invalid_records counts %s, want %d", name, n, len(skipped))
		}
		ids := fmt.Sprint(inv[0]["ids"])
		for _, id := range skipped {
			if !listed(ids, id) {
				t.Errorf("%s: invalid_records does not name %s: ids %q", name, id, ids)
			}
		}
	}
	alt := byCode["altered_records"]
	if len(alt) != 1 {
		t.Errorf("%s: %d altered_records health records, want 1: %v", name, len(alt), alt)
		return
	}
	msg := fmt.Sprint(alt[0]["message"])
	for _, a := range []struct {
		key string
		ids []string
	}{{"deep_count", deep}, {"number_count", numbers}, {"text_count", text}} {
		if n := fmt.Sprint(alt[0][a.key]); n != strconv.Itoa(len(a.ids)) {
			t.Errorf("%s: altered_records has %s %s, want %d", name, a.key, n, len(a.ids))
		}
		for _, id := range a.ids {
			if !listed(msg, id) {
				t.Errorf("%s: altered_records does not name %s: %s", name, id, msg)
			}
		}
	}
	for _, id := range unaltered {
		if listed(msg, id) {
			t.Errorf("%s: altered_records names %s, which was delivered as sent: %s", name, id, msg)
		}
	}
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%v: %.200q", err, b)
	}
	return v
}

// delivered compares what an output wrote for a value (got) with what
// Graph sent (sent, at the given depth; the record's own map is 1), as the
// plugin delivers it: a container deeper than records.SafeDepth as a
// string of JSON text of the same meaning, a number float64 cannot hold as
// the string of its text, everything else as sent (Go's decoder replaces
// invalid UTF-8 and lone surrogates in sent with U+FFFD, as the plugin
// does). It returns the differences.
func delivered(path string, sent, got any, depth int) []string {
	switch s := sent.(type) {
	case map[string]any, []any:
		if depth > records.SafeDepth {
			str, ok := got.(string)
			switch {
			case !ok:
				return []string{fmt.Sprintf("%s: a container at depth %d arrived as %T, not as a string of its JSON text", path, depth, got)}
			case !json.Valid([]byte(str)):
				return []string{fmt.Sprintf("%s: the string of a subtree at depth %d is not valid JSON: %.200q", path, depth, str)}
			}
			dec := json.NewDecoder(strings.NewReader(str))
			dec.UseNumber()
			var v any
			if dec.Decode(&v) != nil || !reflect.DeepEqual(v, sent) {
				return []string{fmt.Sprintf("%s: the JSON text of a subtree at depth %d is not what was sent: %.200q", path, depth, str)}
			}
			return nil
		}
		if m, ok := s.(map[string]any); ok {
			g, ok := got.(map[string]any)
			if !ok || len(g) != len(m) {
				return []string{fmt.Sprintf("%s: an object of %d members arrived as %.200v", path, len(m), got)}
			}
			var diffs []string
			for k, v := range m {
				diffs = append(diffs, delivered(path+"."+k, v, g[k], depth+1)...)
			}
			return diffs
		}
		a := s.([]any)
		g, ok := got.([]any)
		if !ok || len(g) != len(a) {
			return []string{fmt.Sprintf("%s: an array of %d elements arrived as %.200v", path, len(a), got)}
		}
		var diffs []string
		for i := range a {
			diffs = append(diffs, delivered(fmt.Sprintf("%s[%d]", path, i), a[i], g[i], depth+1)...)
		}
		return diffs
	case json.Number:
		if beyondFloat64(string(s)) {
			if got != string(s) {
				return []string{fmt.Sprintf("%s: %s, beyond float64, arrived as %T %v, not as the string %q", path, s, got, got, string(s))}
			}
			return nil
		}
		if g, ok := got.(json.Number); !ok || !sameValue(canon(s), canon(g)) {
			return []string{fmt.Sprintf("%s: %s arrived as %T %v", path, s, got, got)}
		}
		return nil
	}
	if !reflect.DeepEqual(sent, got) {
		return []string{fmt.Sprintf("%s: %#v arrived as %#v", path, sent, got)}
	}
	return nil
}

// beyondFloat64 reports whether float64 cannot hold the number: it is out
// of range, or it is not zero and would become 0.
func beyondFloat64(text string) bool {
	f, err := strconv.ParseFloat(text, 64)
	mantissa, _, _ := strings.Cut(strings.ToLower(text), "e")
	return err != nil || (f == 0 && strings.ContainsAny(mantissa, "123456789"))
}
