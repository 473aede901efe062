// Package datadir owns what a verifier data dir says about the server that
// serves from it: the files that make a directory one, and the record serve
// keeps there of the database it uses and where its gRPC listener is. The
// offline commands (secret, scep challenge) read the record so they write
// where the server reads, and devices and decisions find the server by it.
//
// The record never holds a password: a PostgreSQL URL is kept without one,
// and a command gets the password from the environment (CLEARANCE_DATABASE,
// PGPASSWORD), the --config file or a PostgreSQL password file (PGPASSFILE,
// ~/.pgpass).
package datadir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/clearance/clearance/pkg/atomicfile"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/storage"
)

// RecordFile is the record's file name in the data dir.
const RecordFile = "serve.json"

// SQLiteFile is the embedded database's file name in the data dir.
const SQLiteFile = "clearance.db"

// SQLite is Record.Database for the data dir's own SQLite database.
const SQLite = "sqlite"

// maxRecordSize bounds what Read accepts.
const maxRecordSize = 16 << 10

// Record is what serve records in the data dir.
type Record struct {
	// Database is SQLite, or the PostgreSQL URL serve uses without its
	// password.
	Database string `json:"database"`
	// GRPCAddress is where serve's gRPC listener (agents, admin API) is:
	// the bound address once it listens.
	GRPCAddress string `json:"grpc_address,omitempty"`
}

// ErrNoRecord means the data dir has no record: serve has not started with
// it since recording began.
var ErrNoRecord = errors.New("no " + RecordFile)

// Write records r in dir. The database URL is stored without a password
// whatever r holds.
func Write(dir string, r Record) error {
	r.Database = Redact(r.Database)
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, RecordFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("recording the database in the data dir: %w", err)
	}
	return nil
}

// Read returns dir's record: ErrNoRecord when there is none.
func Read(dir string) (Record, error) {
	path := filepath.Join(dir, RecordFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, ErrNoRecord
	}
	if err != nil {
		return Record{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecordSize+1))
	if err != nil {
		return Record{}, fmt.Errorf("reading %s: %w", path, err)
	}
	r, err := Parse(data)
	if err != nil {
		return Record{}, fmt.Errorf("%s: %w (serve rewrites it when it starts)", path, err)
	}
	return r, nil
}

// Parse checks a record's bytes: JSON with only the known fields, a
// database that is SQLite or a PostgreSQL URL without a password, and a
// HOST:PORT address.
func Parse(data []byte) (Record, error) {
	if len(data) > maxRecordSize {
		return Record{}, fmt.Errorf("larger than %d bytes", maxRecordSize)
	}
	var r Record
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Record{}, fmt.Errorf("not a record: %w", err)
	}
	if dec.More() {
		return Record{}, errors.New("not a record: more than one JSON value")
	}
	switch {
	case r.Database == SQLite:
	case isPostgres(r.Database):
		if err := checkQuery(r.Database); err != nil {
			return Record{}, err
		}
		if Redact(r.Database) != r.Database {
			return Record{}, errors.New("the database URL holds a password, which is never recorded")
		}
	default:
		return Record{}, fmt.Errorf("database %q is neither %q nor a postgres:// URL", clip(r.Database), SQLite)
	}
	if r.GRPCAddress != "" {
		if _, _, err := net.SplitHostPort(r.GRPCAddress); err != nil {
			return Record{}, fmt.Errorf("grpc_address %q is not HOST:PORT", clip(r.GRPCAddress))
		}
	}
	return r, nil
}

// checkQuery refuses a database URL whose query does not parse, which
// PostgreSQL drivers refuse too.
func checkQuery(database string) error {
	u, err := url.Parse(database)
	if err != nil {
		return errors.New("the database URL does not parse")
	}
	if _, err := url.ParseQuery(u.RawQuery); err != nil {
		return errors.New("the database URL's query does not parse (parameters are separated by &, not ;)")
	}
	return nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func isPostgres(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// Redact returns database as it may be recorded or shown: "" becomes
// SQLite, and a URL loses its password (in the user info, and every
// parameter whose name or value mentions "password", sslpassword and
// options=-c password=… included, and any without a name) and its
// fragment. A query that does not parse is dropped whole: url.Query skips
// a pair it cannot parse ("sslmode=require;password=…") yet RawQuery keeps
// it. A value that is not a URL is replaced whole.
func Redact(database string) string {
	if database == "" || database == SQLite {
		return SQLite
	}
	u, err := url.Parse(database)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	if storage.PasswordPastHost(database) {
		return "postgres://(a URL not shown: " + pastHostAdvice + ")"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	u.Fragment, u.RawFragment = "", ""
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		u.RawQuery, u.ForceQuery = "", false
		return u.String()
	}
	redacted := false
	for k, vs := range q {
		if k == "" || mentionsPassword(k) || slices.ContainsFunc(vs, mentionsPassword) {
			delete(q, k)
			redacted = true
		}
	}
	if redacted {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// pastHostAdvice is what to do about a URL PasswordPastHost reports.
const pastHostAdvice = "it has more than one '@', or one after its host: percent-encode '/', '?', '#' and '@' in its password and in parameters' values (%2F, %3F, %23, %40)"

func mentionsPassword(s string) bool {
	return strings.Contains(strings.ToLower(s), "password")
}

// Label names a database for messages: "SQLite in the data dir" or
// "PostgreSQL HOST:PORT/DB".
func Label(database string) string {
	if database == "" || database == SQLite {
		return "SQLite in the data dir"
	}
	if storage.PasswordPastHost(database) {
		return "PostgreSQL (a URL not shown: " + pastHostAdvice + ")"
	}
	host, db := where(database)
	return "PostgreSQL " + host + "/" + db
}

// where returns a PostgreSQL URL's host:port (5432 when not given) and
// database name.
func where(database string) (host, db string) {
	u, err := url.Parse(database)
	if err != nil {
		return "?", "?"
	}
	host = u.Host
	if u.Port() == "" && host != "" {
		host = net.JoinHostPort(u.Hostname(), "5432")
	}
	return host, strings.TrimPrefix(u.Path, "/")
}

// Same reports whether two database settings name the same database: both
// SQLite, or PostgreSQL at the same host, port and database name, whatever
// the user, password or parameters.
func Same(a, b string) bool {
	sa, sb := a == "" || a == SQLite, b == "" || b == SQLite
	if sa || sb {
		return sa == sb
	}
	ha, da := where(a)
	hb, db := where(b)
	return strings.EqualFold(ha, hb) && da == db
}

// marks are the files serve's first start creates that every data dir has,
// whichever database it uses.
var marks = []string{ca.RootCertFile, admin.TokenFile}

// Check reports whether dir is a verifier data dir, naming what is missing,
// and one the commands may trust: owned by the user running them (or root)
// and not writable by group or others.
func Check(dir string) error {
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("data dir %s does not exist: start 'clearance-verifier serve --data-dir %s' once to create it", dir, dir)
	}
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("data dir %s is not a directory", dir)
	}
	// The record says where the admin token and the database password go,
	// and the token file is sent as it is: a data dir another user can
	// write could send them anywhere.
	if err := checkOwner(dir, st); err != nil {
		return err
	}
	var missing []string
	for _, m := range marks {
		if _, err := os.Stat(filepath.Join(dir, m)); err != nil {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s is not a clearance-verifier data dir: it has no %s (serve creates them on its first start with an empty data dir)", dir, strings.Join(missing, " or "))
	}
	return nil
}

// Database returns the database a command acting on dir's verifier must
// open, given the --database setting the command itself was given (flag,
// environment or config file; "" if none): "" for the data dir's SQLite, or
// a PostgreSQL URL. given may only name the database the record names, and
// is used then because it may carry the password the record lacks.
func Database(dir, given string) (string, error) {
	if err := Check(dir); err != nil {
		return "", err
	}
	rec, err := Read(dir)
	if errors.Is(err, ErrNoRecord) {
		// A data dir serve last ran with before it kept a record: SQLite
		// when the database file is there, else only an explicit --database.
		if given != "" {
			return given, nil
		}
		if _, err := os.Stat(filepath.Join(dir, SQLiteFile)); err == nil {
			return "", nil
		}
		return "", fmt.Errorf("%s has no %s (which serve writes to say which database it uses) and no %s: start serve with this data dir once, or pass --database", dir, RecordFile, SQLiteFile)
	}
	if err != nil {
		return "", err
	}
	if given != "" && !Same(given, rec.Database) {
		return "", fmt.Errorf("the verifier serving %s uses %s (%s), but this command was given --database %s (flag, CLEARANCE_DATABASE or the config file): what it writes there would never be read; leave --database unset",
			dir, Label(rec.Database), RecordFile, Label(given))
	}
	if rec.Database == SQLite {
		return "", nil
	}
	if given != "" {
		return given, nil
	}
	return rec.Database, nil
}

// GRPCAddress is where to reach dir's verifier: the recorded address with
// an unspecified host (":8443", "0.0.0.0:8443") made localhost, or
// fallback when there is no record.
func GRPCAddress(dir, fallback string) string {
	rec, err := Read(dir)
	if err != nil || rec.GRPCAddress == "" {
		return fallback
	}
	host, port, _ := net.SplitHostPort(rec.GRPCAddress)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
