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

func TestForgetDropsAClosedConsumer(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := New(1, time.Second)
	b.TryTake(t0, "a")
	if b.TryTake(t0, "closed") || b.Waiting() != 1 {
		t.Fatalf("a refused consumer waits: %d waiting", b.Waiting())
	}
	b.Forget("closed")
	if b.Waiting() != 0 {
		t.Fatalf("%d waiting after Forget", b.Waiting())
	}
}

// TestSeedCarriesTheWindowAcrossARestart: a new budget seeded with what the
// old one sent refuses what the old one would have refused.
func TestSeedCarriesTheWindowAcrossARestart(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	old := New(5, 10*time.Second)
	for i := range 5 {
		old.TryTake(t0.Add(time.Duration(i)*time.Second), 1)
	}
	old.Block(t0.Add(7 * time.Second))
	now := t0.Add(6 * time.Second)
	sent, blocked := old.Recent(now)
	if len(sent) != 5 || !blocked.Equal(t0.Add(7*time.Second)) {
		t.Fatalf("recent %v blocked %v", sent, blocked)
	}
	b := New(5, 10*time.Second)
	b.Seed(now, sent, blocked)
	if w, want := b.Wait(now), old.Wait(now); w != want || w != 4*time.Second {
		t.Fatalf("seeded wait %v, the old budget's %v", w, want)
	}
	// Seeding the same requests again (a second input that shares the
	// budget, or a reload in the same process) counts them once.
	b.Seed(now, sent, blocked)
	old.Seed(now, sent, blocked)
	if b.Wait(now) != 4*time.Second || old.Wait(now) != 4*time.Second {
		t.Fatalf("seeded twice: wait %v and %v", b.Wait(now), old.Wait(now))
	}
	if !b.TryTake(t0.Add(10*time.Second), 1) || b.TryTake(t0.Add(10*time.Second), 1) {
		t.Fatal("the first seeded request did not free exactly one slot")
	}
	// Two requests at the same instant stay two.
	c := New(5, 10*time.Second)
	c.TryTake(t0, 1)
	c.TryTake(t0, 2)
	c.Seed(t0, []time.Time{t0, t0, t0}, time.Time{})
	if s, _ := c.Recent(t0); len(s) != 3 {
		t.Fatalf("%d requests at one instant, want 3", len(s))
	}
	// Times from the future (the clock went back) count as now.
	c = New(1, 10*time.Second)
	c.Seed(t0, []time.Time{t0.Add(time.Hour)}, time.Time{})
	if w := c.Wait(t0); w != 10*time.Second {
		t.Fatalf("future time: wait %v", w)
	}
}

func TestFillWaitsAWholeWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := New(5, 10*time.Second)
	b.TryTake(t0, 1)
	b.Fill(t0.Add(time.Second))
	if w := b.Wait(t0.Add(time.Second)); w != 9*time.Second {
		t.Fatalf("wait %v", w)
	}
	if !b.TryTake(t0.Add(10*time.Second), 1) || b.TryTake(t0.Add(10*time.Second), 1) {
		t.Fatal("after the first request's window one slot is free")
	}
	if !b.TryTake(t0.Add(11*time.Second), 1) {
		t.Fatal("the filled window did not end")
	}
}

// Under a budget shared by work of different classes, a waiting poll goes
// before a waiting re-read or backlog, however long those waited; within
// a class, turns go by waiting time; a returned request is free again.
func TestClassesGoInOrder(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := New(2, 10*time.Second)
	if !b.TryTakeClass(t0, "x", ClassBacklog) || !b.TryTakeClass(t0, "x", ClassBacklog) {
		t.Fatal("a free budget refused")
	}
	// Full: the backlog waits from t0+1s, the poll only from t0+5s.
	b.TryTakeClass(t0.Add(time.Second), "backlog", ClassBacklog)
	b.TryTakeClass(t0.Add(5*time.Second), "poll", ClassPoll)
	free := t0.Add(10 * time.Second)
	if b.TryTakeClass(free, "backlog", ClassBacklog) {
		t.Fatal("a backlog took the freed request while a poll waited")
	}
	if !b.TryTakeClass(free, "poll", ClassPoll) {
		t.Fatal("the waiting poll was refused a free request")
	}
	if !b.TryTakeClass(free, "backlog", ClassBacklog) {
		t.Fatal("the backlog was refused the second free request")
	}
	if b.TryTakeClass(free, "late", ClassPoll) {
		t.Fatal("took a request over the limit")
	}
	b.Return(free)
	if !b.TryTakeClass(free, "late", ClassPoll) {
		t.Fatal("a returned request is not free again")
	}
	// Same class: the one that waited longer goes first.
	b = New(1, 10*time.Second)
	b.TryTake(t0, "x")
	b.TryTakeClass(t0.Add(time.Second), "early", ClassReread)
	b.TryTakeClass(t0.Add(2*time.Second), "later", ClassReread)
	b.TryTakeClass(t0.Add(7*time.Second), "early", ClassReread) // still waiting
	if b.TryTakeClass(t0.Add(10*time.Second), "later", ClassReread) || !b.TryTakeClass(t0.Add(10*time.Second), "early", ClassReread) {
		t.Fatal("within a class the longest waiter did not go first")
	}
}
