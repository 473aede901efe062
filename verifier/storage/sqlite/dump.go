package sqlite

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/clearance/clearance/verifier/storage/internal/sqlrow"
)

// Dump returns every row of every application table as text, tables by
// name and rows by primary key, so two dumps are equal exactly when the
// stored data is. Tests use it to show that a rejected request changed
// nothing. goose's version table and SQLite's internal tables are left out.
func (s *Store) Dump(ctx context.Context) (string, error) {
	// One read transaction: a consistent snapshot across tables.
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return "", fmt.Errorf("dumping database: %w", err)
	}
	defer tx.Rollback()

	tables, err := dumpTables(ctx, tx)
	if err != nil {
		return "", fmt.Errorf("dumping database: %w", err)
	}
	var b strings.Builder
	for _, t := range tables {
		if err := dumpTable(ctx, tx, t, &b); err != nil {
			return "", fmt.Errorf("dumping table %s: %w", t, err)
		}
	}
	return b.String(), nil
}

func dumpTables(ctx context.Context, tx *sql.Tx) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM sqlite_schema
		WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name <> 'goose_db_version'
		ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		tables = append(tables, name)
	}
	return tables, rows.Err()
}

func dumpTable(ctx context.Context, tx *sql.Tx, table string, b *strings.Builder) error {
	// Columns in declaration order, and the primary key columns in key order.
	rows, err := tx.QueryContext(ctx, `SELECT name, pk FROM pragma_table_info(?) ORDER BY cid`, table)
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
		cols = append(cols, sqlrow.QuoteIdent(name))
		if n > 0 {
			pk[n] = sqlrow.QuoteIdent(name)
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

	rows, err = tx.QueryContext(ctx, `SELECT `+strings.Join(cols, ", ")+` FROM `+sqlrow.QuoteIdent(table)+
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

func dumpValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case string:
		return strconv.Quote(v)
	case []byte:
		return "x'" + hex.EncodeToString(v) + "'"
	default:
		return fmt.Sprintf("%v", v)
	}
}
