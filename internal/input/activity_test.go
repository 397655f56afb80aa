package input

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	rand2 "math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/in-msgraph/in_msgraph/internal/budget"
	"github.com/in-msgraph/in_msgraph/internal/config"
	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/logging"
	"github.com/in-msgraph/in_msgraph/internal/records"
)

// actRig is a Management Activity API input against the simulator on the
// test clock, with what it delivered.
type actRig struct {
	t      *testing.T
	clk    *graphsim.Clock
	sim    *graphsim.Server
	cfg    config.Config
	in     *Instance
	logs   *bytes.Buffer
	hosts  *hostLog
	byID   map[string]int
	raw    map[string][]byte // the msgpack of the first delivery of each Id
	times  map[string]time.Time
	health []records.Event
}

// hostLog records the hosts a transport sent requests to, and whether
// they carried a bearer token.
type hostLog struct {
	mu     sync.Mutex
	next   http.RoundTripper
	bearer map[string]int
}

func (h *hostLog) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		h.bearer[r.URL.Host]++
	}
	h.mu.Unlock()
	return h.next.RoundTrip(r)
}

func newActRig(t *testing.T, simOpts graphsim.Options, kv ...string) *actRig {
	t.Helper()
	clk := graphsim.NewClock(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC))
	simOpts.Now = clk.Now
	sim := graphsim.Start(t, simOpts)
	props := config.MapGetter{
		"source": "o365_exchange", "tenant_id": graphsim.DefaultTenantID, "client_id": graphsim.DefaultClientID,
		"client_secret": graphsim.DefaultClientSecret, "authority_host": sim.URL(), "graph_host": sim.URL(),
		"management_host": sim.ManageURL(), "db": filepath.Join(t.TempDir(), "state.db"),
		"poll_interval": "10s", "lookback": "2m", "reconcile": "10m", "initial_lookback": "1h",
	}
	for i := 0; i+1 < len(kv); i += 2 {
		props[kv[i]] = kv[i+1]
	}
	cfg, err := config.Parse(props)
	if err != nil {
		t.Fatal(err)
	}
	r := &actRig{t: t, clk: clk, sim: sim, cfg: cfg, logs: &bytes.Buffer{}, byID: map[string]int{}, raw: map[string][]byte{}, times: map[string]time.Time{},
		hosts: &hostLog{next: http.DefaultTransport, bearer: map[string]int{}}}
	r.start()
	t.Cleanup(func() { r.in.Close() })
	return r
}

func (r *actRig) start() {
	r.t.Helper()
	log := logging.New("test", logging.Debug)
	log.SetOutput(r.logs)
	in, err := New(r.cfg, Options{Name: "test", Now: r.clk.Now, Rand: rand.New(rand.NewSource(1)), Logger: log,
		Budget: budget.New(2000, time.Minute), Transport: r.hosts})
	if err != nil {
		r.t.Fatal(err)
	}
	r.in = in
}

func (r *actRig) restart() {
	r.in.Close()
	r.start()
}

func (r *actRig) run(d time.Duration) {
	for end := r.clk.Now().Add(d); r.clk.Now().Before(end); {
		r.clk.Advance(time.Second)
		b := r.in.Collect()
		if b == nil {
			continue
		}
		r.take(b)
		r.in.Commit()
	}
}

func (r *actRig) take(b []byte) {
	r.t.Helper()
	for len(b) > 0 {
		start := b
		var err error
		if b, err = msgp.Skip(b); err != nil {
			r.t.Fatalf("batch: %v", err)
		}
		one := start[:len(start)-len(b)]
		evs, err := records.DecodeEvents(one)
		if err != nil || len(evs) != 1 {
			r.t.Fatalf("record: %v", err)
		}
		e := evs[0]
		if _, ok := e.Fields["msgraph_warning"]; ok {
			r.health = append(r.health, e)
			continue
		}
		id, _ := e.Fields["Id"].(string)
		if r.byID[id]++; r.byID[id] == 1 {
			r.raw[id] = append([]byte(nil), one...)
			r.times[id] = e.Time
		}
	}
}

func (r *actRig) codes() map[string]int {
	m := map[string]int{}
	for _, h := range r.health {
		m[h.Fields["msgraph_warning"].(string)+"/"+h.Fields["status"].(string)]++
	}
	return m
}

func (r *actRig) message(code string) string {
	for _, h := range r.health {
		if h.Fields["msgraph_warning"] == code {
			return h.Fields["message"].(string)
		}
	}
	return ""
}

// keysOf is the top-level keys of a record's map, in order.
func keysOf(t *testing.T, rec []byte) []string {
	t.Helper()
	_, b, err := msgp.ReadArrayHeaderBytes(rec)
	if err == nil {
		b, err = msgp.Skip(b)
	}
	var n uint32
	if err == nil {
		n, b, err = msgp.ReadMapHeaderBytes(b)
	}
	var keys []string
	for i := uint32(0); err == nil && i < n; i++ {
		var k string
		if k, b, err = msgp.ReadStringBytes(b); err == nil {
			keys = append(keys, k)
			b, err = msgp.Skip(b)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// jsonKeys is the top-level keys of a JSON object, in order.
func jsonKeys(t *testing.T, obj []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// activityCase is a small tenant's worth of blobs: late listing, blobs out
// of order, duplicates across blobs with their keys reordered.
type activityCase struct {
	records map[string][]byte // Id -> the record as first made
	created map[string]time.Time
	// copies are the same records sent again, keys reordered.
	copies map[string][][]byte
	// optional ids may be delivered (once), or not.
	optional map[string]bool
}

func addActivity(t *testing.T, sim *graphsim.Server, contentType string, seed int64, from, to time.Time, blobs int) activityCase {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	ids := rand2.New(rand2.NewPCG(uint64(seed), 1))
	c := activityCase{records: map[string][]byte{}, created: map[string]time.Time{}, copies: map[string][][]byte{}}
	var prev [][]byte
	for i := 0; i < blobs; i++ {
		created := from.Add(time.Duration(rng.Int63n(int64(to.Sub(from)))))
		b := graphsim.Blob{ContentType: contentType, Created: created}
		// Most blobs are listed at once, some minutes later, one in five
		// only after 5 to 8 minutes (beyond lookback: a sweep finds it).
		switch rng.Intn(5) {
		case 0:
			b.Listed = created.Add(time.Duration(300+rng.Intn(180)) * time.Second)
		case 1:
			b.Listed = created.Add(time.Duration(rng.Intn(90)) * time.Second)
		}
		n := 1 + rng.Intn(40)
		for j := 0; j < n; j++ {
			id := graphsim.NewID(ids)
			// Records happened up to two hours before the blob, in no
			// order; one in fifty days before.
			when := created.Add(-time.Duration(rng.Int63n(int64(2 * time.Hour)))).Truncate(time.Second)
			if rng.Intn(50) == 0 {
				when = created.Add(-time.Duration(2+rng.Intn(20)) * 24 * time.Hour).Truncate(time.Second)
			}
			rec := graphsim.AuditRecord(contentType, id, when, graphsim.DefaultTenantID)
			c.records[id], c.created[id] = rec, when
			b.Records = append(b.Records, rec)
		}
		// Earlier records sent again, keys reordered (a few per blob).
		for range min(len(prev)/8, 6) {
			p := prev[rng.Intn(len(prev))]
			var id struct{ Id string }
			json.Unmarshal(p, &id)
			cp := graphsim.ReorderKeys(p, uint64(rng.Int63()))
			c.copies[id.Id] = append(c.copies[id.Id], cp)
			b.Records = append(b.Records, cp)
		}
		prev = append(prev, b.Records[:n]...)
		sim.AddBlobs(b)
	}
	return c
}

// verify checks every record of c that is due exactly once, field for
// field, keys in order, timestamped with its CreationTime.
func (r *actRig) verify(c activityCase) {
	r.t.Helper()
	missed, dups := 0, 0
	for id, rec := range c.records {
		n := r.byID[id]
		switch {
		case n == 0:
			if missed++; missed <= 5 {
				r.t.Errorf("missed %s", id)
			}
			continue
		case n > 1:
			dups += n - 1
		}
		got := r.raw[id]
		var want map[string]any
		if err := json.Unmarshal(rec, &want); err != nil {
			r.t.Fatal(err)
		}
		evs, _ := records.DecodeEvents(got)
		if !sameFields(r.t, rec, evs[0].Fields) {
			r.t.Errorf("%s: fields differ", id)
		}
		// The keys in the order of the copy delivered (whichever blob
		// came first).
		ordered := false
		for _, v := range append([][]byte{rec}, c.copies[id]...) {
			ordered = ordered || slices.Equal(keysOf(r.t, got), jsonKeys(r.t, v))
		}
		if !ordered {
			r.t.Errorf("%s: keys %v, want %v", id, keysOf(r.t, got), jsonKeys(r.t, rec))
		}
		if !r.times[id].Equal(c.created[id]) {
			r.t.Errorf("%s: time %v, want CreationTime %v", id, r.times[id], c.created[id])
		}
	}
	for id := range r.byID {
		if _, ok := c.records[id]; !ok && !c.optional[id] {
			r.t.Errorf("delivered %q, which no blob held", id)
		}
	}
	if missed+dups > 0 {
		r.t.Fatalf("%d of %d records missed, %d duplicates", missed, len(c.records), dups)
	}
}

// TestActivityEveryContentType collects each content type from a tenant
// with no subscription (auto_subscribe starts it) through late listing,
// duplicates across blobs and a restart: every record exactly once.
func TestActivityEveryContentType(t *testing.T) {
	for _, src := range []string{"o365_azure_ad", "o365_exchange", "o365_sharepoint", "o365_general", "o365_dlp"} {
		t.Run(src, func(t *testing.T) {
			r := newActRig(t, graphsim.Options{Seed: 5, Throttle: true}, "source", src)
			prof := map[string]string{"o365_azure_ad": "Audit.AzureActiveDirectory", "o365_exchange": "Audit.Exchange",
				"o365_sharepoint": "Audit.SharePoint", "o365_general": "Audit.General", "o365_dlp": "DLP.All"}[src]
			now := r.clk.Now()
			c := addActivity(t, r.sim, prof, 7, now.Add(-50*time.Minute), now.Add(40*time.Minute), 60)
			r.run(20 * time.Minute)
			if !r.sim.Subscribed(prof) || r.codes()["subscription_started/event"] != 1 {
				t.Fatalf("subscription not started: %v", r.codes())
			}
			r.restart()
			r.run(50 * time.Minute)
			r.verify(c)
			if r.in.Stats.Duplicates == 0 || r.codes()["late_arrivals/event"] == 0 {
				t.Errorf("duplicates dropped %d, health %v", r.in.Stats.Duplicates, r.codes())
			}
			if !strings.Contains(r.message("late_arrivals"), "after their CreationTime") && !strings.Contains(r.message("late_arrivals"), "reconcile sweep") {
				t.Errorf("late_arrivals says %q", r.message("late_arrivals"))
			}
			for host := range r.hosts.bearer {
				if !strings.Contains(r.cfg.ManagementHost, host) && !strings.Contains(r.sim.URL(), host) {
					t.Errorf("a token went to %s", host)
				}
			}
		})
	}
}

// TestActivityAutoSubscribeOff reports the missing subscription with what
// to run, and delivers once it has been started.
func TestActivityAutoSubscribeOff(t *testing.T) {
	r := newActRig(t, graphsim.Options{Seed: 6}, "auto_subscribe", "off")
	now := r.clk.Now()
	c := addActivity(t, r.sim, "Audit.Exchange", 8, now.Add(-30*time.Minute), now.Add(-10*time.Minute), 10)
	r.run(5 * time.Minute)
	msg := r.message("api_error")
	if len(r.byID) != 0 || !strings.Contains(msg, "POST "+r.cfg.ManagementHost+"/api/v1.0/"+graphsim.DefaultTenantID+"/activity/feed/subscriptions/start?contentType=Audit.Exchange") ||
		!strings.Contains(msg, "auto_subscribe on") || r.sim.Subscribed("Audit.Exchange") {
		t.Fatalf("delivered %d; api_error %q", len(r.byID), msg)
	}
	r.sim.SetSubscribed("Audit.Exchange", true)
	r.run(20 * time.Minute)
	r.verify(c)
	if r.codes()["api_error/resolved"] != 1 {
		t.Fatalf("health %v", r.codes())
	}
}

// TestActivityExpiredContent: a blob that expires before it is fetched is
// reported as content_expired, with how many; the others are delivered.
func TestActivityExpiredContent(t *testing.T) {
	r := newActRig(t, graphsim.Options{Seed: 9})
	r.sim.SetSubscribed("Audit.Exchange", true)
	now := r.clk.Now()
	keep := graphsim.Blob{ContentType: "Audit.Exchange", Created: now.Add(-20 * time.Minute),
		Records: [][]byte{graphsim.AuditRecord("Audit.Exchange", "0b6d3e1c-6b0a-4f57-9b8e-2d1f00000001", now.Add(-time.Hour), graphsim.DefaultTenantID)}}
	var lost []graphsim.Blob
	for i := range 3 {
		lost = append(lost, graphsim.Blob{ContentType: "Audit.Exchange", Created: now.Add(-30 * time.Minute), Expires: now.Add(3 * time.Second),
			Records: [][]byte{graphsim.AuditRecord("Audit.Exchange", fmt.Sprintf("0b6d3e1c-6b0a-4f57-9b8e-2d1f0000010%d", i), now.Add(-time.Hour), graphsim.DefaultTenantID)}})
	}
	r.sim.AddBlobs(append(lost, keep)...)
	// Once the four are listed, the clock passes the three's expiry
	// before any is fetched.
	for range 10 {
		if len(r.in.act.queue) == 4 {
			break
		}
		r.clk.Advance(time.Second)
		if b := r.in.Collect(); b != nil {
			r.take(b)
		}
		r.in.Commit()
	}
	if len(r.in.act.queue) != 4 {
		t.Fatalf("queue holds %d blobs", len(r.in.act.queue))
	}
	r.clk.Advance(10 * time.Second)
	r.run(5 * time.Minute)
	if r.byID["0b6d3e1c-6b0a-4f57-9b8e-2d1f00000001"] != 1 || len(r.byID) != 1 {
		t.Fatalf("delivered %v", r.byID)
	}
	var count []string
	for _, h := range r.health {
		if h.Fields["msgraph_warning"] == "content_expired" {
			count = append(count, fmt.Sprint(h.Fields["count"]))
		}
	}
	if fmt.Sprint(count) != "[3]" || !strings.Contains(r.message("content_expired"), "AF20051") {
		t.Fatalf("content_expired count %v: %q (health %v)", count, r.message("content_expired"), r.codes())
	}
	if len(r.in.act.queue) != 0 {
		t.Fatalf("queue holds %d blobs", len(r.in.act.queue))
	}
}

// TestActivityBadInput: one bad answer or one bad record never stops the
// stream, and each is reported with its cause.
func TestActivityBadInput(t *testing.T) {
	const ct = "Audit.Exchange"
	rec := func(id string, at time.Time) []byte {
		return graphsim.AuditRecord(ct, id, at, graphsim.DefaultTenantID)
	}
	id := func(i int) string { return fmt.Sprintf("0b6d3e1c-6b0a-4f57-9b8e-%012d", i) }

	t.Run("a listing that is not JSON", func(t *testing.T) {
		r := newActRig(t, graphsim.Options{Seed: 11, ManageFaults: graphsim.ManageFaults{RateBadListing: 1}})
		r.sim.SetSubscribed(ct, true)
		c := addActivity(t, r.sim, ct, 12, r.clk.Now().Add(-40*time.Minute), r.clk.Now(), 10)
		r.run(3 * time.Minute)
		if len(r.byID) != 0 || !strings.Contains(r.message("api_error"), "the content listing could not be read") {
			t.Fatalf("delivered %d; api_error %q", len(r.byID), r.message("api_error"))
		}
		r.sim.SetManageFaults(graphsim.ManageFaults{})
		r.run(30 * time.Minute)
		r.verify(c)
		if r.codes()["api_error/resolved"] != 1 {
			t.Fatalf("health %v", r.codes())
		}
	})

	t.Run("a blob that is not an array", func(t *testing.T) {
		r := newActRig(t, graphsim.Options{Seed: 13})
		r.sim.SetSubscribed(ct, true)
		now := r.clk.Now()
		var mu sync.Mutex
		broken := true
		good := rec(id(1), now.Add(-time.Hour))
		r.sim.AddBlobs(graphsim.Blob{ContentType: ct, Created: now.Add(-20 * time.Minute), N: 1, Body: func() []byte {
			mu.Lock()
			defer mu.Unlock()
			if broken {
				return []byte(`{"value":[]}`)
			}
			return []byte("[" + string(good) + "]")
		}})
		c := addActivity(t, r.sim, ct, 14, now.Add(-30*time.Minute), now.Add(-time.Minute), 8)
		r.run(20 * time.Minute)
		r.verify(c) // every other blob
		if r.codes()["unreadable_page/event"] != 1 || !strings.Contains(r.message("unreadable_page"), "the content is not a JSON array") {
			t.Fatalf("health %v: %q", r.codes(), r.message("unreadable_page"))
		}
		mu.Lock()
		broken = false
		mu.Unlock()
		r.run(3 * time.Hour)
		if r.byID[id(1)] != 1 || r.codes()["unreadable_page/resolved"] != 1 {
			t.Fatalf("delivered %d; health %v", r.byID[id(1)], r.codes())
		}
	})

	t.Run("records without Id or with an unreadable CreationTime", func(t *testing.T) {
		r := newActRig(t, graphsim.Options{Seed: 15})
		r.sim.SetSubscribed(ct, true)
		now := r.clk.Now()
		r.sim.AddBlobs(graphsim.Blob{ContentType: ct, Created: now.Add(-10 * time.Minute), Records: [][]byte{
			rec(id(1), now.Add(-time.Hour)),
			[]byte(`{"CreationTime":"2026-12-01T07:00:00","Operation":"MailItemsAccessed"}`),
			[]byte(`{"CreationTime":"last tuesday","Id":"` + id(2) + `"}`),
			[]byte(`{"CreationTime":"2026-12-01T07:00:00","Id":7}`),
			rec(id(3), now.Add(-time.Hour)),
		}})
		r.run(5 * time.Minute)
		if len(r.byID) != 2 || r.byID[id(1)] != 1 || r.byID[id(3)] != 1 {
			t.Fatalf("delivered %v", r.byID)
		}
		msg := r.message("invalid_records")
		for _, want := range []string{"returned 3 objects that cannot be delivered", "an object has no Id", `an object has an unreadable CreationTime "last tuesday"`, "an object has an Id that is not a string", id(2)} {
			if !strings.Contains(msg, want) {
				t.Errorf("invalid_records %q lacks %q", msg, want)
			}
		}
	})

	t.Run("a contentUri on another host", func(t *testing.T) {
		r := newActRig(t, graphsim.Options{Seed: 16, ManageFaults: graphsim.ManageFaults{ForeignContentURI: true}})
		r.sim.SetSubscribed(ct, true)
		foreign := addActivity(t, r.sim, ct, 17, r.clk.Now().Add(-30*time.Minute), r.clk.Now(), 6)
		r.run(5 * time.Minute)
		msg := r.message("api_error")
		if len(r.byID) != 0 || !strings.Contains(msg, "contentUri points to https://evil.example.invalid, not to management_host") ||
			!strings.Contains(msg, "the bearer token is not sent there") {
			t.Fatalf("delivered %d; api_error %q", len(r.byID), msg)
		}
		for host := range r.hosts.bearer {
			if strings.Contains(host, "evil") {
				t.Fatalf("the token went to %s", host)
			}
		}
		// Blobs listed with sound addresses are fetched.
		r.sim.SetManageFaults(graphsim.ManageFaults{})
		c := addActivity(t, r.sim, ct, 18, r.clk.Now(), r.clk.Now().Add(20*time.Minute), 6)
		// The blobs listed with a foreign address before are fetched too
		// when a sweep lists them again.
		c.optional = map[string]bool{}
		for id := range foreign.records {
			c.optional[id] = true
		}
		r.run(30 * time.Minute)
		r.verify(c)
		for id := range foreign.records {
			if r.byID[id] > 1 {
				t.Errorf("%s delivered %d times", id, r.byID[id])
			}
		}
	})

	t.Run("a NextPageUri that loops", func(t *testing.T) {
		r := newActRig(t, graphsim.Options{Seed: 18, ManagePageSize: 3, ManageFaults: graphsim.ManageFaults{LoopNextPage: true}})
		r.sim.SetSubscribed(ct, true)
		c := addActivity(t, r.sim, ct, 19, r.clk.Now().Add(-30*time.Minute), r.clk.Now().Add(-5*time.Minute), 12)
		r.run(5 * time.Minute)
		if msg := r.message("api_error"); !strings.Contains(msg, "a paging loop") || len(r.byID) == 0 {
			t.Fatalf("delivered %d; api_error %q", len(r.byID), msg)
		}
		r.sim.SetManageFaults(graphsim.ManageFaults{})
		r.run(40 * time.Minute)
		r.verify(c)
	})

	t.Run("5xx, truncated bodies and AF429", func(t *testing.T) {
		r := newActRig(t, graphsim.Options{Seed: 20, ManageFaults: graphsim.ManageFaults{Rate503: 0.1, Rate500: 0.05, RateAF429: 0.1, RateTruncated: 0.1}})
		c := addActivity(t, r.sim, ct, 21, r.clk.Now().Add(-40*time.Minute), r.clk.Now().Add(20*time.Minute), 30)
		r.run(30 * time.Minute)
		r.restart()
		r.run(40 * time.Minute)
		r.verify(c)
		if r.in.Stats.Throttled == 0 || r.in.Stats.Errors == 0 {
			t.Fatalf("stats %+v", r.in.Stats)
		}
	})

	t.Run("no ActivityFeed.Read permission", func(t *testing.T) {
		r := newActRig(t, graphsim.Options{Seed: 22, ManagePermission403: true})
		r.run(3 * time.Minute)
		if msg := r.message("api_error"); !strings.Contains(msg, "AF10001") || !strings.Contains(msg, "grant the app the application permission ActivityFeed.Read") {
			t.Fatalf("api_error %q (health %v)", msg, r.codes())
		}
	})
}

// TestActivityFailuresStayLocal: blobs that the service refuses one by
// one, a blob that never succeeds, and a listing window near the 7-day
// edge whose listing keeps failing hold up nothing else, do not pin the
// de-dup horizon, and are each reported once.
func TestActivityFailuresStayLocal(t *testing.T) {
	const ct = "Audit.Exchange"
	t.Run("blobs refused one by one", func(t *testing.T) {
		r := newActRig(t, graphsim.Options{Seed: 31})
		r.sim.SetSubscribed(ct, true)
		now := r.clk.Now()
		var bad []graphsim.Blob
		for i := range 10 {
			bad = append(bad, graphsim.Blob{ContentType: ct, Created: now.Add(-55*time.Minute + time.Duration(i)*time.Second), Fault: graphsim.BlobNotFound,
				Records: [][]byte{graphsim.AuditRecord(ct, fmt.Sprintf("0b6d3e1c-6b0a-4f57-9b8e-%012d", i), now.Add(-time.Hour), graphsim.DefaultTenantID)}})
		}
		r.sim.AddBlobs(bad...)
		c := addActivity(t, r.sim, ct, 32, now.Add(-50*time.Minute), now.Add(-10*time.Minute), 60)
		r.run(5 * time.Minute)
		r.verify(c)
		if n := r.codes()["api_error/event"]; n != 10 || r.codes()["api_error/firing"] != 0 {
			t.Fatalf("health %v: want one api_error event per refused blob", r.codes())
		}
	})
	t.Run("a blob that never succeeds", func(t *testing.T) {
		r := newActRig(t, graphsim.Options{Seed: 33}, "max_lookback", "1h")
		r.sim.SetSubscribed(ct, true)
		now := r.clk.Now()
		r.sim.AddBlobs(graphsim.Blob{ContentType: ct, Created: now.Add(-50 * time.Minute), Fault: graphsim.BlobInternalError,
			Records: [][]byte{graphsim.AuditRecord(ct, "0b6d3e1c-6b0a-4f57-9b8e-000000000001", now.Add(-time.Hour), graphsim.DefaultTenantID)}})
		var cs []activityCase
		for h := range 4 {
			cs = append(cs, addActivity(t, r.sim, ct, int64(40+h), now.Add(time.Duration(h)*time.Hour), now.Add(time.Duration(h+1)*time.Hour), 20))
		}
		r.run(4 * time.Hour)
		if h, s := r.in.activityHorizon(r.clk.Now()), r.in.sched.Horizon(r.clk.Now()); !h.Equal(s) {
			t.Fatalf("the failing blob holds the de-dup horizon at %s (the schedule's is %s)", h, s)
		}
		if r.codes()["throttled/firing"] != 0 {
			t.Fatalf("a failing blob made the input report it is behind: %q", r.message("throttled"))
		}
		// (With max_lookback 1h, the copies of records sent again more
		// than an hour apart are not all caught: only the horizon is
		// checked here, and that nothing is missing.)
		for _, c := range cs[:3] {
			for id := range c.records {
				if r.byID[id] == 0 {
					t.Fatalf("missed %s", id)
				}
			}
		}
	})
	t.Run("a listing window about to age out that keeps failing", func(t *testing.T) {
		r := newActRig(t, graphsim.Options{Seed: 39}, "initial_lookback", "7d")
		now := r.clk.Now()
		r.hosts.next = &badWindow{next: r.hosts.next, before: now.Add(-6*24*time.Hour - 12*time.Hour)}
		r.sim.SetSubscribed(ct, true)
		addActivity(t, r.sim, ct, 40, now.Add(-7*24*time.Hour+10*time.Minute), now.Add(-time.Hour), 300)
		live := addActivity(t, r.sim, ct, 41, now, now.Add(50*time.Minute), 30)
		r.run(time.Hour)
		for id := range live.records {
			if r.byID[id] != 1 {
				t.Fatalf("live record %s delivered %d times while an old window failed; health %v", id, r.byID[id], r.codes())
			}
		}
		if r.codes()["api_error/event"] == 0 || r.codes()["content_expired/event"] == 0 {
			t.Fatalf("health %v: want the failing window reported, and what aged out", r.codes())
		}
	})
}

// badWindow answers every listing whose startTime is before `before` with
// a body that is not JSON.
type badWindow struct {
	next   http.RoundTripper
	before time.Time
}

func (b *badWindow) RoundTrip(req *http.Request) (*http.Response, error) {
	if st := req.URL.Query().Get("startTime"); strings.HasSuffix(req.URL.Path, "/subscriptions/content") && st != "" {
		if at, err := time.Parse("2006-01-02T15:04:05", st); err == nil && at.Before(b.before) {
			return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
				Body: io.NopCloser(strings.NewReader("<html>")), Request: req}, nil
		}
	}
	return b.next.RoundTrip(req)
}
