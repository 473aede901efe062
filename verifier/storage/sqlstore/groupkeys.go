package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/clearance/clearance/verifier/storage"
)

// RekeyGroups brings every stored group's display_name_key to
// storage.GroupNameKey of its name. Keys stored before that key kept
// look-alike signs apart (a Kelvin sign, an Angstrom sign, a capital I
// with a dot) were Go's strings.ToLower, which SQL cannot compute: a
// backend runs this after its migrations, each time it opens, and it
// writes only when some key is not its name's. No two groups can come to
// share a key: the new keys fold less than the old ones, so they only
// tell apart names the old ones merged. rebind is the dialect's (nil:
// $n as written).
func RekeyGroups(ctx context.Context, db *sql.DB, rebind func(string) string) error {
	if rebind == nil {
		rebind = func(q string) string { return q }
	}
	rows, err := db.QueryContext(ctx, `SELECT id, display_name, display_name_key FROM directory_groups ORDER BY id`)
	if err != nil {
		return fmt.Errorf("reading group keys: %w", err)
	}
	type rekey struct{ id, key string }
	var stale []rekey
	for rows.Next() {
		var id, name, key string
		if err := rows.Scan(&id, &name, &key); err != nil {
			rows.Close()
			return fmt.Errorf("reading group keys: %w", err)
		}
		if k := storage.GroupNameKey(name); k != key {
			stale = append(stale, rekey{id, k})
		}
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("reading group keys: %w", err)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading group keys: %w", err)
	}
	if len(stale) == 0 {
		return nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("rekeying groups: %w", err)
	}
	defer tx.Rollback()
	// UNIQUE is checked row by row: each changing key first becomes one no
	// name has (no key holds a capital G, which GroupNameKey lowers),
	// then its own.
	for _, r := range stale {
		if _, err := tx.ExecContext(ctx, rebind(`UPDATE directory_groups SET display_name_key = $1 WHERE id = $2`), "G:"+r.id, r.id); err != nil {
			return fmt.Errorf("rekeying group %s: %w", r.id, err)
		}
	}
	for _, r := range stale {
		if _, err := tx.ExecContext(ctx, rebind(`UPDATE directory_groups SET display_name_key = $1 WHERE id = $2`), r.key, r.id); err != nil {
			return fmt.Errorf("rekeying group %s: %w", r.id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("rekeying groups: %w", err)
	}
	return nil
}
