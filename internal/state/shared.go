package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// File is one state file shared by the streams of a multi-tenant input:
// each stream keeps its state in a namespace of its own (the tenant), laid
// out as a file of its own would be, so a stream's commits, loading and
// damage never touch another's. Commits of different namespaces are
// separate transactions; bbolt runs them one at a time.
type File struct {
	root *DB
	mu   sync.Mutex
}

// keyRemoved, in a namespace's meta, is when its tenant was last seen
// removed from the input's list (Unix nanoseconds); absent while listed.
var keyRemoved = []byte("removed")

// OpenFile opens or creates a shared state file. Its errors are those of
// Open.
func OpenFile(path string) (*File, error) {
	d, err := Open(path)
	if err != nil {
		return nil, err
	}
	return &File{root: d}, nil
}

// Path is the file's path as configured.
func (f *File) Path() string { return f.root.path }

// Namespace opens namespace name (created if new) as a DB. Closing that DB
// leaves the file open. A namespace that cannot be read gives an
// *UnreadableError; Drop clears it.
func (f *File) Namespace(name string) (*DB, error) {
	f.mu.Lock()
	db := f.root.db
	f.mu.Unlock()
	if db == nil {
		return nil, &OpenError{Path: f.root.path, Err: errors.New("the file is closed")}
	}
	d := &DB{db: db, path: f.root.path, ns: []byte(name)}
	if err := d.init(); err != nil {
		var ue *UnreadableError
		if errors.As(err, &ue) {
			ue.Reason = fmt.Sprintf("the state of %s: %s", name, ue.Reason)
		} else {
			err = &OpenError{Path: f.root.path, Err: err}
		}
		return nil, err
	}
	return d, nil
}

// Namespaces returns every namespace the file holds, with the time its
// tenant was marked removed (zero while it is listed).
func (f *File) Namespaces() (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := f.view(func(all *bolt.Bucket) error {
		return all.ForEachBucket(func(k []byte) error {
			var t time.Time
			if meta := all.Bucket(k).Bucket(bucketMeta); meta != nil {
				if v := meta.Get(keyRemoved); len(v) == 8 {
					t = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
				}
			}
			out[string(k)] = t
			return nil
		})
	})
	return out, err
}

// MarkRemoved records that namespace name's tenant left the list at t,
// unless it is marked already (the first time counts); a zero t clears the
// mark (the tenant is listed again).
func (f *File) MarkRemoved(name string, t time.Time) error {
	return f.update(func(all *bolt.Bucket) error {
		ns := all.Bucket([]byte(name))
		if ns == nil {
			return nil
		}
		meta := ns.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		if t.IsZero() {
			return meta.Delete(keyRemoved)
		}
		if meta.Get(keyRemoved) != nil {
			return nil
		}
		return meta.Put(keyRemoved, binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())))
	})
}

// Drop deletes namespace name and everything in it.
func (f *File) Drop(name string) error {
	return f.update(func(all *bolt.Bucket) error {
		err := all.DeleteBucket([]byte(name))
		if errors.Is(err, berrors.ErrBucketNotFound) {
			return nil
		}
		return err
	})
}

func (f *File) view(fn func(all *bolt.Bucket) error) error { return f.tx(false, fn) }

func (f *File) update(fn func(all *bolt.Bucket) error) error {
	if err := f.tx(true, fn); err != nil {
		return fmt.Errorf("db %s: %w", f.root.path, err)
	}
	return nil
}

// tx runs fn on the tenants bucket in a transaction (created when write;
// without it, a file without one has no namespace and fn is not called).
func (f *File) tx(write bool, fn func(all *bolt.Bucket) error) (err error) {
	f.mu.Lock()
	db := f.root.db
	f.mu.Unlock()
	if db == nil {
		return &OpenError{Path: f.root.path, Err: errors.New("the file is closed")}
	}
	defer func() {
		if r := recover(); r != nil {
			err = &UnreadableError{Path: f.root.path, Reason: fmt.Sprintf("damaged file: %v", r)}
		}
	}()
	if !write {
		return db.View(func(tx *bolt.Tx) error {
			if all := tx.Bucket(bucketTenants); all != nil {
				return fn(all)
			}
			return nil
		})
	}
	return db.Update(func(tx *bolt.Tx) error {
		all, err := tx.CreateBucketIfNotExists(bucketTenants)
		if err != nil {
			return err
		}
		return fn(all)
	})
}

// Close closes the file; namespaces opened from it must not be used after.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.root.Close()
}
