package host

import (
	"fmt"
	"time"
)

// FluentBit is what the plugin can tell of the Fluent Bit that loaded it:
// how its Go proxy calls the plugin, and which of its functions it
// exports. Fluent Bit's build exports its symbols dynamically, so the
// plugin's C glue finds them in the process.
type FluentBit struct {
	// PerInstance: the proxy passes each input's context to the collect
	// and cleanup callbacks (4.1 and later).
	PerInstance bool
	// Append: flb_input_log_append is exported (since 2.1, by a Fluent
	// Bit that exports its symbols).
	Append bool
	// Since403: flb_engine_stop_ingestion and flb_storage_chunk_count are
	// exported. Both came with 4.0.3, as did the stop at start when a
	// threaded input fails to initialise and the flush of queued chunks
	// at shutdown.
	Since403 bool
}

// known403 reports whether Fluent Bit is known to be 4.0.3 or later.
func (f FluentBit) known403() bool { return f.PerInstance || f.Since403 }

// StopsOnFailedInit reports whether Fluent Bit stops at start by itself
// when the plugin's init fails. Before 4.0.3 it logs the failure, runs on
// without the input, and crashes at exit: its Go proxy has freed the
// plugin once already. A Fluent Bit that exports no symbols and has no
// per-instance callbacks may be such a one.
func (f FluentBit) StopsOnFailedInit() bool { return f.known403() }

// FlushesAtStop reports whether Fluent Bit delivers every chunk queued in
// memory when it stops (4.0.3 and later, within its grace period). Before
// 4.0.3 it sends the chunks it has when the stop begins and waits for
// those tasks only: the records the input handed it just before (still in
// the input's ring buffer then) end up in chunks that are never sent, and
// the plugin has committed them.
func (f FluentBit) FlushesAtStop() bool { return f.known403() }

// Startup warnings, given once per process.
const (
	WarnNoAppend = "this Fluent Bit does not export flb_input_log_append: the plugin cannot tell whether Fluent Bit accepted a batch, and commits each one Fluent Bit tried to queue"
	// WarnNoFlush is given by a Fluent Bit known to be older than 4.0.3.
	WarnNoFlush = "this Fluent Bit is older than 4.0.3: at a stop, restart or hot reload it drops the records queued in memory that it has not started to send when the stop begins (those of the last moments), which the plugin has already committed, so they are lost unless the input has storage.type filesystem (its chunks stay on disk and are sent at the next start); set storage.type filesystem on the input, or use Fluent Bit 4.0.3 or later"
	// WarnMayNotFlush is given by one whose release cannot be told.
	WarnMayNotFlush = "this Fluent Bit exports none of its functions, so the plugin cannot tell whether it is 4.0.3 or later: an older one drops, at a stop, restart or hot reload, the records queued in memory that it has not started to send when the stop begins, which the plugin has already committed, so they are lost unless the input has storage.type filesystem; set storage.type filesystem on the input, or use Fluent Bit 4.0.3 or later"
)

// Started returns the warnings to log after an Init that succeeded under
// f, each the first time in the process.
func (h *Host) Started(f FluentBit) []string {
	var lines []string
	if !f.Append {
		lines = append(lines, WarnNoAppend)
	}
	if !f.FlushesAtStop() {
		if f.Append {
			lines = append(lines, WarnNoFlush)
		} else {
			lines = append(lines, WarnMayNotFlush)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.warned == nil {
		h.warned = map[string]bool{}
	}
	var out []string
	for _, l := range lines {
		if !h.warned[l] {
			h.warned[l] = true
			out = append(out, l)
		}
	}
	return out
}

// ExitStatus is the status the plugin ends Fluent Bit with when Fluent
// Bit would not stop on a failed init: the one Fluent Bit 4.0.3 and later
// exit with then.
const ExitStatus = 255

// LoggerWait is how long the plugin leaves Fluent Bit's logger, which
// writes from a thread of its own, to write the lines of a failed init
// before it ends the process.
const LoggerWait = time.Second

// Failure is what the plugin does about an Init that failed.
type Failure struct {
	// Lines go to Fluent Bit's logger at error level: the error (one line
	// naming the key, the value and what is allowed), and with Exit why
	// the plugin stops Fluent Bit.
	Lines []string
	// Exit: Fluent Bit would not stop by itself. The plugin then waits
	// Wait for Fluent Bit's logger, writes Stderr on stderr (in case the
	// logger did not get to it, and for a log_file's reader who watches
	// stderr), and ends the process with Status from inside the init
	// callback. No input collects before every input is initialised, so
	// nothing Fluent Bit has taken in is lost, and the proxy never gets
	// to free the plugin twice.
	Exit   bool
	Status int
	Wait   time.Duration
	Stderr string
}

// Failed decides what the plugin does about err, which Init returned for
// the instance c describes, under Fluent Bit f. When the plugin is to end
// the process, every instance already running is stopped first (its
// state file closed).
func (h *Host) Failed(f FluentBit, c Caller, err error) Failure {
	msg := "[input:msgraph] " + err.Error()
	if f.StopsOnFailedInit() {
		return Failure{Lines: []string{msg}}
	}
	name := c.Name
	if name == "" {
		name = "msgraph"
	}
	why := fmt.Sprintf("[input:msgraph:%s] this input did not start, and Fluent Bit older than 4.0.3 runs on without it (and crashes at exit): the plugin stops this one, exit status %d", name, ExitStatus)
	if !f.Append {
		why = fmt.Sprintf("[input:msgraph:%s] this input did not start, and Fluent Bit older than 4.0.3 runs on without it (and crashes at exit); this one exports none of its functions, so the plugin cannot tell its release and stops it, exit status %d", name, ExitStatus)
	}
	h.stopRest()
	return Failure{
		Lines:  []string{msg, why},
		Exit:   true,
		Status: ExitStatus,
		Wait:   LoggerWait,
		Stderr: fmt.Sprintf("[%s] [error] [input:msgraph:%s] the plugin stops Fluent Bit (exit status %d): %s\n",
			time.Now().Format("2006/01/02 15:04:05"), name, ExitStatus, err.Error()),
	}
}
