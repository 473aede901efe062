package osquerysim

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"modernc.org/sqlite"
)

// sqliteDriver is private to this package so the collations and functions
// it adds reach only the simulator's databases, not every "sqlite" user in
// the process.
var sqliteDriver = func() *sqlite.Driver {
	d := &sqlite.Driver{}
	for name, rules := range map[string]versionRules{
		"version":      rulesGeneric,
		"version_arch": rulesARCH,
		"version_dpkg": rulesDPKG,
		"version_rhel": rulesRHEL,
	} {
		d.MustRegisterCollationUtf8(name, func(l, r string) int {
			return sign(compareVersions(l, r, rules))
		})
	}
	d.MustRegisterDeterministicScalarFunction("version_compare", -1,
		func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			return versionCompareFunc(args)
		})
	return d
}()

// memConnector opens private in-memory databases with sqliteDriver.
type memConnector struct{}

func (memConnector) Connect(context.Context) (driver.Conn, error) {
	return sqliteDriver.Open(":memory:")
}

func (memConnector) Driver() driver.Driver { return sqliteDriver }

// hostDB is one fixture loaded into an in-memory SQLite database. It is
// immutable once built: the simulator swaps whole hostDBs to change state.
type hostDB struct {
	db *sql.DB

	// mu serializes statements on conn, like osqueryd's single primary
	// database, and guards deniedWrite.
	mu   sync.Mutex
	conn *sql.Conn
	// deniedWrite names the table of the last write the authorizer refused,
	// so the error can say what osqueryd says.
	deniedWrite string
}

// openHostDB builds the tables and rows of f (validated by the caller), then
// locks the database down to reads.
func openHostDB(ctx context.Context, f Fixture, defaults map[string][]Row) (*hostDB, error) {
	db := sql.OpenDB(memConnector{})
	// Every connection is a separate in-memory database; one pinned
	// connection is the whole database.
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("opening in-memory database: %w", err)
	}
	h := &hostDB{db: db, conn: conn}
	if err := h.load(ctx, f, defaults); err != nil {
		h.close()
		return nil, err
	}
	err = conn.Raw(func(dc any) error {
		reg, ok := dc.(sqlite.AuthorizerRegisterer)
		if !ok {
			return errors.New("sqlite driver has no authorizer")
		}
		return reg.RegisterAuthorizer(h.authorize)
	})
	if err != nil {
		h.close()
		return nil, fmt.Errorf("installing read-only authorizer: %w", err)
	}
	return h, nil
}

func (h *hostDB) load(ctx context.Context, f Fixture, defaults map[string][]Row) error {
	for _, t := range tables {
		if _, err := h.conn.ExecContext(ctx, t.ddl()); err != nil {
			return fmt.Errorf("creating table %s: %w", t.name, err)
		}
		rows, ok := f.Tables[t.name]
		if !ok {
			rows = defaults[t.name]
		}
		if len(rows) == 0 {
			continue
		}
		cols := make([]string, len(t.columns))
		marks := make([]string, len(t.columns))
		for i, c := range t.columns {
			cols[i] = quoteIdent(c.name)
			marks[i] = "?"
		}
		insert := "INSERT INTO " + quoteIdent(t.name) + " (" + strings.Join(cols, ", ") +
			") VALUES (" + strings.Join(marks, ", ") + ")"
		stmt, err := h.conn.PrepareContext(ctx, insert)
		if err != nil {
			return fmt.Errorf("preparing rows of %s: %w", t.name, err)
		}
		for i, row := range rows {
			args := make([]any, len(t.columns))
			for j, c := range t.columns {
				s, present := row[c.name]
				if !present {
					continue // NULL, as osquery yields for a column a table left unset
				}
				if args[j], err = sqlValue(c.typ, s); err != nil {
					stmt.Close()
					return fmt.Errorf("table %s row %d column %s: %w", t.name, i, c.name, err)
				}
			}
			if _, err := stmt.ExecContext(ctx, args...); err != nil {
				stmt.Close()
				return fmt.Errorf("inserting row %d of %s: %w", i, t.name, err)
			}
		}
		stmt.Close()
	}
	return nil
}

func (h *hostDB) close() {
	h.conn.Close()
	h.db.Close()
}

// allowedPragmas are the read-only pragmas osqueryd allows. It also allows
// journal_mode and case_sensitive_like; those change the connection for
// every later query, so the simulator leaves them out.
var allowedPragmas = map[string]bool{
	"table_info":     true,
	"table_xinfo":    true,
	"function_list":  true,
	"collation_list": true,
}

// authorize admits what a read needs. osqueryd's tables are views of the
// host: its virtual tables refuse writes with "table X may not be modified",
// and its authorizer refuses ATTACH and most pragmas with "not authorized".
// osqueryd lets users create scratch tables and views; the simulator does
// not, so every query sees exactly the fixture.
func (h *hostDB) authorize(action sqlite.AuthorizerActionCode, arg1, _, _, _ string) sqlite.AuthorizerReturnCode {
	switch action {
	case sqlite.AuthRead, sqlite.AuthSelect, sqlite.AuthFunction, sqlite.AuthRecursive:
		return sqlite.AuthorizerOK
	case sqlite.AuthPragma:
		if allowedPragmas[strings.ToLower(arg1)] {
			return sqlite.AuthorizerOK
		}
	case sqlite.AuthInsert, sqlite.AuthUpdate, sqlite.AuthDelete:
		// CREATE and DROP also write sqlite_master; those keep SQLite's
		// "not authorized", as under osqueryd's authorizer.
		if _, host := tablesByName[arg1]; host {
			h.deniedWrite = arg1
		}
	}
	return sqlite.AuthorizerDeny
}

// query runs every statement in sql and returns the rows of all of them,
// as osqueryd does, or the first error.
func (h *hostDB) query(ctx context.Context, sqlText string) ([]map[string]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := []map[string]string{}
	for _, stmt := range splitStatements(sqlText) {
		h.deniedWrite = ""
		rows, err := h.conn.QueryContext(ctx, stmt)
		if err != nil {
			return nil, h.sqlError(err)
		}
		cols, err := rows.Columns()
		if err != nil {
			rows.Close()
			return nil, h.sqlError(err)
		}
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return nil, h.sqlError(err)
			}
			row := make(map[string]string, len(cols))
			for i, c := range cols {
				row[c] = resultString(vals[i])
			}
			out = append(out, row)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, h.sqlError(err)
		}
	}
	return out, nil
}

// columnInfo is one result column and its osquery type name.
type columnInfo struct {
	name string
	typ  string
}

// columns reports the result columns of the first statement in sqlText, as
// osqueryd's getQueryColumns does: the declared type of a table column, and
// UNKNOWN for an expression. (osqueryd then guesses expression types from
// the query plan; the simulator does not.)
func (h *hostDB) columns(ctx context.Context, sqlText string) ([]columnInfo, error) {
	stmts := splitStatements(sqlText)
	if len(stmts) == 0 {
		// What sqlite3_errmsg says when there was nothing to prepare.
		return nil, errors.New("not an error")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.deniedWrite = ""
	rows, err := h.conn.QueryContext(ctx, stmts[0])
	if err != nil {
		return nil, h.sqlError(err)
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, h.sqlError(err)
	}
	out := make([]columnInfo, len(types))
	for i, ct := range types {
		out[i] = columnInfo{name: ct.Name(), typ: osqueryTypeName(ct.DatabaseTypeName())}
	}
	return out, nil
}

// osqueryTypeName maps a declared type to the names osquery knows, as its
// columnTypeName does: anything else is UNKNOWN.
func osqueryTypeName(decl string) string {
	switch t := colType(strings.ToUpper(decl)); t {
	case typeText, typeInteger, typeBigint, typeUBigint, typeDouble, "BLOB":
		return string(t)
	}
	return string(typeUnknown)
}

// modernc.org/sqlite renders errors as "<errstr>: <errmsg> (<code>)"; the
// errstr texts contain no ": ", so the errmsg is everything after the first.
var errCodeSuffix = regexp.MustCompile(` \(\d+\)( \(SQLITE_BUSY\))?$`)

const sqliteAuth = 23 // SQLITE_AUTH

// sqlError turns a driver error into the text osqueryd reports, which is
// sqlite3_errmsg: "no such column: foo", "near \"SELEC\": syntax error".
func (h *hostDB) sqlError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		// The driver stops SQLite with sqlite3_interrupt; say what SQLite says.
		return errors.New("interrupted")
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	if se.Code()&0xff == sqliteAuth && h.deniedWrite != "" {
		return fmt.Errorf("table %s may not be modified", h.deniedWrite)
	}
	msg := errCodeSuffix.ReplaceAllString(se.Error(), "")
	if _, after, ok := strings.Cut(msg, ": "); ok {
		msg = after
	}
	return errors.New(msg)
}

// splitStatements cuts sqlText into statements at semicolons outside
// quotes, identifiers and comments, dropping empty ones, so each can be run
// in turn as osqueryd's query loop does. Triggers (whose bodies hold
// semicolons) cannot be created here, so no statement spans a semicolon.
func splitStatements(sqlText string) []string {
	var out []string
	start := 0
	push := func(end int) {
		if s := strings.TrimSpace(sqlText[start:end]); s != "" && !onlyComments(s) {
			out = append(out, s)
		}
		start = end + 1
	}
	for i := 0; i < len(sqlText); i++ {
		switch c := sqlText[i]; c {
		case '\'', '"', '`':
			i = skipQuoted(sqlText, i, c)
		case '[':
			if j := strings.IndexByte(sqlText[i:], ']'); j >= 0 {
				i += j
			} else {
				i = len(sqlText)
			}
		case '-':
			if strings.HasPrefix(sqlText[i:], "--") {
				if j := strings.IndexByte(sqlText[i:], '\n'); j >= 0 {
					i += j
				} else {
					i = len(sqlText)
				}
			}
		case '/':
			if strings.HasPrefix(sqlText[i:], "/*") {
				if j := strings.Index(sqlText[i+2:], "*/"); j >= 0 {
					i += j + 3
				} else {
					i = len(sqlText)
				}
			}
		case ';':
			push(i)
		}
	}
	if start < len(sqlText) {
		push(len(sqlText))
	}
	return out
}

// skipQuoted returns the index of the quote closing the one at i (a doubled
// quote is an escaped one), or len(s) if it is unterminated.
func skipQuoted(s string, i int, q byte) int {
	for j := i + 1; j < len(s); j++ {
		if s[j] == q {
			if j+1 < len(s) && s[j+1] == q {
				j++
				continue
			}
			return j
		}
	}
	return len(s)
}

// onlyComments reports whether s holds nothing but comments and space.
func onlyComments(s string) bool {
	for s != "" {
		s = strings.TrimSpace(s)
		switch {
		case s == "":
			return true
		case strings.HasPrefix(s, "--"):
			j := strings.IndexByte(s, '\n')
			if j < 0 {
				return true
			}
			s = s[j+1:]
		case strings.HasPrefix(s, "/*"):
			j := strings.Index(s[2:], "*/")
			if j < 0 {
				return true
			}
			s = s[j+4:]
		default:
			return false
		}
	}
	return true
}
