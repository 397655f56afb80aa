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
	secret []string
}

// New returns a logger that prefixes lines with [input:msgraph:<name>].
func New(name string, level Level) *Logger {
	return &Logger{out: os.Stderr, prefix: "[input:msgraph:" + name + "]", level: level}
}

// SetSink sends the lines to Fluent Bit's logger, which applies its own
// log_level and format, so they look like every other plugin's.
func (l *Logger) SetSink(s Sink) { l.mu.Lock(); l.sink = s; l.mu.Unlock() }

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
	if l == nil {
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
