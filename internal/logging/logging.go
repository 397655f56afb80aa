// Package logging writes log lines in Fluent Bit's own format on stderr,
// so the plugin's lines read like every other plugin's, and scrubs secrets
// from every line.
package logging

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Level orders messages; lines below the logger's level are dropped.
type Level int

// Levels, as Fluent Bit names them.
const (
	Error Level = iota
	Warn
	Info
	Debug
)

var names = [...]string{"error", " warn", " info", "debug"}

// ParseLevel reads Fluent Bit's log_level values.
func ParseLevel(s string) Level {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "error", "off":
		return Error
	case "warn", "warning":
		return Warn
	case "debug", "trace":
		return Debug
	}
	return Info
}

// Sink hands a line to Fluent Bit's own logger; it reports false when it
// could not, and the line goes to stderr instead.
type Sink func(level Level, line string) bool

// Logger writes lines for one input instance.
type Logger struct {
	mu     sync.Mutex
	out    io.Writer
	sink   Sink
	prefix string
	level  Level
	secret []string // scrubbed, longest first
	short  []string // too short to scrub, already warned of
	// parent, for a logger of With: lines, secrets and scrubbing are the
	// parent's, each line tagged.
	parent *Logger
	tag    string
}

// With returns a logger that writes through l, each message starting with
// tag (a tenant of a multi-tenant input); its secrets are l's.
func (l *Logger) With(tag string) *Logger { return &Logger{parent: l, tag: tag} }

// New returns a logger that prefixes lines with [input:msgraph:<name>].
func New(name string, level Level) *Logger {
	return &Logger{out: os.Stderr, prefix: "[input:msgraph:" + name + "]", level: level}
}

// SetSink sends the lines to Fluent Bit's logger, which applies its own
// log_level and format, so they look like every other plugin's.
func (l *Logger) SetSink(s Sink) { l.mu.Lock(); l.sink = s; l.mu.Unlock() }

// SetOutput redirects the lines (tests).
func (l *Logger) SetOutput(w io.Writer) { l.mu.Lock(); l.out = w; l.mu.Unlock() }

// MinSecretLen is the length, in characters, from which a secret is
// scrubbed from lines. A shorter text also occurs in ordinary words and
// names: replacing it would mangle lines, and where "(redacted)" appears
// would show what the secret is.
const MinSecretLen = 8

// Redacted replaces a secret in a line.
const Redacted = "(redacted)"

// Redact adds a secret that must never appear in a line; it reports
// whether lines are scrubbed of it (it has at least MinSecretLen
// characters). Adding one again changes nothing.
func (l *Logger) Redact(s string) bool {
	if l.parent != nil {
		return l.parent.Redact(s)
	}
	if utf8.RuneCountInString(s) < MinSecretLen {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !slices.Contains(l.secret, s) {
		// Longest first, so that a secret inside another cannot leave the
		// rest of that one in the line.
		i, _ := slices.BinarySearchFunc(l.secret, s, func(a, b string) int { return len(b) - len(a) })
		l.secret = slices.Insert(l.secret, i, s)
	}
	return true
}

// Secret is Redact for the value of the configuration key key, with a
// warning the first time a value too short to be scrubbed is given.
func (l *Logger) Secret(key, s string) {
	if l.parent != nil {
		l.parent.Secret(key, s)
		return
	}
	if s == "" || l.Redact(s) {
		return
	}
	l.mu.Lock()
	seen := slices.Contains(l.short, s)
	if !seen {
		l.short = append(l.short, s)
	}
	l.mu.Unlock()
	if seen {
		return
	}
	hint := ""
	if key == "client_secret" || key == "client_secret_file" {
		hint = "; Entra ID makes client secrets of 40 characters: check that it is the whole secret Value"
	}
	l.Warnf("%s is shorter than %d characters, too short to be told apart from ordinary text, so log lines and health records are not scrubbed of it%s", key, MinSecretLen, hint)
}

// Scrub replaces the registered secrets in s where they occur whole: not
// where the text around continues a word, a name or a number, so that a
// secret that is also part of, say, a tenant's domain leaves it as it is.
func (l *Logger) Scrub(s string) string {
	if l.parent != nil {
		return l.parent.Scrub(s)
	}
	l.mu.Lock()
	secrets := l.secret
	l.mu.Unlock()
	for _, sec := range secrets {
		s = replaceWhole(s, sec)
	}
	return s
}

// ScrubText replaces, in s, the whole occurrences of each secret at least
// MinSecretLen long, as Logger.Scrub does for the secrets it holds: for
// texts that are built before a logger sees them, such as errors.
func ScrubText(s string, secrets ...string) string {
	for _, sec := range secrets {
		if utf8.RuneCountInString(sec) >= MinSecretLen {
			s = replaceWhole(s, sec)
		}
	}
	return s
}

// replaceWhole replaces the whole occurrences of sec in s with Redacted.
func replaceWhole(s, sec string) string {
	var b strings.Builder
	done := 0 // s[:done] is in b
	for from := 0; ; {
		j := strings.Index(s[from:], sec)
		if j < 0 {
			break
		}
		j += from
		end := j + len(sec)
		if !continues(s[:j], sec, true) && !continues(s[end:], sec, false) {
			b.WriteString(s[done:j])
			b.WriteString(Redacted)
			done, from = end, end
		} else {
			_, size := utf8.DecodeRuneInString(s[j:])
			from = j + size
		}
	}
	if done == 0 {
		return s
	}
	b.WriteString(s[done:])
	return b.String()
}

// continues reports whether the text next to an occurrence of sec (before
// it when before is set) goes on with the same word: a letter or a digit,
// directly or after the characters that join the parts of names and
// secrets (- . _ ~), with sec's own edge a letter, a digit or one of those.
// "abcdefgh." ends a sentence; "abcdefgh.example.com" is a longer name.
func continues(next, sec string, before bool) bool {
	edge, _ := utf8.DecodeLastRuneInString(sec)
	if before {
		edge, _ = utf8.DecodeRuneInString(sec)
	}
	if !wordRune(edge) && !joiner(edge) {
		return false
	}
	for next != "" {
		var r rune
		var size int
		if before {
			r, size = utf8.DecodeLastRuneInString(next)
			next = next[:len(next)-size]
		} else {
			r, size = utf8.DecodeRuneInString(next)
			next = next[size:]
		}
		switch {
		case wordRune(r):
			return true
		case !joiner(r):
			return false
		}
	}
	return false
}

func wordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

func joiner(r rune) bool { return r == '-' || r == '.' || r == '_' || r == '~' }

func (l *Logger) log(lv Level, format string, args ...any) {
	if l == nil {
		return
	}
	if l.parent != nil {
		l.parent.log(lv, "%s %s", l.tag, fmt.Sprintf(format, args...))
		return
	}
	l.mu.Lock()
	sink := l.sink
	l.mu.Unlock()
	if sink == nil && lv > l.level {
		return
	}
	msg := l.Scrub(fmt.Sprintf(format, args...))
	if sink != nil && sink(lv, l.prefix+" "+msg) {
		return
	}
	if lv > l.level {
		return
	}
	ts := time.Now().Format("2006/01/02 15:04:05.000")
	l.mu.Lock()
	fmt.Fprintf(l.out, "[%s] [%s] %s %s\n", ts, names[lv], l.prefix, msg)
	l.mu.Unlock()
}

// Errorf logs at error level.
func (l *Logger) Errorf(format string, args ...any) { l.log(Error, format, args...) }

// Warnf logs at warn level.
func (l *Logger) Warnf(format string, args ...any) { l.log(Warn, format, args...) }

// Infof logs at info level.
func (l *Logger) Infof(format string, args ...any) { l.log(Info, format, args...) }

// Debugf logs at debug level.
func (l *Logger) Debugf(format string, args ...any) { l.log(Debug, format, args...) }
