package graphsim

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/youmark/pkcs8"
)

// testKeyCount is how many distinct keys TestKey hands out: enough for a
// certificate, an issuer and a key that matches neither.
const testKeyCount = 4

// testKeys holds RSA keys generated once per process: a 2048-bit key takes
// from tens of milliseconds to over a second under the race detector, and
// a test needs a fresh certificate, not a fresh key.
var testKeys [testKeyCount]struct {
	once sync.Once
	key  *rsa.PrivateKey
	err  error
}

// TestKey returns the n-th (0 <= n < 4) RSA-2048 test key of this process.
func TestKey(t testing.TB, n int) *rsa.PrivateKey {
	t.Helper()
	if n < 0 || n >= testKeyCount {
		t.Fatalf("graphsim.TestKey(%d): only keys 0 to %d exist", n, testKeyCount-1)
	}
	k := &testKeys[n]
	k.once.Do(func() { k.key, k.err = rsa.GenerateKey(rand.Reader, 2048) })
	if k.err != nil {
		t.Fatalf("generate test key: %v", k.err)
	}
	return k.key
}

// TestCertificate is an RSA certificate with its key in the PEM encodings
// clients load.
type TestCertificate struct {
	Cert        *x509.Certificate
	Key         *rsa.PrivateKey
	CertPEM     []byte // one CERTIFICATE block
	KeyPKCS8PEM []byte // a PRIVATE KEY block
	KeyPKCS1PEM []byte // an RSA PRIVATE KEY block
}

// TestCertificateOptions describe a certificate for NewTestCertificateWith.
type TestCertificateOptions struct {
	Key                 *rsa.PrivateKey  // nil selects TestKey(t, 0)
	Issuer              *TestCertificate // nil makes it self-signed
	CA                  bool             // may sign other certificates
	CommonName          string           // default "graphsim test client"
	NotBefore, NotAfter time.Time
}

// NewTestCertificate returns a self-signed client certificate for
// TestKey(t, 0), valid from notBefore to notAfter.
func NewTestCertificate(t testing.TB, notBefore, notAfter time.Time) *TestCertificate {
	t.Helper()
	return NewTestCertificateWith(t, TestCertificateOptions{NotBefore: notBefore, NotAfter: notAfter})
}

// NewTestCertificateWith returns a certificate as described by o.
func NewTestCertificateWith(t testing.TB, o TestCertificateOptions) *TestCertificate {
	t.Helper()
	key := o.Key
	if key == nil {
		key = TestKey(t, 0)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("certificate serial: %v", err)
	}
	cn := o.CommonName
	if cn == "" {
		cn = "graphsim test client"
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  o.CA,
	}
	if o.CA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	parent, signer := tmpl, key
	if o.Issuer != nil {
		parent, signer = o.Issuer.Cert, o.Issuer.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	return &TestCertificate{
		Cert:        cert,
		Key:         key,
		CertPEM:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPKCS8PEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
		KeyPKCS1PEM: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
	}
}

// EncryptedKeyPEM returns the key as an encrypted PKCS#8 block (ENCRYPTED
// PRIVATE KEY, PBES2 with PBKDF2 and AES-256-CBC, as openssl pkcs8 -topk8
// writes it).
func (c *TestCertificate) EncryptedKeyPEM(t testing.TB, password string) []byte {
	t.Helper()
	der, err := pkcs8.MarshalPrivateKey(c.Key, []byte(password), nil)
	if err != nil {
		t.Fatalf("encrypt key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der})
}
