package test

import (
	"crypto/x509"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/config"
	"github.com/in-msgraph/in_msgraph/internal/graphsim"
)

// runOnce runs Fluent Bit with one msgraph input (props as YAML key:
// value) and a forward output until want sign-ins have arrived or 30 s
// pass, and returns what Fluent Bit printed and how many sign-ins arrived.
func runOnce(t *testing.T, props map[string]string, env []string, want int) (string, int) {
	t.Helper()
	bin := fluentBit(t)
	so := plugin(t)
	recv := startReceiver(t)
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var in strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&in, "      %s: %q\n", k, props[k])
	}
	conf := writeFile(t, filepath.Join(t.TempDir(), "fluent-bit.yaml"), fmt.Sprintf(`service:
  flush: 1
  grace: 2
plugins:
  - %s
pipeline:
  inputs:
    - name: msgraph
      tag: entra
      poll_interval: 1s
      lookback: 5s
      reconcile: "off"
      initial_lookback: 10m
      db: %s
%s  outputs:
    - name: forward
      match: '*'
      host: 127.0.0.1
      port: %d
`, so, filepath.Join(t.TempDir(), "state.db"), in.String(), recv.port()))
	fb := startFluentBitEnv(t, bin, env, "-c", conf)
	deadline := time.Now().Add(30 * time.Second)
	n := 0
	for time.Now().Before(deadline) && n < want {
		select {
		case err := <-fb.done:
			t.Fatalf("fluent-bit exited (%v)\n%s", err, fb.out.String())
		case <-time.After(200 * time.Millisecond):
		}
		got, _ := recv.snapshot()
		n = 0
		for _, e := range got {
			if _, health := e.Fields["msgraph_warning"]; !health {
				n++
			}
		}
	}
	fb.stop(t)
	return fb.out.String(), n
}

// TestEndToEndAuthFlows runs each credential type in a real Fluent Bit
// against the simulator, which verifies it for real (the assertion's
// signature with the registered certificate, the federated token, IMDS's
// Metadata header), and checks that no secret, key, password or token
// appears in anything Fluent Bit printed.
func TestEndToEndAuthFlows(t *testing.T) {
	fluentBit(t)
	now := time.Now()
	cert := graphsim.NewTestCertificate(t, now.Add(-time.Hour), now.Add(24*time.Hour))
	const (
		secret    = "e2e~Auth.Secret-7"
		password  = "k3y-Passw0rd!"
		federated = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImUyZSJ9.eyJpc3MiOiJodHRwczovL29pZGMuZXhhbXBsZSIsInN1YiI6InN5c3RlbTpzZXJ2aWNlYWNjb3VudDpsb2dnaW5nOmZsdWVudC1iaXQifQ.c2lnbmF0dXJl"
		userMI    = "cccccccc-dddd-4eee-8fff-000000000000"
	)
	dir := t.TempDir()
	both := writeFile(t, filepath.Join(dir, "cert-and-key.pem"), string(cert.CertPEM)+string(cert.KeyPKCS8PEM))
	certOnly := writeFile(t, filepath.Join(dir, "cert.pem"), string(cert.CertPEM))
	encKey := writeFile(t, filepath.Join(dir, "key.pem"), string(cert.EncryptedKeyPEM(t, password)))
	secretFile := writeFile(t, filepath.Join(dir, "secret"), secret+"\n")
	tokenFile := writeFile(t, filepath.Join(dir, "azure-identity-token"), federated)
	keyBody := strings.Split(string(cert.KeyPKCS8PEM), "\n")[1]

	rows := []struct {
		name, credential string
		props            func(url string) map[string]string
		env              func(url string) []string
	}{
		{"client secret", graphsim.CredentialSecret, func(u string) map[string]string {
			return map[string]string{"tenant_id": graphsim.DefaultTenantID, "client_id": graphsim.DefaultClientID, "client_secret": secret, "authority_host": u, "graph_host": u}
		}, nil},
		{"client secret file", graphsim.CredentialSecret, func(u string) map[string]string {
			return map[string]string{"tenant_id": graphsim.DefaultTenantID, "client_id": graphsim.DefaultClientID, "client_secret_file": secretFile, "authority_host": u, "graph_host": u}
		}, nil},
		{"certificate PS256", graphsim.CredentialCertificate, func(u string) map[string]string {
			return map[string]string{"auth": "certificate", "tenant_id": graphsim.DefaultTenantID, "client_id": graphsim.DefaultClientID, "certificate_file": both, "authority_host": u, "graph_host": u}
		}, nil},
		{"certificate RS256, chain, encrypted key", graphsim.CredentialCertificate, func(u string) map[string]string {
			return map[string]string{"auth": "certificate", "tenant_id": graphsim.DefaultTenantID, "client_id": graphsim.DefaultClientID, "certificate_file": certOnly,
				"private_key_file": encKey, "private_key_password": password, "certificate_algorithm": "RS256", "send_certificate_chain": "on", "authority_host": u, "graph_host": u}
		}, nil},
		{"workload identity", graphsim.CredentialFederated, func(u string) map[string]string {
			return map[string]string{"auth": "workload_identity", "graph_host": u}
		}, func(u string) []string {
			return []string{"AZURE_TENANT_ID=" + graphsim.DefaultTenantID, "AZURE_CLIENT_ID=" + graphsim.DefaultClientID,
				"AZURE_FEDERATED_TOKEN_FILE=" + tokenFile, "AZURE_AUTHORITY_HOST=" + u + "/"}
		}},
		{"managed identity", graphsim.CredentialManagedIdentity, func(u string) map[string]string {
			return map[string]string{"auth": "managed_identity", "imds_endpoint": u + graphsim.IMDSPath, "graph_host": u}
		}, nil},
		{"user-assigned managed identity", graphsim.CredentialManagedIdentity, func(u string) map[string]string {
			return map[string]string{"auth": "managed_identity", "client_id": userMI, "imds_endpoint": u + graphsim.IMDSPath, "graph_host": u}
		}, nil},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			sim := liveSim(t, graphsim.Options{Seed: 40, ClientSecret: secret, ClientCertificates: []*x509.Certificate{cert.Cert},
				FederatedTokens: []string{federated}, ManagedIdentityClientIDs: []string{userMI}}, 40, 5*time.Minute)
			var env []string
			if row.env != nil {
				env = row.env(sim.URL())
			}
			out, n := runOnce(t, row.props(sim.URL()), env, 40)
			st := sim.Stats()
			if n != 40 || st.ByCredential[row.credential] == 0 {
				t.Fatalf("%d of 40 sign-ins; tokens by credential %v\n%s", n, st.ByCredential, out)
			}
			for _, s := range []string{secret, password, federated, keyBody, "gsim."} {
				if strings.Contains(out, s) {
					t.Fatalf("Fluent Bit printed a secret or token (%.8s…)", s)
				}
			}
		})
	}
}

// TestEndToEndNationalClouds runs each cloud in a real Fluent Bit: only
// cloud is set, so the plugin goes to that cloud's real login and Graph
// host names, through https_proxy, a proxy that intercepts TLS and answers
// with the simulator; tls_ca_file makes its CA trusted.
func TestEndToEndNationalClouds(t *testing.T) {
	fluentBit(t)
	for _, cloud := range config.Clouds {
		t.Run(cloud.Name, func(t *testing.T) {
			sim := liveSim(t, graphsim.Options{Seed: 41}, 30, 5*time.Minute)
			proxy := graphsim.StartProxy(t, sim)
			ca := writeFile(t, filepath.Join(t.TempDir(), "proxy-ca.pem"), string(proxy.CAPEM))
			out, n := runOnce(t, map[string]string{"cloud": cloud.Name, "tenant_id": graphsim.DefaultTenantID,
				"client_id": graphsim.DefaultClientID, "client_secret": graphsim.DefaultClientSecret, "tls_ca_file": ca},
				[]string{"HTTPS_PROXY=" + proxy.URL, "https_proxy=" + proxy.URL, "NO_PROXY=", "no_proxy="}, 30)
			hosts := proxy.Hosts()
			login := strings.TrimPrefix(cloud.AuthorityHost, "https://")
			graph := strings.TrimPrefix(cloud.GraphHost, "https://")
			if n != 30 || hosts[login] == 0 || hosts[graph] == 0 {
				t.Fatalf("%d of 30 sign-ins; the proxy saw %v\n%s", n, hosts, out)
			}
		})
	}
}
