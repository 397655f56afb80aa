package test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/in-msgraph/in_msgraph/internal/records"
)

// receiver is a Fluentd forward-protocol server: the far end of Fluent
// Bit's forward output, so the test sees records with their exact EventTime
// (nanoseconds) and types, as a SIEM forwarder would.
type receiver struct {
	ln     net.Listener
	mu     sync.Mutex
	events []records.Event
	tags   []string // the tag of each event
	errs   []error
	wg     sync.WaitGroup
}

func startReceiver(t *testing.T) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{ln: ln}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(func() {
		ln.Close()
		r.wg.Wait()
	})
	return r
}

func (r *receiver) port() int { return r.ln.Addr().(*net.TCPAddr).Port }

func (r *receiver) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer c.Close()
			r.serve(msgp.NewReader(bufio.NewReader(c)))
		}()
	}
}

func (r *receiver) fail(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

// serve reads Message, Forward and (Compressed)PackedForward messages.
func (r *receiver) serve(rd *msgp.Reader) {
	for {
		n, err := rd.ReadArrayHeader()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				r.fail(err)
			}
			return
		}
		tag, err := rd.ReadString()
		if err != nil {
			r.fail(err)
			return
		}
		var entries []byte
		compressed := false
		switch t, _ := rd.NextType(); t {
		case msgp.ArrayType: // Forward: [[time, record], ...]
			m, _ := rd.ReadArrayHeader()
			var buf bytes.Buffer
			for range m {
				if _, err := rd.CopyNext(&buf); err != nil {
					r.fail(err)
					return
				}
			}
			entries = buf.Bytes()
			n--
		case msgp.BinType, msgp.StrType: // PackedForward
			if t == msgp.BinType {
				entries, err = rd.ReadBytes(nil)
			} else {
				var s string
				s, err = rd.ReadString()
				entries = []byte(s)
			}
			if err != nil {
				r.fail(err)
				return
			}
			n--
		default: // Message: time, record
			buf := bytes.NewBuffer([]byte{0x92})
			for range 2 {
				if _, err := rd.CopyNext(buf); err != nil {
					r.fail(err)
					return
				}
			}
			entries = buf.Bytes()
			n -= 2
		}
		for n--; n > 0; n-- { // option map
			opt := map[string]any{}
			if err := rd.ReadMapStrIntf(opt); err != nil {
				r.fail(err)
				return
			}
			if opt["compressed"] == "gzip" {
				compressed = true
			}
		}
		if compressed {
			zr, err := gzip.NewReader(bytes.NewReader(entries))
			if err == nil {
				entries, err = io.ReadAll(zr)
			}
			if err != nil {
				r.fail(err)
				return
			}
		}
		evs, err := records.DecodeEvents(entries)
		if err != nil {
			r.fail(err)
			return
		}
		r.mu.Lock()
		r.events = append(r.events, evs...)
		for range evs {
			r.tags = append(r.tags, tag)
		}
		r.mu.Unlock()
	}
}

// byTag returns the events received under each tag.
func (r *receiver) byTag() map[string][]records.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]records.Event{}
	for i, e := range r.events {
		out[r.tags[i]] = append(out[r.tags[i]], e)
	}
	return out
}

func (r *receiver) snapshot() ([]records.Event, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]records.Event(nil), r.events...), append([]error(nil), r.errs...)
}
