package policy

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// queryCases are what CheckQuery must accept, and what it must refuse with
// the message a policy author sees after `"query" `.
var queryCases = []struct {
	name, q, want string // want "" means accepted
}{
	// Accepted: one read-only statement, however it is dressed.
	{"select", "SELECT 1 FROM disk_encryption WHERE filevault_status = 'on'", ""},
	{"lower case", "select 1", ""},
	{"leading comments", "-- FileVault\n/* on */ SELECT 1", ""},
	{"trailing semicolon", "SELECT 1;", ""},
	{"trailing semicolon and space", "SELECT 1 ;  \n\t", ""},
	{"trailing semicolon and comments", "SELECT 1; -- done\n/* really */", ""},
	{"trailing line comment without newline", "SELECT 1; -- done", ""},
	{"semicolon in a string", "SELECT 1 FROM users WHERE shell = ';ATTACH'", ""},
	{"doubled quote in a string", "SELECT 1 FROM users WHERE name = 'it''s; ATTACH'", ""},
	{"semicolon in a double-quoted name", `SELECT "a;b" FROM x`, ""},
	{"semicolon in a backquoted name", "SELECT `a;b` FROM x", ""},
	{"semicolon in a bracketed name", "SELECT [a;b] FROM x", ""},
	{"semicolon in a line comment", "SELECT 1 -- ; ATTACH 'x' AS y\nFROM x", ""},
	{"semicolon in a block comment", "SELECT 1 /* ; ATTACH 'x' AS y */ FROM x", ""},
	{"with select", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 5) SELECT x FROM c", ""},
	{"with values", "WITH v(x) AS (VALUES (1)) VALUES (2)", ""},
	{"with materialized", "WITH a AS MATERIALIZED (SELECT 1), b AS NOT MATERIALIZED (SELECT 2) SELECT * FROM a, b", ""},
	{"with a quoted name that is a keyword", `WITH "delete" AS (SELECT 1) SELECT * FROM "delete"`, ""},
	{"blob literal", "SELECT X'3b' = ';'", ""},
	{"dollar in a name", "SELECT b$c FROM x", ""},

	// Refused: not a read-only statement.
	{"empty", "", "is empty"},
	{"blank", " \n\t", "is empty"},
	{"delete", "DELETE FROM users", "must start with SELECT or WITH: policies are read-only osquery queries"},
	{"attach", "ATTACH DATABASE '/tmp/x' AS x", "must start with SELECT or WITH: policies are read-only osquery queries"},
	{"pragma", "PRAGMA writable_schema = 1", "must start with SELECT or WITH: policies are read-only osquery queries"},
	{"keyword prefix", "SELECTED 1", "must start with SELECT or WITH: policies are read-only osquery queries"},
	{"keyword in a comment only", "/* SELECT */ ATTACH 'x' AS y", "must start with SELECT or WITH: policies are read-only osquery queries"},
	{"keyword in a line comment only", "-- SELECT\nATTACH 'x' AS y", "must start with SELECT or WITH: policies are read-only osquery queries"},
	{"unclosed leading comment", "/* SELECT 1", "must start with SELECT or WITH: policies are read-only osquery queries"},
	{"quoted keyword", "'SELECT' 1", "must start with SELECT or WITH: policies are read-only osquery queries"},
	{"explain", "EXPLAIN SELECT 1", "must start with SELECT or WITH: policies are read-only osquery queries"},
	{"with delete", "WITH x AS (SELECT 1) DELETE FROM users", "starts with WITH but is DELETE at byte 21: policies are read-only osquery queries"},
	{"with insert", "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "starts with WITH but is INSERT at byte 21: policies are read-only osquery queries"},
	{"with update", "with x as (select 1) update t set a = 1", "starts with WITH but is UPDATE at byte 21: policies are read-only osquery queries"},
	{"with replace", "WITH x AS (SELECT 1) REPLACE INTO t VALUES (1)", "starts with WITH but is REPLACE at byte 21: policies are read-only osquery queries"},
	{"with nothing", "WITH x AS (SELECT 1)", "starts with WITH but has no SELECT after its common table expressions"},
	{"with then a semicolon", "WITH x AS (SELECT 1); SELECT 1", "starts with WITH but has no SELECT after its common table expressions"},

	// Refused: more than one statement.
	{"select then attach", "SELECT 1; ATTACH DATABASE '/tmp/x' AS x", "must be a single statement: the ';' at byte 8 is followed by more SQL at byte 10"},
	{"select then create view", "SELECT 1;CREATE TEMP VIEW users AS SELECT 1", "must be a single statement: the ';' at byte 8 is followed by more SQL at byte 9"},
	{"select then select", "SELECT 1; SELECT 2", "must be a single statement: the ';' at byte 8 is followed by more SQL at byte 10"},
	{"two semicolons", "SELECT 1;;", "must be a single statement: the ';' at byte 8 is followed by more SQL at byte 9"},
	{"statement after a comment", "SELECT 1; /* x */ ATTACH 'x' AS y", "must be a single statement: the ';' at byte 8 is followed by more SQL at byte 18"},
	{"statement after a line comment", "SELECT 1; -- x\nATTACH 'x' AS y", "must be a single statement: the ';' at byte 8 is followed by more SQL at byte 15"},
	{"string closes before the semicolon", "SELECT 'a'''; ATTACH 'x' AS y", "must be a single statement: the ';' at byte 12 is followed by more SQL at byte 14"},
	{"name closes before the semicolon", `SELECT "a"""; ATTACH 'x' AS y`, "must be a single statement: the ';' at byte 12 is followed by more SQL at byte 14"},
	{"bracket has no escape", "SELECT [a]]; ATTACH 'x' AS y", "must be a single statement: the ';' at byte 11 is followed by more SQL at byte 13"},
	{"comment closes before the semicolon", "SELECT 1 /* x */; ATTACH 'x' AS y", "must be a single statement: the ';' at byte 16 is followed by more SQL at byte 18"},
	{"line comment ends at CR LF", "SELECT 1 -- x\r\n; ATTACH 'x' AS y", "must be a single statement: the ';' at byte 15 is followed by more SQL at byte 17"},
	{"non-breaking space after the semicolon", "SELECT 1;\u00a0", "must be a single statement: the ';' at byte 8 is followed by more SQL at byte 9"},
	{"semicolon inside parentheses", "SELECT (1; ATTACH 'x' AS y)", "must be a single statement: the ';' at byte 9 is followed by more SQL at byte 11"},
	{"with then a second statement", "WITH x AS (SELECT 1) SELECT * FROM x; DROP TABLE t", "must be a single statement: the ';' at byte 36 is followed by more SQL at byte 38"},

	// Refused: what SQLite and this check could read differently.
	{"unclosed string", "SELECT ';", "has a string literal at byte 7 that is never closed"},
	{"unclosed name", `SELECT ";`, `has a "-quoted name at byte 7 that is never closed`},
	{"unclosed backquote", "SELECT `;", "has a `-quoted name at byte 7 that is never closed"},
	{"unclosed bracket", "SELECT [;", "has a [quoted name] at byte 7 that is never closed"},
	{"unclosed comment", "SELECT 1 /* ; ATTACH 'x' AS y", "has a /* comment at byte 9 that is never closed"},
	{"unclosed comment after the statement", "SELECT 1; /* x", "has a /* comment at byte 10 that is never closed"},
	{"nested comment", "SELECT 1 /* /* */ */; ATTACH 'x' AS y", "must be a single statement: the ';' at byte 20 is followed by more SQL at byte 22"},
	{"NUL byte", "SELECT 1 \x00; ATTACH 'x' AS y", "has a NUL byte at byte 9"},
	{"too long", "SELECT " + strings.Repeat("1", maxQueryBytes), "is 65543 bytes; the limit is 65536"},

	// Refused: parameters. SQLite reads $a(…) to the next ')' or space,
	// across the quotes this check would take for a string.
	{"a dollar parameter hiding a second statement", "SELECT $a('),1;CREATE/**/TEMP/**/VIEW/**/users/**/AS/**/SELECT/**/'pwned'/**/AS/**/username;--')",
		"has a parameter ($) at byte 7: policies bind none; write the value in the query"},
	{"a colon parameter hiding a second statement", "SELECT :a('),1;ATTACH/**/'x'/**/AS/**/y;--')", "has a parameter (:) at byte 7: policies bind none; write the value in the query"},
	{"an at parameter", "SELECT @a", "has a parameter (@) at byte 7: policies bind none; write the value in the query"},
	{"a hash parameter", "SELECT #a", "has a parameter (#) at byte 7: policies bind none; write the value in the query"},
	{"a question mark", "SELECT * FROM users WHERE uid = ?1", "has a parameter (?) at byte 32: policies bind none; write the value in the query"},

	// Refused: a byte-order mark, whitespace to SQLite where a token
	// starts, does not hide the keyword after it.
	{"a write after WITH behind a byte-order mark", "WITH a AS (SELECT 'x')\ufeffINSERT INTO victim SELECT * FROM a",
		"starts with WITH but is INSERT at byte 25: policies are read-only osquery queries"},
	{"a replace after WITH behind a byte-order mark", "WITH a AS (SELECT 'x')\ufeff\ufeffREPLACE INTO victim SELECT * FROM a",
		"starts with WITH but is REPLACE at byte 28: policies are read-only osquery queries"},
	{"a statement after a semicolon behind a byte-order mark", "SELECT 1;\ufeffATTACH 'x' AS y", "must be a single statement: the ';' at byte 8 is followed by more SQL at byte 12"},

	// Accepted: the same characters where they are not parameters.
	{"a dollar inside a name", "SELECT a$b FROM t", ""},
	{"a JSON path in a string", "SELECT json_extract(x, '$.a') FROM t", ""},
	{"a time in a string", "SELECT 1 WHERE '12:00' = '12:00'", ""},
	{"marks in a comment", "SELECT 1 -- $a ? :b @c #d", ""},
}

func TestCheckQuery(t *testing.T) {
	t.Parallel()
	for _, tc := range queryCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := CheckQuery(tc.q)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("CheckQuery(%q) = %v, want accepted", tc.q, err)
			case tc.want != "" && err == nil:
				t.Errorf("CheckQuery(%q) accepted, want %q", tc.q, tc.want)
			case tc.want != "" && err.Error() != tc.want:
				t.Errorf("CheckQuery(%q) = %q, want %q", tc.q, err, tc.want)
			}
		})
	}
}

// The loader and the agent apply the same rule: a file with a second
// statement is refused where the author wrote it.
func TestParseRefusesASecondStatement(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte("policies:\n  - id: a\n    name: x\n    query: \"SELECT 1; ATTACH DATABASE '/tmp/x' AS x\"\n"), file)
	want := `policies.yaml:4:12: policy "a": "query" must be a single statement: the ';' at byte 8 is followed by more SQL at byte 10`
	if err == nil || err.Error() != want {
		t.Errorf("Parse = %v, want %s", err, want)
	}
}

// firstKeyword is the loader's earlier rule, kept as an independent oracle:
// the first keyword after whitespace and comments is SELECT or WITH.
func firstKeyword(q string) bool {
	for {
		q = strings.TrimLeft(q, " \t\r\n\f\v")
		switch {
		case strings.HasPrefix(q, "--"):
			i := strings.IndexByte(q, '\n')
			if i < 0 {
				return false
			}
			q = q[i+1:]
		case strings.HasPrefix(q, "/*"):
			i := strings.Index(q[2:], "*/")
			if i < 0 {
				return false
			}
			q = q[2+i+2:]
		default:
			end := 0
			for end < len(q) && isWordByte(q[end]) {
				end++
			}
			return strings.EqualFold(q[:end], "select") || strings.EqualFold(q[:end], "with")
		}
	}
}

// FuzzCheckQuery checks that no input panics CheckQuery, that what it
// accepts starts with SELECT or WITH by the independent rule, and that a
// second statement after anything it accepts is refused: an accepted query
// never ends inside a string, a name or a block comment, where a `;` would
// hide.
func FuzzCheckQuery(f *testing.F) {
	for _, tc := range queryCases {
		if len(tc.q) <= 4<<10 {
			f.Add(tc.q)
		}
	}
	f.Fuzz(func(t *testing.T, q string) {
		err := CheckQuery(q)
		if err != nil {
			if msg := err.Error(); msg == "" || !utf8.ValidString(msg) && utf8.ValidString(q) {
				t.Fatalf("CheckQuery(%q): malformed message %q", q, msg)
			}
			return
		}
		if !firstKeyword(q) {
			t.Fatalf("CheckQuery accepted %q, which does not start with SELECT or WITH", q)
		}
		if strings.IndexByte(q, 0) >= 0 || len(q) > maxQueryBytes {
			t.Fatalf("CheckQuery accepted %q", q)
		}
		for _, tail := range []string{"\n; ATTACH DATABASE 'x' AS y", "\n;;"} {
			if len(q)+len(tail) <= maxQueryBytes && CheckQuery(q+tail) == nil {
				t.Fatalf("CheckQuery accepted %q followed by %q", q, tail)
			}
		}
	})
}
