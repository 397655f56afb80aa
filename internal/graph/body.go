package graph

import (
	"io"
	"sync"
)

// Response bodies are read into buffers borrowed from one pool for the
// whole process, not held per Client: an input may hold a Client per
// tenant, and only the requests in flight need a buffer. A buffer goes
// back to the pool when its Response is released; one never released is
// garbage collected like any other. The pool lets go of buffers that stay
// unused across garbage collections (sync.Pool), so an idle input holds
// none for long.
var bodies sync.Pool // of *[]byte

// MaxPooled is the largest buffer given back to the pool: the buffer of a
// larger body is left to the garbage collector, so one huge page does not
// stay in memory.
const MaxPooled = 16 << 20

// getBody borrows a buffer with room for at least want bytes; for want 0
// (the size unknown) it may have none.
func getBody(want int) *[]byte {
	bp, _ := bodies.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	if want > 0 && cap(*bp) < want {
		*bp = make([]byte, 0, want)
	}
	return bp
}

// putBody gives a buffer back, unless it is larger than MaxPooled.
func putBody(bp *[]byte) {
	if cap(*bp) > MaxPooled {
		return
	}
	*bp = (*bp)[:0]
	bodies.Put(bp)
}

// ReadBody reads r, a response body of size bytes (-1 when unknown), into
// a buffer borrowed from the pool, up to MaxBody+1 bytes: a Body longer
// than MaxBody means the body was larger. The Response's Release gives the
// buffer back. On an error nothing is borrowed any more.
func ReadBody(r io.Reader, size int64) (*Response, error) {
	want := 0
	if size >= 0 {
		// One byte more than the body, so that its end is seen without
		// growing the buffer; a larger size is believed only as the bytes
		// arrive.
		want = int(min(size+1, MaxPooled))
	}
	bp := getBody(want)
	b := (*bp)[:0]
	r = io.LimitReader(r, MaxBody+1)
	if cap(b) == 0 {
		// Nothing pooled and the size unknown: io.ReadAll allocates the
		// least for a body read once.
		var err error
		if b, err = io.ReadAll(r); err != nil {
			return nil, err
		}
		*bp = b
		return &Response{Body: b[:len(b):len(b)], buf: bp}, nil
	}
	for len(b) <= MaxBody {
		if len(b) == cap(b) {
			grown := make([]byte, len(b), min(2*cap(b), MaxBody+1))
			copy(grown, b)
			b = grown
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*bp = b
			putBody(bp)
			return nil, err
		}
	}
	*bp = b
	return &Response{Body: b[:len(b):len(b)], buf: bp}, nil
}

// Release gives the Response's body buffer back to the pool, to be reused
// by another request. After it Body is nil and must not be used, nor
// anything that shares its memory; RequestID stays. Calling it again, or
// on a Response that borrowed nothing, does nothing. A Response that is
// never released is garbage collected with its buffer. Release is for the
// one goroutine that owns the Response.
func (r *Response) Release() {
	if r == nil || r.buf == nil {
		return
	}
	bp := r.buf
	r.buf, r.Body = nil, nil
	putBody(bp)
}
