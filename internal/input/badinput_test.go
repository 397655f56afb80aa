package input

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
)

// mangle gets the n-th sign-ins response of the simulator (n from 1) and
// may replace it: it returns the status, content type and body to send, or
// ok=false to pass the simulator's answer through.
type mangle func(n int, req *http.Request, status int, body []byte) (code int, ctype string, out []byte, ok bool)

// front serves the simulator through a mangle, counting sign-ins requests
// and recording any Host that is not the front's own.
type front struct {
	mu       sync.Mutex
	n        int
	mangle   mangle
	requests int
}

func (f *front) handler(sim *graphsim.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "auditLogs/signIns") {
			sim.Handler().ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		sim.Handler().ServeHTTP(rec, r)
		f.mu.Lock()
		f.n++
		n := f.n
		f.mu.Unlock()
		code, ctype, out, ok := f.mangle(n, r, rec.Code, rec.Body.Bytes())
		if !ok {
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			return
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("request-id", fmt.Sprintf("mangled-%d", n))
		w.WriteHeader(code)
		w.Write(out)
	})
}

// editPage rewrites a page's JSON with fn (first `times` pages only).
func editPage(times int, fn func(page map[string]any)) mangle {
	return func(n int, _ *http.Request, status int, body []byte) (int, string, []byte, bool) {
		if n > times || status != 200 {
			return 0, "", nil, false
		}
		var page map[string]any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&page); err != nil {
			return 0, "", nil, false
		}
		fn(page)
		out, _ := json.Marshal(page)
		return 200, "application/json", out, true
	}
}

func firstN(times, code int, ctype, body string) mangle {
	return func(n int, _ *http.Request, _ int, _ []byte) (int, string, []byte, bool) {
		if n > times {
			return 0, "", nil, false
		}
		return code, ctype, []byte(body), true
	}
}

// TestBadInput is the table of what Graph or the network can send: each
// row is detected and reported, retried where that makes sense, and never
// crashes, hangs or drops a valid event.
func TestBadInput(t *testing.T) {
	var big strings.Builder
	for big.Len() < 10<<20 {
		big.WriteString("0123456789abcdef\u00e9\u6771\\\"")
	}
	bigRecord := map[string]any{"id": "big-record-0001", "createdDateTime": "", "blob": big.String()}
	rows := []struct {
		name   string
		mangle mangle
		health string // a health code that must appear, "" for none
		check  func(t *testing.T, r *rig, f *front)
	}{
		{"truncated JSON", func(n int, _ *http.Request, status int, body []byte) (int, string, []byte, bool) {
			if n > 3 || status != 200 {
				return 0, "", nil, false
			}
			return 200, "application/json", body[:len(body)/2], true
		}, "", nil}, // read at the fourth try: api_error only when nothing is readable for 5 minutes (TestUnreadableAnswersAlarm)
		{"malformed JSON", firstN(2, 200, "application/json", `{"value":[{"id":"1","createdDateTime":]}`), "", nil},
		{"HTML error page", firstN(3, 502, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>"), "api_error", nil},
		{"wrong content type", firstN(1, 200, "text/plain", `{"value":[]}`), "", nil},
		{"200 without value", firstN(2, 200, "application/json", `{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns"}`), "", nil},
		{"objects without id or createdDateTime", editPage(1, func(p map[string]any) {
			p["value"] = append(p["value"].([]any), map[string]any{"userDisplayName": "no id"}, map[string]any{"id": "no-time"})
		}), "invalid_records", nil},
		{"createdDateTime in another format", editPage(3, func(p map[string]any) {
			for _, v := range p["value"].([]any) {
				o := v.(map[string]any)
				o["createdDateTime"] = strings.Replace(o["createdDateTime"].(string), "Z", "+00:00", 1)
			}
		}), "", func(t *testing.T, r *rig, _ *front) {
			// verify() checks each record's time against Graph's; the
			// string itself is delivered as Graph sent it.
			n := 0
			for _, e := range r.events {
				if strings.HasSuffix(e.Fields["createdDateTime"].(string), "+00:00") {
					n++
				}
			}
			if n == 0 {
				t.Fatal("no rewritten record delivered")
			}
		}},
		{"duplicated ids within a page", editPage(3, func(p map[string]any) {
			v := p["value"].([]any)
			p["value"] = append(v, v...)
		}), "", nil},
		{"a 10 MB record", editPage(1, func(p map[string]any) {
			v := p["value"].([]any)
			bigRecord["createdDateTime"] = v[0].(map[string]any)["createdDateTime"]
			p["value"] = append(v, bigRecord)
		}), "", func(t *testing.T, r *rig, _ *front) {
			if r.byID["big-record-0001"] != 1 {
				t.Fatal("the 10 MB record was not delivered once")
			}
			for _, e := range r.events {
				if e.Fields["id"] == "big-record-0001" && e.Fields["blob"] != big.String() {
					t.Fatal("the 10 MB record was altered")
				}
			}
		}},
		{"a page over 100 MB", func(n int, _ *http.Request, status int, body []byte) (int, string, []byte, bool) {
			if n > 1 || status != 200 {
				return 0, "", nil, false
			}
			return 200, "application/json", append(body, bytes.Repeat([]byte(" "), 101<<20)...), true
		}, "", func(t *testing.T, r *rig, _ *front) {
			if !strings.Contains(r.logs.String(), "asking for pages of 10 events") {
				t.Fatal("page size not reduced")
			}
		}},
		{"a nextLink that loops", func(n int, req *http.Request, status int, body []byte) (int, string, []byte, bool) {
			if n > 2 || status != 200 {
				return 0, "", nil, false
			}
			var p map[string]any
			json.Unmarshal(body, &p)
			p["@odata.nextLink"] = "http://" + req.Host + req.URL.RequestURI()
			out, _ := json.Marshal(p)
			return 200, "application/json", out, true
		}, "api_error", nil},
		{"a nextLink to another host", editPage(1, func(p map[string]any) {
			p["@odata.nextLink"] = "https://graph.evil.example.com/v1.0/auditLogs/signIns?$skiptoken=x"
		}), "api_error", func(t *testing.T, r *rig, _ *front) {
			for _, h := range r.health {
				if h.Fields["msgraph_warning"] == "api_error" {
					if m := h.Fields["message"].(string); !strings.Contains(m, "points to https://graph.evil.example.com") || !strings.Contains(m, "the bearer token is not sent there") {
						t.Fatalf("message %q", m)
					}
					return
				}
			}
		}},
	}
	for i, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			if row.name == "a page over 100 MB" && (testing.Short() || raceEnabled) {
				t.Skip("buffers over 100 MB: run without -race and -short")
			}
			f := &front{mangle: row.mangle}
			r := newRigFront(t, graphsim.Options{Seed: int64(100 + i)}, f.handler, "page_size", "20")
			r.extra = map[string]bool{"big-record-0001": true}
			// This row edits Graph's objects, so they differ on purpose.
			r.altered = row.name == "createdDateTime in another format"
			addEvents(r.sim, int64(200+i), r.clk.Now().Add(-10*time.Minute), r.clk.Now(), 60, fixedLateness(0))
			r.run(30*time.Minute, time.Second)
			if _, dups, missed := r.verify(0); dups != 0 || missed != 0 {
				t.Fatalf("%d duplicates, %d missed; health %v", dups, missed, r.healthCodes())
			}
			if row.health != "" && r.healthCodes()[row.health+"/firing"]+r.healthCodes()[row.health+"/event"] == 0 {
				t.Fatalf("no %s record: %v", row.health, r.healthCodes())
			}
			if row.check != nil {
				row.check(t, r, f)
			}
		})
	}
}
