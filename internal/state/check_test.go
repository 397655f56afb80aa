package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestCheckRefusesTruncatedFiles: every truncation of a real state file
// that cuts a declared page is refused before bbolt maps it (bbolt would
// fault reading past the end and take the process down).
func TestCheckRefusesTruncatedFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	b, err := bolt.Open(good, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Update(func(tx *bolt.Tx) error {
		bk, _ := tx.CreateBucketIfNotExists([]byte("x"))
		for i := range 20000 {
			bk.Put([]byte(fmt.Sprintf("key-%08d", i)), make([]byte, 24))
		}
		return nil
	})
	b.Close()
	if err := Check(good); err != nil {
		t.Fatalf("a whole file refused: %v", err)
	}
	if err := Check(filepath.Join(dir, "missing.db")); err != nil {
		t.Fatalf("a missing file is a new one: %v", err)
	}
	whole, _ := os.ReadFile(good)
	var ue *UnreadableError
	for _, n := range []int{0, 10, 100, 4096, 8191, 8192, len(whole) / 3, len(whole) / 2, len(whole) - 4096, len(whole) - 1} {
		cut := filepath.Join(dir, fmt.Sprintf("cut%d.db", n))
		os.WriteFile(cut, whole[:n], 0o600)
		err := Check(cut)
		switch {
		case n == 0 && err != nil:
			t.Fatalf("an empty file is a new one: %v", err)
		case n > 0 && err == nil:
			// Only unused trailing space was cut: bbolt must read every
			// key of it.
			db, err := bolt.Open(cut, 0o600, nil)
			if err != nil {
				t.Fatalf("truncated to %d: passed the check, then %v", n, err)
			}
			keys := 0
			db.View(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("x")).ForEach(func(k, v []byte) error { keys++; return nil })
			})
			db.Close()
			if keys != 20000 {
				t.Fatalf("truncated to %d: %d keys", n, keys)
			}
		case n > 0 && !errors.As(err, &ue):
			t.Fatalf("truncated to %d of %d bytes: %v", n, len(whole), err)
		}
	}
	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, make([]byte, 64<<10), 0o600)
	if err := Check(garbage); !errors.As(err, &ue) {
		t.Fatalf("zeros: %v", err)
	}
}
