package scim

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Filters and paths are the small part of RFC 7644's grammar that Okta
// uses: a filter is `attribute eq "value"` (§3.4.2.2), a PATCH path an
// attribute, a sub-attribute, or a multi-valued attribute with such a
// filter (`members[value eq "id"]`, §3.5.2). Anything else is refused with
// invalidFilter or invalidPath rather than half-understood.

// MaxFilterLen bounds a filter or a path.
const MaxFilterLen = 1024

// Filter is `Attr eq Value`.
type Filter struct {
	// Attr is the attribute path as written ("userName", "name.givenName").
	Attr  string
	Value string
}

var errFilter = errors.New("invalid filter")

// ParseFilter parses a filter; the error says, for the client, what is
// wrong.
func ParseFilter(s string) (Filter, error) {
	if len(s) > MaxFilterLen {
		return Filter{}, fmt.Errorf("%w: longer than %d bytes", errFilter, MaxFilterLen)
	}
	p := &lexer{s: s}
	f, err := p.comparison()
	if err != nil {
		return Filter{}, err
	}
	p.space()
	if !p.done() {
		return Filter{}, fmt.Errorf("%w: only one comparison (attribute eq \"value\") is supported", errFilter)
	}
	return f, nil
}

// Path is a PATCH operation's target.
type Path struct {
	Attr string // "members", "active", "name"
	Sub  string // "givenName" in "name.givenName"; empty if none
	// Filter, when set, selects values of a multi-valued Attr
	// (`members[value eq "id"]`).
	Filter *Filter
}

var errPath = errors.New("invalid path")

// ParsePath parses a PATCH path.
func ParsePath(s string) (Path, error) {
	if len(s) > MaxFilterLen {
		return Path{}, fmt.Errorf("%w: longer than %d bytes", errPath, MaxFilterLen)
	}
	p := &lexer{s: s}
	attr, ok := p.attrPath()
	if !ok {
		return Path{}, fmt.Errorf("%w: %q does not start with an attribute name", errPath, s)
	}
	out := Path{Attr: attr}
	if a, sub, ok := strings.Cut(attr, "."); ok {
		out.Attr, out.Sub = a, sub
	}
	if p.peek() == '[' {
		if out.Sub != "" {
			return Path{}, fmt.Errorf("%w: a filter must follow a top-level attribute", errPath)
		}
		p.i++
		f, err := p.comparison()
		if err != nil {
			return Path{}, fmt.Errorf("%w: %v", errPath, err)
		}
		p.space()
		if p.peek() != ']' {
			return Path{}, fmt.Errorf("%w: missing ]", errPath)
		}
		p.i++
		out.Filter = &f
	}
	if !p.done() {
		return Path{}, fmt.Errorf("%w: unexpected text after %q", errPath, s[:p.i])
	}
	return out, nil
}

type lexer struct {
	s string
	i int
}

func (p *lexer) done() bool { return p.i >= len(p.s) }

func (p *lexer) peek() byte {
	if p.done() {
		return 0
	}
	return p.s[p.i]
}

func (p *lexer) space() {
	for !p.done() && p.s[p.i] == ' ' {
		p.i++
	}
}

// attrPath reads ATTRNAME *1("." ATTRNAME) (RFC 7644 §3.10, without URN
// prefixes, which Okta's filters do not use).
func (p *lexer) attrPath() (string, bool) {
	start := p.i
	for part := 0; part < 2; part++ {
		if !isAlpha(p.peek()) {
			return "", false
		}
		for !p.done() && isNameChar(p.s[p.i]) {
			p.i++
		}
		if p.peek() != '.' || part == 1 {
			break
		}
		p.i++
	}
	return p.s[start:p.i], true
}

// comparison reads `attrPath SP "eq" SP compValue`.
func (p *lexer) comparison() (Filter, error) {
	p.space()
	attr, ok := p.attrPath()
	if !ok {
		return Filter{}, fmt.Errorf("%w: expected an attribute name at %d", errFilter, p.i)
	}
	if p.peek() != ' ' {
		return Filter{}, fmt.Errorf("%w: expected an operator after %q", errFilter, attr)
	}
	p.space()
	start := p.i
	for !p.done() && isAlpha(p.s[p.i]) {
		p.i++
	}
	op := strings.ToLower(p.s[start:p.i])
	if op != "eq" {
		return Filter{}, fmt.Errorf("%w: operator %q is not supported (only eq)", errFilter, op)
	}
	if p.peek() != ' ' {
		return Filter{}, fmt.Errorf("%w: expected a value after eq", errFilter)
	}
	p.space()
	if p.peek() != '"' {
		return Filter{}, fmt.Errorf("%w: the value must be a quoted string", errFilter)
	}
	// The JSON string ends at the first unescaped quote.
	end := p.i + 1
	for ; end < len(p.s); end++ {
		if p.s[end] == '\\' {
			end++
			continue
		}
		if p.s[end] == '"' {
			break
		}
	}
	if end >= len(p.s) {
		return Filter{}, fmt.Errorf("%w: unterminated string", errFilter)
	}
	var v string
	if err := json.Unmarshal([]byte(p.s[p.i:end+1]), &v); err != nil {
		return Filter{}, fmt.Errorf("%w: bad string value", errFilter)
	}
	p.i = end + 1
	return Filter{Attr: attr, Value: v}, nil
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isNameChar(c byte) bool {
	return isAlpha(c) || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '$'
}
