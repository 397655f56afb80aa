package main

import (
	"bytes"
	"testing"
	"unsafe"

	"github.com/in-msgraph/in_msgraph/internal/host"
)

func batchOf(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

func held(p unsafe.Pointer, n int) []byte { return unsafe.Slice((*byte)(p), n) }

// TestCBufferReused: each handle's batches go out in one buffer, grown as
// needed, and freed when the instance exits, or at cleanup when it exits
// with the buffer out.
func TestCBufferReused(t *testing.T) {
	c := &cBuffers{bufs: map[host.Handle]*cBuffer{}}
	const h1, h2 = host.Handle(1), host.Handle(2)

	p := c.fill(h1, batchOf(1000, 'a'))
	if !bytes.Equal(held(p, 1000), batchOf(1000, 'a')) {
		t.Fatal("the batch was not copied")
	}
	c.done(h1, p)
	q := c.fill(h1, batchOf(800, 'b'))
	if q != p || !bytes.Equal(held(q, 800), batchOf(800, 'b')) {
		t.Fatalf("a smaller batch after cleanup: %p, want the buffer %p again", q, p)
	}
	// Collected again before cleanup: an allocation of its own.
	r := c.fill(h1, batchOf(10, 'c'))
	if r == q || !bytes.Equal(held(q, 800), batchOf(800, 'b')) {
		t.Fatal("a batch while the buffer is out overwrote it")
	}
	c.done(h1, r)
	c.done(h1, q)
	// Other handles have buffers of their own.
	o := c.fill(h2, batchOf(500, 'd'))
	big := c.fill(h1, batchOf(5000, 'e'))
	if o == big || !bytes.Equal(held(o, 500), batchOf(500, 'd')) || !bytes.Equal(held(big, 5000), batchOf(5000, 'e')) {
		t.Fatal("two handles share a buffer")
	}
	if b := c.bufs[h1]; b.size < 5000 || b.p != big {
		t.Fatalf("grown buffer: %d bytes at %p", b.size, b.p)
	}
	c.done(h1, big)
	// Over maxReused: not kept.
	huge := c.fill(h1, batchOf(maxReused+1, 'f'))
	if huge == big || c.bufs[h1].size > maxReused {
		t.Fatal("a batch over maxReused went into the kept buffer")
	}
	c.done(h1, huge)

	// h2 exits with its buffer out: cleanup frees it.
	c.drop(h2, false)
	if c.bufs[h2] == nil || !c.bufs[h2].gone {
		t.Fatal("a buffer still out was freed at exit")
	}
	c.done(h2, o)
	if c.bufs[h2] != nil {
		t.Fatal("the buffer of an exited instance was kept after cleanup")
	}
	// h1 exits: freed at once; a new instance on handle 0 is freed with
	// the last instance.
	c.drop(h1, false)
	if c.bufs[h1] != nil {
		t.Fatal("the buffer of an exited instance was kept")
	}
	c.done(0, c.fill(0, batchOf(100, 'g')))
	c.drop(7, true)
	if len(c.bufs) != 0 {
		t.Fatalf("%d buffers left when no instance is", len(c.bufs))
	}
}
