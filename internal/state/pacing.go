package state

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Pacing is what the file remembers of the request budget, so that the
// first requests after a restart respect Graph's limits: the times of the
// requests sent within the budget's window and the time before which
// Graph asked for no request (Retry-After).
type Pacing struct {
	Sent    []time.Time // oldest first
	Blocked time.Time   // zero: none
	// Clean is set when the record was written as the input closed, so
	// Sent holds every request up to then. A record written with a commit
	// misses the requests sent after that commit.
	Clean bool
}

// maxPacing bounds the times stored: more than any budget's window holds.
const maxPacing = 1024

// The pacing record: a flags byte (1: clean), the blocked time and then
// each sent time, in Unix nanoseconds, 8 bytes each, big-endian.
const pacingClean = 1

func encodePacing(p Pacing) []byte {
	sent := p.Sent
	if len(sent) > maxPacing {
		sent = sent[len(sent)-maxPacing:]
	}
	b := make([]byte, 0, 9+8*len(sent))
	var flags byte
	if p.Clean {
		flags |= pacingClean
	}
	b = append(b, flags)
	var blocked int64
	if !p.Blocked.IsZero() {
		blocked = p.Blocked.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(blocked))
	for _, t := range sent {
		b = binary.BigEndian.AppendUint64(b, uint64(t.UnixNano()))
	}
	return b
}

func decodePacing(b []byte) (Pacing, error) {
	if len(b) < 9 || (len(b)-9)%8 != 0 {
		return Pacing{}, fmt.Errorf("a pacing record of %d bytes", len(b))
	}
	p := Pacing{Clean: b[0]&pacingClean != 0}
	if n := int64(binary.BigEndian.Uint64(b[1:])); n != 0 {
		p.Blocked = time.Unix(0, n)
	}
	for b = b[9:]; len(b) > 0; b = b[8:] {
		p.Sent = append(p.Sent, time.Unix(0, int64(binary.BigEndian.Uint64(b))))
	}
	return p, nil
}

// readPacing keeps the record as found, in the transaction that opens the
// file, and marks it no longer clean: if the process dies before it
// closes, the next start knows that requests are missing from it.
func (d *DB) readPacing(meta *bolt.Bucket) error {
	v := meta.Get(keyPacing)
	if v == nil {
		return nil
	}
	d.hasPacing = true
	p, err := decodePacing(v)
	if err != nil {
		// Not worth the file: its requests are unknown.
		d.pacing = Pacing{}
		return nil
	}
	d.pacing = p
	if !p.Clean {
		return nil
	}
	p.Clean = false
	return meta.Put(keyPacing, encodePacing(p))
}

// Pacing is the record found when the file was opened; ok is false when
// the file had none (a new file, or one written before pacing was kept).
func (d *DB) Pacing() (p Pacing, ok bool) { return d.pacing, d.hasPacing }

// SetPacing makes the next Commit write p (not clean) in its transaction.
func (d *DB) SetPacing(p Pacing) {
	p.Clean = false
	d.next = encodePacing(p)
}

// SavePacing writes p now, marked clean: it is called as the input closes.
func (d *DB) SavePacing(p Pacing) error {
	if d == nil || d.db == nil {
		return nil
	}
	p.Clean = true
	v := encodePacing(p)
	err := d.db.Update(func(tx *bolt.Tx) error { return d.root(tx).Bucket(bucketMeta).Put(keyPacing, v) })
	if err != nil {
		return fmt.Errorf("db %s: the request times could not be written: %w", d.path, err)
	}
	return nil
}
