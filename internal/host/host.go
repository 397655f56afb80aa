// Package host is the Go side of the plugin's C boundary: it keeps the
// registry of input instances behind the opaque handles that Fluent Bit
// passes back to the callbacks, and each instance's lifecycle (running,
// then stopped). The cgo exports in plugin/ only translate to and from C.
//
// Fluent Bit's pause and resume callbacks carry no instance and the proxy
// pauses the wrong collector when there are several (the last initialised
// one), so a pause stops delivery from every instance until resumed.
package host

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/in-msgraph/in_msgraph/internal/config"
	"github.com/in-msgraph/in_msgraph/internal/input"
	"github.com/in-msgraph/in_msgraph/internal/logging"
)

// Handle identifies an instance across the C boundary; 0 is none.
type Handle uintptr

type entry struct {
	mu   sync.Mutex // one callback at a time per instance
	in   *input.Instance
	name string
}

// Host holds the instances of one loaded plugin.
type Host struct {
	mu        sync.Mutex
	instances map[Handle]*entry
	next      Handle
	named     int    // instances named so far, for msgraph.N
	legacy    Handle // the one instance of a Fluent Bit without Ctx callbacks
	paused    atomic.Bool
	// NewOptions lets tests replace clocks and transports.
	NewOptions func(name string) input.Options
}

// New returns an empty host.
func New() *Host { return &Host{instances: map[Handle]*entry{}} }

// ErrLegacyMulti is returned for a second instance on a Fluent Bit older
// than 4.1, which cannot tell instances apart in its callbacks.
var ErrLegacyMulti = errors.New("this Fluent Bit is older than 4.1 and cannot run more than one msgraph input: upgrade Fluent Bit, or use one msgraph input per Fluent Bit")

// Init parses the configuration and creates an instance. perInstance says
// whether Fluent Bit passes the handle back to the callbacks (4.1 and
// later).
func (h *Host) Init(g config.Getter, perInstance bool) (Handle, error) {
	return h.InitSink(g, perInstance, nil)
}

// InitSink is Init with the instance's log lines going to sink (Fluent
// Bit's logger) when it is not nil.
func (h *Host) InitSink(g config.Getter, perInstance bool, sink logging.Sink) (Handle, error) {
	cfg, err := config.Parse(g)
	if err != nil {
		return 0, err
	}
	h.mu.Lock()
	if !perInstance && h.legacy != 0 {
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
	if !perInstance {
		h.legacy = handle // reserved now, so an overlapping Init sees it
	}
	h.mu.Unlock()

	var opts input.Options
	if h.NewOptions != nil {
		opts = h.NewOptions(name)
	}
	opts.Name = name
	if opts.Logger == nil {
		opts.Logger = logging.New(name, logging.ParseLevel(g.Get("log_level")))
		if sink != nil {
			opts.Logger.SetSink(sink)
		}
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
	h.instances[handle] = &entry{in: in, name: name}
	return handle, nil
}

func (h *Host) get(handle Handle) *entry {
	h.mu.Lock()
	defer h.mu.Unlock()
	if handle == 0 {
		handle = h.legacy
	}
	return h.instances[handle]
}

// Collect returns the instance's next batch, nil when there is none (or the
// handle is unknown, or delivery is paused).
func (h *Host) Collect(handle Handle) (batch []byte) {
	e := h.get(handle)
	if e == nil || h.paused.Load() {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.recover("collect", func() { batch = nil; e.in.Abandon() })
	return e.in.Collect()
}

// Committed tells the instance that Fluent Bit has taken its last batch.
func (h *Host) Committed(handle Handle) {
	e := h.get(handle)
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.recover("commit", nil)
	e.in.Commit()
}

// recover keeps a bug in the plugin from taking Fluent Bit down: the panic
// is logged (secrets scrubbed) and the call returns nothing, so the events
// are read again later rather than lost.
func (e *entry) recover(what string, after func()) {
	if r := recover(); r != nil {
		e.in.Logf("internal error in %s, recovered; events are read again later: %v\n%s", what, r, debug.Stack())
		if after != nil {
			after()
		}
	}
}

// newInstance builds an instance; a panic becomes an error, so Fluent Bit
// reports a failed init instead of crashing.
func newInstance(cfg config.Config, opts input.Options) (in *input.Instance, err error) {
	defer func() {
		if r := recover(); r != nil {
			in, err = nil, fmt.Errorf("internal error while starting the input: %v", r)
		}
	}()
	return input.New(cfg, opts)
}

// Pause stops delivery from every instance.
func (h *Host) Pause() { h.paused.Store(true) }

// Resume lets every instance deliver again.
func (h *Host) Resume() { h.paused.Store(false) }

// Paused reports whether delivery is paused.
func (h *Host) Paused() bool { return h.paused.Load() }

// Len is the number of running instances.
func (h *Host) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.instances)
}

// StopAll stops every instance and empties the registry, so a hot reload
// starts from scratch. Fluent Bit calls exit once per instance without
// saying which, so the first call stops all and later calls find nothing.
func (h *Host) StopAll() error {
	h.mu.Lock()
	all := h.instances
	h.instances = map[Handle]*entry{}
	h.legacy = 0
	h.named = 0
	h.mu.Unlock()
	var errs []error
	for _, e := range all {
		e.mu.Lock()
		if err := e.in.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.name, err))
		}
		e.mu.Unlock()
	}
	h.paused.Store(false)
	return errors.Join(errs...)
}
