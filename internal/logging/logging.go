// Package logging writes log lines in Fluent Bit's own format on stderr,
// so the plugin's lines read like every other plugin's, and scrubs secrets
// from every line.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
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

// Logger writes lines for one input instance.
type Logger struct {
	mu     sync.Mutex
	out    io.Writer
	prefix string
	level  Level
	secret []string
}

// New returns a logger that prefixes lines with [input:msgraph:<name>].
func New(name string, level Level) *Logger {
	return &Logger{out: os.Stderr, prefix: "[input:msgraph:" + name + "]", level: level}
}

// SetOutput redirects the lines (tests).
func (l *Logger) SetOutput(w io.Writer) { l.mu.Lock(); l.out = w; l.mu.Unlock() }

// Redact adds a string that must never appear in a line.
func (l *Logger) Redact(s string) {
	if s == "" {
		return
	}
	l.mu.Lock()
	l.secret = append(l.secret, s)
	l.mu.Unlock()
}

// Scrub replaces the registered secrets in s.
func (l *Logger) Scrub(s string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, sec := range l.secret {
		s = strings.ReplaceAll(s, sec, "(redacted)")
	}
	return s
}

func (l *Logger) log(lv Level, format string, args ...any) {
	if l == nil || lv > l.level {
		return
	}
	msg := l.Scrub(fmt.Sprintf(format, args...))
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
