package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// goodFile is a state file holding n ids.
func goodFile(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var add []Entry
	for i := range n {
		add = append(add, Entry{k(i), int64(i)})
	}
	if err := d.Commit(add, nil, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	d.Close()
	return path
}

// injectOpen makes bbolt's Open fail with err, until the test ends.
func injectOpen(t *testing.T, err func() error) {
	t.Helper()
	saved := boltOpen
	boltOpen = func(path string, mode os.FileMode, o *bolt.Options) (*bolt.DB, error) {
		if e := err(); e != nil {
			return nil, e
		}
		return saved(path, mode, o)
	}
	t.Cleanup(func() { boltOpen = saved })
}

// TestSystemErrorsAreNotDamage: the system refusing to open a whole file
// (open files, memory, I/O, space, permissions, a read-only volume) gives
// an *OpenError that names the file and the system's error, never an
// *UnreadableError, and the file opens whole once the cause is gone.
func TestSystemErrorsAreNotDamage(t *testing.T) {
	path := goodFile(t, 100)
	for _, tc := range []struct {
		errno syscall.Errno
		fix   string
	}{
		{syscall.EMFILE, "open-files limit"},
		{syscall.ENFILE, "open-files limit"},
		{syscall.ENOMEM, "more memory"},
		{syscall.EIO, "I/O error"},
		{syscall.ENOSPC, "free space"},
		{syscall.EDQUOT, "free space"},
		{syscall.EACCES, "read and write the file"},
		{syscall.EPERM, "read and write the file"},
		{syscall.EROFS, "read-write"},
		{syscall.EAGAIN, "check the file"},
		{syscall.EINTR, "check the file"},
	} {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			fail := true
			injectOpen(t, func() error {
				if fail {
					return &os.PathError{Op: "open", Path: path, Err: tc.errno}
				}
				return nil
			})
			_, err := Open(path)
			var oe *OpenError
			var ue *UnreadableError
			if !errors.As(err, &oe) || errors.As(err, &ue) || !errors.Is(err, tc.errno) {
				t.Fatalf("%v: got %T %v", tc.errno, err, err)
			}
			if msg := err.Error(); !strings.Contains(msg, "db "+path+" cannot be opened") || !strings.Contains(msg, tc.errno.Error()) {
				t.Fatalf("message %q does not name the file and the error", msg)
			}
			if fix := Fix(err); !strings.Contains(fix, tc.fix) {
				t.Fatalf("fix for %v: %q", tc.errno, fix)
			}
			fail = false
			d, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if got := loadAll(t, d); len(got) != 100 {
				t.Fatalf("the file lost ids: %d", len(got))
			}
		})
	}
}

// TestDamageIsUnreadable: bbolt's verdicts on the file itself, and its
// panics, are damage.
func TestDamageIsUnreadable(t *testing.T) {
	path := goodFile(t, 10)
	for _, bad := range []error{berrors.ErrInvalid, berrors.ErrChecksum, berrors.ErrVersionMismatch, fmt.Errorf("file size too small %d", 100), nil} {
		t.Run(fmt.Sprint(bad), func(t *testing.T) {
			saved := boltOpen
			boltOpen = func(string, os.FileMode, *bolt.Options) (*bolt.DB, error) {
				if bad == nil {
					panic("page 7: invalid page type: 0")
				}
				return nil, bad
			}
			defer func() { boltOpen = saved }()
			_, err := Open(path)
			var ue *UnreadableError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "db "+path+" cannot be read") {
				t.Fatalf("%v: got %T %v", bad, err, err)
			}
		})
	}
}

// TestPathsThatAreNotFiles: a db that is a directory, or under a file, is
// the system's refusal: nothing is moved.
func TestPathsThatAreNotFiles(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "a-directory")
	os.Mkdir(sub, 0o700)
	os.WriteFile(filepath.Join(sub, "inside"), []byte("x"), 0o600)
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("x"), 0o600)
	for _, tc := range []struct {
		path  string
		errno syscall.Errno
		fix   string
	}{
		{sub, syscall.EISDIR, "not a directory"},
		{filepath.Join(plain, "state.db"), syscall.ENOTDIR, "a part of it is a file"},
	} {
		_, err := Open(tc.path)
		var oe *OpenError
		if !errors.As(err, &oe) || !errors.Is(err, tc.errno) || !strings.Contains(Fix(err), tc.fix) {
			t.Fatalf("%s: %T %v (%s)", tc.path, err, err, Fix(err))
		}
	}
	if st, err := os.Stat(sub); err != nil || !st.IsDir() {
		t.Fatal("the directory was changed")
	}
}

// TestUnreadableFileIsRefusedByPermission: a real permission error (when
// the tests do not run as root, which reads anything).
func TestUnreadableFileIsRefusedByPermission(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads a file of mode 0")
	}
	path := goodFile(t, 10)
	os.Chmod(path, 0)
	_, err := Open(path)
	var oe *OpenError
	if !errors.As(err, &oe) || !errors.Is(err, os.ErrPermission) {
		t.Fatalf("%T %v", err, err)
	}
	os.Chmod(path, 0o600)
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
}

func TestPacingRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Pacing(); ok {
		t.Fatal("a new file has a pacing record")
	}
	t0 := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	sent := []time.Time{t0, t0.Add(time.Second), t0.Add(1500 * time.Millisecond)}
	d.SetPacing(Pacing{Sent: sent, Blocked: t0.Add(30 * time.Second), Clean: true})
	if err := d.Commit([]Entry{{k(1), 1}}, nil, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	d.Close()

	// Written with a commit: not clean (requests after it are unknown).
	d, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := d.Pacing()
	if !ok || p.Clean || len(p.Sent) != 3 || !p.Sent[2].Equal(sent[2]) || !p.Blocked.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("after a commit: %+v %v", p, ok)
	}
	// Written as the input closes: clean, once.
	if err := d.SavePacing(Pacing{Sent: sent[:1]}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := d.Pacing(); !ok || !p.Clean || len(p.Sent) != 1 || !p.Blocked.IsZero() {
		t.Fatalf("after a clean close: %+v %v", p, ok)
	}
	d.Close() // closed without SavePacing: as after a crash
	d, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := d.Pacing(); !ok || p.Clean || len(p.Sent) != 1 {
		t.Fatalf("after a crash: %+v %v", p, ok)
	}
	// A damaged record is not worth the file: its requests are unknown.
	d.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyPacing, []byte{1, 2, 3}) })
	d.Close()
	d, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if p, ok := d.Pacing(); !ok || p.Clean || len(p.Sent) != 0 {
		t.Fatalf("damaged record: %+v %v", p, ok)
	}
	if got := loadAll(t, d); len(got) != 1 {
		t.Fatalf("ids %v", got)
	}
}
