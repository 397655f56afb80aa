package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/in-msgraph/in_msgraph/internal/records"
)

func k(i int) records.Key {
	var key records.Key
	binary.BigEndian.PutUint32(key[:], uint32(i))
	return key
}

func TestCommitAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "state.db")
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := d.Load(func(records.Key, int64) { t.Fatal("new file has keys") }); err != nil || s != nil {
		t.Fatalf("new file: %q %v", s, err)
	}
	if err := d.Commit([]Entry{{k(1), 10}, {k(2), 20}, {k(3), 30}}, nil, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit([]Entry{{k(4), 40}}, []records.Key{k(1)}, []byte(`{"a":2}`)); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d.Close()
	d, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	got := map[records.Key]int64{}
	s, err := d.Load(func(key records.Key, tm int64) { got[key] = tm })
	if err != nil || string(s) != `{"a":2}` {
		t.Fatalf("schedule %q %v", s, err)
	}
	if len(got) != 3 || got[k(2)] != 20 || got[k(4)] != 40 {
		t.Fatalf("keys %v", got)
	}
}

func TestSameFileTwiceIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, err = Open(path)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "already used by another msgraph input") {
		t.Fatalf("second open: %v", err)
	}
}

func TestVersionAndGarbage(t *testing.T) {
	dir := t.TempDir()
	future := filepath.Join(dir, "future.db")
	b, _ := bolt.Open(future, 0o600, nil)
	b.Update(func(tx *bolt.Tx) error {
		m, _ := tx.CreateBucketIfNotExists(bucketMeta)
		return m.Put(keyVersion, binary.BigEndian.AppendUint32(nil, 9))
	})
	b.Close()
	var ue *UnreadableError
	if _, err := Open(future); !errors.As(err, &ue) || err.Error() != fmt.Sprintf("db %s cannot be read: it was written by state version 9 and this plugin reads version %d (a newer plugin wrote it)", future, Version) {
		t.Fatalf("future version: %v", err)
	}
	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 500)), 0o600)
	if _, err := Open(garbage); !errors.As(err, &ue) {
		t.Fatalf("garbage: %v", err)
	}
	// Truncations of a real state file are errors, never panics.
	good := filepath.Join(dir, "good.db")
	d, err := Open(good)
	if err != nil {
		t.Fatal(err)
	}
	var add []Entry
	for i := range 5000 {
		add = append(add, Entry{k(i), int64(i)})
	}
	d.Commit(add, nil, []byte(`{}`))
	d.Close()
	whole, _ := os.ReadFile(good)
	for _, n := range []int{0, 100, 4096, len(whole) / 2, len(whole) - 4096} {
		cut := filepath.Join(dir, fmt.Sprintf("cut%d.db", n))
		os.WriteFile(cut, whole[:n], 0o600)
		d, err := Open(cut)
		loaded := 0
		if err == nil {
			_, err = d.Load(func(records.Key, int64) { loaded++ })
			d.Close()
		}
		switch {
		case n == 0 && (err != nil || loaded != 0):
			t.Fatalf("an empty file is a new state file: %v", err)
		case n > 0 && err == nil && loaded != len(add):
			// Cutting only unused trailing pages is harmless; anything
			// else must be reported, never loaded in part.
			t.Fatalf("truncated to %d bytes: loaded %d of %d keys without an error", n, loaded, len(add))
		case n > 0 && err != nil && !errors.As(err, &ue):
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
	moved, err := MoveAside(garbage, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if err != nil || moved != garbage+".unreadable-20260102T030405Z" {
		t.Fatalf("move aside: %s %v", moved, err)
	}
	if _, err := os.Stat(moved); err != nil {
		t.Fatal("the unreadable file was not kept")
	}
}

// Items are written with the commit they are staged for, kept staged when
// it fails, and read back after a reopen.
func TestItems(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	d.Stage("blob/a", []byte("1"))
	d.Stage("blob/b", []byte("2"))
	if err := d.Commit(nil, nil, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	d.Stage("blob/a", nil)
	d.Stage("blob/c", []byte("3"))
	if err := d.Commit(nil, nil, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	d.Stage("blob/d", []byte("4")) // staged, never committed
	d.Close()
	if d, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	got := map[string]string{}
	if err := d.Items(func(k string, v []byte) { got[k] = string(v) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["blob/b"] != "2" || got["blob/c"] != "3" {
		t.Fatalf("items %v", got)
	}
}
