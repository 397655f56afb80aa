package state

import (
	"encoding/binary"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/in-msgraph/in_msgraph/internal/records"
)

func loadAll(t *testing.T, d *DB) map[records.Key]int64 {
	t.Helper()
	got := map[records.Key]int64{}
	if _, err := d.Load(func(k records.Key, tm int64) { got[k] = tm }); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestUpgradeFromVersion1 opens a file of the id-keyed layout: its ids and
// schedule come through, and the file is rewritten in the current layout.
func TestUpgradeFromVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[records.Key]int64{}
	err = b.Update(func(tx *bolt.Tx) error {
		m, _ := tx.CreateBucketIfNotExists(bucketMeta)
		m.Put(keyVersion, binary.BigEndian.AppendUint32(nil, 1))
		m.Put(keySched, []byte(`{"v":1}`))
		keys, _ := tx.CreateBucketIfNotExists(bucketKeys)
		for i := range 3000 {
			tm := int64(i%7)*37e9 - 100e9 // several minutes, some before 1970
			key := k(i)
			want[key] = tm
			if err := keys.Put(key[:], binary.BigEndian.AppendUint64(nil, uint64(tm))); err != nil {
				return err
			}
		}
		return nil
	})
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	got := loadAll(t, d)
	if len(got) != len(want) {
		t.Fatalf("%d ids after the upgrade, want %d", len(got), len(want))
	}
	for key, tm := range want {
		if got[key] != tm {
			t.Fatalf("%x: time %d, want %d", key, got[key], tm)
		}
	}
	d.Close()
	b, err = bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyVersion); binary.BigEndian.Uint32(v) != Version || tx.Bucket(bucketKeys) != nil {
			t.Fatalf("version %d after the upgrade, old bucket kept: %t", binary.BigEndian.Uint32(v), tx.Bucket(bucketKeys) != nil)
		}
		return nil
	})
}

// TestRemoveAcrossRecords removes ids that share records with ids that
// stay, ids of several records and minutes, and an id the file never held.
func TestRemoveAcrossRecords(t *testing.T) {
	d, err := Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var add []Entry
	for i := range 500 {
		add = append(add, Entry{k(i), int64(i) * 1e9}) // 500 s: 9 minutes
	}
	// Two commits, out of time order, so minutes have several records.
	if err := d.Commit(add[250:], nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(add[:250], nil, nil); err != nil {
		t.Fatal(err)
	}
	del := []records.Key{k(10000)} // never stored
	for i := 0; i < 500; i += 3 {
		del = append(del, k(i))
	}
	if err := d.Commit(nil, del, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	got := loadAll(t, d)
	for i := range 500 {
		if _, ok := got[k(i)]; ok == (i%3 == 0) {
			t.Fatalf("id %d: held %t after removing every third", i, ok)
		}
	}
	if len(got) != 500-167 {
		t.Fatalf("%d ids held", len(got))
	}
	// Whole records go when all their ids do.
	var rest []records.Key
	for key := range got {
		rest = append(rest, key)
	}
	if err := d.Commit(nil, rest, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	d.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketIDs).Stats().KeyN; n != 0 {
			t.Fatalf("%d records left after every id was removed", n)
		}
		return nil
	})
}
