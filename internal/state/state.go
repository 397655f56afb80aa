// Package state persists what an input has delivered: the de-dup keys with
// their event times and the schedule, in a bbolt file, together with the
// times of its last requests (pacing.go). Every commit is one
// transaction, so the file always holds a state that was true at a commit
// point: a crash loses at most the batch that was not yet committed, which
// is then delivered again.
//
// The ids are stored by time, not by id: a commit appends one record per
// minute its page touches, keyed (minute, sequence), holding that minute's
// new ids with their times. Ids are random, so a tree keyed by id takes
// each page's thousand ids to a thousand different leaves and rewrites
// megabytes per commit once it holds a day of a busy tenant; records keyed
// by time are written where the tree grows and expire from its start.
// Loading walks them in time order, which is also the order the de-dup set
// fills fastest.
package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/in-msgraph/in_msgraph/internal/records"
)

// Version is the layout written by this code. Version 1 kept the ids in a
// bucket keyed by id ("keys"); it is converted when opened.
const Version = 2

var (
	bucketMeta = []byte("meta")
	bucketKeys = []byte("keys") // version 1
	bucketIDs  = []byte("ids")
	// items holds named values beside the ids, written with the commit
	// they belong to (the content blobs an input has listed and not yet
	// delivered); created with the first.
	bucketItems = []byte("items")
	// tenants holds a bucket per namespace of a shared file (File), each
	// laid out as a file of its own (meta, ids, items).
	bucketTenants = []byte("tenants")
	keyVersion    = []byte("version")
	keySched      = []byte("schedule")
	keyPacing     = []byte("pacing")
)

// An ids record: the key is the minute (event time / minuteNanos, rounded
// down, with the sign bit flipped so that the order is the time order) and
// the bucket's sequence number, 8 bytes each, big-endian; the value is
// entrySize bytes per id: the id and its event time in Unix nanoseconds.
const (
	minuteNanos = int64(60e9)
	recordKey   = 16
	entrySize   = 16 + 8
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

// OpenError is a state file that could not be opened or read for a reason
// outside the file: too many open files, memory, permissions, a read-only
// or full volume, an I/O error, a path that is not a file. The file may be
// whole and must be kept as it is; opening it again may succeed once the
// cause is gone (Fix says what to do).
type OpenError struct {
	Path string
	Err  error
}

func (e *OpenError) Error() string {
	return fmt.Sprintf("db %s cannot be opened: %v", e.Path, e.Err)
}

func (e *OpenError) Unwrap() error { return e.Err }

// Fix says what removes the cause of err, an error of this package.
func Fix(err error) string {
	switch {
	case errors.Is(err, ErrInUse):
		return "give each input, and each Fluent Bit, its own db file"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "raise the open-files limit of Fluent Bit (ulimit -n, LimitNOFILE in systemd)"
	case errors.Is(err, syscall.ENOMEM):
		return "give Fluent Bit more memory (its container's memory limit)"
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, berrors.ErrMaxSizeReached):
		return "free space on the volume that holds the file"
	case errors.Is(err, syscall.EROFS):
		return "mount the volume that holds the file read-write"
	case errors.Is(err, os.ErrPermission):
		return "let the user Fluent Bit runs as read and write the file and its directory"
	case errors.Is(err, syscall.EIO):
		return "check the disk or volume that holds the file (the system reports an I/O error)"
	case errors.Is(err, syscall.EISDIR):
		return "set db to a file, not a directory"
	case errors.Is(err, syscall.ENOTDIR):
		return "set db to a path whose parents are directories (a part of it is a file)"
	}
	return "check the file and the volume that holds it"
}

// damaged reports whether an error of bbolt's Open means the file itself
// is damaged: not a bbolt file, a bad checksum or version, too short, or a
// panic while reading it. Anything else (the system's errors) leaves the
// file as it is.
func damaged(err error) bool {
	var p panicError
	return errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrVersionMismatch) ||
		errors.Is(err, berrors.ErrChecksum) || errors.As(err, &p) ||
		strings.HasPrefix(err.Error(), "file size too small")
}

// panicError is a panic of bbolt's while reading a file: damage.
type panicError struct{ v any }

func (e panicError) Error() string { return fmt.Sprintf("damaged file: %v", e.v) }

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
	// Buffers reused from one commit to the next; bbolt holds what Put is
	// given until the transaction ends, not longer.
	buf  []byte
	dels map[records.Key]struct{}
	gone [][]byte
	// pacing is the record found when the file was opened; next is the one
	// the next commit writes.
	pacing    Pacing
	hasPacing bool
	next      []byte
	// staged are the items the next commit writes (nil values delete).
	staged map[string][]byte
	// ns names the DB's namespace in a shared file (File); nil for a
	// file of its own.
	ns []byte
}

// holder is where a DB's buckets are: the file's root, or its namespace's
// bucket in a shared file.
type holder interface {
	Bucket(name []byte) *bolt.Bucket
	CreateBucketIfNotExists(name []byte) (*bolt.Bucket, error)
	DeleteBucket(name []byte) error
}

// root is the holder of d's buckets in tx.
func (d *DB) root(tx *bolt.Tx) holder {
	if d.ns == nil {
		return tx
	}
	return tx.Bucket(bucketTenants).Bucket(d.ns)
}

// boltOpen is bbolt's Open; tests replace it to inject the system's errors.
var boltOpen = bolt.Open

// Open opens or creates the state file at path. Its errors are ErrInUse
// (another input or process has the file: a configuration error),
// *UnreadableError (the file is damaged: it may be moved aside) or
// *OpenError (the system refused: the file is kept and may be opened again
// later).
func Open(path string) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &OpenError{Path: path, Err: err}
	}
	openMu.Lock()
	defer openMu.Unlock()
	if open[abs] {
		return nil, fmt.Errorf("%w: db %s is already used by another msgraph input in this Fluent Bit: give each input its own db file", ErrInUse, path)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, &OpenError{Path: path, Err: fmt.Errorf("its directory cannot be created: %w", err)}
	}
	// bbolt faults on a file shorter than its pages: check it first.
	if err := Check(abs); err != nil {
		var ue *UnreadableError
		var oe *OpenError
		if errors.As(err, &ue) {
			ue.Path = path
		} else if errors.As(err, &oe) {
			oe.Path = path
		}
		return nil, err
	}
	db, err := openBolt(abs)
	switch {
	case err == nil:
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: db %s is locked by another process (another Fluent Bit using the same file?): give each Fluent Bit its own db file", ErrInUse, path)
	case damaged(err):
		return nil, &UnreadableError{Path: path, Reason: err.Error()}
	default:
		return nil, &OpenError{Path: path, Err: err}
	}
	d := &DB{db: db, path: path}
	if err := d.init(); err != nil {
		db.Close()
		var ue *UnreadableError
		if !errors.As(err, &ue) {
			err = &OpenError{Path: path, Err: err}
		}
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
			db, err = nil, panicError{r}
		}
	}()
	return boltOpen(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
}

func (d *DB) init() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &UnreadableError{Path: d.path, Reason: fmt.Sprintf("damaged file: %v", r)}
		}
	}()
	return d.db.Update(func(tx *bolt.Tx) error {
		var root holder = tx
		if d.ns != nil {
			all, err := tx.CreateBucketIfNotExists(bucketTenants)
			if err != nil {
				return err
			}
			if root, err = all.CreateBucketIfNotExists(d.ns); err != nil {
				return err
			}
		}
		meta, err := root.CreateBucketIfNotExists(bucketMeta)
		if errors.Is(err, berrors.ErrIncompatibleValue) {
			return &UnreadableError{Path: d.path, Reason: "it is not an in_msgraph state file (no meta bucket)"}
		}
		if err != nil {
			return err
		}
		v := meta.Get(keyVersion)
		switch {
		case v == nil:
			if err := meta.Put(keyVersion, binary.BigEndian.AppendUint32(nil, Version)); err != nil {
				return err
			}
		case len(v) != 4:
			return &UnreadableError{Path: d.path, Reason: "it is not an in_msgraph state file (bad version record)"}
		case binary.BigEndian.Uint32(v) == 1:
			if err := d.upgrade1(root); err != nil {
				return err
			}
			if err := meta.Put(keyVersion, binary.BigEndian.AppendUint32(nil, Version)); err != nil {
				return err
			}
		case binary.BigEndian.Uint32(v) != Version:
			return &UnreadableError{Path: d.path, Reason: fmt.Sprintf("it was written by state version %d and this plugin reads version %d (a newer plugin wrote it)", binary.BigEndian.Uint32(v), Version)}
		}
		if _, err := root.CreateBucketIfNotExists(bucketIDs); err != nil {
			if errors.Is(err, berrors.ErrIncompatibleValue) {
				return &UnreadableError{Path: d.path, Reason: "it is not an in_msgraph state file (no ids bucket)"}
			}
			return err
		}
		return d.readPacing(meta)
	})
}

// upgrade1 rewrites version 1's id-keyed bucket as time-ordered records, in
// the transaction that opens the file, so a crash leaves the old file.
func (d *DB) upgrade1(tx holder) error {
	old := tx.Bucket(bucketKeys)
	if old == nil {
		return nil
	}
	var all []Entry
	err := old.ForEach(func(k, v []byte) error {
		if len(k) != len(records.Key{}) || len(v) != 8 {
			return &UnreadableError{Path: d.path, Reason: "it holds a damaged key record"}
		}
		all = append(all, Entry{records.Key(k), int64(binary.BigEndian.Uint64(v))})
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(all, func(a, b Entry) int { return cmpInt(a.Time, b.Time) })
	ids, err := tx.CreateBucketIfNotExists(bucketIDs)
	if err != nil {
		return err
	}
	if err := d.append(ids, all); err != nil {
		return err
	}
	return tx.DeleteBucket(bucketKeys)
}

// Load calls fn for every stored key, oldest minute first, and returns the
// stored schedule (nil for a new file). A damaged file gives an
// *UnreadableError.
func (d *DB) Load(fn func(k records.Key, t int64)) (sched []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &UnreadableError{Path: d.path, Reason: fmt.Sprintf("damaged file: %v", r)}
		}
	}()
	err = d.db.View(func(tx *bolt.Tx) error {
		root := d.root(tx)
		sched = append([]byte(nil), root.Bucket(bucketMeta).Get(keySched)...)
		return root.Bucket(bucketIDs).ForEach(func(k, v []byte) error {
			if len(k) != recordKey || len(v)%entrySize != 0 {
				return &UnreadableError{Path: d.path, Reason: "it holds a damaged id record"}
			}
			for ; len(v) > 0; v = v[entrySize:] {
				fn(records.Key(v[:16]), int64(binary.BigEndian.Uint64(v[16:])))
			}
			return nil
		})
	})
	if len(sched) == 0 {
		sched = nil
	}
	var ue *UnreadableError
	if err != nil && !errors.As(err, &ue) {
		err = &OpenError{Path: d.path, Err: err}
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
//
// Expired keys are the oldest the de-dup set holds, whole minutes of them,
// so they are found by reading records from the oldest on until all are
// seen: the cost follows what expires, not what the file holds.
func (d *DB) Commit(add []Entry, del []records.Key, schedule []byte) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		root := d.root(tx)
		b := root.Bucket(bucketIDs)
		if err := d.append(b, add); err != nil {
			return err
		}
		if err := d.remove(b, del); err != nil {
			return err
		}
		if err := d.writeItems(root); err != nil {
			return err
		}
		meta := root.Bucket(bucketMeta)
		if d.next != nil {
			if err := meta.Put(keyPacing, d.next); err != nil {
				return err
			}
		}
		return meta.Put(keySched, schedule)
	})
	if err != nil {
		return fmt.Errorf("db %s: commit failed: %w", d.path, err)
	}
	d.next = nil
	clear(d.staged)
	return nil
}

// Stage sets item key to value (nil deletes it) with the next commit; a
// commit that fails keeps what is staged for the one after it.
func (d *DB) Stage(key string, value []byte) {
	if d.staged == nil {
		d.staged = map[string][]byte{}
	}
	d.staged[key] = value
}

func (d *DB) writeItems(tx holder) error {
	if len(d.staged) == 0 {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(bucketItems)
	if err != nil {
		return err
	}
	for k, v := range d.staged {
		if v == nil {
			err = b.Delete([]byte(k))
		} else {
			err = b.Put([]byte(k), v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Items calls fn for every stored item, in key order. A damaged file
// gives an *UnreadableError.
func (d *DB) Items(fn func(key string, value []byte)) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &UnreadableError{Path: d.path, Reason: fmt.Sprintf("damaged file: %v", r)}
		}
	}()
	err = d.db.View(func(tx *bolt.Tx) error {
		b := d.root(tx).Bucket(bucketItems)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			fn(string(k), append([]byte(nil), v...))
			return nil
		})
	})
	var ue *UnreadableError
	if err != nil && !errors.As(err, &ue) {
		err = &OpenError{Path: d.path, Err: err}
	}
	return err
}

// append writes add as records, one per run of entries of the same minute
// (a page is sorted by time, so that is one or two per minute it covers).
func (d *DB) append(b *bolt.Bucket, add []Entry) error {
	if len(add) == 0 {
		return nil
	}
	// One buffer holds every key and value of this transaction: bbolt
	// keeps the slices until it ends.
	runs := 1
	for i := 1; i < len(add); i++ {
		if minuteOf(add[i].Time) != minuteOf(add[i-1].Time) {
			runs++
		}
	}
	need := runs*recordKey + len(add)*entrySize
	if cap(d.buf) < need {
		d.buf = make([]byte, 0, need)
	}
	buf := d.buf[:0]
	for i := 0; i < len(add); {
		m := minuteOf(add[i].Time)
		j := i + 1
		for j < len(add) && minuteOf(add[j].Time) == m {
			j++
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		k := len(buf)
		buf = binary.BigEndian.AppendUint64(buf, uint64(m)^1<<63)
		buf = binary.BigEndian.AppendUint64(buf, seq)
		v := len(buf)
		for _, e := range add[i:j] {
			buf = append(buf, e.Key[:]...)
			buf = binary.BigEndian.AppendUint64(buf, uint64(e.Time))
		}
		if err := b.Put(buf[k:v], buf[v:]); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// remove deletes the entries of del, reading records from the oldest until
// every one is found (or the records end: a key the file does not hold
// costs a full read, and nothing else).
func (d *DB) remove(b *bolt.Bucket, del []records.Key) error {
	if len(del) == 0 {
		return nil
	}
	if d.dels == nil {
		d.dels = make(map[records.Key]struct{}, len(del))
	}
	clear(d.dels)
	for _, k := range del {
		d.dels[k] = struct{}{}
	}
	isDel := func(k []byte) bool {
		_, ok := d.dels[records.Key(k)]
		return ok
	}
	// Decide first, change after: a cursor must not walk a bucket that
	// changes under it.
	d.gone = d.gone[:0]
	type keep struct{ k, v []byte }
	var rewrite []keep
	found := 0
	c := b.Cursor()
	for k, v := c.First(); k != nil && found < len(d.dels); k, v = c.Next() {
		if len(k) != recordKey || len(v)%entrySize != 0 {
			return &UnreadableError{Path: d.path, Reason: "it holds a damaged id record"}
		}
		n := 0
		for e := v; len(e) > 0; e = e[entrySize:] {
			if isDel(e[:16]) {
				n++
			}
		}
		switch {
		case n == 0:
			continue
		case n == len(v)/entrySize:
			d.gone = append(d.gone, k)
		default:
			kept := make([]byte, 0, len(v)-n*entrySize)
			for e := v; len(e) > 0; e = e[entrySize:] {
				if !isDel(e[:16]) {
					kept = append(kept, e[:entrySize]...)
				}
			}
			rewrite = append(rewrite, keep{k, kept})
		}
		found += n
	}
	for _, k := range d.gone {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	for _, r := range rewrite {
		if err := b.Put(r.k, r.v); err != nil {
			return err
		}
	}
	return nil
}

func minuteOf(t int64) int64 {
	m := t / minuteNanos
	if t%minuteNanos < 0 {
		m--
	}
	return m
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Path is the file's path as configured.
func (d *DB) Path() string { return d.path }

// Close closes the file; it may be called more than once.
func (d *DB) Close() error {
	if d == nil || d.db == nil {
		return nil
	}
	if d.ns != nil {
		d.db = nil // the shared file stays open (File.Close)
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
