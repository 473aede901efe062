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
// writes only when some key is not its name's. Of groups the old keys
// kept apart and the new ones merge (names that differ only in a Greek
// final sigma), the first by id takes the new key and the others keep
// theirs: none is lost, and the name finds the first. rebind is the dialect's (nil: $n as
// written).
func RekeyGroups(ctx context.Context, db *sql.DB, rebind func(string) string) error {
	if rebind == nil {
		rebind = func(q string) string { return q }
	}
	rows, err := db.QueryContext(ctx, `SELECT id, display_name, display_name_key FROM directory_groups ORDER BY id`)
	if err != nil {
		return fmt.Errorf("reading group keys: %w", err)
	}
	type group struct{ id, key, want string }
	var groups []group
	for rows.Next() {
		var g group
		var name string
		if err := rows.Scan(&g.id, &name, &g.key); err != nil {
			rows.Close()
			return fmt.Errorf("reading group keys: %w", err)
		}
		g.want = storage.GroupNameKey(name)
		groups = append(groups, g)
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("reading group keys: %w", err)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading group keys: %w", err)
	}
	// Every group whose key is not its name's moves to it, but for a
	// move that would make two keys one: then the later group by id
	// keeps its key. Each round keeps at least one more group where it
	// is, so the rounds end.
	moves := make([]bool, len(groups))
	for i, g := range groups {
		moves[i] = g.key != g.want
	}
	for {
		seen := map[string]bool{}
		clash := -1
		for i, g := range groups {
			k := g.key
			if moves[i] {
				k = g.want
			}
			if seen[k] && clash < 0 {
				clash = i
			}
			seen[k] = true
		}
		if clash < 0 {
			break
		}
		// The clash is with an earlier group (by id); one of the two moved.
		if moves[clash] {
			moves[clash] = false
			continue
		}
		for i := range clash {
			if moves[i] && groups[i].want == groups[clash].key {
				moves[i] = false
				break
			}
		}
	}
	type rekey struct{ id, key string }
	var stale []rekey
	for i, g := range groups {
		if moves[i] {
			stale = append(stale, rekey{g.id, g.want})
		}
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
