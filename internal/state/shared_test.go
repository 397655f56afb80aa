package state

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/records"
)

// Namespaces of a shared file are files of their own: commits, items and
// pacing of one never show in another, they survive a reopen, and a
// removed tenant's namespace keeps its mark until it is dropped.
func TestSharedFileNamespaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := f.Namespace("tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.Namespace("tenant-b")
	if err != nil {
		t.Fatal(err)
	}
	ka, kb := records.KeyOf([]byte("a1")), records.KeyOf([]byte("b1"))
	a.Stage("blob/x", []byte("1"))
	if err := a.Commit([]Entry{{ka, 1e9}}, nil, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit([]Entry{{kb, 2e9}}, nil, []byte(`{"b":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFile(path); err == nil {
		t.Fatal("a second OpenFile of an open file succeeded")
	}
	// Closing a namespace leaves the file and the others open.
	a.Close()
	if err := b.Commit(nil, nil, []byte(`{"b":2}`)); err != nil {
		t.Fatalf("commit after another namespace closed: %v", err)
	}
	removedAt := time.Unix(1700000000, 0)
	if err := f.MarkRemoved("tenant-a", removedAt); err != nil {
		t.Fatal(err)
	}
	if err := f.MarkRemoved("tenant-a", removedAt.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	f, err = OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ns, err := f.Namespaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 2 || !ns["tenant-a"].Equal(removedAt) || !ns["tenant-b"].IsZero() {
		t.Fatalf("namespaces %v: want tenant-a removed at %v (the first mark), tenant-b listed", ns, removedAt)
	}
	load := func(name string) (keys []records.Key, sched string, items int) {
		d, err := f.Namespace(name)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		raw, err := d.Load(func(k records.Key, _ int64) { keys = append(keys, k) })
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Items(func(string, []byte) { items++ }); err != nil {
			t.Fatal(err)
		}
		return keys, string(raw), items
	}
	if keys, sched, items := load("tenant-a"); len(keys) != 1 || keys[0] != ka || sched != `{"a":1}` || items != 1 {
		t.Fatalf("tenant-a: %v %q %d items", keys, sched, items)
	}
	if keys, sched, items := load("tenant-b"); len(keys) != 1 || keys[0] != kb || sched != `{"b":2}` || items != 0 {
		t.Fatalf("tenant-b: %v %q %d items", keys, sched, items)
	}
	if err := f.MarkRemoved("tenant-a", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Drop("tenant-b"); err != nil {
		t.Fatal(err)
	}
	if err := f.Drop("never-there"); err != nil {
		t.Fatalf("dropping a namespace that is not there: %v", err)
	}
	ns, _ = f.Namespaces()
	if len(ns) != 1 || !ns["tenant-a"].IsZero() {
		t.Fatalf("after clearing a's mark and dropping b: %v", ns)
	}
	if keys, _, _ := load("tenant-b"); len(keys) != 0 {
		t.Fatalf("a dropped namespace came back with %d ids", len(keys))
	}
}
