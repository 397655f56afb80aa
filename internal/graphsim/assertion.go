package graphsim

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWTBearer is the client_assertion_type of a JWT client assertion.
const JWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Limits Entra applies to certificate assertions: the assertion may start
// up to assertionSkew in the future (clock skew), and live at most
// maxAssertionLife, which Microsoft documents as "5-10 minutes".
const (
	assertionSkew    = 5 * time.Minute
	maxAssertionLife = 10 * time.Minute
)

const certDocs = "Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."

// rejection is a refused token request in Entra's terms. The AADSTS codes
// are those Entra gives for the same mistake:
//
//	90014   client_assertion_type missing
//	90023   an unsupported client_assertion_type, or a secret and an assertion together
//	50027   the assertion is not a well-formed JWT, or lacks a required claim
//	700027  no registered certificate matches the assertion's key, or its signature is wrong, or the key has expired
//	50012   the x5c chain is not a valid certificate chain
//	700023  aud is not this token endpoint
//	50048   sub differs from iss
//	700021  iss/sub is not the client_id of the request
//	700024  the assertion (or a federated token) is outside its valid time range
//	700211  no federated identity credential matches the token's issuer
//	70021   no federated identity credential matches the (non-JWT) token
type rejection struct {
	status int
	code   string
	aadsts int
	msg    string
}

func invalidClient(aadsts int, msg string) *rejection {
	return &rejection{http.StatusUnauthorized, "invalid_client", aadsts, msg}
}

func invalidRequest(aadsts int, msg string) *rejection {
	return &rejection{http.StatusBadRequest, "invalid_request", aadsts, msg}
}

// checkAssertion authenticates a client by its client_assertion: a
// federated token registered with SetFederatedTokens, or a JWT signed with
// the key of a registered client certificate.
func (s *Server) checkAssertion(r *http.Request, clientID, typ, assertion string) (string, *rejection) {
	switch {
	case typ == "":
		return "", invalidRequest(90014, "The required field 'client_assertion_type' is missing from the credential. Ensure that you have all the necessary parameters for the login request.")
	case typ != JWTBearer:
		return "", invalidRequest(90023, fmt.Sprintf("The client_assertion_type '%s' is not supported; use '%s'.", typ, JWTBearer))
	case assertion == "":
		return "", invalidRequest(900144, "The request body must contain the following parameter: 'client_assertion'.")
	}
	s.mu.Lock()
	now := s.opts.Now()
	federated := slices.Contains(s.federated, assertion)
	certs := slices.Clone(s.certs)
	s.mu.Unlock()

	header, claims, jwtErr := peek(assertion)
	if federated {
		// Entra checks a federated token's expiry against its own clock
		// whoever issued it.
		if jwtErr == nil && claims.ExpiresAt != nil && !now.Before(claims.ExpiresAt.Time) {
			return "", invalidClient(700024, fmt.Sprintf("Client assertion is not within its valid time range. Current time: %s, expiry time of assertion %s.",
				entraTime(now), entraTime(claims.ExpiresAt.Time)))
		}
		return CredentialFederated, nil
	}
	if jwtErr != nil || !hasKeyID(header) {
		// Not a certificate assertion: Entra looks for a federated
		// identity credential matching the token.
		if jwtErr == nil && claims.Issuer != "" {
			return "", invalidClient(700211, fmt.Sprintf("No matching federated identity record found for presented assertion issuer '%s'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation", claims.Issuer))
		}
		return "", invalidClient(70021, "No matching federated identity record found for presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation")
	}
	if rej := verifyCertificateAssertion(assertion, certs, s.opts.ClientID, clientID, audiences(r), now); rej != nil {
		return "", rej
	}
	return CredentialCertificate, nil
}

// audiences are the token endpoint URLs a certificate assertion may name
// in aud: the one the request came in on, and its https form for requests
// forwarded by a TLS-terminating proxy.
func audiences(r *http.Request) []string {
	return []string{baseURL(r) + r.URL.Path, "https://" + r.Host + r.URL.Path}
}

// peek decodes a JWT without verifying it.
func peek(token string) (map[string]any, *jwt.RegisteredClaims, error) {
	claims := &jwt.RegisteredClaims{}
	t, _, err := jwt.NewParser().ParseUnverified(token, claims)
	if err != nil {
		return nil, nil, err
	}
	return t.Header, claims, nil
}

// hasKeyID reports whether a JWT header names a certificate, which is what
// sets a certificate assertion apart from a federated token.
func hasKeyID(h map[string]any) bool {
	for _, k := range []string{"x5t", "x5t#S256", "x5c"} {
		if _, ok := h[k]; ok {
			return true
		}
	}
	return false
}

// verifyCertificateAssertion checks a client assertion as Entra does: the
// header must identify a registered certificate (x5t#S256 for PS256, x5t
// for RS256, or an x5c whose leaf is registered), the signature must verify
// with its key, the key must be valid now, aud must be the token endpoint,
// iss and sub the client, jti present, and the assertion current and
// short-lived.
func verifyCertificateAssertion(assertion string, certs []*x509.Certificate, appID, clientID string, aud []string, now time.Time) *rejection {
	var cert *x509.Certificate
	thumb := "" // as reported to the client: the SHA-1 thumbprint in hex
	keyfunc := func(t *jwt.Token) (any, error) {
		c, th, rej := selectCertificate(t.Header, t.Method.Alg(), certs, appID)
		cert, thumb = c, th
		if rej != nil {
			return nil, rej
		}
		pub, ok := c.PublicKey.(*rsa.PublicKey)
		if !ok {
			return nil, invalidClient(700027, "Client assertion failed signature validation. [Reason - The key is not an RSA key.]")
		}
		return pub, nil
	}
	claims := &jwt.RegisteredClaims{}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"PS256", "RS256"}), jwt.WithoutClaimsValidation())
	_, err := parser.ParseWithClaims(assertion, claims, keyfunc)
	var rej *rejection
	switch {
	case errors.As(err, &rej):
		return rej
	case errors.Is(err, jwt.ErrTokenMalformed):
		return invalidRequest(50027, "JWT token is invalid or malformed.")
	case err != nil:
		return invalidClient(700027, fmt.Sprintf("Client assertion failed signature validation. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '%s'] %s", thumb, certDocs))
	}
	switch {
	case now.Before(cert.NotBefore):
		return invalidClient(700027, fmt.Sprintf("Client assertion failed signature validation. [Reason - The key used is not yet valid., Thumbprint of key used by client: '%s', Found key 'Start=%s, End=%s'] %s",
			thumb, entraTime(cert.NotBefore), entraTime(cert.NotAfter), certDocs))
	case now.After(cert.NotAfter):
		return invalidClient(700027, fmt.Sprintf("Client assertion failed signature validation. [Reason - The key used is expired., Thumbprint of key used by client: '%s', Found key 'Start=%s, End=%s'] %s",
			thumb, entraTime(cert.NotBefore), entraTime(cert.NotAfter), certDocs))
	}
	audOK := false
	for _, a := range claims.Audience {
		for _, want := range aud {
			audOK = audOK || strings.EqualFold(a, want)
		}
	}
	switch {
	case !audOK:
		return invalidClient(700023, "Client assertion audience claim does not match Realm issuer. "+certDocs)
	case claims.Issuer != claims.Subject:
		return invalidClient(50048, "Subject must match Issuer claim in the client assertion.")
	case !strings.EqualFold(claims.Issuer, clientID):
		return invalidClient(700021, "Client assertion application identifier doesn't match 'client_id' parameter. "+certDocs)
	case claims.ID == "":
		return invalidRequest(50027, "Invalid JWT token. The client assertion has no 'jti' claim.")
	case claims.ExpiresAt == nil:
		return invalidRequest(50027, "Invalid JWT token. The client assertion has no 'exp' claim.")
	}
	exp := claims.ExpiresAt.Time
	start := exp // the lifetime is measured from nbf, else iat
	switch {
	case claims.NotBefore != nil:
		start = claims.NotBefore.Time
	case claims.IssuedAt != nil:
		start = claims.IssuedAt.Time
	}
	timeRange := func(extra string) *rejection {
		from := "1970-01-01T00:00:00.0000000Z"
		if claims.NotBefore != nil {
			from = entraTime(claims.NotBefore.Time)
		}
		return invalidClient(700024, fmt.Sprintf("Client assertion is not within its valid time range. Current time: %s, assertion valid from %s, expiry time of assertion %s.%s %s",
			entraTime(now), from, entraTime(exp), extra, certDocs))
	}
	switch {
	case !now.Before(exp):
		return timeRange("")
	case claims.NotBefore != nil && claims.NotBefore.After(now.Add(assertionSkew)):
		return timeRange("")
	case exp.Sub(start) > maxAssertionLife:
		return timeRange(fmt.Sprintf(" The assertion must expire at most %s after it becomes valid.", maxAssertionLife))
	}
	return nil
}

// Error lets a rejection pass through jwt's keyfunc.
func (r *rejection) Error() string { return fmt.Sprintf("AADSTS%d: %s", r.aadsts, r.msg) }

// selectCertificate finds the registered certificate a JWT header names.
func selectCertificate(h map[string]any, alg string, certs []*x509.Certificate, appID string) (*x509.Certificate, string, *rejection) {
	chain, rej := parseX5C(h)
	if rej != nil {
		return nil, "", rej
	}
	var match func(*x509.Certificate) bool
	thumb := ""
	// The thumbprint header must be the one that goes with the algorithm:
	// SHA-256 with PS256, SHA-1 with RS256.
	name := map[string]string{"PS256": "x5t#S256", "RS256": "x5t"}[alg]
	if v, ok := h[name].(string); ok {
		want, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "="))
		if err != nil {
			return nil, "", invalidRequest(50027, fmt.Sprintf("JWT token is invalid or malformed: the '%s' header is not base64url.", name))
		}
		thumb = strings.ToUpper(hex.EncodeToString(want))
		match = func(c *x509.Certificate) bool {
			if name == "x5t" {
				sum := sha1.Sum(c.Raw)
				return bytes.Equal(sum[:], want)
			}
			sum := sha256.Sum256(c.Raw)
			return bytes.Equal(sum[:], want)
		}
	} else if len(chain) > 0 {
		sum := sha1.Sum(chain[0].Raw)
		thumb = strings.ToUpper(hex.EncodeToString(sum[:]))
		match = func(c *x509.Certificate) bool { return bytes.Equal(c.Raw, chain[0].Raw) }
	}
	var found *x509.Certificate
	if match != nil {
		for _, c := range certs {
			if match(c) {
				found = c
				break
			}
		}
	}
	if found == nil {
		return nil, thumb, invalidClient(700027, fmt.Sprintf("The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '%s', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '%s'.] %s", thumb, appID, certDocs))
	}
	if len(chain) > 0 {
		if !bytes.Equal(chain[0].Raw, found.Raw) {
			return nil, thumb, invalidClient(700027, fmt.Sprintf("Client assertion failed signature validation. [Reason - The first certificate in x5c is not the certificate named by the thumbprint., Thumbprint of key used by client: '%s'] %s", thumb, certDocs))
		}
		for i := 0; i+1 < len(chain); i++ {
			if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
				return nil, thumb, invalidClient(50012, fmt.Sprintf("Authentication failed: the certificate chain in x5c is not valid (certificate %d is not signed by certificate %d).", i, i+1))
			}
		}
	}
	return found, thumb, nil
}

// parseX5C decodes an x5c header: standard (not URL) base64 DER
// certificates, leaf first (RFC 7515 §4.1.6).
func parseX5C(h map[string]any) ([]*x509.Certificate, *rejection) {
	raw, ok := h["x5c"]
	if !ok {
		return nil, nil
	}
	bad := invalidRequest(50027, "JWT token is invalid or malformed: the 'x5c' header must be an array of base64 DER certificates.")
	list, ok := raw.([]any)
	if !ok || len(list) == 0 {
		return nil, bad
	}
	var chain []*x509.Certificate
	for _, v := range list {
		str, ok := v.(string)
		if !ok {
			return nil, bad
		}
		der, err := base64.StdEncoding.DecodeString(str)
		if err != nil {
			return nil, bad
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, bad
		}
		chain = append(chain, c)
	}
	return chain, nil
}

// entraTime formats a time as Entra's error descriptions do.
func entraTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.0000000Z")
}
