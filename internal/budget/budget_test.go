package budget

import (
	"testing"
	"time"
)

func TestSlidingWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := New(5, 10*time.Second)
	for i := range 5 {
		if !b.TryTake(t0.Add(time.Duration(i)*time.Second), 1) {
			t.Fatalf("request %d refused", i)
		}
	}
	now := t0.Add(5 * time.Second)
	if b.TryTake(now, 1) || b.Wait(now) != 5*time.Second {
		t.Fatalf("6th request in the window: wait %v", b.Wait(now))
	}
	if !b.TryTake(t0.Add(10*time.Second), 1) {
		t.Fatal("slot freed by the first request not reused")
	}
	b.Block(t0.Add(30 * time.Second))
	if w := b.Wait(t0.Add(25 * time.Second)); w != 5*time.Second {
		t.Fatalf("blocked wait %v", w)
	}
	// Over a long run the rate never exceeds the budget.
	b = New(5, 10*time.Second)
	sent := 0
	for ms := 0; ms < 600_000; ms += 100 {
		if b.TryTake(t0.Add(time.Duration(ms)*time.Millisecond), 1) {
			sent++
		}
	}
	if sent != 300 {
		t.Fatalf("%d requests in 10 minutes, want 300", sent)
	}
}

func TestSharedByKey(t *testing.T) {
	if Shared("a|t|c", 5, Window) != Shared("a|t|c", 5, Window) || Shared("a|t|c", 5, Window) == Shared("a|t|d", 5, Window) {
		t.Fatal("sharing by key")
	}
}

// TestConsumersTakeTurns: two consumers asking at every tick share the
// budget; the one asking first at each tick does not take every slot.
func TestConsumersTakeTurns(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := New(5, 10*time.Second)
	got := map[string]int{}
	for s := 0; s < 600; s++ {
		now := t0.Add(time.Duration(s) * time.Second)
		for _, who := range []string{"a", "b"} {
			if b.TryTake(now, who) {
				got[who]++
			}
		}
	}
	if got["a"]+got["b"] != 300 || got["a"] < 145 || got["b"] < 145 {
		t.Fatalf("shares %v", got)
	}
	// A consumer that stopped asking does not hold the others back.
	b = New(1, time.Second)
	b.TryTake(t0, "gone")
	b.TryTake(t0, "gone") // refused: now waiting
	if !b.TryTake(t0.Add(10*time.Second), "c") {
		t.Fatal("a stale waiter blocked the budget")
	}
}
