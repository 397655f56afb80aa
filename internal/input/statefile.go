package input

import (
	"errors"
	"fmt"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/config"
	"github.com/in-msgraph/in_msgraph/internal/dedup"
	"github.com/in-msgraph/in_msgraph/internal/health"
	"github.com/in-msgraph/in_msgraph/internal/records"
	"github.com/in-msgraph/in_msgraph/internal/schedule"
	"github.com/in-msgraph/in_msgraph/internal/state"
)

// MaxUnsaved is how many ids (delivered and not yet written, or expired
// and not yet removed) an input holds while its state file refuses
// commits: about 24 MB besides the de-dup set. At this many it reads no
// new page until the file accepts them.
const MaxUnsaved = 1_000_000

// Opening the state file again, and retrying a commit once MaxUnsaved is
// reached, back off from stateRetryMin to stateRetryMax.
const (
	stateRetryMin = time.Second
	stateRetryMax = time.Minute
)

// stateFile is what an instance knows of its state file besides the store
// commits go to.
type stateFile struct {
	open func(path string) (*state.DB, error)
	// discard sets aside a state that cannot be read (state.MoveAside).
	discard func(path string, now time.Time) (string, error)
	file    *state.DB // as opened; in.db is the same file (tests may wrap it)
	params  schedule.Params
	start   time.Time // when the instance started

	// loading: the file has not loaded yet, so nothing is delivered (the
	// de-dup set and the schedule are in it). full: MaxUnsaved ids wait
	// for the file, so no page is read. Both retry at retryAt.
	loading    bool
	full       bool
	tries      int
	retryAt    time.Time
	maxUnsaved int
}

// loadState opens the state file and loads it, moving a damaged file aside
// once and starting a new one. Any other error leaves the file as it is.
func (in *Instance) loadState(now time.Time) error {
	path := in.cfg.DB
	for attempt := 0; ; attempt++ {
		db, err := in.st.open(path)
		seen := dedup.New()
		var sched schedule.State
		var raw []byte
		if err == nil {
			raw, err = db.Load(seen.Add)
			if err == nil && in.act != nil {
				err = in.act.load(db)
			}
			if err == nil && raw != nil {
				if sched, err = schedule.DecodeState(raw); err != nil {
					err = &state.UnreadableError{Path: path, Reason: err.Error()}
				}
			}
			if err != nil {
				db.Close()
			}
		}
		var ue *state.UnreadableError
		switch {
		case err == nil:
			in.seen = seen
			if raw != nil {
				in.sched = schedule.Restore(in.st.params, sched, now)
			} else if late := now.Sub(in.st.start); late > 0 {
				// A new file that opened late: the first query reaches as
				// far back as it would have at start.
				p := in.st.params
				p.InitialLookback = min(p.InitialLookback+late, config.MaxInitialLookback)
				in.sched = schedule.New(p)
			}
			in.db, in.st.file = db, db
			in.seedBudget(now, db, raw != nil)
			in.log.Infof("state loaded from %s: %d delivered ids, %d queries pending", path, in.seen.Len(), len(in.sched.Pending()))
			return nil
		case errors.As(err, &ue) && attempt == 0:
			moved, merr := in.st.discard(path, now)
			if merr != nil {
				return fmt.Errorf("%v, and %w", err, merr)
			}
			in.stateProblem = fmt.Sprintf("%v; %s, so events of the last initial_lookback (%s) may be delivered again",
				err, moved, config.FormatDuration(in.cfg.InitialLookback))
			in.log.Errorf("%s", in.stateProblem)
		default:
			return err
		}
	}
}

// notLoaded reports a state file that did not load and plans the next
// attempt. Nothing is delivered meanwhile: without the file's de-dup set
// and schedule, up to initial_lookback of events would be delivered again.
func (in *Instance) notLoaded(now time.Time, err error) {
	in.st.loading = true
	in.st.tries++
	wait := in.backoff(in.st.tries, stateRetryMin, stateRetryMax)
	in.st.retryAt = now.Add(wait)
	msg := fmt.Sprintf("%v: no events are delivered until it opens, so that none is delivered twice; nothing is moved or deleted, and opening is tried again, at least every %s", err, config.FormatDuration(stateRetryMax))
	if !errors.Is(err, state.ErrInUse) {
		msg += "; " + state.Fix(err)
	}
	if in.health.Fire(now, health.StateError, msg, records.Field{Key: "retry_in_seconds", Value: wait}) {
		in.log.Errorf("%s", msg)
	} else {
		in.log.Debugf("%v; opening it again in %s", err, wait.Round(time.Millisecond))
	}
}

// stateGate runs first in every collect. While the state file has not
// loaded, or holds back MaxUnsaved ids, it tries again when due and, if
// that fails, holds Collect to the health records: hold is true and
// batch is what Collect returns.
func (in *Instance) stateGate(now time.Time) (batch []byte, hold bool) {
	switch {
	case in.closed:
	case in.st.loading && !now.Before(in.st.retryAt):
		if err := in.loadState(now); err != nil {
			in.notLoaded(now, err)
			break
		}
		in.st.loading, in.st.tries = false, 0
		msg := fmt.Sprintf("the state file %s opened: delivery resumes with its de-dup set and schedule", in.cfg.DB)
		if in.health.Clear(now, health.StateError, msg) {
			in.log.Infof("%s", msg)
		}
	case in.st.full && !now.Before(in.st.retryAt):
		in.save(now, nil, nil)
	}
	if !in.st.loading && !in.st.full {
		return nil, false
	}
	in.batch = in.health.Take(in.batch[:0])
	if len(in.batch) == 0 {
		return nil, true
	}
	return in.batch, true
}

// saveFailed reports a commit the file refused. Its ids stay in memory
// and go with the next commit; at MaxUnsaved no new page is read until the
// file takes them.
func (in *Instance) saveFailed(now time.Time, err error) {
	n := len(in.unsavedAdd) + len(in.unsavedDel)
	figures := []records.Field{{Key: "unsaved_ids", Value: len(in.unsavedAdd)}, {Key: "unsaved_limit", Value: in.st.maxUnsaved}}
	if n < in.st.maxUnsaved {
		msg := fmt.Sprintf("%v: delivery goes on with state in memory (%d ids not yet saved, written as soon as the file accepts them; at %d no new events are read until then); a restart before then may deliver them again; %s",
			err, len(in.unsavedAdd), in.st.maxUnsaved, state.Fix(err))
		if in.health.Fire(now, health.StateError, msg, figures...) {
			in.log.Errorf("%s", msg)
		}
		return
	}
	in.st.tries++
	wait := in.backoff(in.st.tries, stateRetryMin, stateRetryMax)
	in.st.retryAt = now.Add(wait)
	if in.st.full {
		in.log.Debugf("%v; writing again in %s", err, wait.Round(time.Millisecond))
		return
	}
	in.st.full = true
	msg := fmt.Sprintf("%v: %d ids delivered or expired since the file last accepted a commit wait in memory, the limit of %d: no new events are read until the file accepts them (tried again every %s at most); nothing is lost meanwhile, events wait in %s; %s",
		err, n, in.st.maxUnsaved, config.FormatDuration(stateRetryMax), in.svc, state.Fix(err))
	figures = append(figures, records.Field{Key: "retry_in_seconds", Value: wait})
	// The condition may be firing already, for the first failures: this
	// change is reported at once.
	if !in.health.Fire(now, health.StateError, msg, figures...) {
		in.health.Event(now, health.StateError, msg, figures...)
	}
	in.log.Errorf("%s", msg)
}

// saved clears what failed commits left, after one succeeded.
func (in *Instance) saved(now time.Time) {
	in.unsavedAdd, in.unsavedDel = nil, nil
	wasFull := in.st.full
	in.st.full, in.st.tries = false, 0
	if !in.commitFailed {
		return
	}
	in.commitFailed = false
	msg := "the state file is written again"
	if wasFull {
		msg += ": new events are read again"
	}
	if in.health.Clear(now, health.StateError, msg) {
		in.log.Infof("the state file %s is written again", in.cfg.DB)
	}
}

// stagePacing has the next commit keep the budget's recent requests.
func (in *Instance) stagePacing(now time.Time) {
	if in.st.file == nil {
		return
	}
	sent, blocked := in.budget.Recent(now)
	in.st.file.SetPacing(state.Pacing{Sent: sent, Blocked: blocked})
}

// seedBudget gives the budget the requests sent before the restart, so the
// first requests after it respect Graph's limit. When the file does not
// say what was sent last (the process stopped without closing the input,
// or a version that kept no pacing wrote the file), the window counts as
// full: the first request waits one window.
func (in *Instance) seedBudget(now time.Time, db *state.DB, hadSchedule bool) {
	p, ok := db.Pacing()
	if ok {
		in.budget.Seed(now, p.Sent, p.Blocked)
	}
	if ok && !p.Clean || !ok && hadSchedule {
		in.budget.Fill(now)
	}
}

// closeState keeps the budget's recent requests in the file as the input
// closes, and closes it.
func (in *Instance) closeState() error {
	if in.db == nil {
		return nil
	}
	if in.st.file != nil {
		sent, blocked := in.budget.Recent(in.now())
		if err := in.st.file.SavePacing(state.Pacing{Sent: sent, Blocked: blocked}); err != nil {
			in.log.Warnf("%v: the next start waits one request window before its first request", err)
		}
	}
	return in.db.Close()
}
