// Package host is the Go side of the plugin's C boundary: it keeps the
// registry of input instances behind the opaque handles that Fluent Bit
// passes back to the callbacks, and runs each instance's lifecycle. The
// cgo exports in plugin/ only translate to and from C.
//
// Fluent Bit runs every Go input in a thread of its own and calls each
// callback of that input (init, collect, cleanup, pause, resume, exit) on
// that thread, but its pause, resume and exit callbacks carry no instance.
// The host therefore tells instances apart by the thread a callback runs
// on (Thread), which it learns at Init.
//
// Pages are read on goroutines, not in Fluent Bit's collect callback:
// Collect starts a read and returns at once, and a later Collect hands
// the page over. The callback never blocks on Graph, so Fluent Bit's pause
// and exit reach the instance at once, and a batch is handed over only
// while the instance is neither paused nor stopping.
package host

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/in-msgraph/in_msgraph/internal/config"
	"github.com/in-msgraph/in_msgraph/internal/input"
	"github.com/in-msgraph/in_msgraph/internal/logging"
	"github.com/in-msgraph/in_msgraph/internal/tenants"
)

// Handle identifies an instance across the C boundary; 0 is none.
type Handle uintptr

// Thread identifies the OS thread a callback runs on; 0 is unknown.
type Thread uint64

// Caller describes how Fluent Bit calls the instance being initialised.
type Caller struct {
	// PerInstance says that Fluent Bit passes the handle back to the
	// collect and cleanup callbacks (4.1 and later).
	PerInstance bool
	// Thread is the thread Init runs on: Fluent Bit's thread for this
	// input, where its pause, resume and exit callbacks run too.
	Thread Thread
	// Sink is Fluent Bit's logger for the instance; nil logs to stderr.
	Sink logging.Sink
	// Ref is handed back with each batch (Fluent Bit's input instance).
	Ref unsafe.Pointer
	// Name is Fluent Bit's name for the instance (its alias, or
	// msgraph.N); empty means the host numbers them itself.
	Name string
}

// Instance is what the host runs: an input.Instance (one tenant), or a
// tenants.Input (many).
type Instance interface {
	Collect() []byte
	Commit()
	Abandon()
	Hold() input.Held
	CommitPlace(input.Held)
	Refused(n int)
	Accepted()
	InternalError(msg string)
	Logf(format string, args ...any)
	Cancel()
	Close() error
}

// phase is where an instance's current batch is.
type phase int

const (
	idle    phase = iota // no batch
	reading              // a goroutine runs the instance's Collect
	ready                // a batch waits to be handed over
	handed               // the batch was handed over; its outcome is awaited
)

type entry struct {
	handle  Handle
	name    string
	thread  Thread
	seq     uint64 // order of Init
	ref     unsafe.Pointer
	in      Instance
	log     *logging.Logger // the host's own lines, never muted
	now     func() time.Time
	timeout time.Duration // longest wait for a read to end when stopping
	quiet   atomic.Bool   // stopping: log lines below error are dropped

	mu            sync.Mutex // guards what follows
	phase         phase
	done          chan struct{} // closed when the read ends
	batch         []byte
	paused        bool
	closed        bool
	detached      bool // stopped while its read would not end: the read closes it
	commitPanics  int  // commits that panicked in a row
	collectPanics int  // reads that panicked in a row
	notBefore     time.Time
}

// Host holds the instances of one loaded plugin.
type Host struct {
	mu        sync.Mutex
	instances map[Handle]*entry
	next      Handle
	seq       uint64
	named     int             // instances named so far, for msgraph.N
	legacy    Handle          // the one instance of a Fluent Bit without Ctx callbacks
	paused    bool            // paused from a thread that runs no instance
	stopping  bool            // an exit was called: nothing is handed over any more
	warned    map[string]bool // the startup warnings given (Started)

	// NewOptions lets tests replace clocks and transports.
	NewOptions func(name string) input.Options
	// Wait is how long Collect waits for a page being read. With 0, as in
	// production, Collect never blocks and a new read starts as soon as a
	// batch is accepted; with more, a read starts only in Collect, so that
	// a test clock decides what it sees.
	Wait time.Duration
}

// New returns an empty host.
func New() *Host { return &Host{instances: map[Handle]*entry{}} }

// ErrLegacyMulti is returned for a second instance on a Fluent Bit older
// than 4.1, which cannot tell instances apart in its callbacks.
var ErrLegacyMulti = errors.New("this Fluent Bit is older than 4.1 and cannot run more than one msgraph input: upgrade Fluent Bit, or use one msgraph input per Fluent Bit")

// Init parses the configuration and creates an instance.
func (h *Host) Init(g config.Getter, c Caller) (Handle, error) {
	cfg, err := config.Parse(g)
	if err != nil {
		return 0, err
	}
	h.mu.Lock()
	if h.stopping {
		// Every instance of the previous configuration has had its exit
		// call unless one came from elsewhere: a new one only starts
		// once Fluent Bit has stopped them all.
		h.mu.Unlock()
		h.stopRest()
		h.mu.Lock()
	}
	if !c.PerInstance && h.legacy != 0 {
		h.mu.Unlock()
		return 0, ErrLegacyMulti
	}
	h.next++
	handle := h.next
	name := fmt.Sprintf("msgraph.%d", h.named)
	h.named++
	if alias := strings.TrimSpace(g.Get("alias")); alias != "" {
		name = alias
	}
	if n := strings.TrimSpace(c.Name); n != "" {
		name = n
	}
	if !c.PerInstance {
		h.legacy = handle // reserved now, so an overlapping Init sees it
	}
	h.mu.Unlock()

	e := &entry{handle: handle, name: name, thread: c.Thread, ref: c.Ref, timeout: cfg.HTTPTimeout + 5*time.Second}
	var opts input.Options
	if h.NewOptions != nil {
		opts = h.NewOptions(name)
	}
	opts.Name = name
	level := logging.ParseLevel(g.Get("log_level"))
	if opts.Logger == nil {
		opts.Logger = logging.New(name, level)
		e.log = logging.New(name, level)
		if sink := c.Sink; sink != nil {
			e.log.SetSink(sink)
			opts.Logger.SetSink(func(level logging.Level, line string) bool {
				if e.quiet.Load() && level > logging.Error {
					return true // a cancelled request while stopping is no news
				}
				return sink(level, line)
			})
		}
	} else {
		e.log = opts.Logger
	}
	e.now = opts.Now
	if e.now == nil {
		e.now = time.Now
	}
	in, err := newInstance(cfg, opts)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		if h.legacy == handle {
			h.legacy = 0
		}
		return 0, err
	}
	e.in = in
	h.seq++
	e.seq = h.seq
	h.instances[handle] = e
	return handle, nil
}

// newInstance builds an instance; a panic becomes an error, so Fluent Bit
// reports a failed init instead of crashing.
func newInstance(cfg config.Config, opts input.Options) (in Instance, err error) {
	defer func() {
		if r := recover(); r != nil {
			in, err = nil, fmt.Errorf("internal error while starting the input: %v", r)
		}
	}()
	if cfg.MultiTenant() {
		f, err := tenants.New(cfg, tenants.Options{Instance: opts})
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	one, err := input.New(cfg, opts)
	if err != nil {
		return nil, err
	}
	return one, nil
}

func (h *Host) get(handle Handle) *entry {
	h.mu.Lock()
	defer h.mu.Unlock()
	if handle == 0 {
		handle = h.legacy
	}
	return h.instances[handle]
}

func (h *Host) isStopping() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stopping
}

func (h *Host) globalPause() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.paused
}

// Collect returns the batch to hand over now, and the Ref of its instance,
// or nil when there is none: the handle is unknown, the instance is paused
// or stopping, or its page is still being read. A batch must be followed by
// Handed.
func (h *Host) Collect(handle Handle) ([]byte, unsafe.Pointer) {
	e := h.get(handle)
	if e == nil {
		return nil, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, nil
	}
	if e.phase == handed {
		// Fluent Bit calls collect again only after it has appended the
		// batch: a missing outcome means it was taken.
		e.accept()
	}
	hold := h.isStopping() || e.paused || h.globalPause()
	if e.phase == idle && !hold && !e.waiting() {
		e.start()
	}
	if e.phase == reading && !e.wait(h.Wait) {
		return nil, nil
	}
	if e.phase != ready || e.closed || h.isStopping() || e.paused || h.globalPause() {
		return nil, nil // a batch read before a pause waits for the resume
	}
	e.phase = handed
	return e.batch, e.ref
}

// Handed reports what Fluent Bit did with the batch Collect returned:
// accepted means it is Fluent Bit's now, and the batch is committed;
// otherwise it is offered again.
func (h *Host) Handed(handle Handle, accepted bool) {
	e := h.get(handle)
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.phase != handed {
		return
	}
	if !accepted {
		e.phase = ready
		n := len(e.batch)
		e.try("handing over a batch", func() { e.in.Refused(n) })
		return
	}
	e.accept()
	if h.Wait == 0 && e.phase == idle && !h.isStopping() && !e.paused && !h.globalPause() && !e.waiting() {
		e.start() // read the next page before the next collect
	}
}

// waiting reports whether the instance waits after an internal error
// (e.mu held).
func (e *entry) waiting() bool {
	if e.notBefore.IsZero() {
		return false
	}
	if e.now().Before(e.notBefore) {
		return true
	}
	e.notBefore = time.Time{}
	return false
}

// start reads the next page on a goroutine (e.mu held).
func (e *entry) start() {
	e.phase = reading
	e.done = make(chan struct{})
	go e.read(e.done)
}

func (e *entry) read(done chan struct{}) {
	var b []byte
	ok := e.try("collect", func() { b = e.in.Collect() })
	e.mu.Lock()
	defer e.mu.Unlock()
	defer close(done)
	if !ok {
		b = nil
		e.collectPanics++
		e.notBefore = e.now().Add(min(time.Second<<min(e.collectPanics-1, 9), 5*time.Minute))
		e.try("collect", func() {
			e.in.Abandon()
			e.in.InternalError("an internal error stopped the plugin while reading a page; nothing of the page was delivered and it is read again later")
		})
	} else {
		e.collectPanics = 0
	}
	e.phase = idle
	if len(b) > 0 {
		e.phase, e.batch = ready, b
	}
	if e.detached {
		e.finish()
	}
}

// wait waits up to d for the read to end (e.mu held, released meanwhile)
// and reports whether it has.
func (e *entry) wait(d time.Duration) bool {
	done := e.done
	select {
	case <-done:
		return true
	default:
	}
	if d <= 0 {
		return false
	}
	e.mu.Unlock()
	t := time.NewTimer(d)
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	e.mu.Lock()
	return e.phase != reading || e.done != done
}

// accept commits the batch handed over (e.mu held). A commit that panics
// is not retried as it is: the first time the page is read again (and its
// events delivered again); the second time in a row its place in the
// schedule is committed without its ids, so that a page that breaks the
// commit every time is not delivered in a loop.
func (e *entry) accept() {
	e.phase, e.batch = idle, nil
	held := e.in.Hold()
	if e.try("commit", e.in.Commit) {
		e.commitPanics = 0
		e.try("commit", e.in.Accepted)
		return
	}
	e.commitPanics++
	if e.commitPanics == 1 {
		e.try("commit", e.in.Abandon)
		return
	}
	e.commitPanics = 0
	n := held.IDs()
	if e.try("commit", func() { e.in.CommitPlace(held) }) {
		msg := fmt.Sprintf("an internal error stopped the plugin from recording a batch twice in a row; its %d events were delivered twice, are not remembered, and may be delivered again by later queries", n)
		e.in.Logf("%s", msg)
		e.try("commit", func() { e.in.InternalError(msg) })
		return
	}
	e.notBefore = e.now().Add(5 * time.Minute)
	msg := fmt.Sprintf("an internal error stopped the plugin from recording a batch, even without its ids; its %d events were delivered twice and the page is read again in 5 minutes", n)
	e.in.Logf("%s", msg)
	e.try("commit", func() {
		e.in.Abandon()
		e.in.InternalError(msg)
	})
}

// try runs fn and reports whether it returned. A panic is a bug in the
// plugin: it is logged (secrets scrubbed) rather than taking Fluent Bit
// down.
func (e *entry) try(what string, fn func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			ok = false
			e.in.Logf("internal error in %s, recovered: %v\n%s", what, r, debug.Stack())
		}
	}()
	fn()
	return true
}

// Pause stops delivery from the instances of the calling thread: Fluent
// Bit pauses an input on its own thread. A pause from any other thread
// stops every instance until Resume from such a thread.
func (h *Host) Pause(t Thread) { h.setPaused(t, true) }

// Resume lifts Pause for the instances of the calling thread.
//
// Fluent Bit's pauses and resumes of one input do not pair up: it pauses
// again for a second reason without resuming in between, and pauses
// every input twice when it stops. A resume comes only when Fluent Bit
// lets the input run again, so the latest call wins.
func (h *Host) Resume(t Thread) { h.setPaused(t, false) }

func (h *Host) setPaused(t Thread, paused bool) {
	h.mu.Lock()
	es := h.onThread(t)
	if len(es) == 0 {
		h.paused = paused
	}
	h.mu.Unlock()
	for _, e := range es {
		e.mu.Lock()
		if e.paused != paused {
			if paused {
				e.log.Debugf("paused by Fluent Bit: nothing is handed over until it resumes the input")
			} else {
				e.log.Debugf("resumed by Fluent Bit")
			}
		}
		e.paused = paused
		e.mu.Unlock()
	}
}

// onThread returns the instances initialised on t (h.mu held).
func (h *Host) onThread(t Thread) []*entry {
	if t == 0 {
		return nil
	}
	var es []*entry
	for _, e := range h.instances {
		if e.thread == t {
			es = append(es, e)
		}
	}
	return es
}

// Paused reports whether delivery from handle's instance is paused.
func (h *Host) Paused(handle Handle) bool {
	e := h.get(handle)
	if e == nil {
		return h.globalPause()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.paused || h.globalPause()
}

// Len is the number of running instances.
func (h *Host) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.instances)
}

// Exit stops the instance of the calling thread and returns its handle.
// Fluent Bit calls exit once per input, on the input's thread, in reverse
// order of initialisation, without saying which; a call from a thread
// that runs no instance (or several) stops the most recently initialised
// of them.
//
// The first exit means Fluent Bit is stopping (or reloading) all of them:
// from then on no instance hands anything over, since Fluent Bit would
// discard it, and every page being read is cancelled. An instance's batch
// that was not handed over is not committed: it is read again next time.
// The registry empties with the last exit, so a hot reload starts afresh.
func (h *Host) Exit(t Thread) (Handle, error) {
	h.mu.Lock()
	first := !h.stopping
	h.stopping = true
	var all []*entry
	for _, e := range h.instances {
		all = append(all, e)
	}
	cands := h.onThread(t)
	if len(cands) == 0 {
		cands = all
	}
	var victim *entry
	for _, e := range cands {
		if victim == nil || e.seq > victim.seq {
			victim = e
		}
	}
	if victim != nil {
		h.remove(victim)
	}
	h.resetIfEmpty()
	h.mu.Unlock()
	if first {
		for _, e := range all {
			e.quiet.Store(true)
			e.in.Cancel()
		}
	}
	if victim == nil {
		return 0, nil
	}
	return victim.handle, victim.stop()
}

// remove takes e out of the registry (h.mu held).
func (h *Host) remove(e *entry) {
	delete(h.instances, e.handle)
	if h.legacy == e.handle {
		h.legacy = 0
	}
}

// resetIfEmpty forgets the previous configuration once it has no
// instance left (h.mu held).
func (h *Host) resetIfEmpty() {
	if len(h.instances) == 0 {
		h.stopping, h.paused, h.named, h.legacy = false, false, 0, 0
	}
}

// stopRest stops the instances that are left when a new configuration
// starts: their exit calls did not come.
func (h *Host) stopRest() {
	h.mu.Lock()
	var rest []*entry
	for _, e := range h.instances {
		rest = append(rest, e)
		h.remove(e)
	}
	h.resetIfEmpty()
	h.mu.Unlock()
	for _, e := range rest {
		e.quiet.Store(true)
		e.in.Cancel()
		if err := e.stop(); err != nil {
			e.in.Logf("%v", err)
		}
	}
}

// stop ends the instance: a read in progress is cancelled and waited for,
// a batch not handed over is dropped uncommitted, and the state file is
// closed. It never waits longer than a request can take.
func (e *entry) stop() error {
	e.quiet.Store(true)
	e.in.Cancel()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	if e.phase == reading && !e.wait(e.timeout) {
		e.detached = true
		return fmt.Errorf("%s: the page being read did not end within %s of the stop; its state file is closed when it does", e.name, e.timeout)
	}
	return e.finish()
}

// finish drops what Fluent Bit was not known to take and closes the
// instance (e.mu held). A batch handed over whose outcome never came is
// dropped too: read again, it may be delivered twice, but is never lost.
func (e *entry) finish() error {
	if e.phase == ready || e.phase == handed {
		e.try("stop", e.in.Abandon)
		e.log.Infof("a batch read but not taken by Fluent Bit is not committed: it is read again next time")
	}
	e.phase, e.batch = idle, nil
	var err error
	if !e.try("stop", func() { err = e.in.Close() }) {
		err = fmt.Errorf("internal error while closing the state file")
	}
	if err != nil {
		return fmt.Errorf("%s: %w", e.name, err)
	}
	return nil
}
