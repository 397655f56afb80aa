package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"sync"
	"unsafe"

	"github.com/in-msgraph/in_msgraph/internal/host"
)

// cBuffers are the C buffers of the batches the proxy appends (where
// Fluent Bit lacks flb_input_log_append), one per instance handle (0 for
// a Fluent Bit before 4.1, whose callbacks carry none), grown as needed
// and reused batch after batch instead of a fresh allocation each.
//
// Fluent Bit's Go proxy (src/flb_plugin_proxy.c and src/proxy/go/go.c,
// 2.1 to 5.1) copies the batch in flb_input_log_append, into the input's
// ring buffer or a chunk, then calls the cleanup callback and keeps no
// pointer to it; it frees the buffer itself only when the plugin exports
// no cleanup callback, and this one exports both. So the buffer is the
// plugin's again once cleanup has been called, in every version.
//
// A buffer is freed when its instance exits; an exit between collect and
// cleanup leaves the freeing to cleanup. A batch over maxReused, or one
// collected while the buffer is still out, gets a C allocation of its own,
// freed at cleanup.
type cBuffers struct {
	mu   sync.Mutex
	bufs map[host.Handle]*cBuffer
}

type cBuffer struct {
	p    unsafe.Pointer
	size int
	out  bool // handed to Fluent Bit, cleanup not called yet
	gone bool // its instance exited while it was out
}

// maxReused is the largest buffer kept between batches.
const maxReused = 16 << 20

var buffers = cBuffers{bufs: map[host.Handle]*cBuffer{}}

// fill copies batch into handle's buffer and returns it, out until done.
func (c *cBuffers) fill(handle host.Handle, batch []byte) unsafe.Pointer {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.bufs[handle]
	if b == nil {
		b = &cBuffer{}
		c.bufs[handle] = b
	}
	if len(batch) > maxReused || b.out {
		return C.CBytes(batch)
	}
	if b.size < len(batch) {
		C.free(b.p)
		b.size = min(max(len(batch), b.size+b.size/2), maxReused)
		b.p = C.malloc(C.size_t(b.size)) // cgo's malloc never returns nil
	}
	copy(unsafe.Slice((*byte)(b.p), len(batch)), batch)
	b.out = true
	return b.p
}

// done takes back data, handed out by fill for handle: handle's buffer is
// free again (or freed, its instance gone); any other allocation is freed.
func (c *cBuffers) done(handle host.Handle, data unsafe.Pointer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b := c.bufs[handle]; b != nil && b.p != nil && data == b.p {
		b.out = false
		if b.gone {
			c.free(handle)
		}
		return
	}
	C.free(data)
}

// drop frees handle's buffer, or every buffer when all is set (no
// instance is left); a buffer still out is freed by done.
func (c *cBuffers) drop(handle host.Handle, all bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, b := range c.bufs {
		if h != handle && !all {
			continue
		}
		if b.out {
			b.gone = true
			continue
		}
		c.free(h)
	}
}

// free frees handle's buffer (c.mu held).
func (c *cBuffers) free(handle host.Handle) {
	C.free(c.bufs[handle].p)
	delete(c.bufs, handle)
}
