package input

import (
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/budget"
	"github.com/in-msgraph/in_msgraph/internal/config"
	"github.com/in-msgraph/in_msgraph/internal/graphsim"
	"github.com/in-msgraph/in_msgraph/internal/logging"
	"github.com/in-msgraph/in_msgraph/internal/records"
)

// TestNationalClouds reaches the simulator under each cloud's real host
// names, through an https_proxy that intercepts TLS with its own CA: the
// cloud key alone picks the token endpoint, the scope and Graph; TLS is
// verified against tls_ca_file added to the system roots; the proxy comes
// from the environment.
func TestNationalClouds(t *testing.T) {
	for _, cloud := range config.Clouds {
		t.Run(cloud.Name, func(t *testing.T) {
			clk := graphsim.NewClock(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
			sim := graphsim.Start(t, graphsim.Options{Now: clk.Now, Seed: 30})
			proxy := graphsim.StartProxy(t, sim)
			ca := filepath.Join(t.TempDir(), "proxy-ca.pem")
			os.WriteFile(ca, proxy.CAPEM, 0o600)
			t.Setenv("HTTPS_PROXY", proxy.URL)
			t.Setenv("NO_PROXY", "")
			cfg, err := config.Parse(config.MapGetter{
				"tenant_id": graphsim.DefaultTenantID, "client_id": graphsim.DefaultClientID, "client_secret": graphsim.DefaultClientSecret,
				"cloud": cloud.Name, "tls_ca_file": ca,
			})
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewSource(1))
			addEvents(sim, 31, clk.Now().Add(-5*time.Minute), clk.Now(), 15, fixedLateness(0))
			in, err := New(cfg, Options{Now: clk.Now, Rand: rng, Logger: logging.New("cloud", logging.Error), Budget: budget.New(5, 10*time.Second)})
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			var got []records.Event
			for range 5 {
				clk.Advance(time.Second)
				if b := in.Collect(); b != nil {
					evs, err := records.DecodeEvents(b)
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, evs...)
					in.Commit()
				}
			}
			if len(got) != 15 {
				t.Fatalf("%d records through %s; health %v", len(got), cloud.Name, in.health.Count)
			}
			hosts := proxy.Hosts()
			login, graph := host(cloud.AuthorityHost), host(cloud.GraphHost)
			if hosts[login] == 0 || hosts[graph] == 0 || len(hosts) != len(map[string]bool{login: true, graph: true}) {
				t.Fatalf("the proxy saw %v, want only %s and %s", hosts, login, graph)
			}
		})
	}
}

func host(u string) string { return u[len("https://"):] }

// TestTLSIsVerified checks that without tls_ca_file the intercepting
// proxy's certificate is refused: TLS verification is never off.
func TestTLSIsVerified(t *testing.T) {
	clk := graphsim.NewClock(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
	sim := graphsim.Start(t, graphsim.Options{Now: clk.Now, Seed: 32})
	proxy := graphsim.StartProxy(t, sim)
	t.Setenv("HTTPS_PROXY", proxy.URL)
	t.Setenv("NO_PROXY", "")
	cfg, err := config.Parse(config.MapGetter{"tenant_id": "t", "client_id": "c", "client_secret": "s", "cloud": "usgov"})
	if err != nil {
		t.Fatal(err)
	}
	in, err := New(cfg, Options{Now: clk.Now, Logger: logging.New("tls", logging.Error), Budget: budget.New(5, 10*time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	clk.Advance(time.Second)
	b := in.Collect()
	evs, _ := records.DecodeEvents(b)
	if len(evs) != 1 || evs[0].Fields["msgraph_warning"] != "auth_failed" {
		t.Fatalf("records %v", evs)
	}
	if sim.Stats().Tokens != 0 {
		t.Fatal("a token was issued over an unverified connection")
	}
}
