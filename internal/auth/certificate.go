package auth

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/youmark/pkcs8"
	"golang.org/x/oauth2"
)

// assertionLifetime is how long a client assertion is valid. Each one is
// used for a single token request, so a short life costs nothing, and
// Entra wants at most "5-10 minutes".
const assertionLifetime = 5 * time.Minute

// Certificate is a client certificate with its private key, which signs
// the client assertions of KindCertificate.
type Certificate struct {
	// Algorithm is "PS256" (the default when empty) or "RS256".
	Algorithm string
	// SendChain sends the certificate chain in the assertion's x5c header,
	// which subject name and issuer authentication needs.
	SendChain bool
	chain     []*x509.Certificate // leaf first
	key       *rsa.PrivateKey
}

// LoadCertificate reads a PEM file holding the certificate (and the chain)
// and, unless keyFile is set, the private key; keyFile may hold the key
// separately. The key must be RSA, in PKCS#8 or PKCS#1; an encrypted
// PKCS#8 key is decrypted with password. The certificate must be valid now.
// algorithm is "PS256" (the default when empty) or "RS256"; sendChain sends
// the chain with every assertion.
func LoadCertificate(certFile, keyFile, password, algorithm string, sendChain bool) (*Certificate, error) {
	alg, err := parseAlgorithm(algorithm)
	if err != nil {
		return nil, err
	}
	if certFile == "" {
		return nil, errors.New("no certificate file is set: set certificate_file to the PEM file holding the client certificate")
	}
	certPEM, err := readPEMFile("certificate file", certFile, "set certificate_file to the PEM file holding the client certificate")
	if err != nil {
		return nil, err
	}
	var chain []*x509.Certificate
	rest := certPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate file %s: certificate %d cannot be parsed (%v): replace it with the certificate uploaded to the app registration", certFile, len(chain)+1, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("certificate file %s holds no PEM CERTIFICATE block: convert the certificate to PEM (from a .pfx: openssl pkcs12 -in cert.pfx -out cert.pem; from a DER .cer: openssl x509 -inform der -in cert.cer -out cert.pem)", certFile)
	}

	keyPEM, keyName, keyDesc := certPEM, certFile, "certificate file"
	if keyFile != "" {
		keyPEM, err = readPEMFile("private key file", keyFile, "set private_key_file to the PEM file holding the certificate's private key")
		if err != nil {
			return nil, err
		}
		keyName, keyDesc = keyFile, "private key file"
	}
	key, err := parseKey(keyPEM, keyName, keyDesc, keyFile == "", password)
	if err != nil {
		return nil, err
	}

	// The leaf is the certificate of the key, wherever the file has it;
	// the rest of the chain keeps the file's order.
	leaf := -1
	for i, c := range chain {
		if pub, ok := c.PublicKey.(*rsa.PublicKey); ok && pub.Equal(&key.PublicKey) {
			leaf = i
			break
		}
	}
	if leaf < 0 {
		return nil, fmt.Errorf("the private key in %s does not match the certificate in %s (thumbprint %s): use the key the certificate was created with", keyName, certFile, thumbprint(chain[0]))
	}
	ordered := append([]*x509.Certificate{chain[leaf]}, chain[:leaf]...)
	ordered = append(ordered, chain[leaf+1:]...)

	now := time.Now()
	switch c := ordered[0]; {
	case now.After(c.NotAfter):
		return nil, fmt.Errorf("the certificate in %s (thumbprint %s) expired at %s (NotAfter): create a new certificate, upload it to the app registration and replace the file",
			certFile, thumbprint(c), c.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(c.NotBefore):
		return nil, fmt.Errorf("the certificate in %s (thumbprint %s) is not valid before %s (NotBefore): check the clock of this machine, or use a certificate valid now",
			certFile, thumbprint(c), c.NotBefore.UTC().Format(time.RFC3339))
	}
	return &Certificate{Algorithm: alg, SendChain: sendChain, chain: ordered, key: key}, nil
}

func parseAlgorithm(a string) (string, error) {
	switch strings.ToUpper(a) {
	case "", "PS256":
		return "PS256", nil
	case "RS256":
		return "RS256", nil
	}
	return "", fmt.Errorf("certificate algorithm %q is not supported: use PS256 (the default) or RS256", a)
}

// readPEMFile reads a file, saying which one and what to do when it cannot.
func readPEMFile(desc, name, fixMissing string) ([]byte, error) {
	b, err := os.ReadFile(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s %s does not exist: %s", desc, name, fixMissing)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("%s %s is not readable (permission denied): make it readable by the user Fluent Bit runs as", desc, name)
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot read %s %s: %v", desc, name, err)
	}
	return b, nil
}

// parseKey finds the first private key block in b. It never puts key
// material or the password in an error.
func parseKey(b []byte, name, desc string, withCert bool, password string) (*rsa.PrivateKey, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "EC PRIVATE KEY":
		default:
			continue
		}
		if strings.Contains(blk.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, fmt.Errorf("the private key in %s uses legacy PEM encryption, which is not supported: convert it to encrypted PKCS#8 (openssl pkcs8 -topk8 -in key.pem -out key-pkcs8.pem) and set private_key_password", name)
		}
		var key any
		var err error
		switch blk.Type {
		case "EC PRIVATE KEY":
			return nil, fmt.Errorf("the private key in %s is an ECDSA key: only RSA keys are supported, so create the certificate with an RSA key", name)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			if password == "" {
				return nil, fmt.Errorf("the private key in %s is encrypted: set private_key_password", name)
			}
			key, err = pkcs8.ParsePKCS8PrivateKey(blk.Bytes, []byte(password))
			if err != nil {
				return nil, fmt.Errorf("the private key in %s cannot be decrypted: private_key_password is wrong, or the key uses an unsupported encryption (PBES2 with PBKDF2 or scrypt and AES or 3DES are supported)", name)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("the private key in %s cannot be parsed: it must be an RSA key in PKCS#8 (PRIVATE KEY) or PKCS#1 (RSA PRIVATE KEY) PEM", name)
		}
		rk, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("the private key in %s is %s key: only RSA keys are supported, so create the certificate with an RSA key", name, keyType(key))
		}
		return rk, nil
	}
	if withCert {
		return nil, fmt.Errorf("%s %s holds no private key: add the key (a PRIVATE KEY, RSA PRIVATE KEY or ENCRYPTED PRIVATE KEY block) to it, or set private_key_file", desc, name)
	}
	return nil, fmt.Errorf("%s %s holds no private key: it must hold a PRIVATE KEY, RSA PRIVATE KEY or ENCRYPTED PRIVATE KEY PEM block", desc, name)
}

func keyType(k any) string {
	switch k.(type) {
	case *ecdsa.PrivateKey:
		return "an ECDSA"
	case ed25519.PrivateKey:
		return "an Ed25519"
	case *ecdh.PrivateKey:
		return "an ECDH"
	}
	return "a non-RSA"
}

// Thumbprint is the certificate's SHA-1 thumbprint in upper-case hex, as
// the Azure portal shows it on the app registration's Certificates page.
func (c *Certificate) Thumbprint() string { return thumbprint(c.chain[0]) }

// Leaf is the client certificate itself.
func (c *Certificate) Leaf() *x509.Certificate { return c.chain[0] }

func thumbprint(c *x509.Certificate) string {
	sum := sha1.Sum(c.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// assertion returns a fresh client assertion for the token endpoint aud.
func (c *Certificate) assertion(clientID, aud string, now time.Time) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	jti[6] = jti[6]&0x0f | 0x40 // a version 4 GUID
	jti[8] = jti[8]&0x3f | 0x80
	leaf := c.chain[0].Raw
	claims := jwt.MapClaims{
		"aud": aud,
		"iss": clientID,
		"sub": clientID,
		"jti": fmt.Sprintf("%x-%x-%x-%x-%x", jti[0:4], jti[4:6], jti[6:8], jti[8:10], jti[10:16]),
		"nbf": now.Unix(),
		"iat": now.Unix(),
		"exp": now.Add(assertionLifetime).Unix(),
	}
	var tok *jwt.Token
	if strings.EqualFold(c.Algorithm, "RS256") {
		// The older form Entra still accepts: PKCS#1 v1.5 padding, with
		// the SHA-1 thumbprint naming the certificate.
		sum := sha1.Sum(leaf)
		tok = jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
		tok.Header["x5t"] = base64.RawURLEncoding.EncodeToString(sum[:])
	} else {
		sum := sha256.Sum256(leaf)
		tok = jwt.NewWithClaims(jwt.SigningMethodPS256, claims)
		tok.Header["x5t#S256"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if c.SendChain {
		x5c := make([]string, len(c.chain))
		for i, cert := range c.chain {
			x5c[i] = base64.StdEncoding.EncodeToString(cert.Raw)
		}
		tok.Header["x5c"] = x5c
	}
	return tok.SignedString(c.key)
}

func (s *Source) certificateToken(ctx context.Context) (*oauth2.Token, error) {
	c := s.creds
	if c.Certificate == nil {
		return nil, &Error{Cause: "no certificate was loaded", Fix: "set certificate_file"}
	}
	// A certificate loaded while valid may expire while Fluent Bit runs;
	// Entra would refuse it with a code that also means "not uploaded".
	now := c.now()
	if leaf := c.Certificate.Leaf(); now.After(leaf.NotAfter) {
		return nil, &Error{Cause: fmt.Sprintf("the client certificate (thumbprint %s) expired at %s", thumbprint(leaf), leaf.NotAfter.UTC().Format(time.RFC3339)),
			Fix: "create a new certificate, upload it to the app registration, replace certificate_file and restart"}
	}
	a, err := c.Certificate.assertion(c.ClientID, c.TokenURL(), now)
	if err != nil {
		return nil, &Error{Cause: "cannot sign the client assertion: " + err.Error(), Fix: "check the certificate's private key"}
	}
	params := url.Values{"client_assertion_type": {jwtBearer}, "client_assertion": {a}}
	return s.clientCredentials(ctx, "", params, a)
}
