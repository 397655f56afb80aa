package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/in-msgraph/in_msgraph/internal/auth"
	"github.com/in-msgraph/in_msgraph/internal/graphsim"
)

// writeFile writes parts into dir/name and returns the path.
func writeFile(t *testing.T, dir, name string, parts ...[]byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(strings.Join(byteStrings(parts), "")), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func byteStrings(parts [][]byte) []string {
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = string(p)
	}
	return out
}

// secretParts are fragments of a secret that must never appear in an
// error: for a PEM text, each base64 line of its body.
func secretParts(secrets ...string) []string {
	var out []string
	for _, s := range secrets {
		if !strings.Contains(s, "-----BEGIN") {
			out = append(out, s)
			continue
		}
		for _, line := range strings.Split(s, "\n") {
			if line != "" && !strings.HasPrefix(line, "-----") && !strings.Contains(line, ":") {
				out = append(out, line)
			}
		}
	}
	return out
}

// noSecrets fails when err's text holds any fragment of a secret.
func noSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, p := range secretParts(secrets...) {
		if p != "" && strings.Contains(msg, p) {
			t.Errorf("error %q holds secret material %q", msg, p)
		}
	}
}

func thumbprint(c *x509.Certificate) string {
	sum := sha1.Sum(c.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// testPKI is a set of certificates for the tests of one package run.
type testPKI struct {
	leaf, ca, issued, other *graphsim.TestCertificate
	expired, notYet         *graphsim.TestCertificate
}

func newPKI(t *testing.T) *testPKI {
	now := time.Now()
	year := graphsim.TestCertificateOptions{NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0)}
	p := &testPKI{}
	p.leaf = graphsim.NewTestCertificateWith(t, year)
	ca := year
	ca.Key, ca.CA, ca.CommonName = graphsim.TestKey(t, 1), true, "test CA"
	p.ca = graphsim.NewTestCertificateWith(t, ca)
	issued := year
	issued.Key, issued.Issuer = graphsim.TestKey(t, 2), p.ca
	p.issued = graphsim.NewTestCertificateWith(t, issued)
	other := year
	other.Key = graphsim.TestKey(t, 3)
	p.other = graphsim.NewTestCertificateWith(t, other)
	p.expired = graphsim.NewTestCertificate(t, now.AddDate(-1, 0, 0), now.Add(-time.Hour))
	p.notYet = graphsim.NewTestCertificate(t, now.Add(time.Hour), now.AddDate(1, 0, 0))
	return p
}

func TestLoadCertificate(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	const password = "c0rrect horse!"
	enc := p.leaf.EncryptedKeyPEM(t, password)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec8, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	ecSEC, _ := x509.MarshalECPrivateKey(ecKey)
	ecPKCS8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ec8})
	ecSEC1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecSEC})
	legacy := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"},
		Bytes:   []byte("not really encrypted key bytes, but opaque to the loader")})
	garbled := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage")})

	f := func(name string, parts ...[]byte) string { return writeFile(t, dir, name, parts...) }
	combined8 := f("combined8.pem", p.leaf.CertPEM, p.leaf.KeyPKCS8PEM)
	combined1 := f("combined1.pem", p.leaf.KeyPKCS1PEM, p.leaf.CertPEM)
	certOnly := f("cert.pem", p.leaf.CertPEM)
	key1 := f("key1.pem", p.leaf.KeyPKCS1PEM)
	key8 := f("key8.pem", p.leaf.KeyPKCS8PEM)
	encKey := f("enc.pem", enc)
	combinedEnc := f("combined-enc.pem", p.leaf.CertPEM, enc)
	chain := f("chain.pem", p.ca.CertPEM, p.issued.CertPEM, p.issued.KeyPKCS8PEM) // leaf second
	keyOnly := f("keyonly.pem", p.leaf.KeyPKCS8PEM)
	otherKey := f("otherkey.pem", p.other.KeyPKCS8PEM)
	expired := f("expired.pem", p.expired.CertPEM, p.expired.KeyPKCS8PEM)
	notYet := f("notyet.pem", p.notYet.CertPEM, p.notYet.KeyPKCS8PEM)
	ec8File := f("ec8.pem", ecPKCS8)
	ecSEC1File := f("ec1.pem", ecSEC1)
	legacyFile := f("legacy.pem", legacy)
	garbledFile := f("garbled.pem", garbled, p.leaf.KeyPKCS8PEM)
	der := f("cert.der", p.leaf.Cert.Raw)
	missing := filepath.Join(dir, "missing.pem")

	ok := []struct {
		name                     string
		cert, key, password, alg string
		sendChain                bool
		wantAlg                  string
		wantLeaf                 *x509.Certificate
		wantChain                int
	}{
		{"cert and PKCS#8 key in one file", combined8, "", "", "", false, "PS256", p.leaf.Cert, 1},
		{"key before cert, PKCS#1", combined1, "", "", "ps256", false, "PS256", p.leaf.Cert, 1},
		{"separate PKCS#1 key file", certOnly, key1, "", "RS256", false, "RS256", p.leaf.Cert, 1},
		{"separate PKCS#8 key file", certOnly, key8, "", "rs256", true, "RS256", p.leaf.Cert, 1},
		{"encrypted PKCS#8 key file", certOnly, encKey, password, "", false, "PS256", p.leaf.Cert, 1},
		{"encrypted PKCS#8 in the certificate file", combinedEnc, "", password, "", false, "PS256", p.leaf.Cert, 1},
		{"password for a key that is not encrypted is unused", combined8, "", "unused", "", false, "PS256", p.leaf.Cert, 1},
		{"chain with the leaf second", chain, "", "", "", true, "PS256", p.issued.Cert, 2},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			c, err := auth.LoadCertificate(tt.cert, tt.key, tt.password, tt.alg, tt.sendChain)
			if err != nil {
				t.Fatal(err)
			}
			if c.Algorithm != tt.wantAlg || c.SendChain != tt.sendChain {
				t.Errorf("Algorithm %q SendChain %v, want %q %v", c.Algorithm, c.SendChain, tt.wantAlg, tt.sendChain)
			}
			if !c.Leaf().Equal(tt.wantLeaf) {
				t.Errorf("leaf %s, want %s", c.Leaf().Subject, tt.wantLeaf.Subject)
			}
			if got, want := c.Thumbprint(), thumbprint(tt.wantLeaf); got != want || len(got) != 40 {
				t.Errorf("Thumbprint() = %q, want %q", got, want)
			}
		})
	}

	th := thumbprint(p.leaf.Cert)
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	bad := []struct {
		name                     string
		cert, key, password, alg string
		want                     string
	}{
		{"no certificate file", "", "", "", "",
			"no certificate file is set: set certificate_file to the PEM file holding the client certificate"},
		{"no such certificate file", missing, "", "", "",
			"certificate file " + missing + " does not exist: set certificate_file to the PEM file holding the client certificate"},
		{"no such key file", certOnly, missing, "", "",
			"private key file " + missing + " does not exist: set private_key_file to the PEM file holding the certificate's private key"},
		{"no CERTIFICATE block", keyOnly, "", "", "",
			"certificate file " + keyOnly + " holds no PEM CERTIFICATE block: convert the certificate to PEM (from a .pfx: openssl pkcs12 -in cert.pfx -out cert.pem; from a DER .cer: openssl x509 -inform der -in cert.cer -out cert.pem)"},
		{"DER certificate", der, "", "", "",
			"certificate file " + der + " holds no PEM CERTIFICATE block: convert the certificate to PEM (from a .pfx: openssl pkcs12 -in cert.pfx -out cert.pem; from a DER .cer: openssl x509 -inform der -in cert.cer -out cert.pem)"},
		{"garbled certificate", garbledFile, "", "", "",
			"certificate file " + garbledFile + ": certificate 1 cannot be parsed (x509: malformed certificate): replace it with the certificate uploaded to the app registration"},
		{"no key in the certificate file", certOnly, "", "", "",
			"certificate file " + certOnly + " holds no private key: add the key (a PRIVATE KEY, RSA PRIVATE KEY or ENCRYPTED PRIVATE KEY block) to it, or set private_key_file"},
		{"no key in the key file", certOnly, certOnly, "", "",
			"private key file " + certOnly + " holds no private key: it must hold a PRIVATE KEY, RSA PRIVATE KEY or ENCRYPTED PRIVATE KEY PEM block"},
		{"ECDSA key in PKCS#8", certOnly, ec8File, "", "",
			"the private key in " + ec8File + " is an ECDSA key: only RSA keys are supported, so create the certificate with an RSA key"},
		{"ECDSA key in SEC 1", certOnly, ecSEC1File, "", "",
			"the private key in " + ecSEC1File + " is an ECDSA key: only RSA keys are supported, so create the certificate with an RSA key"},
		{"encrypted key without password", certOnly, encKey, "", "",
			"the private key in " + encKey + " is encrypted: set private_key_password"},
		{"encrypted key with a wrong password", certOnly, encKey, "wrong " + password, "",
			"the private key in " + encKey + " cannot be decrypted: private_key_password is wrong, or the key uses an unsupported encryption (PBES2 with PBKDF2 or scrypt and AES or 3DES are supported)"},
		{"legacy PEM encryption", certOnly, legacyFile, password, "",
			"the private key in " + legacyFile + " uses legacy PEM encryption, which is not supported: convert it to encrypted PKCS#8 (openssl pkcs8 -topk8 -in key.pem -out key-pkcs8.pem) and set private_key_password"},
		{"key of another certificate", certOnly, otherKey, "", "",
			"the private key in " + otherKey + " does not match the certificate in " + certOnly + " (thumbprint " + th + "): use the key the certificate was created with"},
		{"expired certificate", expired, "", "", "",
			"the certificate in " + expired + " (thumbprint " + thumbprint(p.expired.Cert) + ") expired at " + rfc(p.expired.Cert.NotAfter) + " (NotAfter): create a new certificate, upload it to the app registration and replace the file"},
		{"certificate not yet valid", notYet, "", "", "",
			"the certificate in " + notYet + " (thumbprint " + thumbprint(p.notYet.Cert) + ") is not valid before " + rfc(p.notYet.Cert.NotBefore) + " (NotBefore): check the clock of this machine, or use a certificate valid now"},
		{"unsupported algorithm", combined8, "", "", "ES256",
			`certificate algorithm "ES256" is not supported: use PS256 (the default) or RS256`},
	}
	if os.Geteuid() != 0 {
		unreadable := f("unreadable.pem", p.leaf.CertPEM)
		if err := os.Chmod(unreadable, 0); err != nil {
			t.Fatal(err)
		}
		bad = append(bad, struct {
			name                     string
			cert, key, password, alg string
			want                     string
		}{"unreadable certificate file", unreadable, "", "", "",
			"certificate file " + unreadable + " is not readable (permission denied): make it readable by the user Fluent Bit runs as"})
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			c, err := auth.LoadCertificate(tt.cert, tt.key, tt.password, tt.alg, false)
			if err == nil {
				t.Fatalf("loaded %v", c)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %s\nwant %s", err, tt.want)
			}
			noSecrets(t, err, password, "wrong "+password, string(p.leaf.KeyPKCS8PEM), string(p.leaf.KeyPKCS1PEM),
				string(enc), string(p.other.KeyPKCS8PEM), string(ecPKCS8), string(ecSEC1))
		})
	}
}

// certCreds are certificate credentials for the simulator.
func certCreds(t *testing.T, sim *graphsim.Server, c *auth.Certificate) auth.Credentials {
	creds := simCreds(t, sim)
	creds.Kind, creds.Secret, creds.Certificate = auth.KindCertificate, "", c
	return creds
}

func loadCert(t *testing.T, certPEM, keyPEM []byte, alg string, chain bool) *auth.Certificate {
	t.Helper()
	dir := t.TempDir()
	c, err := auth.LoadCertificate(writeFile(t, dir, "c.pem", certPEM, keyPEM), "", "", alg, chain)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCertificateFromSimulator(t *testing.T) {
	p := newPKI(t)
	chainPEM := append(append([]byte{}, p.issued.CertPEM...), p.ca.CertPEM...)
	tests := []struct {
		name       string
		cert       *auth.Certificate
		registered []*x509.Certificate
		skew       time.Duration // of the client's clock against the simulator's
		code       string        // "" for success
		status     int
		fix        string
	}{
		{name: "PS256", cert: loadCert(t, p.leaf.CertPEM, p.leaf.KeyPKCS8PEM, "", false), registered: []*x509.Certificate{p.leaf.Cert}},
		{name: "RS256", cert: loadCert(t, p.leaf.CertPEM, p.leaf.KeyPKCS1PEM, "RS256", false), registered: []*x509.Certificate{p.leaf.Cert}},
		{name: "chain sent", cert: loadCert(t, chainPEM, p.issued.KeyPKCS8PEM, "", true), registered: []*x509.Certificate{p.issued.Cert}},
		{name: "chain sent with RS256", cert: loadCert(t, chainPEM, p.issued.KeyPKCS8PEM, "RS256", true), registered: []*x509.Certificate{p.issued.Cert}},
		{name: "one of several registered", cert: loadCert(t, p.leaf.CertPEM, p.leaf.KeyPKCS8PEM, "", false), registered: []*x509.Certificate{p.other.Cert, p.leaf.Cert}},
		{name: "client clock a minute behind", cert: loadCert(t, p.leaf.CertPEM, p.leaf.KeyPKCS8PEM, "", false), registered: []*x509.Certificate{p.leaf.Cert}, skew: -time.Minute},
		{name: "certificate not registered", cert: loadCert(t, p.leaf.CertPEM, p.leaf.KeyPKCS8PEM, "", false), registered: []*x509.Certificate{p.other.Cert},
			code: "AADSTS700027", status: http.StatusUnauthorized, fix: "the certificate is not registered on the app or the assertion signature is invalid: upload this certificate"},
		{name: "no certificate registered", cert: loadCert(t, p.leaf.CertPEM, p.leaf.KeyPKCS8PEM, "RS256", false),
			code: "AADSTS700027", status: http.StatusUnauthorized, fix: "Certificates & secrets"},
		{name: "client clock 10 minutes behind", cert: loadCert(t, p.leaf.CertPEM, p.leaf.KeyPKCS8PEM, "", false), registered: []*x509.Certificate{p.leaf.Cert}, skew: -10 * time.Minute,
			code: "AADSTS700024", status: http.StatusUnauthorized, fix: "check the clock of this machine (NTP)"},
		{name: "client clock 10 minutes ahead", cert: loadCert(t, p.leaf.CertPEM, p.leaf.KeyPKCS8PEM, "", false), registered: []*x509.Certificate{p.leaf.Cert}, skew: 10 * time.Minute,
			code: "AADSTS700024", status: http.StatusUnauthorized, fix: "clock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := graphsim.NewClock(time.Now())
			sim := graphsim.Start(t, graphsim.Options{Now: clk.Now, ClientCertificates: tt.registered})
			creds := certCreds(t, sim, tt.cert)
			creds.Now = func() time.Time { return clk.Now().Add(tt.skew) }
			s := auth.New(creds)
			tok, err := s.Token()
			noSecrets(t, err, string(p.leaf.KeyPKCS8PEM), string(p.leaf.KeyPKCS1PEM), string(p.issued.KeyPKCS8PEM))
			if tt.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				if st := sim.Stats(); st.ByCredential[graphsim.CredentialCertificate] != 1 || st.TokenErrors != 0 {
					t.Errorf("simulator stats %+v", st)
				}
				if resp := getSignIns(t, sim, creds.HTTPClient, tok.AccessToken); resp != http.StatusOK {
					t.Errorf("signIns with the token: %d", resp)
				}
				return
			}
			var ae *auth.Error
			if !errors.As(err, &ae) {
				t.Fatalf("Token = %v, %v; want *auth.Error", tok, err)
			}
			if ae.Code != tt.code || ae.Status != tt.status || ae.Temporary || !strings.Contains(ae.Fix, tt.fix) {
				t.Errorf("got %+v; want code %s status %d fix with %q", *ae, tt.code, tt.status, tt.fix)
			}
			if s.Failures != 1 || s.Fetches != 0 {
				t.Errorf("%d fetches, %d failures", s.Fetches, s.Failures)
			}
		})
	}
}

// getSignIns calls Graph with a token and returns the status.
func getSignIns(t *testing.T, sim *graphsim.Server, c *http.Client, tok string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, sim.URL()+"/v1.0/auditLogs/signIns", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAssertionForm checks what a certificate token request sends: the
// assertion instead of a secret, and a fresh, well-formed assertion for
// every request.
func TestAssertionForm(t *testing.T) {
	p := newPKI(t)
	chainPEM := append(append([]byte{}, p.issued.CertPEM...), p.ca.CertPEM...)
	tests := []struct {
		name    string
		cert    *auth.Certificate
		alg     string
		thumb   string // the header naming the certificate
		value   string // its value
		x5c     []string
		signing *rsa.PublicKey
	}{
		{"PS256 default", loadCert(t, p.leaf.CertPEM, p.leaf.KeyPKCS8PEM, "", false), "PS256", "x5t#S256", s256(p.leaf.Cert), nil, &p.leaf.Key.PublicKey},
		{"RS256", loadCert(t, p.leaf.CertPEM, p.leaf.KeyPKCS8PEM, "RS256", false), "RS256", "x5t", s1(p.leaf.Cert), nil, &p.leaf.Key.PublicKey},
		{"chain", loadCert(t, chainPEM, p.issued.KeyPKCS8PEM, "", true), "PS256", "x5t#S256", s256(p.issued.Cert),
			[]string{base64.StdEncoding.EncodeToString(p.issued.Cert.Raw), base64.StdEncoding.EncodeToString(p.ca.Cert.Raw)}, &p.issued.Key.PublicKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startTokenEndpoint(t, nil)
			creds := e.creds(t)
			creds.Kind, creds.Secret, creds.Certificate = auth.KindCertificate, "", tt.cert
			now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
			creds.Now = func() time.Time { return now }
			s := auth.New(creds)
			for range 2 {
				if _, err := s.Token(); err != nil {
					t.Fatal(err)
				}
				s.Invalidate()
			}
			reqs := e.requests()
			if len(reqs) != 2 {
				t.Fatalf("%d requests", len(reqs))
			}
			jtis := map[string]bool{}
			for i, r := range reqs {
				if _, ok := r["client_secret"]; ok {
					t.Errorf("request %d sent a client_secret", i)
				}
				if r["client_assertion_type"] != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || r["client_id"] != "client-id" ||
					r["grant_type"] != "client_credentials" || r["scope"] != "https://graph.microsoft.com/.default" {
					t.Errorf("request %d: %v", i, r)
				}
				claims := jwt.MapClaims{}
				tok, err := jwt.NewParser(jwt.WithValidMethods([]string{tt.alg}), jwt.WithoutClaimsValidation()).ParseWithClaims(r["client_assertion"], claims,
					func(*jwt.Token) (any, error) { return tt.signing, nil })
				if err != nil {
					t.Fatalf("request %d: assertion: %v", i, err)
				}
				h := tok.Header
				if h["typ"] != "JWT" || h[tt.thumb] != tt.value {
					t.Errorf("header %v, want typ JWT and %s %s", h, tt.thumb, tt.value)
				}
				for _, k := range []string{"x5t", "x5t#S256"} {
					if _, ok := h[k]; ok && k != tt.thumb {
						t.Errorf("header has %s too: %v", k, h)
					}
				}
				if got := h["x5c"]; tt.x5c == nil && got != nil || tt.x5c != nil && !equalAny(got, tt.x5c) {
					t.Errorf("x5c %v, want %v", got, tt.x5c)
				}
				want := map[string]any{
					"aud": creds.TokenURL(), "iss": "client-id", "sub": "client-id",
					"nbf": float64(now.Unix()), "iat": float64(now.Unix()), "exp": float64(now.Add(5 * time.Minute).Unix()),
				}
				for k, v := range want {
					if claims[k] != v {
						t.Errorf("claim %s = %v, want %v", k, claims[k], v)
					}
				}
				jti, _ := claims["jti"].(string)
				if len(jti) != 36 || jti[14] != '4' {
					t.Errorf("jti %q is not a GUID", jti)
				}
				jtis[jti] = true
			}
			if len(jtis) != 2 {
				t.Errorf("the two requests sent the same jti: %v", jtis)
			}
		})
	}
}

func s256(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func s1(c *x509.Certificate) string {
	sum := sha1.Sum(c.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func equalAny(got any, want []string) bool {
	list, ok := got.([]any)
	if !ok || len(list) != len(want) {
		return false
	}
	for i := range list {
		if list[i] != want[i] {
			return false
		}
	}
	return true
}

// TestCertificateExpiresWhileRunning refuses to sign with a certificate
// that has expired since it was loaded.
func TestCertificateExpiresWhileRunning(t *testing.T) {
	p := newPKI(t)
	e := startTokenEndpoint(t, nil)
	creds := e.creds(t)
	creds.Kind, creds.Secret = auth.KindCertificate, ""
	creds.Certificate = loadCert(t, p.leaf.CertPEM, p.leaf.KeyPKCS8PEM, "", false)
	creds.Now = func() time.Time { return p.leaf.Cert.NotAfter.Add(time.Minute) }
	_, err := auth.New(creds).Token()
	want := "token request failed: the client certificate (thumbprint " + thumbprint(p.leaf.Cert) + ") expired at " +
		p.leaf.Cert.NotAfter.UTC().Format(time.RFC3339) + "; create a new certificate, upload it to the app registration, replace certificate_file and restart"
	if err == nil || err.Error() != want {
		t.Errorf("Token error\n got %v\nwant %s", err, want)
	}
	if n := len(e.requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

func TestCertificateMissing(t *testing.T) {
	e := startTokenEndpoint(t, nil)
	creds := e.creds(t)
	creds.Kind, creds.Secret = auth.KindCertificate, ""
	_, err := auth.New(creds).Token()
	var ae *auth.Error
	if !errors.As(err, &ae) || ae.Cause != "no certificate was loaded" || ae.Temporary {
		t.Errorf("Token error %v", err)
	}
	if n := len(e.requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

func TestUnknownKind(t *testing.T) {
	creds := auth.Credentials{Kind: "kerberos"}
	_, err := auth.New(creds).Token()
	if err == nil || err.Error() != `token request failed: unknown credential kind "kerberos"; use client_secret, certificate, workload_identity or managed_identity` {
		t.Errorf("Token error %v", err)
	}
}
