package input

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/auth"
	"github.com/in-msgraph/in_msgraph/internal/config"
	"github.com/in-msgraph/in_msgraph/internal/graph"
	"github.com/in-msgraph/in_msgraph/internal/health"
	"github.com/in-msgraph/in_msgraph/internal/manage"
	"github.com/in-msgraph/in_msgraph/internal/records"
	"github.com/in-msgraph/in_msgraph/internal/schedule"
	"github.com/in-msgraph/in_msgraph/internal/state"
)

// The Office 365 Management Activity API sources (o365_*) follow one
// record from HTTP to Fluent Bit this way:
//
//  1. The schedule plans windows of contentCreated (when a blob became
//     available) exactly as it plans event time for Graph: live levels,
//     re-reads of the lookback and reconcile sweeps, because a listing of
//     a past window grows when blobs are listed late. A window is listed
//     through its NextPageUri pages (listPage), at most 24 hours at a
//     time and never more than 7 days back; a window near that edge is
//     listed first (nextListing). A refused NextPageUri lists the window
//     again from its start; a window whose listing fails otherwise waits
//     on its own back-off (listingFailed). The limit: a NextPageUri must
//     stay valid from one page to the next, as Graph's nextLinks must.
//  2. Each blob listed for the first time is queued: kept in memory and in
//     the state file's items until it is delivered, so a restart fetches
//     it again and a re-listing does not queue it twice. A delivered
//     blob's contentId joins the de-dup set, keyed on its contentCreated.
//  3. Queued blobs are fetched oldest contentCreated first (fetchBlob), one
//     per collect, taking turns with listing pages, and decoded at once;
//     a blob that fails waits on its own back-off while the others go on
//     (blobFailed), and is given up only once it expired.
//  4. A decoded blob is handed to Fluent Bit in batches of at most
//     maxBatchBytes (nextBatch), each committed on its own: a crash
//     repeats at most one batch, and the de-dup set drops what an earlier
//     batch delivered.
//  5. Records are de-duplicated by Id across blobs. An id is keyed on the
//     contentCreated of the blob that first held it, never on the
//     record's own CreationTime (records surface weeks late), and kept
//     while a blob within max_lookback of it can still be listed or is
//     queued (activityHorizon); a blob that failed heldTries times no
//     longer holds it.

// maxBatchBytes bounds one batch of a blob's records.
const maxBatchBytes = 4 << 20

// lateRecordAge: a record listed more than this after its CreationTime is
// reported as a late arrival (Microsoft lists most within 60-90 minutes).
const lateRecordAge = 24 * time.Hour

// subscriptionRecheck is how long a missing subscription waits before it
// is checked (or, with auto_subscribe, started) again: Microsoft asks for
// 15 minutes between start requests.
const subscriptionRecheck = 15 * time.Minute

// blobPrefix names a queued blob among the state file's items.
const blobPrefix = "blob/"

// activity is what an instance of a Management Activity API source keeps
// besides what every instance keeps.
type activity struct {
	client      *manage.Client
	contentType string
	// chainNewest is the newest contentCreated a listing's pages showed,
	// per chunk: listings ascend, so only a whole one says how fresh the
	// API's content is.
	chainNewest map[uint64]time.Time
	queue       map[string]*blob
	// order holds the queue sorted by contentCreated (then contentId):
	// the next blob to fetch is almost always its first.
	order []*blob
	// cur is the blob being handed over, page its records, pos how many
	// of them are committed.
	cur  *blob
	page records.Page
	pos  int

	// listed: the last request was a listing page, so a ready blob
	// goes next; listing and fetching take turns, so that neither a long
	// listing nor a failing one holds up the other. lists counts the
	// listing turns, for the reconcile share and the turns of windows
	// about to age out.
	listed bool
	lists  int
	// reported is when each kind of late arrival was last reported.
	reported map[string]time.Time
	// clamped are the windows whose part beyond 7 days was reported.
	clamped map[uint64]bool
	// listFails counts the failed requests of each listing window in a
	// row: a window whose listing fails waits on its own back-off.
	listFails map[uint64]int

	subscribed bool
	subCheck   time.Time // next check of the subscription
	startedSub time.Time // the last start request

	expired     int // blobs expired before they were fetched, not yet reported
	expiredIDs  []string
	lateRecords lateAgg
	lateBlobs   lateAgg
}

// blob is one queued content blob.
type blob struct {
	ID      string    `json:"id"`
	URI     string    `json:"uri"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	Listed  time.Time `json:"listed"`
	// Tries counts the failed fetches, Retry is the earliest next one.
	Tries int       `json:"tries,omitempty"`
	Retry time.Time `json:"retry,omitzero"`
	// Unreadable is set once it was reported as unreadable.
	Unreadable bool `json:"unreadable,omitempty"`
}

// actCommit is what a commit of a Management Activity API source records
// besides ids.
type actCommit struct {
	listed  []manage.Content // a listing page: the blobs new to the queue
	foreign []manage.Content // listed with a contentUri on another host
	blob    *blob            // the blob the batch is of
	end     int              // the batch ends before this record
	drop    bool             // the blob leaves the queue (delivered, or lost)
	// loop: the page's NextPageUri was already followed; its blobs are
	// queued, the listing is restarted later.
	loop error
	// newest is the newest contentCreated of the page's new blobs.
	newest time.Time
	late   []time.Duration // contentCreated - CreationTime of the new records
}

// contentKey is the de-dup key of a delivered blob: it cannot equal a
// record's, whose ids are GUIDs.
func contentKey(id string) records.Key { return records.KeyOf([]byte("\x00content\x00" + id)) }

func newActivity(client *manage.Client, contentType string) *activity {
	return &activity{client: client, contentType: contentType, queue: map[string]*blob{}, chainNewest: map[uint64]time.Time{}, reported: map[string]time.Time{}, clamped: map[uint64]bool{}, listFails: map[uint64]int{}}
}

// load reads the queued blobs from the state file.
func (a *activity) load(db *state.DB) error {
	clear(a.queue)
	a.order = a.order[:0]
	a.cur, a.pos = nil, 0
	return db.Items(func(k string, v []byte) {
		if len(k) <= len(blobPrefix) || k[:len(blobPrefix)] != blobPrefix {
			return
		}
		var b blob
		if json.Unmarshal(v, &b) == nil && b.ID != "" && b.URI != "" {
			a.push(&b)
		}
	})
}

func before(x, y *blob) bool {
	return x.Created.Before(y.Created) || x.Created.Equal(y.Created) && x.ID < y.ID
}

// push queues b.
func (a *activity) push(b *blob) {
	if _, ok := a.queue[b.ID]; ok {
		return
	}
	a.queue[b.ID] = b
	i := sort.Search(len(a.order), func(i int) bool { return before(b, a.order[i]) })
	a.order = append(a.order, nil)
	copy(a.order[i+1:], a.order[i:])
	a.order[i] = b
}

// remove takes b off the queue.
func (a *activity) remove(b *blob) {
	delete(a.queue, b.ID)
	i := sort.Search(len(a.order), func(i int) bool { return !before(a.order[i], b) })
	for ; i < len(a.order); i++ {
		if a.order[i] == b {
			a.order = append(a.order[:i], a.order[i+1:]...)
			return
		}
	}
}

// next is the blob to fetch now: the ready one with the oldest
// contentCreated.
func (a *activity) next(now time.Time) *blob {
	for _, b := range a.order {
		if !b.Retry.After(now) {
			return b
		}
	}
	return nil
}

// oldest is the oldest contentCreated queued, and how long ago the blob
// that has it was listed, of the blobs that have not failed heldTries
// times.
func (a *activity) oldest(now time.Time) (created time.Time, waited time.Duration) {
	for _, b := range a.order {
		if b.Tries < heldTries {
			return b.Created, now.Sub(b.Listed)
		}
	}
	return time.Time{}, 0
}

// readActivity is readPage for the Management Activity API: it hands over
// the next batch of the blob being delivered, or sends one request (a
// subscription check, a listing page, or a blob).
func (in *Instance) readActivity(now time.Time) {
	a := in.act
	in.reportExpired(now)
	if a.cur != nil {
		in.nextBatch(now)
		return
	}
	if now.Before(in.notBefore) {
		return
	}
	if !a.subscribed {
		in.checkSubscription(now)
		return
	}
	b := a.next(now)
	if b != nil && a.listed {
		a.listed = false
		in.fetchBlob(now, b)
		return
	}
	if c, ok := in.nextListing(now); ok {
		a.listed = true
		in.listPage(now, c)
		return
	}
	if b != nil {
		in.fetchBlob(now, b)
	}
}

// ageOut is how close to the API's 7 days a listing window may come
// before it is listed ahead of newer work: what is older than 7 days can
// no longer be listed at all.
const ageOut = 24 * time.Hour

// nextListing is the listing to read now: the schedule's choice, except
// that a window about to age out of the 7 days the API lists goes first,
// the oldest of them first (a 7-day backlog is listed from its old end).
//
// Such windows get every other listing turn, so that one whose listing
// keeps failing cannot hold up the rest.
func (in *Instance) nextListing(now time.Time) (schedule.Chunk, bool) {
	a := in.act
	a.lists++
	if a.lists%2 == 0 {
		edge := now.Add(-config.MaxActivityAge + ageOut)
		var old schedule.Chunk
		for _, c := range in.sched.Pending() {
			if c.From.Before(edge) && !c.Wait.After(now) && (old.ID == 0 || c.From.Before(old.From)) {
				old = c
			}
		}
		if old.ID != 0 {
			return old, true
		}
	}
	return in.sched.Next((a.lists/2)%schedule.ReconcileShare == schedule.ReconcileShare-1)
}

// checkSubscription makes sure the content type is subscribed to, which
// the API needs before it lists anything, and starts the subscription
// with auto_subscribe.
func (in *Instance) checkSubscription(now time.Time) {
	a := in.act
	if now.Before(a.subCheck) || !in.budget.TryTake(now, in) {
		return
	}
	in.Stats.Requests++
	subs, err := a.client.Subscriptions(in.ctx)
	in.countRequest("subscriptions/list", err)
	if err != nil {
		in.onError(now, err)
		return
	}
	if manage.Enabled(subs, a.contentType) {
		a.subscribed = true
		in.onSuccess(now)
		in.log.Infof("the subscription to %s is enabled", a.contentType)
		return
	}
	a.subCheck = now.Add(subscriptionRecheck)
	if !in.cfg.AutoSubscribe {
		msg := fmt.Sprintf("the tenant has no enabled subscription to %s, so %s collects none of its content: start it with POST %s (with a token of an app that has ActivityFeed.Read), or set auto_subscribe on; it is checked again every %s",
			a.contentType, manage.Service, a.client.StartURL(a.contentType), config.FormatDuration(subscriptionRecheck))
		if in.health.Fire(now, health.APIError, msg, records.Field{Key: "content_type", Value: a.contentType}) {
			in.log.Errorf("%s", msg)
		}
		return
	}
	if !a.startedSub.IsZero() && now.Sub(a.startedSub) < subscriptionRecheck {
		return
	}
	if !in.budget.TryTake(now, in) {
		a.subCheck = now
		return
	}
	in.Stats.Requests++
	a.startedSub = now
	err = a.client.Start(in.ctx, a.contentType)
	in.countRequest("subscriptions/start", err)
	if err != nil {
		in.onError(now, err)
		return
	}
	a.subscribed = true
	in.onSuccess(now)
	msg := fmt.Sprintf("started the subscription to %s (auto_subscribe on): Microsoft may take up to 12 hours to list the first content after a subscription starts; content created before the start is not collected", a.contentType)
	in.health.Event(now, health.SubscriptionStarted, msg, records.Field{Key: "content_type", Value: a.contentType})
	in.log.Warnf("%s", msg)
}

// listingFailed handles a listing page that failed. Throttling, auth and
// a missing subscription concern every request, and back off the input;
// anything else waits for this window alone, so that one window whose
// listing keeps failing holds up neither the other windows nor the
// blobs, and is reported once, after unreadableTries failures.
func (in *Instance) listingFailed(now time.Time, c schedule.Chunk, err error) {
	a := in.act
	var ae *auth.Error
	var ge *graph.APIError
	if in.ctx.Err() != nil || errors.As(err, &ae) || noSubscription(err) || errors.As(err, &ge) && (ge.Throttled || ge.Status == http.StatusUnauthorized) {
		in.sched.Unpin(c.ID)
		in.onError(now, err)
		return
	}
	a.listFails[c.ID]++
	n := a.listFails[c.ID]
	wait := in.backoff(n, time.Second, 15*time.Minute)
	in.sched.Defer(c.ID, now.Add(wait))
	if errors.As(err, new(*graph.OriginError)) || errors.As(err, new(*pagingError)) {
		in.restartChain()
	}
	in.Stats.Errors++
	in.notBefore = now.Add(time.Second)
	msg := fmt.Sprintf("%v; the listing of content created %s to %s is tried again in %s (%d failures in a row); other windows and blobs go on meanwhile",
		err, c.From.UTC().Format(time.RFC3339), c.To.UTC().Format(time.RFC3339), wait.Round(time.Second), n)
	if n == unreadableTries {
		fields := append(stretchFields(c.From, c.To), records.Field{Key: "consecutive_failures", Value: n})
		if ge != nil {
			if fix := ge.Fix(); fix != "" {
				msg += "; " + fix
			}
			fields = append(fields, records.Field{Key: "http_status", Value: ge.Status}, records.Field{Key: "graph_error_code", Value: ge.Code}, records.Field{Key: "request_id", Value: ge.RequestID})
		}
		in.health.Report(now, health.APIError, "event", in.log.Scrub(msg), fields...)
		in.log.Errorf("%s", msg)
		return
	}
	in.log.Warnf("%s", in.log.Scrub(msg))
}

// noSubscription reports whether err says the content type is not
// subscribed to (any more).
func noSubscription(err error) bool {
	var ge *graph.APIError
	return errors.As(err, &ge) && (ge.Code == "AF20022" || ge.Code == "AF20023")
}

// listPage reads one page of the listing of chunk c.
func (in *Instance) listPage(now time.Time, c schedule.Chunk) {
	a := in.act
	// startTime may be at most 7 days back; a minute's margin keeps the
	// request valid however long it waits.
	limit := now.Add(-config.MaxActivityAge + time.Minute)
	if c.To.Before(limit) {
		in.sched.Drop(c.ID)
		delete(in.followed, c.ID)
		delete(a.chainNewest, c.ID)
		delete(a.listFails, c.ID)
		in.tooOld(now, c.From, c.To)
		return
	}
	from := later(c.From, limit)
	if c.Link == "" && manage.Span(from, c.To) > manage.MaxWindow && in.sched.Split(c.ID) {
		// Listed in parts of at most 24 hours, from the next collect on.
		return
	}
	// The part older than 7 days cannot be listed any more (past the
	// minute's margin, which initial_lookback 7d gives up).
	if c.Link == "" && from.After(c.From.Add(2*time.Minute)) && !a.clamped[c.ID] {
		a.clamped[c.ID] = true
		in.tooOld(now, c.From, from)
	}
	link := c.Link
	if link == "" {
		link = a.client.ListURL(a.contentType, from, c.To)
	}
	in.req = request{chunk: c.ID, linked: c.Link != ""}
	if !in.budget.TryTake(now, in) {
		return
	}
	in.Stats.Requests++
	l, err := a.client.List(in.ctx, link)
	in.countRequest("subscriptions/content", err)
	var loop error
	if err == nil && l.Next != "" {
		switch {
		case l.Next == link || in.linkFollowed(c.ID, l.Next):
			// The page itself is sound: its blobs are queued.
			loop = &pagingError{msg: manage.Service + " returned a NextPageUri already followed in this listing (a paging loop); the blobs of the pages read are fetched, and the listing is restarted later"}
		case !a.client.SameOrigin(l.Next):
			loop = &graph.OriginError{Link: l.Next, Host: in.cfg.ManagementHost, What: manage.Service + "'s NextPageUri", Key: "management_host"}
		}
	}
	if err != nil {
		switch {
		case noSubscription(err):
			a.subscribed, a.subCheck = false, now
		case in.req.linked && linkRefused(err):
			// The service no longer takes the link (an expired page
			// token): the window is listed again from its start, at once.
			in.linkRefused(now, c, err)
			return
		}
		in.listingFailed(now, c, err)
		return
	}
	if loop == nil {
		in.onSuccess(now)
		in.linkFails = 0
		if n := a.listFails[c.ID]; n >= unreadableTries {
			msg := fmt.Sprintf("the listing of content created %s to %s succeeds again after %d failures", c.From.UTC().Format(time.RFC3339), c.To.UTC().Format(time.RFC3339), n)
			in.health.Report(now, health.APIError, "resolved", msg, stretchFields(c.From, c.To)...)
			in.log.Infof("%s", msg)
		}
		delete(a.listFails, c.ID)
	}
	in.Stats.Pages++
	ac := &actCommit{loop: loop}
	var newest time.Time
	for _, it := range l.Items {
		if b, queued := a.queue[it.ID]; queued {
			if b.URI != it.URI && a.client.SameOrigin(it.URI) {
				// Listed again at another address: fetched from there.
				b.URI, b.Tries, b.Retry = it.URI, 0, time.Time{}
				in.stageBlob(b)
			}
			continue
		}
		if in.seen.Has(contentKey(it.ID)) {
			continue
		}
		if !a.client.SameOrigin(it.URI) {
			ac.foreign = append(ac.foreign, it)
			continue
		}
		ac.listed = append(ac.listed, it)
		if it.Created.After(newest) {
			newest = it.Created
		}
	}
	if l.Invalid > 0 {
		msg := fmt.Sprintf("%s listed %d content items that cannot be read (%s); they are skipped", manage.Service, l.Invalid, l.Problem)
		if in.health.Event(now, health.InvalidRecords, msg, records.Field{Key: "count", Value: l.Invalid}, records.Field{Key: "request_id", Value: l.RequestID}) {
			in.log.Warnf("%s (request-id %s)", msg, l.RequestID)
		}
	}
	in.log.Debugf("at %s: %s listing %s..%s: %d items, %d new, more=%t", now.UTC().Format("15:04:05.0"), c.Class,
		c.From.UTC().Format(time.RFC3339), c.To.UTC().Format(time.RFC3339), len(l.Items), len(ac.listed), l.Next != "")
	ac.newest = newest
	clear(in.inPage)
	in.pending = &commit{chunk: c.ID, result: schedule.PageResult{Count: len(l.Items), Next: l.Next, Fresh: c.Link == ""},
		when: now, class: c.Class, act: ac,
		// Only a listing that reaches the present says how fresh the
		// content is (not the older parts of a backlog).
		live: c.Class == schedule.Live && !c.Planned.Before(in.began) && !c.OrigTo.Before(c.Planned)}
}

// fetchBlob fetches and decodes blob b, and hands over its first batch.
func (in *Instance) fetchBlob(now time.Time, b *blob) {
	a := in.act
	if !in.budget.TryTake(now, in) {
		return
	}
	in.Stats.Requests++
	resp, err := a.client.Blob(in.ctx, b.URI)
	in.countRequest("audit", err)
	unreadable := false
	if err == nil {
		err = in.dec.DecodeArray(resp.Body, &a.page)
		resp.Release() // the page holds copies
		if err != nil {
			unreadable = true
			err = &graph.TransportError{Service: manage.Service, RequestID: resp.RequestID, Err: fmt.Errorf("the content blob could not be read: %w", err)}
		}
	}
	if err != nil {
		a.page.Records = a.page.Records[:0]
		in.blobFailed(now, b, err, unreadable)
		return
	}
	in.onSuccess(now)
	in.Stats.Pages++
	in.Stats.Blobs++
	in.reportPage(now, &a.page, resp.RequestID)
	if b.Unreadable {
		msg := fmt.Sprintf("the content blob %s (created %s) can be read again; its records are delivered now", b.ID, b.Created.UTC().Format(time.RFC3339))
		in.health.Report(now, health.UnreadablePage, "resolved", msg, records.Field{Key: "content_id", Value: b.ID})
		in.log.Infof("%s", msg)
	}
	a.cur, a.pos = b, 0
	in.nextBatch(now)
}

// blobFailed handles a blob that could not be fetched or read: it waits on
// its own back-off while other blobs are fetched, until it expires.
func (in *Instance) blobFailed(now time.Time, b *blob, err error, unreadable bool) {
	a := in.act
	var ge *graph.APIError
	switch {
	case errors.As(err, &ge) && ge.Code == "AF20051":
		// Expired before it was fetched: its records are lost upstream.
		if b.Unreadable {
			msg := fmt.Sprintf("the content blob %s (created %s) could not be read in %d tries and has now expired: its records are not delivered", b.ID, b.Created.UTC().Format(time.RFC3339), b.Tries)
			in.health.Report(now, health.UnreadablePage, "abandoned", msg, records.Field{Key: "content_id", Value: b.ID}, records.Field{Key: "tries", Value: b.Tries})
			in.log.Errorf("%s", msg)
		} else {
			a.expired++
			if len(a.expiredIDs) < records.MaxListed {
				a.expiredIDs = append(a.expiredIDs, b.ID)
			}
			in.reportExpired(now)
		}
		in.onSuccess(now)
		in.pending = &commit{when: now, act: &actCommit{blob: b, drop: true}}
		return
	}
	var ae *auth.Error
	if errors.As(err, &ae) || errors.As(err, &ge) && (ge.Throttled || ge.Status == http.StatusUnauthorized) {
		// The service's answer to every request, not this blob's.
		in.onError(now, err)
		return
	}
	b.Tries++
	b.Retry = now.Add(in.backoff(b.Tries, time.Second, time.Hour))
	in.stageBlob(b)
	if gone := b.Expires.Add(expiryGrace); b.Tries > unreadableTries && now.After(gone) {
		// Failed since before its expiry, and the service still does not
		// say AF20051: it is given up as expired.
		msg := fmt.Sprintf("the content blob %s (created %s) could not be fetched in %d tries (%v) and expired at %s: its records are not delivered",
			b.ID, b.Created.UTC().Format(time.RFC3339), b.Tries, err, b.Expires.UTC().Format(time.RFC3339))
		in.health.Report(now, health.UnreadablePage, "abandoned", in.log.Scrub(msg), records.Field{Key: "content_id", Value: b.ID}, records.Field{Key: "tries", Value: b.Tries})
		in.log.Errorf("%s", msg)
		in.pending = &commit{when: now, act: &actCommit{blob: b, drop: true}}
		return
	}
	if !unreadable {
		var te *graph.TransportError
		if errors.As(err, &te) || errors.As(err, &ge) && ge.Status >= 500 {
			// Network and server trouble: the usual back-off, which other
			// blobs' successes clear.
			in.onError(now, err)
			return
		}
		// A refusal of this blob alone (AF20050, a blob over 100 MiB, an
		// address no longer on management_host): it waits on its own,
		// and is reported once.
		in.notBefore = now.Add(time.Second)
		in.Stats.Errors++
		msg := fmt.Sprintf("%v; the content blob %s (created %s) is fetched again at %s (try %d) and then with a growing wait until it expires at %s; every other blob is fetched meanwhile",
			err, b.ID, b.Created.UTC().Format(time.RFC3339), b.Retry.UTC().Format(time.RFC3339), b.Tries, b.Expires.UTC().Format(time.RFC3339))
		if b.Tries == unreadableTries {
			in.health.Report(now, health.APIError, "event", in.log.Scrub(msg), records.Field{Key: "content_id", Value: b.ID}, records.Field{Key: "tries", Value: b.Tries})
			in.log.Errorf("%s", msg)
		} else {
			in.log.Warnf("%s", msg)
		}
		return
	}
	in.Stats.Unreadable++
	in.notBefore = now.Add(time.Second)
	if b.Tries >= unreadableTries && !b.Unreadable {
		b.Unreadable = true
		in.Stats.Stretches++
		msg := fmt.Sprintf("the content blob %s (created %s) cannot be read (%v): its records are not delivered yet; every other blob is. It is fetched again with a growing wait (next at %s), until it expires at %s",
			b.ID, b.Created.UTC().Format(time.RFC3339), err, b.Retry.UTC().Format(time.RFC3339), b.Expires.UTC().Format(time.RFC3339))
		in.health.Report(now, health.UnreadablePage, "event", in.log.Scrub(msg), records.Field{Key: "content_id", Value: b.ID},
			records.Field{Key: "retry_at", Value: b.Retry.UTC().Format(time.RFC3339)})
		in.log.Errorf("%s", msg)
	} else {
		in.log.Warnf("%v; the content blob %s is fetched again at %s", err, b.ID, b.Retry.UTC().Format(time.RFC3339))
	}
}

// expiryGrace is how long past its contentExpiration a blob that keeps
// failing is still tried.
const expiryGrace = time.Hour

// heldTries: a blob that failed this often no longer holds the de-dup
// horizon back, nor counts as waiting: one that never succeeds must not
// keep days of ids in memory. Read at last, its records are de-duplicated
// against what is still held.
const heldTries = 3

// tooOld reports a window of contentCreated that was not listed before it
// aged out of the 7 days the API lists: whatever it held is lost.
func (in *Instance) tooOld(now, from, to time.Time) {
	msg := fmt.Sprintf("content created %s to %s was not listed before it became older than the 7 days %s lists (collection was stopped or behind that long): whatever it held is not delivered; read that time in the Microsoft Purview audit search",
		from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), manage.Service)
	in.health.Report(now, health.ContentExpired, "event", msg, append(stretchFields(from, to), records.Field{Key: "kind", Value: "listing"})...)
	in.log.Errorf("%s", msg)
}

// reportExpired reports the blobs that expired before they were fetched,
// once the queue holds no more that expired (they are the oldest, fetched
// one after the other), so that one record counts them all.
func (in *Instance) reportExpired(now time.Time) {
	a := in.act
	if a.expired == 0 {
		return
	}
	for _, b := range a.queue {
		if !b.Expires.After(now) && !b.Retry.After(now) {
			return
		}
	}
	msg := fmt.Sprintf("%d content blobs expired before they could be fetched (%s answered AF20051; content is kept 7 days): their records are lost upstream (content ids %s). Collection was stopped or behind for days; read that time in the Microsoft Purview audit search",
		a.expired, manage.Service, records.JoinIDs(a.expiredIDs, a.expired))
	if in.health.Event(now, health.ContentExpired, msg, records.Field{Key: "count", Value: a.expired}) {
		in.log.Errorf("%s", msg)
		a.expired, a.expiredIDs = 0, nil
	}
}

// foreignContent reports listed blobs whose contentUri is on another host
// than management_host: they are never fetched, so the token stays home.
func (in *Instance) foreignContent(now time.Time, items []manage.Content) {
	if len(items) == 0 {
		return
	}
	err := &graph.OriginError{Link: items[0].URI, Host: in.cfg.ManagementHost, What: manage.Service + "'s contentUri", Key: "management_host"}
	msg := fmt.Sprintf("%v: %d content blobs (the first %s, created %s) are not fetched", err, len(items), items[0].ID, items[0].Created.UTC().Format(time.RFC3339))
	if in.health.Fire(now, health.APIError, msg, records.Field{Key: "count", Value: len(items)}) {
		in.log.Errorf("%s", msg)
	}
}

// nextBatch hands over the next records of the blob being delivered.
func (in *Instance) nextBatch(now time.Time) {
	a := in.act
	p := &a.page
	end, size := a.pos, 0
	for end < len(p.Records) {
		n := p.Records[end].End - p.Records[end].Start
		if end > a.pos && size+n > maxBatchBytes {
			break
		}
		size += n
		end++
	}
	in.page.Buf, in.page.Records = p.Buf, p.Records[a.pos:end]
	clear(in.inPage)
	in.pending = &commit{when: now, act: &actCommit{blob: a.cur, end: end, drop: end == len(p.Records)}}
}

// noteRecord records what a new record of a blob says of lateness.
func (in *Instance) noteRecord(r records.Record) {
	if c := in.pending; c != nil && c.act != nil && c.act.blob != nil {
		c.act.late = append(c.act.late, c.act.blob.Created.Sub(time.Unix(0, r.Created)))
	}
}

// entryTime is the time a record's id is kept by: its event time for
// Graph, its blob's contentCreated for the Management Activity API.
func (in *Instance) entryTime(r records.Record) int64 {
	if c := in.pending; c != nil && c.act != nil && c.act.blob != nil {
		return c.act.blob.Created.UnixNano()
	}
	return r.Created
}

// stageBlob has the next commit write b's queue entry.
func (in *Instance) stageBlob(b *blob) {
	if in.st.file == nil {
		return
	}
	v, _ := json.Marshal(b)
	in.st.file.Stage(blobPrefix+b.ID, v)
}

// commitActivity is Commit for the Management Activity API.
func (in *Instance) commitActivity(c *commit) {
	a := in.act
	now := in.now()
	ac := c.act
	for _, e := range c.add {
		in.seen.Add(e.Key, e.Time)
	}
	in.Stats.Delivered += len(c.add)
	in.metrics.Delivered(len(c.add))
	in.recordLateness(now, ac.late)
	add := c.add
	switch {
	case ac.blob != nil:
		a.pos = ac.end
		if ac.drop {
			b := ac.blob
			a.remove(b)
			if a.cur == b {
				a.cur, a.pos = nil, 0
			}
			if in.st.file != nil {
				in.st.file.Stage(blobPrefix+b.ID, nil)
			}
			add = append(add, state.Entry{Key: contentKey(b.ID), Time: b.Created.UnixNano()})
		}
	default:
		// Blobs on another host are not remembered: listed again with a
		// sound contentUri, they are fetched.
		in.foreignContent(now, ac.foreign)
		for _, it := range ac.listed {
			b := &blob{ID: it.ID, URI: it.URI, Created: it.Created, Expires: it.Expires, Listed: now}
			a.push(b)
			in.stageBlob(b)
		}
		if c.class == schedule.Reconcile {
			in.lateBlobs(now, ac.listed)
		}
		if ac.loop != nil {
			if ch, ok := in.pendingChunk(c.chunk); ok {
				in.listingFailed(now, ch, ac.loop)
			}
			break
		}
		if ac.newest.After(a.chainNewest[c.chunk]) {
			a.chainNewest[c.chunk] = ac.newest
		}
		_, done, err := in.sched.PageDone(c.chunk, c.result)
		switch {
		case err != nil || done:
			if n := a.chainNewest[c.chunk]; done && c.live && n.After(in.newest) {
				in.newest = n
			}
			delete(a.chainNewest, c.chunk)
			delete(in.followed, c.chunk)
		default:
			if c.result.Fresh {
				delete(in.followed, c.chunk)
			}
			if in.followed[c.chunk] == nil {
				in.followed[c.chunk] = map[string]struct{}{}
			}
			in.followed[c.chunk][c.result.Next] = struct{}{}
		}
	}
	for _, e := range add[len(c.add):] {
		in.seen.Add(e.Key, e.Time)
	}
	var expired []records.Key
	h := in.activityHorizon(now)
	// Listings widen their bounds to whole seconds: ids are kept 2 s
	// longer.
	in.seen.Expire(h.Add(-2*time.Second).UnixNano(), func(k records.Key) { expired = append(expired, k) })
	in.sched.Forget(h)
	in.Stats.Commits++
	in.save(now, add, expired)
	in.report(now)
}

// activityHorizon is the oldest contentCreated whose ids must be kept: a
// duplicate of a record is caught when the blob that repeats it is listed
// or fetched within max_lookback of the contentCreated of the blob that
// first held it. Listings reach back to the schedule's horizon, and the
// queue may hold older blobs (a backlog, read oldest first).
func (in *Instance) activityHorizon(now time.Time) time.Time {
	h := in.sched.Horizon(now)
	if oldest, _ := in.act.oldest(now); !oldest.IsZero() {
		if t := oldest.Add(-in.cfg.MaxLookback); t.Before(h) {
			h = t
		}
	}
	return h
}

// recordLateness measures how long after their CreationTime records were
// listed, and reports those listed more than lateRecordAge after it.
func (in *Instance) recordLateness(now time.Time, late []time.Duration) {
	a := in.act
	n := 0
	for _, l := range late {
		l = max(l, 0)
		in.lateness.Add(l)
		in.metrics.Lateness(l)
		if l > lateRecordAge {
			n++
			a.lateRecords.max = max(a.lateRecords.max, l)
		}
	}
	if n == 0 && a.lateRecords.count == 0 {
		return
	}
	a.lateRecords.count += n
	in.Stats.LateArrivals += n
	in.metrics.LateArrivals(n)
	msg := fmt.Sprintf("%d records were listed more than %s after their CreationTime, the latest %s after it; they are delivered now (their ids are kept by when they were listed)",
		a.lateRecords.count, config.FormatDuration(lateRecordAge), a.lateRecords.max.Round(time.Second))
	if in.lateReport(now, "records", msg, records.Field{Key: "count", Value: a.lateRecords.count},
		records.Field{Key: "max_lateness_seconds", Value: a.lateRecords.max}) {
		in.log.Warnf("%s", msg)
		a.lateRecords = lateAgg{}
	}
}

// pendingChunk is the pending chunk id.
func (in *Instance) pendingChunk(id uint64) (schedule.Chunk, bool) {
	for _, c := range in.sched.Pending() {
		if c.ID == id {
			return c, true
		}
	}
	return schedule.Chunk{}, false
}

// lateReport reports a kind of late arrival at most once per repeat
// interval, each kind on its own, and reports whether it did.
func (in *Instance) lateReport(now time.Time, kind, msg string, figures ...records.Field) bool {
	a := in.act
	if last, ok := a.reported[kind]; ok && now.Sub(last) < in.health.Repeat {
		return false
	}
	a.reported[kind] = now
	in.health.Report(now, health.LateArrivals, "event", msg, append(figures, records.Field{Key: "kind", Value: kind})...)
	return true
}

// lateBlobs reports the blobs that only a reconcile sweep listed: listed
// later than lookback covers; it widens lookback as for Graph.
func (in *Instance) lateBlobs(now time.Time, listed []manage.Content) {
	a := in.act
	var late []manage.Content
	for _, it := range listed {
		if !in.sched.LiveCovers(it.Created) {
			late = append(late, it)
		}
	}
	if len(late) == 0 {
		return
	}
	sort.Slice(late, func(i, j int) bool { return late[i].Created.Before(late[j].Created) })
	a.lateBlobs.count += len(late)
	var beyond time.Duration
	since := in.sched.LookbackSince()
	for _, it := range late {
		l := now.Sub(it.Created)
		a.lateBlobs.max = max(a.lateBlobs.max, l)
		if !it.Created.Before(since) {
			beyond = max(beyond, l)
		}
	}
	lookback := in.sched.Lookback()
	msg := fmt.Sprintf("%d content blobs were listed later than lookback (%s) covers and were found only by a reconcile sweep, the latest %s after its contentCreated; their records are delivered now",
		a.lateBlobs.count, config.FormatDuration(lookback), a.lateBlobs.max.Round(time.Second))
	if in.lateReport(now, "content", msg, records.Field{Key: "count", Value: a.lateBlobs.count},
		records.Field{Key: "max_lateness_seconds", Value: a.lateBlobs.max}, records.Field{Key: "lookback_seconds", Value: lookback}) {
		in.log.Warnf("%s", msg)
		a.lateBlobs = lateAgg{}
	}
	in.widen(now, lookback, beyond, "content was listed")
}
