package input

import (
	"bytes"
	"fmt"
	"math"
	"math/rand"
	rand2 "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/in-msgraph/in_msgraph/internal/budget"
	"github.com/in-msgraph/in_msgraph/internal/config"
	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/logging"
)

// An activity volume run is a Management Activity API input against the
// simulator's generated feed, in simulated time, as Fluent Bit drives it
// (a collect every second, each batch committed): blobs listed late (90 %
// within 5 minutes, 1 % up to 3 hours), records up to 21 days older than
// their blob, 2 % of them sent again in a later blob (within 6 hours, keys
// reordered), the tenant's throttle of 2 000 requests a minute, listings
// and blobs that take a second or so, and restarts.
type activityRun struct {
	PerDay   float64
	Backlog  time.Duration // initial_lookback: blobs before the start
	Duration time.Duration // simulated time from the start
	Restarts []time.Duration
	Seed     uint64
}

type activityResult struct {
	Records, Due, Delivered, Duplicates, Missed       int
	Blobs, Requests, Listings, BlobFetches, Throttled int
	PeakIDs, PeakDedupBytes, PeakQueue                int
	PeakFile                                          int64
	// Drained is when the backlog's blobs were all delivered; the lag is
	// from a blob's listing to the delivery of its records, after that.
	Drained        time.Duration
	LagP99, LagMax time.Duration
	Health         map[string]int
}

func (r activityResult) String() string {
	return fmt.Sprintf("%d records (%d due), %d delivered, %d duplicates, %d missed; %d blobs; %d requests (%d listings, %d blob fetches, %d throttled); "+
		"peak %d de-dup ids (%.0f MB), %d blobs queued, state file %.0f MB; backlog delivered after %s; after it, records delivered within %s (p99), %s (max) of their blob's listing",
		r.Records, r.Due, r.Delivered, r.Duplicates, r.Missed, r.Blobs, r.Requests, r.Listings, r.BlobFetches, r.Throttled,
		r.PeakIDs, float64(r.PeakDedupBytes)/1e6, r.PeakQueue, float64(r.PeakFile)/1e6, r.Drained.Round(time.Minute), r.LagP99.Round(time.Second), r.LagMax.Round(time.Second))
}

// slowManage makes listings and blobs take the time they take: about half
// a second, a blob a little more, one request in a hundred 5 to 20 s.
type slowManage struct {
	clk  *graphsim.Clock
	rng  *rand2.Rand
	next http.RoundTripper
}

func (s *slowManage) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := s.next.RoundTrip(req)
	if strings.Contains(req.URL.Path, "/activity/feed/") {
		d := time.Duration(0.5 * float64(time.Second) * math.Exp(0.5*s.rng.NormFloat64()))
		if strings.Contains(req.URL.Path, "/audit/") {
			d += 300 * time.Millisecond
		}
		if s.rng.IntN(100) == 0 {
			d = 5*time.Second + time.Duration(s.rng.Int64N(int64(15*time.Second)))
		}
		s.clk.Advance(d)
	}
	return res, err
}

func runActivity(t *testing.T, v activityRun) activityResult {
	t.Helper()
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	clk := graphsim.NewClock(start)
	sim := graphsim.Start(t, graphsim.Options{Now: clk.Now, Seed: int64(v.Seed), Throttle: true})
	const ct = "Audit.Exchange"
	sim.SetSubscribed(ct, true)
	// The backlog starts a few minutes after the 7 days the first listing
	// may reach back.
	feed := graphsim.NewFeed(graphsim.FeedSpec{ContentType: ct, Seed: v.Seed, From: start.Add(-v.Backlog + 5*time.Minute), To: start.Add(v.Duration),
		PerDay: v.PerDay, BlobRecords: 2000, DupRate: 0.02, DupGap: 6 * time.Hour, ListLateMax: 3 * time.Hour,
		RecordLateMax: 21 * 24 * time.Hour, OutOfOrder: true, Compact: true})
	sim.AddBlobs(feed.Blobs...)
	db := filepath.Join(t.TempDir(), "state.db")
	cfg, err := config.Parse(config.MapGetter{
		"source": "o365_exchange", "tenant_id": graphsim.DefaultTenantID, "client_id": graphsim.DefaultClientID,
		"client_secret": graphsim.DefaultClientSecret, "authority_host": sim.URL(), "graph_host": sim.URL(),
		"management_host": sim.ManageURL(), "db": db, "initial_lookback": config.FormatDuration(v.Backlog), "health_records": "on",
	})
	if err != nil {
		t.Fatal(err)
	}
	bud := budget.New(2000, time.Minute)
	transport := &slowManage{clk: clk, rng: rand2.New(rand2.NewPCG(v.Seed, 5)), next: http.DefaultTransport}
	open := func() *Instance {
		log := logging.New("volume", logging.Warn)
		log.SetOutput(testWriter{T: t})
		in, err := New(cfg, Options{Name: "volume", Now: clk.Now, Rand: rand.New(rand.NewSource(int64(v.Seed))), Logger: log, Budget: bud, Transport: transport})
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	in := open()
	defer func() { in.Close() }()

	counts := make([]uint8, feed.Records)
	res := activityResult{Records: feed.Records, Blobs: len(feed.Blobs), Health: map[string]int{}}
	var lags Histogram
	restarts := v.Restarts
	end := start.Add(v.Duration)
	for tick := 0; clk.Now().Before(end); tick++ {
		t0 := clk.Now()
		if b := in.Collect(); b != nil {
			if err := scanIDs(b, func(id, code string) {
				if code != "" {
					res.Health[code]++
					return
				}
				i, ok := graphsim.FeedRecordIndex(v.Seed, id)
				if !ok {
					t.Fatalf("delivered an id the feed never had: %q", id)
				}
				if counts[i] < 255 {
					counts[i]++
				}
				if counts[i] == 1 && res.Drained > 0 {
					// After the backlog: blobs listed since.
					if _, listed := feed.Home(i); listed.After(start.Add(res.Drained)) {
						lags.Add(clk.Now().Sub(listed))
					}
				}
			}); err != nil {
				t.Fatalf("batch is not valid msgpack records: %v", err)
			}
			in.Commit()
		}
		now := clk.Now()
		res.PeakIDs = max(res.PeakIDs, in.seen.Len())
		res.PeakQueue = max(res.PeakQueue, len(in.act.queue))
		if tick%600 == 0 {
			res.PeakDedupBytes = max(res.PeakDedupBytes, in.seen.Bytes())
			if fi, err := os.Stat(db); err == nil {
				res.PeakFile = max(res.PeakFile, fi.Size())
			}
		}
		if res.Drained == 0 && now.Sub(start) > time.Hour {
			if oldest, _ := in.act.oldest(now); oldest.IsZero() || oldest.After(start) {
				if _, _, n := in.sched.Backlog(now); n < 3 {
					res.Drained = now.Sub(start)
				}
			}
		}
		if len(restarts) > 0 && now.Sub(start) >= restarts[0] {
			restarts = restarts[1:]
			in.Close()
			in = open()
		}
		if d := clk.Now().Sub(t0); d < time.Second {
			clk.Advance(time.Second - d)
		}
	}
	// Every record whose first holder was listed 3 hours before the end
	// (time for the 2h sweep) is due.
	cutoff := end.Add(-3 * time.Hour)
	for i, c := range counts {
		_, listed := feed.Home(i)
		due := listed.Before(cutoff)
		if due {
			res.Due++
		}
		switch {
		case c > 1:
			res.Duplicates += int(c) - 1
		case c == 0 && due:
			if res.Missed < 5 {
				t.Errorf("missed record %d (%s), listed %s", i, graphsim.FeedRecordID(v.Seed, i), listed)
			}
			res.Missed++
		}
		if c > 0 {
			res.Delivered++
		}
	}
	res.LagP99, res.LagMax = lags.Quantile(0.99), lags.max
	st := sim.Stats()
	res.Requests = st.ManageRequests
	res.Listings, res.BlobFetches = st.ByManageOp["content"], st.ByManageOp["blob"]
	res.Throttled = st.ManageThrottled
	if res.Duplicates > 0 || res.Missed > 0 {
		t.Errorf("%d duplicates, %d missed", res.Duplicates, res.Missed)
	}
	return res
}

// idKey is a record's top-level "Id" key followed by the header of its
// 36-byte string, as the compact records of the feed are transcoded.
var idKey = []byte("\xa2Id\xd9\x24")

// scanIDs is scanBatch for a volume of compact records, without walking
// each record: their only key "Id" is their id; a batch with health
// records is walked as scanBatch does.
func scanIDs(b []byte, fn func(id, code string)) error {
	if bytes.Contains(b, []byte("msgraph_warning")) {
		return scanBatch(b, fn)
	}
	n := 0
	for rest := b; ; {
		i := bytes.Index(rest, idKey)
		if i < 0 || len(rest) < i+len(idKey)+36 {
			break
		}
		rest = rest[i+len(idKey):]
		fn(string(rest[:36]), "")
		rest = rest[36:]
		n++
	}
	// Every record has one: one batch in 16 is counted the slow way.
	if scanned++; scanned%16 == 0 {
		if records, err := countRecords(b); err != nil || records != n {
			return fmt.Errorf("%d records, %d ids (%v)", records, n, err)
		}
	}
	return nil
}

var scanned int

// countRecords counts the [time, map] records of a batch.
func countRecords(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		var err error
		if b, err = msgp.Skip(b); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// TestVolumeActivity: a tenant of 10 M Exchange records a day started with
// initial_lookback 7d (70 M records of backlog), then 3 days of steady
// state, with a restart in the backlog and one in the steady state: every
// record exactly once, within the de-dup memory the README states.
func TestVolumeActivity(t *testing.T) {
	if raceEnabled {
		t.Skip("volume runs take minutes under the race detector; make test runs them without it")
	}
	v := activityRun{PerDay: 10e6, Backlog: 7 * 24 * time.Hour, Duration: 3 * 24 * time.Hour, Restarts: []time.Duration{3 * time.Hour, 40 * time.Hour}}
	if os.Getenv("MSGRAPH_ACTIVITY_SMALL") != "" {
		v = activityRun{PerDay: 1e6, Backlog: 24 * time.Hour, Duration: 12 * time.Hour, Restarts: []time.Duration{time.Hour}}
	}
	var worst activityResult
	for _, seed := range volumeSeeds(t, 1) {
		v.Seed = seed
		r := runActivity(t, v)
		t.Logf("seed %d: %s; health %v", seed, r, r.Health)
		if r.PeakDedupBytes > 500e6 {
			t.Errorf("the de-dup set held %.0f MB, above 500 MB", float64(r.PeakDedupBytes)/1e6)
		}
		if r.Health["drift_exceeded"]+r.Health["content_expired"]+r.Health["unreadable_page"] > 0 {
			t.Errorf("health records that nothing here justifies: %v", r.Health)
		}
		if r.Drained == 0 || r.Drained > v.Duration/3 {
			t.Errorf("the backlog was delivered after %s", r.Drained)
		}
		worst.Records = max(worst.Records, r.Records)
		worst.Due = max(worst.Due, r.Due)
		worst.Delivered = max(worst.Delivered, r.Delivered)
		worst.Duplicates = max(worst.Duplicates, r.Duplicates)
		worst.Missed = max(worst.Missed, r.Missed)
		worst.Blobs = max(worst.Blobs, r.Blobs)
		worst.Requests = max(worst.Requests, r.Requests)
		worst.Listings = max(worst.Listings, r.Listings)
		worst.BlobFetches = max(worst.BlobFetches, r.BlobFetches)
		worst.Throttled = max(worst.Throttled, r.Throttled)
		worst.PeakIDs = max(worst.PeakIDs, r.PeakIDs)
		worst.PeakDedupBytes = max(worst.PeakDedupBytes, r.PeakDedupBytes)
		worst.PeakQueue = max(worst.PeakQueue, r.PeakQueue)
		worst.PeakFile = max(worst.PeakFile, r.PeakFile)
		worst.Drained = max(worst.Drained, r.Drained)
		worst.LagP99 = max(worst.LagP99, r.LagP99)
		worst.LagMax = max(worst.LagMax, r.LagMax)
	}
	t.Logf("worst of %d seeds: %s", len(volumeSeeds(t, 1)), worst)
}
