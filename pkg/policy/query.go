package policy

import (
	"fmt"
	"strings"
)

// QueryError says why CheckQuery refused a query. Its message reads after
// the field's name: `"query" must start with SELECT or WITH: …`.
type QueryError struct{ msg string }

func (e *QueryError) Error() string { return e.msg }

func queryErrorf(format string, args ...any) error {
	return &QueryError{msg: fmt.Sprintf(format, args...)}
}

// errNotReadOnly is the message a query with the wrong first keyword gets.
var errNotReadOnly = &QueryError{msg: "must start with SELECT or WITH: policies are read-only osquery queries"}

// CheckQuery is the rule every policy query meets: the verifier applies it
// when it loads a policy file, and the agent applies it again to every query
// it is sent, before osquery sees it, so a verifier that skips the check
// (or an attacker who speaks for it) still cannot have the agent run
// anything else.
//
// A query is one SQL statement of at most 64 KiB, with no parameters
// (`?`, `:name`, `@name`, `#name`, `$name`: nothing binds them, and SQLite
// reads some of them across quotes and semicolons). Its first keyword, after
// whitespace and comments, is SELECT or WITH; after WITH and its common table
// expressions the statement itself is SELECT (or VALUES), not INSERT,
// UPDATE, DELETE or REPLACE. A semicolon outside string literals, quoted
// names and comments ends it, and only whitespace and comments may follow:
// osquery runs every statement of a query, so `SELECT 1; ATTACH …` would
// run the ATTACH too. String literals, quoted names and block comments must
// be closed, and the query holds no NUL byte (osquery's C side would stop
// reading there while this check goes on).
//
// The rule is lexical, as SQLite reads SQL: it does not parse the query,
// and osquery's own parser and authorizer still judge what the statement
// does.
func CheckQuery(q string) error {
	switch {
	case strings.TrimSpace(q) == "":
		return &QueryError{msg: "is empty"}
	case len(q) > maxQueryBytes:
		return queryErrorf("is %d bytes; the limit is %d", len(q), maxQueryBytes)
	case strings.IndexByte(q, 0) >= 0:
		return queryErrorf("has a NUL byte at byte %d", strings.IndexByte(q, 0))
	}
	s := sqlScanner{q: q}
	first, err := s.next()
	if err != nil || first.kind != tokWord || !first.is("SELECT") && !first.is("WITH") {
		return errNotReadOnly
	}
	withMain := first.is("WITH")
	depth := 0
	for {
		t, err := s.next()
		if err != nil {
			return err
		}
		switch {
		case t.kind == tokEOF:
			if withMain {
				return &QueryError{msg: "starts with WITH but has no SELECT after its common table expressions"}
			}
			return nil
		case t.kind == tokPunct && t.text == "(":
			depth++
		case t.kind == tokPunct && t.text == ")":
			depth--
		case t.kind == tokPunct && t.text == ";":
			if withMain {
				return &QueryError{msg: "starts with WITH but has no SELECT after its common table expressions"}
			}
			// The statement ends here: only whitespace and comments may follow.
			rest, err := s.next()
			if err != nil {
				return err
			}
			if rest.kind != tokEOF {
				return queryErrorf("must be a single statement: the ';' at byte %d is followed by more SQL at byte %d", t.pos, rest.pos)
			}
			return nil
		case withMain && depth == 0 && t.kind == tokWord:
			// After WITH, the first statement keyword outside parentheses is
			// the statement itself.
			switch {
			case t.is("SELECT"), t.is("VALUES"):
				withMain = false
			case t.is("INSERT"), t.is("UPDATE"), t.is("DELETE"), t.is("REPLACE"):
				return queryErrorf("starts with WITH but is %s at byte %d: policies are read-only osquery queries", strings.ToUpper(t.text), t.pos)
			}
		}
	}
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokWord
	tokString // '…', "…", `…`, […]
	tokPunct
)

type sqlToken struct {
	kind tokKind
	text string
	pos  int
}

func (t sqlToken) is(keyword string) bool { return strings.EqualFold(t.text, keyword) }

// sqlScanner splits SQL into tokens as SQLite's tokenizer does, as far as
// the rule needs: words, quoted strings and names, and single punctuation
// bytes, skipping whitespace and comments.
type sqlScanner struct {
	q string
	i int
}

// next returns the next token, or an error for an unclosed string, name or
// block comment.
func (s *sqlScanner) next() (sqlToken, error) {
	for {
		for s.i < len(s.q) {
			if isSQLSpace(s.q[s.i]) {
				s.i++
				continue
			}
			// SQLite takes a byte-order mark where a token starts for
			// whitespace, where a scanner that did not would read it as
			// the start of a word: `)` U+FEFF `INSERT` is INSERT to SQLite.
			if strings.HasPrefix(s.q[s.i:], byteOrderMark) {
				s.i += len(byteOrderMark)
				continue
			}
			break
		}
		rest := s.q[s.i:]
		switch {
		case strings.HasPrefix(rest, "--"):
			// A line comment runs to the end of the line, or of the query.
			if n := strings.IndexByte(rest, '\n'); n >= 0 {
				s.i += n + 1
			} else {
				s.i = len(s.q)
			}
			continue
		case strings.HasPrefix(rest, "/*"):
			n := strings.Index(rest[2:], "*/")
			if n < 0 {
				return sqlToken{}, queryErrorf("has a /* comment at byte %d that is never closed", s.i)
			}
			s.i += 2 + n + 2
			continue
		}
		start := s.i
		if start == len(s.q) {
			return sqlToken{kind: tokEOF, pos: start}, nil
		}
		switch c := s.q[start]; {
		case c == '\'' || c == '"' || c == '`':
			// Closed by the same quote; a doubled quote stands for itself.
			i := start + 1
			for {
				n := strings.IndexByte(s.q[i:], c)
				if n < 0 {
					return sqlToken{}, queryErrorf("has a %s at byte %d that is never closed", quoteName(c), start)
				}
				i += n + 1
				if i < len(s.q) && s.q[i] == c {
					i++
					continue
				}
				break
			}
			s.i = i
			return sqlToken{kind: tokString, text: s.q[start:i], pos: start}, nil
		case c == '[':
			n := strings.IndexByte(s.q[start:], ']')
			if n < 0 {
				return sqlToken{}, queryErrorf("has a [quoted name] at byte %d that is never closed", start)
			}
			s.i = start + n + 1
			return sqlToken{kind: tokString, text: s.q[start:s.i], pos: start}, nil
		case c == '?' || c == ':' || c == '@' || c == '#' || c == '$':
			// A parameter. SQLite reads $name(…) as one token up to the
			// next ')' or space, quotes, ';' and comments included, where a
			// scanner that did not would see a string and miss the ';'.
			// Policies bind no parameters, so none is read at all.
			return sqlToken{}, queryErrorf("has a parameter (%c) at byte %d: policies bind none; write the value in the query", c, start)
		case isWordByte(c):
			i := start
			for i < len(s.q) && (isWordByte(s.q[i]) || s.q[i] == '$') {
				i++
			}
			s.i = i
			return sqlToken{kind: tokWord, text: s.q[start:i], pos: start}, nil
		default:
			s.i++
			return sqlToken{kind: tokPunct, text: s.q[start:s.i], pos: start}, nil
		}
	}
}

func quoteName(c byte) string {
	if c == '\'' {
		return "string literal"
	}
	return fmt.Sprintf("%c-quoted name", c)
}

// byteOrderMark is U+FEFF in UTF-8.
const byteOrderMark = "\xef\xbb\xbf"

// isSQLSpace is SQLite's whitespace: space, \t, \n, \v, \f and \r. Any other
// byte, a non-breaking space included, is part of a token to SQLite.
func isSQLSpace(c byte) bool { return c == ' ' || c >= '\t' && c <= '\r' }

// isWordByte is a byte of a keyword, name or number. SQLite takes every
// byte from 0x80 up as part of a name.
func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}
