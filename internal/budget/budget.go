// Package budget paces requests to Graph: the reporting APIs allow 5
// requests per 10 seconds per application per tenant, Identity Protection 1
// per second per tenant, the security API 150 per minute. Inputs that draw
// on the same limit in one Fluent Bit share one Budget, so they never
// throttle each other into 429s.
package budget

import (
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
}

// New returns a budget of limit requests per window.
func New(limit int, window time.Duration) *Budget {
	return &Budget{limit: limit, window: window}
}

var (
	registryMu sync.Mutex
	registry   = map[string]*Budget{}
)

// Shared returns the process-wide budget for key (the service's family,
// the tenant and, where the service counts per app, the application),
// created with limit requests per window.
func Shared(key string, limit int, window time.Duration) *Budget {
	registryMu.Lock()
	defer registryMu.Unlock()
	b, ok := registry[key]
	if !ok {
		b = New(limit, window)
		registry[key] = b
	}
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

// TryTake takes one request from the budget if one is free now.
func (b *Budget) TryTake(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.wait(now) > 0 {
		return false
	}
	b.sent = append(b.sent, now)
	return true
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
