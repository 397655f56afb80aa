package state

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	if err == nil || !strings.Contains(err.Error(), "already used by another msgraph input") {
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
	if _, err := Open(future); err == nil || !strings.Contains(err.Error(), "written by state version 9, this plugin reads version 1") {
		t.Fatalf("future version: %v", err)
	}
	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 500)), 0o600)
	if _, err := Open(garbage); err == nil || !strings.Contains(err.Error(), "cannot be opened") {
		t.Fatalf("garbage: %v", err)
	}
}
