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
	"syscall"
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

// ErrInUse is returned when the file is already open in this process or
// locked by another: a configuration error, not damage.
var ErrInUse = errors.New("state file in use")

// UnreadableError is a state file that exists but cannot be read: damaged,
// truncated, not a state file, or written by a newer version. The caller
// may move it aside (MoveAside) and start afresh.
type UnreadableError struct {
	Path   string
	Reason string
}

func (e *UnreadableError) Error() string {
	return fmt.Sprintf("db %s cannot be read: %s", e.Path, e.Reason)
}

// MoveAside renames an unreadable state file to <path>.unreadable-<time>,
// so it is kept for inspection and never overwritten, and returns the new
// name.
func MoveAside(path string, now time.Time) (string, error) {
	to := path + ".unreadable-" + now.UTC().Format("20060102T150405Z")
	if err := os.Rename(path, to); err != nil {
		return "", fmt.Errorf("db %s: cannot move the unreadable file aside: %w", path, err)
	}
	return to, nil
}

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
		return nil, fmt.Errorf("%w: db %s is already used by another msgraph input in this Fluent Bit: give each input its own db file", ErrInUse, path)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("db %s: cannot create its directory: %w", path, err)
	}
	// bbolt faults on a file shorter than its pages: check it first.
	if err := Check(abs); err != nil {
		return nil, err
	}
	db, err := openBolt(abs)
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, fmt.Errorf("%w: db %s is locked by another process (another Fluent Bit using the same file?): give each Fluent Bit its own db file", ErrInUse, path)
	case errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.ENOSPC):
		return nil, fmt.Errorf("db %s cannot be opened: %w", path, err)
	case err != nil:
		return nil, &UnreadableError{Path: path, Reason: err.Error()}
	}
	d := &DB{db: db, path: path}
	if err := d.init(); err != nil {
		db.Close()
		return nil, err
	}
	open[abs] = true
	return d, nil
}

// openBolt opens the file, turning bbolt's panics on damaged files into
// errors.
func openBolt(path string) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("damaged file: %v", r)
		}
	}()
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
}

func (d *DB) init() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &UnreadableError{Path: d.path, Reason: fmt.Sprintf("damaged file: %v", r)}
		}
	}()
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
			return &UnreadableError{Path: d.path, Reason: "it is not an in_msgraph state file (bad version record)"}
		case binary.BigEndian.Uint32(v) != Version:
			return &UnreadableError{Path: d.path, Reason: fmt.Sprintf("it was written by state version %d and this plugin reads version %d (a newer plugin wrote it)", binary.BigEndian.Uint32(v), Version)}
		}
		return nil
	})
}

// Load calls fn for every stored key and returns the stored schedule (nil
// for a new file). A damaged file gives an *UnreadableError.
func (d *DB) Load(fn func(k records.Key, t int64)) (sched []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &UnreadableError{Path: d.path, Reason: fmt.Sprintf("damaged file: %v", r)}
		}
	}()
	err = d.db.View(func(tx *bolt.Tx) error {
		sched = append([]byte(nil), tx.Bucket(bucketMeta).Get(keySched)...)
		return tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
			if len(k) != len(records.Key{}) || len(v) != 8 {
				return &UnreadableError{Path: d.path, Reason: "it holds a damaged key record"}
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
