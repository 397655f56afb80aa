package graph_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/in-msgraph/in_msgraph/internal/graph"
)

// pageBody is the body the fake answers for /page/<n>: a Graph page of n
// bytes or more whose bytes depend on n, so a body overwritten by
// another request's shows.
func pageBody(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"value":[`)
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"%d-%d","pad":"%s"}`, n, i, strings.Repeat(strconv.Itoa(n%10), 40))
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// pageServer answers /page/<n> with pageBody(n), with a Content-Length
// unless the query has chunked=1.
func pageServer(t testing.TB) *fake {
	var mu sync.Mutex
	cache := map[int][]byte{}
	return startFake(t, func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/page/"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		body, ok := cache[n]
		if !ok {
			body = pageBody(n)
			cache[n] = body
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("request-id", "rid-"+strconv.Itoa(n))
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		_, _ = w.Write(body)
	})
}

func data(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

// TestReleasedBodyIsReused: a request after a Release reads into the
// released buffer. The pool may drop a buffer (a garbage collection, or
// at random under the race detector), so a few rounds are allowed.
func TestReleasedBodyIsReused(t *testing.T) {
	f := pageServer(t)
	c, _ := f.client(t)
	ctx := context.Background()
	for _, chunked := range []string{"", "?chunked=1"} {
		reused := false
		for round := 0; round < 50 && !reused; round++ {
			a, err := c.Get(ctx, f.srv.URL+"/page/20000"+chunked)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.Body, pageBody(20000)) {
				t.Fatalf("body of %d bytes differs from the page", len(a.Body))
			}
			first := data(a.Body)
			a.Release()
			if a.Body != nil {
				t.Fatalf("Body after Release: %d bytes; want nil", len(a.Body))
			}
			if a.RequestID != "rid-20000" {
				t.Errorf("RequestID after Release = %q", a.RequestID)
			}
			b, err := c.Get(ctx, f.srv.URL+"/page/15000"+chunked)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b.Body, pageBody(15000)) {
				t.Fatalf("reused body of %d bytes differs from the page", len(b.Body))
			}
			reused = data(b.Body) == first
			b.Release()
		}
		if !reused {
			t.Errorf("%q: no request in 50 read into the buffer released before it", chunked)
		}
	}
}

// TestReleaseTwiceIsHarmless: a second Release gives nothing back again,
// so two later requests never share a buffer.
func TestReleaseTwiceIsHarmless(t *testing.T) {
	f := pageServer(t)
	c, _ := f.client(t)
	ctx := context.Background()
	for range 20 {
		a, err := c.Get(ctx, f.srv.URL+"/page/5000")
		if err != nil {
			t.Fatal(err)
		}
		a.Release()
		a.Release()
		b, err := c.Get(ctx, f.srv.URL+"/page/5000")
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.Get(ctx, f.srv.URL+"/page/6000")
		if err != nil {
			t.Fatal(err)
		}
		if data(b.Body) == data(d.Body) {
			t.Fatal("two responses held at once share one buffer")
		}
		if !bytes.Equal(b.Body, pageBody(5000)) || !bytes.Equal(d.Body, pageBody(6000)) {
			t.Fatal("a body held was changed")
		}
		b.Release()
		d.Release()
	}
	var zero *graph.Response
	zero.Release()                // nil: nothing
	(&graph.Response{}).Release() // borrowed nothing: nothing
	own := &graph.Response{Body: []byte("{}")}
	own.Release()
	if own.Body == nil {
		t.Error("Release dropped a Body it had not borrowed")
	}
}

// TestBodiesHeldWhileOthersRun: many goroutines, each holding its bodies
// across other requests (of other sizes, growing and reusing buffers) and
// checking them before each Release; some never release. Run with -race:
// a buffer handed out twice is a data race as well as a changed body.
func TestBodiesHeldWhileOthersRun(t *testing.T) {
	f := pageServer(t)
	c, _ := f.client(t)
	ctx := context.Background()
	sizes := []int{300, 4000, 30000, 70000, 200000}
	want := map[int][]byte{}
	for _, n := range sizes {
		want[n] = pageBody(n)
	}
	const workers, rounds = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var held []*graph.Response
			var sizeOf []int
			for r := range rounds {
				n := sizes[(w+r)%len(sizes)]
				link := fmt.Sprintf("%s/page/%d", f.srv.URL, n)
				if (w+r)%3 == 0 {
					link += "?chunked=1"
				}
				resp, err := c.Get(ctx, link)
				if err != nil {
					errs <- err
					return
				}
				held, sizeOf = append(held, resp), append(sizeOf, n)
				// Hold up to three bodies across other requests.
				if len(held) > 3 || r == rounds-1 {
					for i, h := range held {
						if !bytes.Equal(h.Body, want[sizeOf[i]]) {
							errs <- fmt.Errorf("worker %d: a body of %d bytes held across other requests changed", w, sizeOf[i])
							return
						}
						if w%4 != 0 { // every fourth worker never releases
							h.Release()
						}
					}
					held, sizeOf = held[:0], sizeOf[:0]
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestOversizedBufferIsNotKept: the buffer of a body over MaxPooled is not
// given back, so a small page after it gets a small buffer.
func TestOversizedBufferIsNotKept(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 17 MiB")
	}
	n := graph.MaxPooled + 1<<20
	f := pageServer(t)
	c, _ := f.client(t)
	ctx := context.Background()
	for range 5 {
		big, err := c.Get(ctx, fmt.Sprintf("%s/page/%d", f.srv.URL, n))
		if err != nil {
			t.Fatal(err)
		}
		if len(big.Body) < n {
			t.Fatalf("body of %d bytes; want at least %d", len(big.Body), n)
		}
		first := data(big.Body)
		big.Release()
		small, err := c.Get(ctx, f.srv.URL+"/page/1000")
		if err != nil {
			t.Fatal(err)
		}
		if data(small.Body) == first {
			t.Fatalf("a buffer of %d bytes was kept for reuse (MaxPooled %d)", n, graph.MaxPooled)
		}
		small.Release()
	}
}

// BenchmarkGet reads a 2.5 MB page (about a Graph page of 1000 sign-ins)
// over loopback, with a Content-Length or chunked, released after each
// request (as the input does) or never.
func BenchmarkGet(b *testing.B) {
	const n = 2_500_000
	for _, mode := range []struct {
		name    string
		query   string
		release bool
	}{
		{"length/released", "", true},
		{"length/unreleased", "", false},
		{"chunked/released", "?chunked=1", true},
		{"chunked/unreleased", "?chunked=1", false},
	} {
		b.Run(mode.name, func(b *testing.B) {
			f := pageServer(b)
			c, _ := f.client(b)
			link := fmt.Sprintf("%s/page/%d%s", f.srv.URL, n, mode.query)
			ctx := context.Background()
			b.ReportAllocs()
			b.SetBytes(n)
			for b.Loop() {
				resp, err := c.Get(ctx, link)
				if err != nil {
					b.Fatal(err)
				}
				if mode.release {
					resp.Release()
				}
			}
		})
	}
}
