package test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/records"
)

// ackReceiver is a forward-protocol server that stores each message before
// it acknowledges it (Fluent Bit's forward output with
// require_ack_response on waits for that acknowledgement before it drops
// the chunk), and that can be stopped and started again on the same port,
// as a SIEM forwarder that goes down for a while.
//
// It remembers which payload each record came in and from which Fluent
// Bit (the epoch the test set when it started that process), so that a
// chunk one Fluent Bit sent again (its retry after an acknowledgement it
// did not read) is told apart from an event the plugin delivered twice.
// With memory buffering only the same process can send a chunk again; an
// identical payload from another process is the plugin's duplicate.
type ackReceiver struct {
	addr string

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]bool
	up      bool
	got     []arrival
	epoch   int
	copies  map[payload]int // times each payload arrived
	acks    int
	refused int // messages read while stopping, neither stored nor acknowledged
	errs    []error
	wg      sync.WaitGroup
}

type payload struct {
	epoch int
	sum   [32]byte
}

// arrival is one record as it reached the receiver.
type arrival struct {
	records.Event
	// copy is 0 for a record of a payload's first arrival, n for the nth
	// time the same Fluent Bit sent the same payload again.
	copy int
}

func startAckReceiver(t *testing.T) *ackReceiver {
	t.Helper()
	r := &ackReceiver{conns: map[net.Conn]bool{}, copies: map[payload]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serveOn(ln)
	t.Cleanup(r.stop)
	return r
}

func (r *ackReceiver) port() int {
	_, p, _ := net.SplitHostPort(r.addr)
	n, _ := strconv.Atoi(p)
	return n
}

func (r *ackReceiver) serveOn(ln net.Listener) {
	r.mu.Lock()
	r.ln, r.up = ln, true
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			if !r.up {
				r.mu.Unlock()
				c.Close()
				return
			}
			r.conns[c] = true
			epoch := r.epoch
			r.wg.Add(1)
			r.mu.Unlock()
			go func() {
				defer r.wg.Done()
				r.serve(c, epoch)
			}()
		}
	}()
}

// stop closes the listener and every connection: Fluent Bit's next
// connection is refused and a message in flight is neither stored nor
// acknowledged. It is idempotent.
func (r *ackReceiver) stop() {
	r.mu.Lock()
	r.up = false
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// start listens again on the same address.
func (r *ackReceiver) start(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			r.serveOn(ln)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("receiver cannot listen on %s again: %v", r.addr, err)
}

func (r *ackReceiver) fail(err error) {
	r.mu.Lock()
	if r.up {
		r.errs = append(r.errs, err)
	}
	r.mu.Unlock()
}

// setEpoch marks the connections accepted from now on as another Fluent
// Bit's.
func (r *ackReceiver) setEpoch(n int) {
	r.mu.Lock()
	r.epoch = n
	r.mu.Unlock()
}

func (r *ackReceiver) serve(c net.Conn, epoch int) {
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		c.Close()
	}()
	rd := msgp.NewReader(bufio.NewReader(c))
	for {
		entries, chunk, err := readForwardMessage(rd)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, syscall.ECONNRESET) {
				r.fail(err)
			}
			return
		}
		evs, err := records.DecodeEvents(entries)
		if err != nil {
			r.fail(err)
			return
		}
		// Stored and acknowledged under one lock, so that stop never
		// falls between the two.
		r.mu.Lock()
		if !r.up {
			r.refused++
			r.mu.Unlock()
			return
		}
		k := payload{epoch, sha256.Sum256(entries)}
		n := r.copies[k]
		r.copies[k] = n + 1
		for _, e := range evs {
			r.got = append(r.got, arrival{Event: e, copy: n})
		}
		if chunk != "" {
			var ack bytes.Buffer
			w := msgp.NewWriter(&ack)
			w.WriteMapHeader(1)
			w.WriteString("ack")
			w.WriteString(chunk)
			w.Flush()
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(ack.Bytes()); err == nil {
				r.acks++
			}
		}
		r.mu.Unlock()
	}
}

// readForwardMessage reads one Message, Forward or (Compressed)
// PackedForward message and returns its entries, uncompressed, and the
// chunk id Fluent Bit asks to have acknowledged ("" when it asks none).
func readForwardMessage(rd *msgp.Reader) (entries []byte, chunk string, err error) {
	n, err := rd.ReadArrayHeader()
	if err != nil {
		return nil, "", err
	}
	if _, err := rd.ReadString(); err != nil { // tag
		return nil, "", err
	}
	switch t, _ := rd.NextType(); t {
	case msgp.ArrayType: // Forward: [[time, record], ...]
		m, err := rd.ReadArrayHeader()
		if err != nil {
			return nil, "", err
		}
		var buf bytes.Buffer
		for range m {
			if _, err := rd.CopyNext(&buf); err != nil {
				return nil, "", err
			}
		}
		entries = buf.Bytes()
		n -= 2
	case msgp.BinType:
		if entries, err = rd.ReadBytes(nil); err != nil {
			return nil, "", err
		}
		n -= 2
	case msgp.StrType:
		s, err := rd.ReadString()
		if err != nil {
			return nil, "", err
		}
		entries = []byte(s)
		n -= 2
	default: // Message: time, record
		buf := bytes.NewBuffer([]byte{0x92})
		for range 2 {
			if _, err := rd.CopyNext(buf); err != nil {
				return nil, "", err
			}
		}
		entries = buf.Bytes()
		n -= 3
	}
	compressed := false
	for ; n > 0; n-- {
		opt := map[string]any{}
		if err := rd.ReadMapStrIntf(opt); err != nil {
			return nil, "", err
		}
		if opt["compressed"] == "gzip" {
			compressed = true
		}
		if c, ok := opt["chunk"].(string); ok {
			chunk = c
		}
	}
	if compressed {
		zr, err := gzip.NewReader(bytes.NewReader(entries))
		if err == nil {
			entries, err = io.ReadAll(zr)
		}
		if err != nil {
			return nil, "", err
		}
	}
	return entries, chunk, nil
}

// snapshot returns what arrived so far and the receiver's errors.
func (r *ackReceiver) snapshot() ([]arrival, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]arrival(nil), r.got...), append([]error(nil), r.errs...)
}

// ids returns the set of event ids received.
func (r *ackReceiver) ids() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]bool, len(r.got))
	for _, a := range r.got {
		if id, ok := a.Fields["id"].(string); ok {
			out[id] = true
		}
	}
	return out
}

// tally is an exactly-once check of the records received against the
// simulator's events.
type tally struct {
	events    int // events in the simulator
	due       int // of which visible long enough to be owed
	delivered int // due or not, received at least once
	dups      int // extra copies of an event that came in distinct payloads: the plugin's
	resent    int // extra copies that came in a payload the same Fluent Bit had sent already
	missed    int // due events never received
	pending   int // events not yet due and not received
	health    map[string]int
}

func (c tally) String() string {
	return fmt.Sprintf("%d events in Graph (%d due), %d delivered, %d duplicates, %d re-sent by Fluent Bit, %d missed, %d not yet due",
		c.events, c.due, c.delivered, c.dups, c.resent, c.missed, c.pending)
}

// check compares the arrivals with want, event by event: each due event
// (visible at or before dueBy) must have arrived, field for field and with
// its createdDateTime as the record time, and nothing else may arrive.
func check(t *testing.T, want []graphsim.Event, got []arrival, dueBy time.Time) tally {
	t.Helper()
	c := tally{events: len(want), health: map[string]int{}}
	first := map[string]records.Event{}
	for _, a := range got {
		if code, ok := a.Fields["msgraph_warning"].(string); ok {
			st, _ := a.Fields["status"].(string)
			c.health[code+"/"+st]++
			continue
		}
		id, _ := a.Fields["id"].(string)
		if _, ok := first[id]; !ok {
			first[id] = a.Event
			continue
		}
		if a.copy > 0 {
			c.resent++
		} else {
			c.dups++
		}
	}
	known := make(map[string]bool, len(want))
	for _, w := range want {
		known[w.ID] = true
		due := !w.Visible.After(dueBy)
		if due {
			c.due++
		}
		g, ok := first[w.ID]
		if !ok {
			if !due {
				c.pending++
				continue
			}
			c.missed++
			if c.missed <= 5 {
				t.Errorf("missed %s created %s, visible %s late", w.ID, w.Created.UTC().Format(time.RFC3339Nano), w.Visible.Sub(w.Created))
			}
			continue
		}
		c.delivered++
		if !g.Time.Equal(w.Created) {
			t.Errorf("%s: record time %s, want %s", w.ID, g.Time.UTC().Format(time.RFC3339Nano), w.Created.UTC().Format(time.RFC3339Nano))
		}
		if !sameJSON(t, w.JSON, g.Fields) {
			t.Errorf("%s: fields differ from Graph's object", w.ID)
		}
	}
	for id := range first {
		if !known[id] {
			t.Errorf("received %q, which is not one of Graph's events", id)
		}
	}
	return c
}

// healthTimeline says when the health records were emitted, relative to
// began: each code and status with its count and first and last time.
func healthTimeline(got []arrival, began time.Time) string {
	type span struct {
		n           int
		first, last time.Duration
	}
	spans := map[string]*span{}
	var order []string
	for _, a := range got {
		code, ok := a.Fields["msgraph_warning"].(string)
		if !ok {
			continue
		}
		st, _ := a.Fields["status"].(string)
		k := code + "/" + st
		at := a.Time.Sub(began).Round(time.Second)
		sp := spans[k]
		if sp == nil {
			sp = &span{first: at}
			spans[k] = sp
			order = append(order, k)
		}
		sp.n++
		sp.last = at
	}
	var b strings.Builder
	for _, k := range order {
		sp := spans[k]
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		if sp.n == 1 {
			fmt.Fprintf(&b, "%s at %s", k, sp.first)
		} else {
			fmt.Fprintf(&b, "%s ×%d from %s to %s", k, sp.n, sp.first, sp.last)
		}
	}
	return b.String()
}

// stopTERM sends SIGTERM, as Kubernetes or systemd do, and waits for a
// clean exit.
func (p *fbProc) stopTERM(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("fluent-bit exited with %v after SIGTERM", err)
		}
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("fluent-bit did not stop within 60s of SIGTERM\n%s", p.out.String())
	}
}

// sample is one line of a Prometheus text exposition.
var sample = regexp.MustCompile(`(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([^ \n]+)`)

// scrape reads a Prometheus endpoint and sums the samples of each metric
// whose labels contain every one of match (such as `name="msgraph.0"`).
// A failed scrape returns nil.
func scrape(url string, match ...string) map[string]float64 {
	cl := http.Client{Timeout: 3 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil
	}
	out := map[string]float64{}
	for _, m := range sample.FindAllStringSubmatch(string(body), -1) {
		ok := true
		for _, s := range match {
			ok = ok && strings.Contains(m[2], s)
		}
		if v, err := strconv.ParseFloat(m[3], 64); err == nil && ok {
			out[m[1]] += v
		}
	}
	return out
}

// scraper scrapes url every interval until stopped and keeps the last
// good answer, so that a counter is known up to the moment its process
// stops.
type scraper struct {
	mu   sync.Mutex
	last map[string]float64
	stop chan struct{}
	done chan struct{}
}

func startScraper(url string, every time.Duration, match ...string) *scraper {
	s := &scraper{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			if m := scrape(url, match...); m != nil {
				s.mu.Lock()
				s.last = m
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// finish takes a last scrape (when the process still answers), stops
// scraping and returns the last values.
func (s *scraper) finish(url string, match ...string) map[string]float64 {
	close(s.stop)
	<-s.done
	if m := scrape(url, match...); m != nil {
		return m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		return map[string]float64{}
	}
	return s.last
}

// logCount counts the lines of a log that contain s.
func logCount(log, s string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

var (
	logLevel  = regexp.MustCompile(`\[ ?(warn|error)\] `)
	logNumber = regexp.MustCompile(`[0-9a-f]*[0-9][0-9a-f.]*`)
)

// logSummary counts Fluent Bit's warning and error lines by their text,
// numbers and chunk names made #.
func logSummary(log string) map[string]int {
	out := map[string]int{}
	for _, l := range strings.Split(log, "\n") {
		loc := logLevel.FindStringIndex(l)
		if loc == nil {
			continue
		}
		msg := logNumber.ReplaceAllString(l[loc[0]:], "#")
		if len(msg) > 160 {
			msg = msg[:160] + "…"
		}
		out[msg]++
	}
	return out
}

// checkLog fails on a crash or a secret in Fluent Bit's output.
func checkLog(t *testing.T, log string, secrets ...string) {
	t.Helper()
	for _, bad := range []string{"panic", "SIGSEGV", "fatal error"} {
		if strings.Contains(log, bad) {
			t.Errorf("Fluent Bit output contains %q", bad)
		}
	}
	for _, s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("a secret appears in Fluent Bit's output")
		}
	}
}

// liveTraffic adds rate sign-ins a second, created now and visible after
// late, until began+d; the channel closes when it stops.
func liveTraffic(sim *graphsim.Server, rng *rand.Rand, rate float64, late graphsim.Lateness, began time.Time, d time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		last, owed := time.Now(), 0.0
		for now := range tick.C {
			owed += rate * now.Sub(last).Seconds()
			n := int(owed)
			owed -= float64(n)
			sim.Add(graphsim.Generate(rng, last, now, n, late)...)
			last = now
			if now.Sub(began) >= d {
				return
			}
		}
	}()
	return done
}

// runUntilAll lets Fluent Bit run until the receiver holds every event
// the simulator has, or deadline passes.
func runUntilAll(t *testing.T, fb *fbProc, recv *ackReceiver, sim *graphsim.Server, deadline time.Time) {
	t.Helper()
	for {
		fb.run(t, 2*time.Second)
		ids := recv.ids()
		complete := true
		for _, e := range sim.Events() {
			if !ids[e.ID] {
				complete = false
				break
			}
		}
		if complete || time.Now().After(deadline) {
			return
		}
	}
}
