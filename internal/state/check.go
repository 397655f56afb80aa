package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's meta page (go.etcd.io/bbolt, page.go and db.go): a 16-byte page
// header, then magic, version, page size, flags, the root bucket (root
// page, sequence), the freelist page, the high-water page id, the
// transaction id and an FNV-64a checksum of the fields before it.
const (
	boltMagic    = 0xED0CDAED
	metaOffset   = 16
	metaChecksum = metaOffset + 56
	metaEnd      = metaChecksum + 8
)

// Check reads the two meta pages of an existing state file and verifies
// that the file holds every page they declare. bbolt maps the file into
// memory and reads pages past its end as a fault that kills the process;
// a truncated file must be refused before bbolt opens it. A missing or
// empty file is fine (it is created). A damaged file gives an
// *UnreadableError; a file the system cannot read an *OpenError.
func Check(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &OpenError{Path: path, Err: err}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return &OpenError{Path: path, Err: err}
	}
	size := st.Size()
	if size == 0 {
		return nil
	}
	bad := func(reason string) error { return &UnreadableError{Path: path, Reason: reason} }
	// Only the file's own shortness is damage: a read the system refuses
	// (an I/O error, a directory) leaves the file as it is.
	first := make([]byte, metaEnd)
	if _, err := io.ReadFull(f, first); errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return bad("it is too short to be a state file (truncated?)")
	} else if err != nil {
		return &OpenError{Path: path, Err: err}
	}
	pageSize := int64(binary.LittleEndian.Uint32(first[metaOffset+8:]))
	if pageSize < 512 || pageSize > 1<<20 || size < 2*pageSize {
		return bad("it is too short to be a state file (truncated?)")
	}
	var best []byte
	var bestTx uint64
	for i := range int64(2) {
		m := make([]byte, metaEnd)
		if _, err := f.ReadAt(m, i*pageSize); errors.Is(err, io.EOF) {
			continue
		} else if err != nil {
			return &OpenError{Path: path, Err: err}
		}
		if binary.LittleEndian.Uint32(m[metaOffset:]) != boltMagic {
			continue
		}
		h := fnv.New64a()
		h.Write(m[metaOffset:metaChecksum])
		if h.Sum64() != binary.LittleEndian.Uint64(m[metaChecksum:]) {
			continue
		}
		if tx := binary.LittleEndian.Uint64(m[metaOffset+48:]); best == nil || tx > bestTx {
			best, bestTx = m, tx
		}
	}
	if best == nil {
		return bad("it is not a state file, or both of its headers are damaged")
	}
	hwm := binary.LittleEndian.Uint64(best[metaOffset+40:])
	root := binary.LittleEndian.Uint64(best[metaOffset+16:])
	free := binary.LittleEndian.Uint64(best[metaOffset+32:])
	if hwm < 2 || uint64(size) < hwm*uint64(pageSize) || root >= hwm || (free != ^uint64(0) && free >= hwm) {
		return bad(fmt.Sprintf("it is truncated or damaged: it declares %d pages of %d bytes but holds %d bytes", hwm, pageSize, size))
	}
	return nil
}
