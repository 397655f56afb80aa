// Package budget paces requests to Graph: the reporting APIs allow 5
// requests per 10 seconds per application per tenant, Identity Protection 1
// per second per tenant, the security API 150 per minute. Inputs that draw
// on the same limit in one Fluent Bit share one Budget, so they never
// throttle each other into 429s.
package budget

import (
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Graph's limit for the identity and access reports, the default.
const (
	Requests = 5
	Window   = 10 * time.Second
)

// Budget is a sliding-window limiter. It is safe for concurrent use.
type Budget struct {
	mu      sync.Mutex
	limit   int
	window  time.Duration
	sent    []time.Time
	blocked time.Time
	// waiting holds the consumers refused a request, so that a freed slot
	// goes to the one that has waited longest: inputs sharing a budget
	// take turns instead of the quickest one taking every slot.
	waiting map[any]*waiter
}

type waiter struct {
	since, last time.Time
	class       int
}

// staleWait: a consumer that has not asked for this long has stopped
// waiting (its work was done, or it was closed).
const staleWait = 5 * time.Second

// New returns a budget of limit requests per window.
func New(limit int, window time.Duration) *Budget {
	return &Budget{limit: limit, window: window}
}

// Paced is the window to keep for a service's window: 5 % longer, since
// Graph counts a request when it arrives, a little after it was sent, and
// a limiter at the exact limit sees some of them answered 429.
func Paced(window time.Duration) time.Duration { return window + window/20 }

// ScaleEnv names an environment variable that shortens every shared
// budget's window by its factor (0 < f <= 1). It exists for end-to-end
// tests against a simulator whose throttle windows are shortened alike,
// and must not be set in production.
const ScaleEnv = "MSGRAPH_BUDGET_WINDOW_SCALE"

func scaled(window time.Duration) time.Duration {
	f, err := strconv.ParseFloat(os.Getenv(ScaleEnv), 64)
	if err != nil || f <= 0 || f > 1 {
		return window
	}
	return time.Duration(float64(window) * f)
}

var (
	registryMu sync.Mutex
	registry   = map[string]*Budget{}
)

// Shared returns the process-wide budget for key (the service's family,
// the tenant and, where the service counts per app, the application),
// created with limit requests per window, Paced.
func Shared(key string, limit int, window time.Duration) *Budget {
	registryMu.Lock()
	defer registryMu.Unlock()
	b, ok := registry[key]
	if !ok {
		b = New(limit, Paced(scaled(window)))
		registry[key] = b
	}
	// The newest configuration's limit holds (a hot reload that changes
	// app_budget keeps the process and its budgets).
	b.mu.Lock()
	b.limit = limit
	b.mu.Unlock()
	return b
}

// Wait is how long until a request may be sent; zero means now.
func (b *Budget) Wait(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.wait(now)
}

func (b *Budget) wait(now time.Time) time.Duration {
	var w time.Duration
	if now.Before(b.blocked) {
		w = b.blocked.Sub(now)
	}
	b.prune(now)
	if len(b.sent) >= b.limit {
		if d := b.sent[0].Add(b.window).Sub(now); d > w {
			w = d
		}
	}
	return w
}

// TryTake takes one request from the budget for consumer who, if one is
// free now and no other consumer has been waiting longer for it.
func (b *Budget) TryTake(now time.Time, who any) bool { return b.TryTakeClass(now, who, 0) }

// Classes of work, for budgets shared by work of different urgency (an
// application's budget across tenants): a consumer waiting with a lower
// class goes first, and within a class the one that has waited longest.
const (
	ClassPoll    = 0 // the newest minutes of a tenant (a live poll)
	ClassReread  = 1 // a live query reaching further back (a re-read)
	ClassSweep   = 2 // a reconcile sweep
	ClassBacklog = 3 // a backlog: initial_lookback, or time left behind by an outage
)

// TryTakeClass is TryTake for work of class c: a request is free for it
// only if no consumer of a lower class is waiting, nor one of its class
// that has waited longer.
func (b *Budget) TryTakeClass(now time.Time, who any, c int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.waiting == nil {
		b.waiting = map[any]*waiter{}
	}
	// A consumer waits once per class, each keeping its own place: one
	// that asks for work of several classes (a multi-tenant input) keeps
	// its seniority in each.
	key := waitKey{who, c}
	me := b.waiting[key]
	if me == nil {
		me = &waiter{since: now, class: c}
	}
	me.last = now
	if b.wait(now) == 0 && !b.someoneBefore(now, who, me) {
		delete(b.waiting, key)
		b.sent = append(b.sent, now)
		return true
	}
	b.waiting[key] = me
	return false
}

// waitKey is a consumer's place in the queue for one class of work.
type waitKey struct {
	who   any
	class int
}

func (b *Budget) someoneBefore(now time.Time, who any, me *waiter) bool {
	for w, o := range b.waiting {
		if w.(waitKey).who == who {
			continue
		}
		if now.Sub(o.last) > staleWait {
			delete(b.waiting, w)
			continue
		}
		if o.class < me.class || o.class == me.class && o.since.Before(me.since) {
			return true
		}
	}
	return false
}

// Return gives back a request taken at t that was not sent after all.
func (b *Budget) Return(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.sent) - 1; i >= 0; i-- {
		if b.sent[i].Equal(t) {
			b.sent = slices.Delete(b.sent, i, i+1)
			return
		}
	}
}

// Block stops all requests until t (after a 429 with Retry-After).
func (b *Budget) Block(until time.Time) {
	b.mu.Lock()
	if until.After(b.blocked) {
		b.blocked = until
	}
	b.mu.Unlock()
}

func (b *Budget) prune(now time.Time) {
	i := 0
	for i < len(b.sent) && !now.Before(b.sent[i].Add(b.window)) {
		i++
	}
	b.sent = append(b.sent[:0], b.sent[i:]...)
}

// Forget drops consumer who from the waiting list, when it closes: a
// closed input must not stay in a budget that lives as long as the process
// (a reload starts new inputs in the same process).
func (b *Budget) Forget(who any) {
	b.mu.Lock()
	for k := range b.waiting {
		if k.(waitKey).who == who {
			delete(b.waiting, k)
		}
	}
	b.mu.Unlock()
}

// Waiting is how many consumers are waiting for a request.
func (b *Budget) Waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	who := map[any]bool{}
	for k := range b.waiting {
		who[k.(waitKey).who] = true
	}
	return len(who)
}

// Recent returns the times of the requests within the window before now,
// oldest first, and the time before which nothing may be sent (zero if
// none), for keeping across a restart.
func (b *Budget) Recent(now time.Time) (sent []time.Time, blocked time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.prune(now)
	if now.Before(b.blocked) {
		blocked = b.blocked
	}
	return append([]time.Time(nil), b.sent...), blocked
}

// Seed adds requests sent before a restart, as Recent returned them, to
// the window. A time held already counts once: inputs that share a budget
// each keep the same requests, and after a reload in the same process the
// budget holds them still. Times after now count as sent now.
func (b *Budget) Seed(now time.Time, sent []time.Time, blocked time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if blocked.After(b.blocked) {
		b.blocked = blocked
	}
	add := make([]time.Time, 0, len(sent))
	for _, t := range sent {
		if t.After(now) {
			t = now
		}
		add = append(add, t)
	}
	slices.SortFunc(add, func(x, y time.Time) int { return x.Compare(y) })
	// Merge two sorted lists; a time in both is kept once per pair.
	out := make([]time.Time, 0, len(b.sent)+len(add))
	i, j := 0, 0
	for i < len(b.sent) || j < len(add) {
		switch {
		case j == len(add) || i < len(b.sent) && b.sent[i].Before(add[j]):
			out = append(out, b.sent[i])
			i++
		case i == len(b.sent) || add[j].Before(b.sent[i]):
			out = append(out, add[j])
			j++
		default:
			out = append(out, b.sent[i])
			i++
			j++
		}
	}
	b.sent = out
	b.prune(now)
}

// Fill counts the window as full at now: after a restart that did not
// record its last requests (a crash), the first request waits a whole
// window rather than risk Graph's 429s.
func (b *Budget) Fill(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.prune(now)
	for len(b.sent) < b.limit {
		b.sent = append(b.sent, now)
	}
}
