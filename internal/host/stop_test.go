package host_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/host"
	"github.com/in-msgraph/in_msgraph/internal/input"
)

// gate holds Graph's list requests while it is shut, until it opens or
// their context ends: a page that takes as long as it likes to arrive.
type gate struct {
	mu      sync.Mutex
	opened  chan struct{} // nil while open
	blocked chan struct{} // a token per request held
}

func newGate() *gate { return &gate{blocked: make(chan struct{}, 100)} }

func (g *gate) close() { g.mu.Lock(); g.opened = make(chan struct{}); g.mu.Unlock() }

func (g *gate) open() {
	g.mu.Lock()
	if g.opened != nil {
		close(g.opened)
		g.opened = nil
	}
	g.mu.Unlock()
}

func (g *gate) RoundTrip(req *http.Request) (*http.Response, error) {
	g.mu.Lock()
	opened := g.opened
	g.mu.Unlock()
	if opened != nil && strings.Contains(req.URL.Path, "/auditLogs/") {
		g.blocked <- struct{}{}
		select {
		case <-opened:
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	return http.DefaultTransport.RoundTrip(req)
}

// exit calls Exit for thread and fails if it does not return: Fluent
// Bit's shutdown must never hang on the plugin.
func (r *rig) exit(thread host.Thread, want host.Handle) {
	r.t.Helper()
	type result struct {
		h   host.Handle
		err error
	}
	done := make(chan result, 1)
	go func() {
		h, err := r.h.Exit(thread)
		done <- result{h, err}
	}()
	select {
	case res := <-done:
		if res.err != nil || res.h != want {
			r.t.Errorf("Exit on thread %d = %d, %v; want %d", thread, res.h, res.err, want)
		}
	case <-time.After(30 * time.Second):
		r.t.Fatalf("Exit on thread %d did not return", thread)
	}
}

// TestStopWithBatchesInFlight stops four inputs the way Fluent Bit does
// (one exit per input, on its own thread, latest first) while each is at
// a different point: D with its next page read but not handed over yet,
// C with a page request that never answers, B with a batch handed over
// whose outcome is reported only after D's exit, A paused while its next
// page was being read. Then the inputs
// start again on the same state files, as after a restart. Every input
// must deliver every event exactly once over both runs: what Fluent Bit
// took is committed, what it did not take is read again.
func TestStopWithBatchesInFlight(t *testing.T) {
	r := newRig(t)
	r.h.Wait = 0 // as in production: Collect never waits for Graph
	ga, gc := newGate(), newGate()
	r.tweak = func(name string, o *input.Options) {
		switch name {
		case "msgraph.0":
			o.Transport = ga
		case "msgraph.2":
			o.Transport = gc
		}
	}
	dbs := []string{"a.db", "b.db", "c.db", "d.db"}
	var hs []host.Handle
	for i, db := range dbs {
		hs = append(hs, r.init(r.props(db, "page_size", "5", "poll_interval", "60s"), true, host.Thread(i+1)))
	}
	a, b, c, d := hs[0], hs[1], hs[2], hs[3]
	delivered := make([][]string, len(hs))
	// take collects once from input i and accepts what it hands over.
	take := func(i int) bool {
		r.clk.Advance(time.Second)
		batch, _ := r.h.Collect(hs[i])
		if batch == nil {
			time.Sleep(2 * time.Millisecond)
			return false
		}
		delivered[i] = append(delivered[i], signInIDs(t, batch)...)
		r.h.Handed(hs[i], true)
		return true
	}
	for i := range hs {
		for !take(i) {
		}
	}

	// C: its next page request hangs.
	gc.close()
	for len(gc.blocked) == 0 {
		take(2)
	}
	// A: paused while its next page is read; the page arrives after the
	// pause, and A holds it.
	ga.close()
	for len(ga.blocked) == 0 {
		take(0)
	}
	r.h.Pause(1)
	ga.open()
	r.h.Wait = time.Minute // let the read end
	if batch, _ := r.h.Collect(a); batch != nil {
		t.Fatal("a paused input handed a batch over")
	}
	r.h.Wait = 0
	// B: a batch is handed over; Fluent Bit is still appending it when
	// D's exit comes.
	var handed []byte
	for handed == nil {
		r.clk.Advance(time.Second)
		handed, _ = r.h.Collect(b)
		time.Sleep(2 * time.Millisecond)
	}
	ids := signInIDs(t, handed)
	r.exit(4, d)
	delivered[1] = append(delivered[1], ids...)
	r.h.Handed(b, true)
	r.exit(3, c)
	r.exit(2, b)
	r.exit(1, a)
	if r.h.Len() != 0 {
		t.Fatalf("%d instances left after every exit", r.h.Len())
	}

	// Fluent Bit starts again with the same state files.
	r.h = newHost(r)
	for i, db := range dbs {
		hs[i] = r.init(r.props(db, "page_size", "5", "poll_interval", "60s"), true, host.Thread(i+11))
	}
	gc.open()
	for i, h := range hs {
		delivered[i] = append(delivered[i], r.drain(h, delivered[i], 60*time.Second)...)
		r.checkAll(delivered[i], dbs[i])
	}
}

// newHost is a fresh host with r's options, as in a restarted Fluent Bit.
func newHost(r *rig) *host.Host {
	h := host.New()
	h.NewOptions = r.h.NewOptions
	return h
}
