package storagetest

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlstore"
)

// snapshotter is an SQL backend: one built on sqlstore.
type snapshotter interface {
	Snapshot(ctx context.Context, fn func(tx *sql.Tx, c sqlstore.Catalog) error) error
}

// Dump returns every row of every application table of s as text, tables
// by name and rows by primary key, so two dumps are equal exactly when the
// stored data is: tests use it to show that a refused call changed
// nothing. s must be an SQL backend; the migrations' bookkeeping and the
// engine's own tables are left out.
func Dump(ctx context.Context, s storage.Store) (string, error) {
	sn, ok := s.(snapshotter)
	if !ok {
		return "", fmt.Errorf("dumping %T: not an SQL store", s)
	}
	var b strings.Builder
	// One snapshot: consistent across tables.
	err := sn.Snapshot(ctx, func(tx *sql.Tx, c sqlstore.Catalog) error {
		rows, err := tx.QueryContext(ctx, c.Tables)
		if err != nil {
			return err
		}
		var tables []string
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				rows.Close()
				return err
			}
			tables = append(tables, name)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, t := range tables {
			if err := dumpTable(ctx, tx, c.Columns, t, &b); err != nil {
				return fmt.Errorf("table %s: %w", t, err)
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("dumping database: %w", err)
	}
	return b.String(), nil
}

func dumpTable(ctx context.Context, tx *sql.Tx, columns, table string, b *strings.Builder) error {
	// Columns in declaration order, and the primary key columns in key order.
	rows, err := tx.QueryContext(ctx, columns, table)
	if err != nil {
		return err
	}
	var (
		names, cols []string
		pk          = map[int]string{}
	)
	for rows.Next() {
		var (
			name string
			n    int
		)
		if err := rows.Scan(&name, &n); err != nil {
			rows.Close()
			return err
		}
		names = append(names, name)
		cols = append(cols, quoteIdent(name))
		if n > 0 {
			pk[n] = quoteIdent(name)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	order := make([]string, 0, len(pk))
	for i := 1; i <= len(pk); i++ {
		order = append(order, pk[i])
	}
	if len(order) == 0 {
		// Every table here has a primary key; this keeps a future one
		// without one deterministic too.
		order = cols
	}

	rows, err = tx.QueryContext(ctx, `SELECT `+strings.Join(cols, ", ")+` FROM `+quoteIdent(table)+
		` ORDER BY `+strings.Join(order, ", "))
	if err != nil {
		return err
	}
	defer rows.Close()
	fmt.Fprintf(b, "table %s\n", table)
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		b.WriteString(" ")
		for i, v := range vals {
			fmt.Fprintf(b, " %s=%s", names[i], dumpValue(v))
		}
		b.WriteString("\n")
	}
	return rows.Err()
}

func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func dumpValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		// As SQLite stores it, so the backends' dumps read alike.
		if v {
			return "1"
		}
		return "0"
	case string:
		return strconv.Quote(v)
	case []byte:
		return "x'" + hex.EncodeToString(v) + "'"
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	default:
		return fmt.Sprintf("%v", v)
	}
}

var dumpTests = []test{
	{"EveryTableAndRow", testDump},
}

// testDump checks Dump itself: every table and row is in it, in a stable
// order, and what a refused call leaves is the same dump.
func testDump(t *testing.T, s storage.Store) {
	ctx := t.Context()
	dump := func() string {
		t.Helper()
		d, err := Dump(ctx, s)
		must(t, err)
		return d
	}
	if _, ok := s.(snapshotter); !ok {
		t.Skip("not an SQL store")
	}
	empty := dump()
	for _, table := range []string{"audit", "certs", "decisions", "devices", "enroll_secrets", "nonces",
		"pending_sign_ins", "reports", "saml_request_ids", "scep_challenges"} {
		if !strings.Contains(empty, "table "+table+"\n") {
			t.Errorf("empty dump lacks table %s:\n%s", table, empty)
		}
	}
	for _, internal := range []string{"goose", "sqlite_"} {
		if strings.Contains(empty, internal) {
			t.Errorf("dump includes %s:\n%s", internal, empty)
		}
	}

	createSecret(t, s, "b")
	createSecret(t, s, "a")
	d := enroll(t, s, newEnrollment(1, "a"))
	must(t, s.CreateNonce(ctx, d.ID, []byte{0x00, 0xff}, at(hour)))
	one := dump()
	if one == empty {
		t.Fatal("dump did not change after writes")
	}
	if again := dump(); again != one {
		t.Errorf("two dumps of the same data differ:\n%s\n---\n%s", one, again)
	}
	// Rows are in primary key order, whatever the insertion order.
	if i, j := strings.Index(one, `id="a"`), strings.Index(one, `id="b"`); i < 0 || j < 0 || i > j {
		t.Errorf("secrets not ordered by ID:\n%s", one)
	}

	// Every kind of record shows, each write changes the dump.
	challenge := challengeHash("dump")
	bc := newBrowserCert(d, 1, t0)
	r := newReport(d.ID, 1, t0)
	r.Payload = []byte{0x00, 0xff}
	p := newPendingSignIn("token", t0)
	for _, write := range []func() error{
		func() error {
			return s.CreateSCEPChallenge(ctx, challenge, at(hour), storage.AuditEvent{At: t0})
		},
		func() error {
			return s.RecordBrowserCert(ctx, bc, challenge, storage.IssueLimit{}, t0, scepAudit(t0, bc.Serial))
		},
		func() error { return s.UseRequestID(ctx, "issuer", "id-1", t0) },
		func() error { return s.CreatePendingSignIn(ctx, p) },
		func() error {
			_, err := s.AppendDecision(ctx, storage.DecisionRecord{At: t0, Username: "alice", Reason: "allowed", Allow: true})
			return err
		},
		func() error { return s.SaveReport(ctx, r, nil, 10) },
	} {
		before := dump()
		must(t, write())
		if dump() == before {
			t.Errorf("dump did not change after a write:\n%s", before)
		}
	}
	one = dump()
	for _, want := range []string{"nonce=x'00ff'", "payload=x'00ff'", `id="id-1"`, `username="alice"`,
		"allow=1", `results="[]"`, "relay_state=x'" + hex.EncodeToString([]byte(p.RelayState)) + "'",
		`sha1="` + bc.SHA1 + `"`, `kind="browser"`, fmt.Sprintf("used_at=%d", t0.UnixNano())} {
		if !strings.Contains(one, want) {
			t.Errorf("dump lacks %s:\n%s", want, one)
		}
	}

	// Refused calls leave the dump as it was; an accepted one changes it.
	for name, call := range map[string]func() error{
		"SaveReport again":          func() error { return s.SaveReport(ctx, r, nil, 10) },
		"UseRequestID again":        func() error { return s.UseRequestID(ctx, "issuer", "id-1", at(hour)) },
		"CreatePendingSignIn again": func() error { return s.CreatePendingSignIn(ctx, p) },
		"RecordBrowserCert with the used challenge": func() error {
			return s.RecordBrowserCert(ctx, newBrowserCert(d, 2, t0), challenge, storage.IssueLimit{}, t0, storage.AuditEvent{At: t0})
		},
		"EnrollDevice with an unknown secret": func() error {
			_, _, err := s.EnrollDevice(ctx, newEnrollment(2, "missing"))
			return err
		},
	} {
		if err := call(); err == nil {
			t.Fatalf("%s succeeded", name)
		}
		if after := dump(); after != one {
			t.Errorf("%s changed the database:\n%s\n---\n%s", name, one, after)
		}
	}
	must(t, s.TouchDevice(ctx, d.ID, at(minute)))
	if dump() == one {
		t.Error("dump did not change after TouchDevice")
	}
	if _, err := Dump(ctx, nil); err == nil {
		t.Error("Dump of a store that is not SQL succeeded")
	}
}
