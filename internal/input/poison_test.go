package input

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/records"
)

// TestPoisonRecordsDoNotStopTheStream: a sign-in nested 601 levels deep
// (which the decoder refuses), one nested 20 deep and one with 1E400
// (which Fluent Bit's outputs cannot carry as sent) among good ones: the
// refused one is skipped and reported with its id, the others delivered
// in a form every output carries and reported, and newer events keep
// coming.
func TestPoisonRecordsDoNotStopTheStream(t *testing.T) {
	r := newRig(t, graphsim.Options{Seed: 9}, "reconcile", "off")
	now := r.clk.Now()
	at := func(d time.Duration) (time.Time, string) {
		tm := now.Add(d).UTC()
		return tm, tm.Format(graphsim.DateTimeLayout)
	}
	var evs []graphsim.Event
	obj := func(id string, d time.Duration, extra string) {
		tm, ts := at(d)
		evs = append(evs, graphsim.Event{ID: id, Created: tm, Visible: tm,
			JSON: []byte(fmt.Sprintf(`{"id":%q,"createdDateTime":%q%s}`, id, ts, extra))})
	}
	obj("good-1", -3*time.Minute, "")
	obj("too-deep", -2*time.Minute, `,"x":`+strings.Repeat("[", 601)+strings.Repeat("]", 601))
	obj("deep-20", -90*time.Second, `,"x":`+strings.Repeat(`{"a":`, 20)+"1"+strings.Repeat("}", 20))
	obj("huge", -80*time.Second, `,"n":1E400`)
	obj("good-2", -time.Minute, "")
	r.sim.Add(evs...)
	r.run(2*time.Minute, time.Second)
	later := r.clk.Now().Add(-10 * time.Second)
	r.sim.Add(graphsim.Event{ID: "good-3", Created: later, Visible: later,
		JSON: []byte(fmt.Sprintf(`{"id":"good-3","createdDateTime":%q}`, later.UTC().Format(graphsim.DateTimeLayout)))})
	r.run(2*time.Minute, time.Second)
	for _, id := range []string{"good-1", "deep-20", "huge", "good-2", "good-3"} {
		if r.byID[id] != 1 {
			t.Errorf("%s delivered %d times", id, r.byID[id])
		}
	}
	if r.byID["too-deep"] != 0 {
		t.Error("the 601-deep object was delivered")
	}
	var invalid, altered []records.Event
	for _, h := range r.health {
		switch h.Fields["msgraph_warning"] {
		case "invalid_records":
			invalid = append(invalid, h)
		case "altered_records":
			altered = append(altered, h)
		}
	}
	if len(invalid) != 1 || !strings.Contains(fmt.Sprint(invalid[0].Fields["ids"]), "too-deep") {
		t.Errorf("invalid_records: %v", invalid)
	}
	if len(altered) != 1 || fmt.Sprint(altered[0].Fields["deep_count"]) != "1" || fmt.Sprint(altered[0].Fields["number_count"]) != "1" {
		t.Errorf("altered_records: %v", altered)
	}
	for _, e := range r.events {
		if e.Fields["id"] == "huge" {
			if s, ok := e.Fields["n"].(string); !ok || s != "1E400" {
				t.Errorf("1E400 delivered as %#v", e.Fields["n"])
			}
		}
	}
}
