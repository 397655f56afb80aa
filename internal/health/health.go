// Package health turns the plugin's conditions into warning records in the
// stream itself, so a SIEM sees a stalled or degraded collection without
// anyone reading Fluent Bit's logs. Each warning is rate-limited, and a
// condition that clears is reported as resolved.
package health

import (
	"time"

	"github.com/in-msgraph/in_msgraph/internal/records"
)

// Code names a condition; it is the value of the msgraph_warning key.
type Code string

// Codes.
const (
	AuthFailed      Code = "auth_failed"
	APIError        Code = "api_error"
	Throttled       Code = "throttled"
	EmptyResult     Code = "empty_result"
	DriftExceeded   Code = "drift_exceeded"
	LookbackWidened Code = "lookback_widened"
	LateArrivals    Code = "late_arrivals"
	InvalidRecords  Code = "invalid_records"
	AlteredRecords  Code = "altered_records"
	StateError      Code = "state_error"
	// UnreadablePage is a stretch of time whose pages cannot be read; it
	// is reported for each stretch, whatever the rate.
	UnreadablePage Code = "unreadable_page"
	// ContentExpired counts content blobs of the Management Activity API
	// that expired before they were fetched (AF20051): lost upstream.
	ContentExpired Code = "content_expired"
	// SubscriptionStarted: the plugin started a Management Activity API
	// subscription (auto_subscribe).
	SubscriptionStarted Code = "subscription_started"
	// TenantsFileError: a multi-tenant input's tenants_file could not be
	// read again; the last list read goes on being collected.
	TenantsFileError Code = "tenants_file_error"
)

// Monitor builds health records for one input. It is not safe for
// concurrent use.
type Monitor struct {
	Source   string
	TenantID string
	// Repeat is the first interval after which an active condition is
	// reported again; the interval doubles with each repeat, up to
	// MaxRepeat, so a long outage does not flood the SIEM.
	Repeat    time.Duration
	MaxRepeat time.Duration
	// Enabled turns the records on; when off, Fire and Event still report
	// (for logging) but nothing is queued.
	Enabled bool

	active map[Code]*condition
	last   map[Code]time.Time // one-shot event -> last emission
	buf    []byte
	Count  map[Code]int // records emitted, by code
	// OnEmit, when set, is told of every record (also when Enabled is off).
	OnEmit func(c Code, status string)
}

type condition struct {
	last time.Time
	wait time.Duration
}

// New returns a monitor.
func New(source, tenant string, repeat time.Duration, enabled bool) *Monitor {
	return &Monitor{Source: source, TenantID: tenant, Repeat: repeat, MaxRepeat: 16 * repeat, Enabled: enabled,
		active: map[Code]*condition{}, last: map[Code]time.Time{}, Count: map[Code]int{}}
}

// Active reports whether a condition is firing.
func (m *Monitor) Active(c Code) bool { _, ok := m.active[c]; return ok }

// Fire marks a condition active. It queues a record the first time and
// then after Repeat, 2·Repeat, 4·Repeat… (at most MaxRepeat) while the
// condition lasts, and reports whether it did (so the caller logs the same
// moments).
func (m *Monitor) Fire(now time.Time, c Code, msg string, figures ...records.Field) bool {
	cond, ok := m.active[c]
	if ok && now.Sub(cond.last) < cond.wait {
		return false
	}
	if !ok {
		cond = &condition{wait: m.Repeat}
		m.active[c] = cond
	} else {
		cond.wait = min(2*cond.wait, m.MaxRepeat)
	}
	cond.last = now
	m.emit(now, c, "firing", msg, figures)
	return true
}

// Clear marks a condition resolved, queueing a recovery record if it was
// active. It reports whether it was.
func (m *Monitor) Clear(now time.Time, c Code, msg string, figures ...records.Field) bool {
	if _, ok := m.active[c]; !ok {
		return false
	}
	delete(m.active, c)
	m.emit(now, c, "resolved", msg, figures)
	return true
}

// Event queues a one-shot report, at most once per Repeat per code; it
// reports whether it did, so the caller can keep aggregating until then.
func (m *Monitor) Event(now time.Time, c Code, msg string, figures ...records.Field) bool {
	if last, ok := m.last[c]; ok && now.Sub(last) < m.Repeat {
		return false
	}
	m.last[c] = now
	m.emit(now, c, "event", msg, figures)
	return true
}

// Report queues a record with its own status, without rate limit: for
// reports that are few by construction, each of which matters.
func (m *Monitor) Report(now time.Time, c Code, status, msg string, figures ...records.Field) {
	m.emit(now, c, status, msg, figures)
}

func (m *Monitor) emit(now time.Time, c Code, status, msg string, figures []records.Field) {
	m.Count[c]++
	if m.OnEmit != nil {
		m.OnEmit(c, status)
	}
	if !m.Enabled {
		return
	}
	f := make([]records.Field, 0, 5+len(figures))
	f = append(f,
		records.Field{Key: "msgraph_warning", Value: string(c)},
		records.Field{Key: "status", Value: status},
		records.Field{Key: "message", Value: msg},
		records.Field{Key: "source", Value: m.Source},
		records.Field{Key: "tenant_id", Value: m.TenantID},
	)
	f = append(f, figures...)
	m.buf = records.AppendRecord(m.buf, now, f)
}

// Take appends the queued records to b and empties the queue.
func (m *Monitor) Take(b []byte) []byte {
	b = append(b, m.buf...)
	m.buf = m.buf[:0]
	return b
}
