package graphsim

import (
	"regexp"
	"slices"
	"strings"
	"time"
)

// bounds is the time range a filter selects; an open end excludes its own
// instant (gt, lt), a closed one includes it (ge, le, eq).
type bounds struct {
	lo, hi         time.Time
	hasLo, hasHi   bool
	loOpen, hiOpen bool
}

// filter is what a $filter selects: a time range and, on beta signIns,
// the signInEventTypes members asked for (nil when there is no clause).
type filter struct {
	b     bounds
	types map[string]bool
}

const errFilter = badRequest("Invalid filter clause")

var (
	dateTimeRE   = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?Z$`)
	identifierRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// lambdaProperty is how the tokenizer sees the start of
// signInEventTypes/any(...).
const lambdaProperty = "signInEventTypes/any"

// parseFilter parses a v1.0 signIns filter: one or more
// "createdDateTime ge|le|eq <datetime>" clauses joined by "and",
// optionally parenthesised. Anything else, and any datetime before oldest,
// is the 400 Graph gives.
func parseFilter(s string, oldest time.Time) (bounds, error) {
	f, err := parseEndpointFilter(s, signInsEndpoint, oldest)
	return f.b, err
}

// parseEndpointFilter parses a filter of clauses on ep's time field with
// the operators ep accepts, joined by "and" and optionally parenthesised,
// plus signInEventTypes lambdas where ep takes them.
func parseEndpointFilter(s string, ep endpoint, oldest time.Time) (filter, error) {
	p := filterParser{toks: tokenize(s), oldest: oldest, ep: ep}
	if err := p.expr(0); err != nil {
		return filter{}, err
	}
	if p.pos != len(p.toks) {
		return filter{}, errFilter
	}
	return p.f, nil
}

func tokenize(s string) []string {
	var toks []string
	start := -1
	for i, c := range s {
		switch c {
		case ' ', '\t', '(', ')':
			if start >= 0 {
				toks = append(toks, s[start:i])
				start = -1
			}
			if c == '(' || c == ')' {
				toks = append(toks, string(c))
			}
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		toks = append(toks, s[start:])
	}
	return toks
}

type filterParser struct {
	toks   []string
	pos    int
	f      filter
	oldest time.Time
	ep     endpoint
}

func (p *filterParser) next() string {
	if p.pos >= len(p.toks) {
		return ""
	}
	p.pos++
	return p.toks[p.pos-1]
}

func (p *filterParser) expr(depth int) error {
	if depth > 16 {
		return errFilter
	}
	for {
		if err := p.term(depth); err != nil {
			return err
		}
		if p.pos >= len(p.toks) || p.toks[p.pos] != "and" {
			return nil
		}
		p.pos++
	}
}

func (p *filterParser) term(depth int) error {
	first := p.next()
	switch {
	case first == "(":
		if err := p.expr(depth + 1); err != nil {
			return err
		}
		if p.next() != ")" {
			return errFilter
		}
		return nil
	case first == lambdaProperty && p.ep.eventTypes:
		return p.lambda()
	case first != p.ep.timeField:
		return errFilter
	}
	op, v := p.next(), p.next()
	if !p.ep.acceptsOp(op) || !dateTimeRE.MatchString(v) {
		return errFilter
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil || t.Before(p.oldest) {
		return errFilter
	}
	switch op {
	case "ge", "gt":
		p.raiseLo(t, op == "gt")
	case "le", "lt":
		p.lowerHi(t, op == "lt")
	case "eq":
		p.raiseLo(t, false)
		p.lowerHi(t, false)
	}
	return nil
}

func (p *filterParser) raiseLo(t time.Time, open bool) {
	b := &p.f.b
	if !b.hasLo || t.After(b.lo) || t.Equal(b.lo) && open {
		b.lo, b.loOpen, b.hasLo = t, open, true
	}
}

func (p *filterParser) lowerHi(t time.Time, open bool) {
	b := &p.f.b
	if !b.hasHi || t.Before(b.hi) || t.Equal(b.hi) && open {
		b.hi, b.hiOpen, b.hasHi = t, open, true
	}
}

// lambda parses the "(t: t eq 'x' or t eq 'y')" after
// signInEventTypes/any. Several lambdas joined by "and" intersect.
func (p *filterParser) lambda() error {
	if p.next() != "(" {
		return errFilter
	}
	// The body holds no datetimes, so it can be re-tokenized with the
	// colon as a token of its own, whatever the spacing around it.
	var body []string
	for nest := 0; ; {
		tok := p.next()
		switch tok {
		case "":
			return errFilter
		case "(":
			nest++
		case ")":
			nest--
		}
		if nest < 0 {
			break
		}
		for part := range strings.SplitSeq(strings.ReplaceAll(tok, ":", " : "), " ") {
			if part != "" {
				body = append(body, part)
			}
		}
	}
	if len(body) < 2 || !identifierRE.MatchString(body[0]) || body[1] != ":" {
		return errFilter
	}
	l := lambdaParser{toks: body[2:], v: body[0]}
	types, err := l.or(0)
	if err != nil || l.pos != len(l.toks) {
		return errFilter
	}
	if p.f.types == nil {
		p.f.types = types
		return nil
	}
	for t := range p.f.types {
		if !types[t] {
			delete(p.f.types, t)
		}
	}
	return nil
}

// lambdaParser reads "v eq 'x' or v ne 'y' or (...)" over the lambda
// variable v.
type lambdaParser struct {
	toks []string
	pos  int
	v    string
}

func (l *lambdaParser) next() string {
	if l.pos >= len(l.toks) {
		return ""
	}
	l.pos++
	return l.toks[l.pos-1]
}

func (l *lambdaParser) or(depth int) (map[string]bool, error) {
	if depth > 16 {
		return nil, errFilter
	}
	types := make(map[string]bool)
	for {
		t, err := l.atom(depth)
		if err != nil {
			return nil, err
		}
		for k := range t {
			types[k] = true
		}
		if l.pos >= len(l.toks) || l.toks[l.pos] != "or" {
			return types, nil
		}
		l.pos++
	}
}

func (l *lambdaParser) atom(depth int) (map[string]bool, error) {
	first := l.next()
	if first == "(" {
		t, err := l.or(depth + 1)
		if err != nil || l.next() != ")" {
			return nil, errFilter
		}
		return t, nil
	}
	op, lit := l.next(), l.next()
	if first != l.v || (op != "eq" && op != "ne") || len(lit) < 2 || lit[0] != '\'' || lit[len(lit)-1] != '\'' {
		return nil, errFilter
	}
	member := lit[1 : len(lit)-1]
	if !slices.Contains(signInEventTypes, member) {
		return nil, errFilter
	}
	types := make(map[string]bool)
	for _, m := range signInEventTypes {
		if (m == member) == (op == "eq") {
			types[m] = true
		}
	}
	return types, nil
}
