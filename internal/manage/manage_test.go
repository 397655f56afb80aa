package manage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/auth"
	"github.com/in-msgraph/in_msgraph/internal/graph"
	"github.com/in-msgraph/in_msgraph/internal/manage"
)

const tenant = "11111111-2222-3333-4444-555555555555"

// blobBody is the blob /blob/<n>: a JSON array of n records whose bytes
// depend on n.
func blobBody(n int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"Id":"%d-%d","CreationTime":"2026-03-02T08:00:00","Pad":"%s"}`, n, i, strings.Repeat(strconv.Itoa(n%10), 60))
	}
	b.WriteByte(']')
	return b.Bytes()
}

// listing is the content listing /list/<n>: n items named after n.
func listing(n int) string {
	var items []string
	for i := range n {
		items = append(items, fmt.Sprintf(`{"contentType":"Audit.General","contentId":"c%d-%d","contentUri":"URI/blob/%d","contentCreated":"2026-03-02T08:00:00.000Z","contentExpiration":"2026-03-09T08:00:00.000Z"}`, n, i, i+1))
	}
	return "[" + strings.Join(items, ",") + "]"
}

// start serves the token endpoint, listings, blobs and the subscription
// list; it returns a client of it.
func start(t *testing.T) (*manage.Client, string) {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		feed := "/api/v1.0/" + tenant + "/activity/feed"
		switch {
		case r.URL.Path == "/"+tenant+"/oauth2/v2.0/token":
			fmt.Fprint(w, `{"token_type":"Bearer","expires_in":3600,"access_token":"tok"}`)
		case strings.HasPrefix(r.URL.Path, "/blob/"):
			n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/blob/"))
			w.Header().Set("request-id", "rid-blob-"+strconv.Itoa(n))
			_, _ = w.Write(blobBody(n))
		case strings.HasPrefix(r.URL.Path, feed+"/list/"):
			n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, feed+"/list/"))
			fmt.Fprint(w, strings.ReplaceAll(listing(n), "URI", srv.URL))
		case r.URL.Path == feed+"/subscriptions/list":
			fmt.Fprint(w, `[{"contentType":"Audit.General","status":"enabled"}]`)
		case r.URL.Path == feed+"/subscriptions/start":
			fmt.Fprint(w, `{"contentType":"Audit.General","status":"enabled"}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":{"code":"AF20010","message":"no such tenant"}}`)
		}
	}))
	t.Cleanup(srv.Close)
	tr := graph.NewTransport()
	t.Cleanup(tr.CloseIdleConnections)
	tokens := auth.New(auth.Credentials{
		TenantID: tenant, ClientID: "client", Secret: "secret",
		AuthorityHost: srv.URL, Scope: srv.URL + "/.default",
		HTTPClient: &http.Client{Transport: tr}, Timeout: 5 * time.Second,
	})
	c, err := manage.NewClient(srv.URL, tenant, "publisher", tokens, tr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c, srv.URL
}

// TestBodiesAcrossRequests: blobs held across listings, subscription
// lists, errors and other blobs stay intact until released, a Release
// twice is harmless, and listings (whose buffers go back at once) keep
// their items. Run with -race, from several goroutines.
func TestBodiesAcrossRequests(t *testing.T) {
	c, base := start(t)
	ctx := context.Background()
	feed := base + "/api/v1.0/" + tenant + "/activity/feed"
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range 10 {
				n := 1 + (w*7+r*13)%200
				blob, err := c.Blob(ctx, fmt.Sprintf("%s/blob/%d", base, n))
				if err != nil {
					errs <- err
					return
				}
				l, err := c.List(ctx, fmt.Sprintf("%s/list/%d", feed, n%20+1))
				if err != nil {
					errs <- err
					return
				}
				if subs, err := c.Subscriptions(ctx); err != nil || !manage.Enabled(subs, "Audit.General") {
					errs <- fmt.Errorf("subscriptions: %v, %v", subs, err)
					return
				}
				var ae *graph.APIError
				if _, err := c.List(ctx, feed+"/nowhere"); !errors.As(err, &ae) || ae.Code != "AF20010" {
					errs <- fmt.Errorf("an unknown address gave %v", err)
					return
				}
				other, err := c.Blob(ctx, fmt.Sprintf("%s/blob/%d", base, n+1))
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(blob.Body, blobBody(n)) || blob.RequestID != fmt.Sprintf("rid-blob-%d", n) {
					errs <- fmt.Errorf("the blob of %d records held across other requests changed", n)
					return
				}
				if want := fmt.Sprintf("c%d-%d", n%20+1, n%20); len(l.Items) != n%20+1 || l.Items[n%20].ID != want {
					errs <- fmt.Errorf("listing: %d items, last %+v; want %d, last %s", len(l.Items), l.Items[len(l.Items)-1], n%20+1, want)
					return
				}
				blob.Release()
				blob.Release()
				if blob.Body != nil {
					errs <- errors.New("Body after Release is not nil")
					return
				}
				if !bytes.Equal(other.Body, blobBody(n+1)) {
					errs <- fmt.Errorf("the blob of %d records changed", n+1)
					return
				}
				if w%3 != 0 { // some never release
					other.Release()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := c.Start(ctx, "Audit.General"); err != nil {
		t.Error(err)
	}
}
