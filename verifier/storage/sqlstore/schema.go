package sqlstore

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// LatestMigration is the newest schema version a backend's migrations make:
// the number the newest file in dir of fsys starts with ("00020_x.sql").
func LatestMigration(fsys fs.FS, dir string) (int64, error) {
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return 0, err
	}
	var latest int64
	for _, e := range ents {
		n, _, _ := strings.Cut(e.Name(), "_")
		v, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("migration %s: its name does not start with a version", e.Name())
		}
		latest = max(latest, v)
	}
	return latest, nil
}

// NewerSchema refuses a database a newer verifier has migrated: it has
// tables and columns this one does not know of, and would write around
// them.
func NewerSchema(version, latest int64) error {
	return fmt.Errorf("the database's schema is version %d, newer than this verifier's %d: a newer clearance-verifier has used it; run that version (or one newer), or restore a backup this one made", version, latest)
}
