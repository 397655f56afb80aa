// Command graphsim serves the Microsoft Graph simulator on a loopback
// address for end-to-end tests of the plugin inside a real Fluent Bit.
//
// The first lines on stdout name the base URL, which is both the authority
// host and the Graph host, and the base URL of the Office 365 Management
// Activity API, served on a listener of its own (-manage-listen):
//
//	graphsim listening on http://127.0.0.1:PORT
//	URL=http://127.0.0.1:PORT
//	MANAGE_URL=http://127.0.0.1:PORT2
//
// -manage-records fills each of the five content types with blobs of that
// many audit records over the last -span; subscriptions are to be started
// by the client (or all of them at once with -manage-subscribed).
//
// -sources picks the sources it generates records for (signins by
// default); -events and -rate apply to each of them, and a quarter of the
// new records of a versioned source (risk_detections, security_alerts) are
// new versions of earlier objects.
//
// -tenants N serves N more tenants of the same application besides
// -tenant: tenant i (1 ≤ i ≤ N) has the GUID
// 00000000-0000-4000-8000-<i in 12 digits> and the domain
// tenant<i>.example.com (graphsim.NumberedTenant), and records and
// Management Activity API content generated as the default tenant's are.
//
// Besides Graph, the token endpoint and IMDS it serves, so a test can
// inspect and steer a running simulator:
//
//	GET /_graphsim/stats                counters as JSON
//	PUT /_graphsim/faults               a JSON Faults object
//	PUT /_graphsim/manage-faults        a JSON ManageFaults object
//	PUT /_graphsim/imds-faults          a JSON IMDSFaults object
//	PUT /_graphsim/federated-tokens     a JSON array of the accepted federated tokens
//	PUT /_graphsim/client-certificates  PEM CERTIFICATE blocks: the registered certificates
package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
)

func main() {
	if err := run(os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "graphsim:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("graphsim", flag.ContinueOnError)
	var (
		listen   = fs.String("listen", "127.0.0.1:0", "loopback address to listen on")
		events   = fs.Int("events", 0, "initial events of each source, spread over the last -span")
		span     = fs.Duration("span", time.Hour, "time range of the initial events")
		rate     = fs.Float64("rate", 0, "new events per second of each source, generated continuously")
		sources  = fs.String("sources", graphsim.SourceSignIns, "comma-separated sources to generate records for: "+strings.Join(graphsim.Sources, ", "))
		lateness = fs.Duration("late-scale", 2*time.Second, "lateness scale of generated events (P95 ≈ 2x, P99 ≈ 5x)")
		seed     = fs.Int64("seed", 1, "random seed")
		aliases  = fs.String("tenant-aliases", "", "comma-separated domain aliases of the tenant")
		certs    = fs.String("client-certificates", "", "comma-separated PEM files of the certificates registered on the application")
		fedFiles = fs.String("federated-token-files", "", "comma-separated files whose contents are accepted as federated tokens")
		miIDs    = fs.String("managed-identity-client-ids", "", "comma-separated client IDs of the VM's user-assigned managed identities")
		mListen  = fs.String("manage-listen", "127.0.0.1:0", "loopback address the Management Activity API listens on")
		mRecords = fs.Int("manage-records", 1000, "audit records of each Management Activity API content type, in blobs over the last -span")
		mSubbed  = fs.Bool("manage-subscribed", false, "start the subscriptions of every content type")
		nTenants = fs.Int("tenants", 0, "more tenants to serve, tenant1.example.com to tenantN.example.com, each with records as the default tenant's")
		opts     graphsim.Options
		f        graphsim.Faults
	)
	fs.Float64Var(&opts.IMDSFaults.Rate404, "imds-fault-404", 0, "probability of an injected IMDS 404")
	fs.Float64Var(&opts.IMDSFaults.Rate429, "imds-fault-429", 0, "probability of an injected IMDS 429")
	fs.Float64Var(&opts.IMDSFaults.Rate410, "imds-fault-410", 0, "probability of an injected IMDS 410")
	fs.Float64Var(&opts.IMDSFaults.Rate500, "imds-fault-500", 0, "probability of an injected IMDS 500")
	fs.BoolVar(&opts.Throttle, "throttle", false, "enforce Graph's rate limits (5 requests per 10 s per tenant and client on the audit logs and 122 per client across tenants, 1/s per tenant on riskDetections, 150/min on alerts)")
	fs.Float64Var(&opts.ThrottleWindowScale, "throttle-window-scale", 1, "multiply every throttle window by this, keeping its request count (0.1: 5 requests per second on the audit logs)")
	fs.DurationVar(&opts.TokenLifetime, "token-lifetime", time.Hour, "access token lifetime")
	fs.StringVar(&opts.TenantID, "tenant", graphsim.DefaultTenantID, "tenant ID")
	fs.StringVar(&opts.ClientID, "client-id", graphsim.DefaultClientID, "client ID")
	fs.StringVar(&opts.ClientSecret, "client-secret", graphsim.DefaultClientSecret, "client secret")
	fs.IntVar(&opts.MaxPageSize, "max-page-size", 1000, "largest and default $top")
	fs.DurationVar(&opts.MaxFilterAge, "max-filter-age", 90*24*time.Hour, "oldest accepted filter datetime, relative to now")
	fs.Float64Var(&f.Rate429, "fault-429", 0, "probability of an injected 429 per Graph request")
	fs.Float64Var(&f.Rate503, "fault-503", 0, "probability of an injected 503")
	fs.Float64Var(&f.Rate500, "fault-500", 0, "probability of an injected 500")
	fs.Float64Var(&f.Rate504, "fault-504", 0, "probability of an injected 504")
	fs.Float64Var(&f.RateTruncated, "fault-truncated", 0, "probability of a truncated 200 body")
	fs.BoolVar(&f.Licence403, "licence-403", false, "answer the lists that need P1/P2 with the licence 403")
	fs.BoolVar(&f.Permission403, "permission-403", false, "answer every list with the permission 403")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *rate < 0 || *events < 0 || *mRecords < 0 || *nTenants < 0 {
		return errors.New("-rate, -events, -manage-records and -tenants must not be negative")
	}
	for i := 1; i <= *nTenants; i++ {
		opts.Tenants = append(opts.Tenants, graphsim.NumberedTenant(i))
	}
	if !(opts.ThrottleWindowScale > 0) {
		return errors.New("-throttle-window-scale must be positive")
	}
	srcs := splitList(*sources)
	for _, s := range srcs {
		if !slices.Contains(graphsim.Sources, s) {
			return fmt.Errorf("-sources: unknown source %q (want %s)", s, strings.Join(graphsim.Sources, ", "))
		}
	}
	opts.Seed, opts.Faults = *seed, f
	if *aliases != "" {
		opts.TenantAliases = strings.Split(*aliases, ",")
	}
	if *miIDs != "" {
		opts.ManagedIdentityClientIDs = strings.Split(*miIDs, ",")
	}
	for _, name := range splitList(*certs) {
		b, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("-client-certificates: %w", err)
		}
		cs, err := parseCertificates(b)
		if err != nil {
			return fmt.Errorf("-client-certificates %s: %w", name, err)
		}
		opts.ClientCertificates = append(opts.ClientCertificates, cs...)
	}
	for _, name := range splitList(*fedFiles) {
		b, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("-federated-token-files: %w", err)
		}
		opts.FederatedTokens = append(opts.FederatedTokens, strings.TrimSpace(string(b)))
	}

	l, err := listenLoopback("-listen", *listen)
	if err != nil {
		return err
	}
	ml, err := listenLoopback("-manage-listen", *mListen)
	if err != nil {
		l.Close()
		return err
	}
	opts.ManageURL = "http://" + ml.Addr().String()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	sim := graphsim.New(opts)
	late := graphsim.RealisticLateness(*lateness)
	now := time.Now()
	tenants := []string{opts.TenantID}
	for _, t := range opts.Tenants {
		tenants = append(tenants, t.ID)
	}
	var gens []*generator
	for k, tenant := range tenants {
		// The default tenant's records are those of a run without
		// -tenants.
		rng := rand.New(rand.NewPCG(uint64(*seed), 1+uint64(k)<<32))
		if k > 0 {
			gens = append(gens, newTenantGenerator(sim, rng, srcs, late, tenant))
		} else {
			gens = append(gens, newGenerator(sim, rng, srcs, late))
		}
		gens[k].add(now.Add(-*span), now, *events)
		if *mRecords == 0 {
			continue
		}
		for i, ct := range graphsim.ContentTypes {
			feedSeed := uint64(*seed)*8 + uint64(i)
			if k > 0 {
				feedSeed = feedSeed*1e4 + uint64(k)
			}
			feed := graphsim.NewFeed(graphsim.FeedSpec{
				ContentType: ct, Seed: feedSeed, From: now.Add(-*span), To: now,
				PerDay: float64(*mRecords) / span.Hours() * 24, BlobRecords: max(*mRecords/10, 1),
				DupRate: 0.02, DupGap: *span / 4, ListLateMax: *span / 10, RecordLateMax: *span,
				OutOfOrder: true, Tenant: tenant,
			})
			for j := range feed.Blobs {
				feed.Blobs[j].Tenant = tenant
			}
			sim.AddBlobs(feed.Blobs...)
			sim.SetSubscribedIn(tenant, ct, *mSubbed)
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /_graphsim/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(sim.Stats())
	})
	mux.HandleFunc("PUT /_graphsim/faults", func(w http.ResponseWriter, r *http.Request) {
		var nf graphsim.Faults
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&nf); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sim.SetFaults(nf)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /_graphsim/manage-faults", func(w http.ResponseWriter, r *http.Request) {
		var nf graphsim.ManageFaults
		if !decodeStrict(w, r, &nf) {
			return
		}
		sim.SetManageFaults(nf)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /_graphsim/imds-faults", func(w http.ResponseWriter, r *http.Request) {
		var nf graphsim.IMDSFaults
		if !decodeStrict(w, r, &nf) {
			return
		}
		sim.SetIMDSFaults(nf)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /_graphsim/federated-tokens", func(w http.ResponseWriter, r *http.Request) {
		var toks []string
		if !decodeStrict(w, r, &toks) {
			return
		}
		sim.SetFederatedTokens(toks...)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /_graphsim/client-certificates", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		cs, err := parseCertificates(b)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sim.SetClientCertificates(cs...)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.Handle("/", sim.Handler())

	base := "http://" + l.Addr().String()
	fmt.Printf("graphsim listening on %s\nURL=%s\nMANAGE_URL=%s\n", base, base, opts.ManageURL)
	fmt.Fprintf(os.Stderr, "graphsim: tenant=%s tenants=%d client_id=%s sources=%s events=%d rate=%g/s throttle=%t token_lifetime=%s client_certificates=%d federated_tokens=%d managed_identities=%d\n",
		opts.TenantID, len(opts.Tenants), opts.ClientID, strings.Join(srcs, ","), *events, *rate, opts.Throttle, opts.TokenLifetime,
		len(opts.ClientCertificates), len(opts.FederatedTokens), len(opts.ManagedIdentityClientIDs))

	genDone := make(chan struct{})
	go func() {
		defer close(genDone)
		generate(ctx, gens, *rate, now)
	}()
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ms := &http.Server{Handler: sim.ManageHandler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(l) }()
	go func() { errc <- ms.Serve(ml) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err = errors.Join(ignoreClosed(err), ignoreClosed(hs.Shutdown(sctx)), ignoreClosed(ms.Shutdown(sctx)))
	cancel()
	stop()
	<-genDone
	return err
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// listenLoopback listens on addr, which must be a loopback address.
func listenLoopback(flagName, addr string) (net.Listener, error) {
	if err := checkLoopback(flagName, addr); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	// A host name such as localhost could resolve elsewhere; check what
	// was actually bound.
	if ip := l.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		l.Close()
		return nil, fmt.Errorf("%s %s bound to non-loopback %s", flagName, addr, ip)
	}
	return l, nil
}

// maxTracked bounds the objects a generator remembers for updates.
const maxTracked = 10000

// generator adds records of several sources; it owns rng.
type generator struct {
	sim     *graphsim.Server
	rng     *rand.Rand
	sources []string
	late    graphsim.Lateness
	// latest holds the newest version of some objects of each versioned
	// source, the ones later updates are drawn from.
	latest map[string][]graphsim.Event
	// tenant is the tenant of the records, "" the default one; the
	// records of another name it instead of DefaultTenantID.
	tenant string
}

func newGenerator(sim *graphsim.Server, rng *rand.Rand, sources []string, late graphsim.Lateness) *generator {
	return &generator{sim: sim, rng: rng, sources: sources, late: late, latest: make(map[string][]graphsim.Event)}
}

// newTenantGenerator is a generator of tenant's records.
func newTenantGenerator(sim *graphsim.Server, rng *rand.Rand, sources []string, late graphsim.Lateness, tenant string) *generator {
	g := newGenerator(sim, rng, sources, late)
	g.tenant = tenant
	return g
}

// inTenant moves e to g's tenant: the generated objects name
// DefaultTenantID (homeTenantId, tenantId, provisioning job IDs), which
// become the tenant's ID, of the same length.
func (g *generator) inTenant(e graphsim.Event) graphsim.Event {
	if g.tenant == "" {
		return e
	}
	e.Tenant = g.tenant
	if e.JSON != nil {
		j := bytes.ReplaceAll(e.JSON, []byte(graphsim.DefaultTenantID), []byte(g.tenant))
		e.JSON = bytes.ReplaceAll(j, []byte(strings.ReplaceAll(graphsim.DefaultTenantID, "-", "")), []byte(strings.ReplaceAll(g.tenant, "-", "")))
	}
	return e
}

// add generates n records of each source in [from, to).
func (g *generator) add(from, to time.Time, n int) {
	var batch []graphsim.Event
	for _, src := range g.sources {
		if !graphsim.Versioned(src) {
			for _, e := range graphsim.GenerateSource(g.rng, src, from, to, n, g.late) {
				batch = append(batch, g.inTenant(e))
			}
			continue
		}
		fresh := 0
		for range n {
			known := g.latest[src]
			if len(known) == 0 || g.rng.IntN(4) != 0 {
				fresh++
				continue
			}
			i := g.rng.IntN(len(known))
			t := from.Add(time.Duration(g.rng.Int64N(int64(max(to.Sub(from), 1)))))
			if !t.After(known[i].Created) {
				t = known[i].Created.Add(100 * time.Nanosecond)
			}
			known[i] = g.inTenant(graphsim.Update(g.rng, known[i], t, g.late))
			batch = append(batch, known[i])
		}
		evs := graphsim.GenerateSource(g.rng, src, from, to, fresh, g.late)
		for i := range evs {
			evs[i] = g.inTenant(evs[i])
		}
		batch = append(batch, evs...)
		for _, e := range evs {
			if len(g.latest[src]) < maxTracked {
				g.latest[src] = append(g.latest[src], e)
			} else {
				g.latest[src][g.rng.IntN(maxTracked)] = e
			}
		}
	}
	g.sim.Add(batch...)
}

// generate adds rate records per second of each source of each generator,
// created since the previous tick, until ctx is done.
func generate(ctx context.Context, gens []*generator, rate float64, last time.Time) {
	if rate <= 0 {
		<-ctx.Done()
		return
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var owed float64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			owed += rate * now.Sub(last).Seconds()
			n := int(owed)
			owed -= float64(n)
			if n > 0 {
				for _, g := range gens {
					g.add(last, now, n)
				}
			}
			last = now
		}
	}
}

func decodeStrict(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// parseCertificates reads every CERTIFICATE block of a PEM text; an empty
// text registers none, any other text without a certificate is an error.
func parseCertificates(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	empty := len(bytes.TrimSpace(b)) == 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			if len(out) == 0 && !empty {
				return nil, errors.New("no PEM CERTIFICATE block")
			}
			return out, nil
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

// checkLoopback refuses addresses that would expose the simulator, which
// accepts a well-known secret, beyond this machine.
func checkLoopback(flagName, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", flagName, addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s %q: only loopback addresses are allowed", flagName, addr)
	}
	return nil
}
