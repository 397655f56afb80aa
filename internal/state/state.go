// Package state persists what an input has delivered: the de-dup keys with
// their event times and the schedule, in a bbolt file. Every commit is one
// transaction, so the file always holds a state that was true at a commit
// point: a crash loses at most the batch that was not yet committed, which
// is then delivered again.
package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/in-msgraph/in_msgraph/internal/records"
)

// Version is the layout written by this code.
const Version = 1

var (
	bucketMeta = []byte("meta")
	bucketKeys = []byte("keys")
	keyVersion = []byte("version")
	keySched   = []byte("schedule")
)

// open paths in this process: two inputs must not share a file.
var (
	openMu sync.Mutex
	open   = map[string]bool{}
)

// DB is an open state file.
type DB struct {
	db   *bolt.DB
	path string
}

// Open opens or creates the state file at path.
func Open(path string) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("db %s: %w", path, err)
	}
	openMu.Lock()
	defer openMu.Unlock()
	if open[abs] {
		return nil, fmt.Errorf("db %s is already used by another msgraph input in this Fluent Bit: give each input its own db file", path)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("db %s: cannot create its directory: %w", path, err)
	}
	db, err := bolt.Open(abs, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, fmt.Errorf("db %s is locked by another process (another Fluent Bit using the same file?): give each Fluent Bit its own db file", path)
	case err != nil:
		return nil, fmt.Errorf("db %s cannot be opened (%v): check the path and its permissions; if the file is damaged, move it away and the plugin starts afresh", path, err)
	}
	d := &DB{db: db, path: path}
	if err := d.init(); err != nil {
		db.Close()
		return nil, err
	}
	open[abs] = true
	return d, nil
}

func (d *DB) init() error {
	return d.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return fmt.Errorf("db %s: %w", d.path, err)
		}
		if _, err := tx.CreateBucketIfNotExists(bucketKeys); err != nil {
			return fmt.Errorf("db %s: %w", d.path, err)
		}
		v := meta.Get(keyVersion)
		switch {
		case v == nil:
			return meta.Put(keyVersion, binary.BigEndian.AppendUint32(nil, Version))
		case len(v) != 4:
			return fmt.Errorf("db %s is not an in_msgraph state file (bad version record): point db at a new file", d.path)
		case binary.BigEndian.Uint32(v) != Version:
			return fmt.Errorf("db %s was written by state version %d, this plugin reads version %d: use the plugin version that wrote it, or point db at a new file", d.path, binary.BigEndian.Uint32(v), Version)
		}
		return nil
	})
}

// Load calls fn for every stored key and returns the stored schedule (nil
// for a new file).
func (d *DB) Load(fn func(k records.Key, t int64)) ([]byte, error) {
	var sched []byte
	err := d.db.View(func(tx *bolt.Tx) error {
		sched = append([]byte(nil), tx.Bucket(bucketMeta).Get(keySched)...)
		return tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
			if len(k) != len(records.Key{}) || len(v) != 8 {
				return fmt.Errorf("db %s holds a damaged key record", d.path)
			}
			fn(records.Key(k), int64(binary.BigEndian.Uint64(v)))
			return nil
		})
	})
	if len(sched) == 0 {
		sched = nil
	}
	return sched, err
}

// Entry is a key to store with its event time.
type Entry struct {
	Key  records.Key
	Time int64
}

// Commit stores added keys, removes expired ones and replaces the schedule,
// in one transaction.
func (d *DB) Commit(add []Entry, del []records.Key, schedule []byte) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		// bbolt keeps the slices until the transaction ends: one buffer
		// holds every key and value of this commit.
		buf := make([]byte, 0, len(add)*24)
		for _, e := range add {
			buf = append(buf, e.Key[:]...)
			buf = binary.BigEndian.AppendUint64(buf, uint64(e.Time))
			kv := buf[len(buf)-24:]
			if err := b.Put(kv[:16], kv[16:]); err != nil {
				return err
			}
		}
		for i := range del {
			if err := b.Delete(del[i][:]); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySched, schedule)
	})
	if err != nil {
		return fmt.Errorf("db %s: commit failed: %w", d.path, err)
	}
	return nil
}

// Path is the file's path as configured.
func (d *DB) Path() string { return d.path }

// Close closes the file; it may be called more than once.
func (d *DB) Close() error {
	if d == nil || d.db == nil {
		return nil
	}
	abs, _ := filepath.Abs(d.path)
	openMu.Lock()
	delete(open, abs)
	openMu.Unlock()
	err := d.db.Close()
	d.db = nil
	return err
}
