package input

import (
	"fmt"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/health"
	"github.com/in-msgraph/in_msgraph/internal/logging"
	"github.com/in-msgraph/in_msgraph/internal/records"
)

// What the host (internal/host) needs to run an instance under Fluent Bit:
// stopping it while a page is being read, learning what became of a
// batch, and reporting its own errors.

// Cancel aborts the Graph request in flight, if any, and every later one:
// the instance is about to be closed. Unlike every other method it may be
// called while another one runs.
func (in *Instance) Cancel() { in.cancel() }

// Held is the commit of a batch Collect returned, kept aside so that the
// batch's place in the schedule can still be committed when Commit itself
// fails (CommitPlace).
type Held struct {
	in    *Instance
	c     *commit
	parts []Held // Join
}

// Hold returns the commit of the batch Collect last returned.
func (in *Instance) Hold() Held { return Held{in: in, c: in.pending} }

// Join holds the commits of several instances' batches handed over as one
// (a multi-tenant input's).
func Join(parts ...Held) Held { return Held{parts: parts} }

// Each calls fn for every instance's commit h holds.
func (h Held) Each(fn func(in *Instance, h Held)) {
	if h.in != nil {
		fn(h.in, h)
	}
	for _, p := range h.parts {
		p.Each(fn)
	}
}

// IDs is the number of event ids the commit would remember.
func (h Held) IDs() int {
	n := 0
	if h.c != nil {
		n = len(h.c.add)
	}
	for _, p := range h.parts {
		n += p.IDs()
	}
	return n
}

// CommitPlace commits h as Commit does, except that its ids are not
// remembered: the schedule moves past the page, and a later query that
// covers its events delivers them again.
func (in *Instance) CommitPlace(h Held) {
	if h.c == nil {
		return
	}
	c := *h.c
	c.add = nil
	in.pending = &c
	in.Commit()
}

// Refused tells the instance that Fluent Bit did not accept the batch of
// n bytes Collect returned: the batch stays pending and is offered again,
// so nothing is lost. It is reported as ingest_refused until a batch is
// accepted (Accepted).
func (in *Instance) Refused(n int) { ReportRefused(in.health, in.log, in.now(), n) }

// Accepted tells the instance that Fluent Bit accepted its batch.
func (in *Instance) Accepted() { ReportAccepted(in.health, in.log, in.now()) }

// ReportRefused raises ingest_refused for a batch of n bytes Fluent Bit
// did not accept; ReportAccepted clears it. A multi-tenant input reports
// them once for all its tenants.
func ReportRefused(h *health.Monitor, log *logging.Logger, now time.Time, n int) {
	msg := fmt.Sprintf("Fluent Bit did not accept a batch of %d bytes: the input's ring buffer stayed full, so Fluent Bit's engine is not taking records from this input (a stalled output or filter, or an overloaded engine); the batch is offered again every second and nothing is lost", n)
	if h.Fire(now, health.IngestRefused, msg, records.Field{Key: "batch_bytes", Value: n}) {
		log.Warnf("%s", msg)
	}
}

// ReportAccepted clears ingest_refused (ReportRefused).
func ReportAccepted(h *health.Monitor, log *logging.Logger, now time.Time) {
	if h.Active(health.IngestRefused) {
		h.Clear(now, health.IngestRefused, "Fluent Bit accepts batches again")
		log.Infof("Fluent Bit accepts batches again")
	}
}

// InternalError reports a bug caught outside the instance's own methods
// as an internal_error record; msg says what it cost. The caller logs the
// details.
func (in *Instance) InternalError(msg string) {
	in.health.Event(in.now(), health.InternalError, msg)
}
