package health

import (
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/records"
)

func TestFireRepeatClear(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := New("signins", "contoso", 15*time.Minute, true)
	if !m.Fire(t0, Throttled, "slow", records.Field{Key: "count", Value: 3}) {
		t.Fatal("first fire suppressed")
	}
	if m.Fire(t0.Add(time.Minute), Throttled, "slow") {
		t.Fatal("repeat within the interval")
	}
	if !m.Fire(t0.Add(16*time.Minute), Throttled, "still slow") {
		t.Fatal("repeat after the interval suppressed")
	}
	if m.Fire(t0.Add(40*time.Minute), Throttled, "still slow") {
		t.Fatal("the second repeat must wait twice as long")
	}
	if !m.Clear(t0.Add(17*time.Minute), Throttled, "ok") || m.Clear(t0.Add(18*time.Minute), Throttled, "ok") {
		t.Fatal("clear")
	}
	if !m.Event(t0, LateArrivals, "3 late") || m.Event(t0.Add(time.Minute), LateArrivals, "1 late") {
		t.Fatal("event rate limit")
	}
	evs, err := records.DecodeEvents(m.Take(nil))
	if err != nil || len(evs) != 4 {
		t.Fatalf("%d records: %v", len(evs), err)
	}
	want := []struct{ code, status string }{{"throttled", "firing"}, {"throttled", "firing"}, {"throttled", "resolved"}, {"late_arrivals", "event"}}
	for i, w := range want {
		f := evs[i].Fields
		if f["msgraph_warning"] != w.code || f["status"] != w.status || f["source"] != "signins" || f["tenant_id"] != "contoso" {
			t.Fatalf("record %d: %v", i, f)
		}
	}
	if evs[0].Fields["count"] != int64(3) || !evs[0].Time.Equal(t0) {
		t.Fatalf("figures/time: %v", evs[0])
	}
	if len(m.Take(nil)) != 0 {
		t.Fatal("queue not emptied")
	}
	off := New("signins", "contoso", time.Minute, false)
	off.Fire(t0, APIError, "x")
	if len(off.Take(nil)) != 0 || off.Count[APIError] != 1 {
		t.Fatal("disabled monitor queued a record")
	}
}
