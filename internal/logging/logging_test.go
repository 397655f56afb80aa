package logging

import (
	"bytes"
	"strings"
	"testing"
)

// logged returns a logger writing to a buffer.
func logged() (*Logger, *bytes.Buffer) {
	var b bytes.Buffer
	l := New("test", Debug)
	l.SetOutput(&b)
	return l, &b
}

// TestShortSecretIsNotScrubbed: a one-character secret used to be replaced
// everywhere, which mangled the configuration line and showed where the
// secret's character occurs. It is not scrubbed, and it is warned of once.
func TestShortSecretIsNotScrubbed(t *testing.T) {
	l, out := logged()
	l.Secret("client_secret", "e")
	l.Secret("client_secret", "e")
	line := "configuration: source=signins auth=client_secret tenant_id=contoso.example client_id=11111111-2222-3333-4444-555555555555 client_secret=(redacted)"
	l.Infof("%s", line)
	got := out.String()
	if !strings.Contains(got, line) {
		t.Fatalf("the configuration line is changed:\n%s", got)
	}
	if n := strings.Count(got, "client_secret is shorter than 8 characters"); n != 1 {
		t.Fatalf("%d warnings of the short secret, want 1:\n%s", n, got)
	}
	if !strings.Contains(got, "[ warn]") || !strings.Contains(got, "whole secret Value") {
		t.Fatalf("the warning: %s", got)
	}
	if l.Redact("1234567") || !l.Redact("12345678") || !l.Redact("ééééééé東") {
		t.Fatal("secrets are scrubbed from 8 characters on")
	}
	out.Reset()
	l.Secret("private_key_password", "pw!")
	if w := out.String(); !strings.Contains(w, "private_key_password is shorter than 8 characters") || strings.Contains(w, "Entra ID") || strings.Contains(w, "pw!") {
		t.Fatalf("the warning of a short password: %s", w)
	}
	out.Reset()
	l.Secret("client_secret", "")
	l.Secret("client_secret", "a long enough secret")
	if out.Len() != 0 {
		t.Fatalf("warned of an empty or long secret: %s", out)
	}
}

// TestSecretInsideNamesIsLeftAlone: a secret that is also part of a
// longer word or name (a tenant's domain, say) leaves that name as it is;
// where it stands alone it is replaced.
func TestSecretInsideNamesIsLeftAlone(t *testing.T) {
	l, _ := logged()
	l.Secret("client_secret", "contoso-prod")
	rows := map[string]string{
		"tenant_id=contoso-prod.onmicrosoft.com":    "tenant_id=contoso-prod.onmicrosoft.com",
		"tenant_id=mycontoso-prod.onmicrosoft.com":  "tenant_id=mycontoso-prod.onmicrosoft.com",
		"db=/var/lib/contoso-prod2.db":              "db=/var/lib/contoso-prod2.db",
		"host contoso-prod_eu.example":              "host contoso-prod_eu.example",
		"the secret is contoso-prod.":               "the secret is (redacted).",
		"contoso-prod":                              "(redacted)",
		`{"secret":"contoso-prod","x":1}`:           `{"secret":"(redacted)","x":1}`,
		"a=contoso-prod&b=contoso-prod.example.com": "a=(redacted)&b=contoso-prod.example.com",
		"(contoso-prod) contoso-prod, contoso-prod": "((redacted)) (redacted), (redacted)",
	}
	for in, want := range rows {
		if got := l.Scrub(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

// TestRealSecretIsScrubbedFromErrors: a client secret as Entra ID makes
// them, in the lines an HTTP or token error can produce, never reaches
// the output or a sink.
func TestRealSecretIsScrubbedFromErrors(t *testing.T) {
	const secret = "Xq8Q~d.e_f-ghIJKLmnopQRSTuvwxYZ0123456789"
	l, out := logged()
	var sunk []string
	l.Secret("client_secret", secret)
	l.Redact("aaaaaaaaaaaaaaaa" + secret) // another secret holding this one
	lines := []string{
		`token request failed: Post "https://login.microsoftonline.com/t/oauth2/v2.0/token": body client_id=c&client_secret=` + secret + `&grant_type=client_credentials&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default`,
		`auth_failed: AADSTS7000215: Invalid client secret provided: "` + secret + `".`,
		secret + " " + secret + "\n" + secret,
		"secret: " + secret + "...",
		"other: aaaaaaaaaaaaaaaa" + secret + ".",
	}
	for _, line := range lines {
		l.Errorf("%s", line)
	}
	l.SetSink(func(_ Level, line string) bool { sunk = append(sunk, line); return true })
	for _, line := range lines {
		l.Warnf("%s", line)
	}
	all := out.String() + strings.Join(sunk, "\n")
	if strings.Contains(all, secret) || strings.Contains(all, "Xq8Q~d") || strings.Contains(all, "0123456789") {
		t.Fatalf("the secret is in the output:\n%s", all)
	}
	if len(sunk) != len(lines) || strings.Count(all, Redacted) != 2*7 {
		t.Fatalf("%d lines sunk, %d replacements:\n%s", len(sunk), strings.Count(all, Redacted), all)
	}
	if !strings.Contains(all, "client_id=c&client_secret=(redacted)&grant_type=client_credentials") {
		t.Fatalf("the rest of the line is changed:\n%s", all)
	}
}

// TestSecretHoldingAnother: a secret that holds another whole (a password
// with a space, say) is replaced whole, whatever the order they came in.
func TestSecretHoldingAnother(t *testing.T) {
	for _, first := range []bool{true, false} {
		l, _ := logged()
		if first {
			l.Redact("correct horse")
		}
		l.Redact("correct horse battery staple")
		l.Redact("correct horse")
		if got := l.Scrub("password: correct horse battery staple; correct horse"); got != "password: (redacted); (redacted)" {
			t.Fatalf("got %q", got)
		}
	}
}
