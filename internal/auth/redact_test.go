package auth

import "testing"

// TestRedactWholeSecretsOnly: an error's text is scrubbed of whole
// secrets long enough to be secrets; a short one would mangle the text
// and, by where "(redacted)" appears, reveal itself.
func TestRedactWholeSecretsOnly(t *testing.T) {
	for _, c := range []struct{ in, secret, want string }{
		{`Post "https://login.microsoftonline.us/t/oauth2/v2.0/token": tls: failed`, "s",
			`Post "https://login.microsoftonline.us/t/oauth2/v2.0/token": tls: failed`},
		{"invalid client secret Xy7~abcDEF.123456 provided", "Xy7~abcDEF.123456", "invalid client secret (redacted) provided"},
		{"assertion eyJhbGciOiJQUzI1NiJ9.payload.sig refused", "eyJhbGciOiJQUzI1NiJ9.payload.sig", "assertion (redacted) refused"},
		{"tenant contoso-secret8x.example.com", "secret8x", "tenant contoso-secret8x.example.com"},
	} {
		if got := redact(c.in, c.secret); got != c.want {
			t.Errorf("redact(%q, %q) = %q, want %q", c.in, c.secret, got, c.want)
		}
	}
}
