package datadir

import (
	"fmt"
	"io/fs"
	"os"

	"github.com/clearance/clearance/pkg/owner"
)

func checkOwner(dir string, st fs.FileInfo) error {
	if uid, foreign := owner.Foreign(st); foreign {
		return fmt.Errorf("data dir %s is owned by uid %d, not by this user (uid %d) or root: run this as the user that owns it", dir, uid, os.Geteuid())
	}
	if owner.Bits(st, 0o022) != 0 {
		return fmt.Errorf("data dir %s is writable by group or others (mode %04o), so its record and token cannot be trusted; run: chmod go-w %s", dir, st.Mode().Perm(), dir)
	}
	return nil
}
