package postgres

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/clearance/clearance/verifier/storage/internal/sqlrow"

	"github.com/jackc/pgx/v5"
)

// Dump returns every row of every application table in the current schema
// as text, tables by name and rows by primary key, so two dumps are equal
// exactly when the stored data is. Tests use it to show that a rejected
// request changed nothing. goose's version table is left out.
func (s *Store) Dump(ctx context.Context) (string, error) {
	var b strings.Builder
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		tables, err := dumpTables(ctx, tx)
		if err != nil {
			return err
		}
		for _, t := range tables {
			if err := dumpTable(ctx, tx, t, &b); err != nil {
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

func dumpTables(ctx context.Context, tx pgx.Tx) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT tablename FROM pg_tables
		WHERE schemaname = current_schema() AND tablename <> 'goose_db_version'
		ORDER BY tablename COLLATE "C"`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func dumpTable(ctx context.Context, tx pgx.Tx, table string, b *strings.Builder) error {
	// Columns in declaration order, and the primary key columns in key order.
	rows, err := tx.Query(ctx, `SELECT a.attname,
			coalesce(array_position(i.indkey::int2[], a.attnum), 0)
		FROM pg_attribute a
		LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
		WHERE a.attrelid = (quote_ident(current_schema()) || '.' || quote_ident($1))::regclass
			AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, table)
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

	rows, err = tx.Query(ctx, `SELECT `+strings.Join(cols, ", ")+` FROM `+sqlrow.QuoteIdent(table)+
		` ORDER BY `+strings.Join(order, ", "))
	if err != nil {
		return err
	}
	defer rows.Close()
	fmt.Fprintf(b, "table %s\n", table)
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
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
	case int32:
		return strconv.FormatInt(int64(v), 10)
	case bool:
		// As SQLite stores it, so the two backends' dumps read alike.
		if v {
			return "1"
		}
		return "0"
	case string:
		return strconv.Quote(v)
	case []byte:
		return "x'" + hex.EncodeToString(v) + "'"
	default:
		return fmt.Sprintf("%v", v)
	}
}
