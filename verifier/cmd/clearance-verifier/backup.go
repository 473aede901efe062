package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/clearance/clearance/pkg/cli"
	"github.com/clearance/clearance/pkg/owner"
	"github.com/clearance/clearance/verifier/backup"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/datadir"
	"github.com/clearance/clearance/verifier/storage/sqlite"
)

// restoreHeadroom is the room a restore leaves on the target's file system
// beyond the database it writes: the WAL grows to about 16.5 MB, and the
// verifier must be able to start.
const restoreHeadroom = 64 << 20

// backupCmd writes a backup archive of a data dir while the server runs.
func (a *app) backupCmd() *cli.Command {
	return &cli.Command{
		Name:    "backup",
		Summary: "archive the data dir, with a snapshot of its database, while the server runs",
		Doc: "Writes one archive (tar; gzipped when --to ends in .tar.gz or .tgz) of what a restore needs: " +
			"the CA and its keys, the server, SCEP and SAML certificates and keys, the admin and metrics tokens, " +
			"serve.json, and a consistent snapshot of the SQLite database taken while the server runs. " +
			"The archive is created with mode 0600 and never overwrites a file, nor is written inside the data dir, " +
			"nor in a directory another user can change (group- or other-writable and not sticky like /tmp). " +
			"It holds the CA keys: keep it encrypted, where only those who may run the verifier can read it.\n\n" +
			"With PostgreSQL it archives the files and leaves the database to pg_dump.\n\n" +
			"  clearance-verifier backup --data-dir /var/lib/clearance \\\n    --to /var/backups/clearance-$(date +%F).tar.gz",
		Footer: config.SharedFooter,
		Flags: func(fs *cli.FlagSet) cli.Action {
			b := config.Bind(fs, databaseSettings...)
			fs.Group("Backup")
			to := fs.String("to", "", "the archive to write (`path`): .tar, .tar.gz or .tgz; it must not exist")
			return func(ctx context.Context, _ []string) error {
				if *to == "" {
					return cli.Usagef("--to is required: the archive to write, e.g. --to clearance.tar.gz")
				}
				if err := backup.CheckName(*to); err != nil {
					return cli.Usagef("--to %v", err)
				}
				cfg, err := a.resolveDataDir(b)
				if err != nil {
					return err
				}
				ctx, stop := interruptible(ctx)
				defer stop()
				return a.backup(ctx, cfg, *to)
			}
		},
	}
}

func (a *app) backup(ctx context.Context, cfg *config.Config, to string) (err error) {
	database, err := datadir.Database(cfg.DataDir, cfg.Database)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err == nil {
		dir, err = filepath.EvalSymlinks(dir)
	}
	if err != nil {
		return err
	}
	dest, err := filepath.Abs(to)
	if err != nil {
		return err
	}
	// The snapshot is written and read again by name in this directory:
	// another user who could rename entries in it could read it or swap it.
	parent, err := trustedParent("directory of the archive", filepath.Dir(dest))
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	if within(parent, dir) {
		return fmt.Errorf("%s is inside the data dir %s: keep the backup elsewhere, where a copy of the dir does not take it along", to, cfg.DataDir)
	}
	dest = filepath.Join(parent, filepath.Base(dest))
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("backup interrupted: %s was not written", dest)
		}
	}()

	// The snapshot goes in a directory of its own, beside the archive:
	// the room the archive needs is there, and no one else can read it.
	var snapshot string
	if database == "" {
		tmp, err := os.MkdirTemp(parent, ".clearance-backup-*")
		if err != nil {
			return fmt.Errorf("a directory for the database's snapshot: %w", err)
		}
		defer os.RemoveAll(tmp)
		snapshot = filepath.Join(tmp, datadir.SQLiteFile)
		f, err := os.OpenFile(snapshot, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		f.Close()
		if err := sqlite.Snapshot(ctx, filepath.Join(dir, datadir.SQLiteFile), snapshot); err != nil {
			return err
		}
	}

	out, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists: backup never overwrites a file; give a new name", to)
	}
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(dest)
		}
	}()
	w, err := backup.Write(ctxWriter{ctx, out}, dir, snapshot, backup.Compressed(dest), a.now())
	if err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	st, err := out.Stat()
	if err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}

	fmt.Fprintf(a.stdout, "wrote %s (%d bytes, mode %04o)\n", dest, st.Size(), st.Mode().Perm())
	fmt.Fprintf(a.stdout, "files: %s\n", strings.Join(w.Files, " "))
	if snapshot != "" {
		sum, err := sqlite.Inspect(ctx, snapshot)
		if err != nil {
			return fmt.Errorf("the database's snapshot: %w", err)
		}
		fmt.Fprintf(a.stdout, "database: a snapshot of SQLite in the data dir: %d devices, %d decisions\n", sum.Devices, sum.Decisions)
	} else {
		fmt.Fprintf(a.stdout, "database: not in the archive: %s is backed up with its own tools (pg_dump)\n", datadir.Label(database))
	}
	if len(w.Skipped) > 0 {
		fmt.Fprintf(a.stderr, "not archived (not files of a data dir): %s\n", strings.Join(w.Skipped, " "))
	}
	fmt.Fprintln(a.stderr, "The archive holds the CA keys and the admin token: keep it encrypted, where only those who may run the verifier can read it.")
	return nil
}

// interruptible is ctx, ended by SIGINT, SIGTERM or SIGHUP (a dropped SSH
// session), so that backup and restore stop and remove what they wrote
// rather than die with it half written. A second signal acts as usual.
func interruptible(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	context.AfterFunc(ctx, stop)
	return ctx, stop
}

// ctxWriter writes to w while ctx lasts.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// within reports whether path is dir or inside it; both are resolved.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// restoreCmd makes a new data dir from a backup archive.
func (a *app) restoreCmd() *cli.Command {
	return &cli.Command{
		Name:    "restore",
		Summary: "make a new data dir from a backup archive",
		Doc: "Restores the archive 'backup' wrote into a data dir that does not exist (it is created, mode 0700) " +
			"or is empty, each file with the mode the verifier requires, and checks the database. It takes only " +
			"the data dir's files from the archive: an entry with another name, a path, a link, a device, or a " +
			"size no such file has is refused, and so is a database larger than the target's free space less 64 MiB. " +
			"It extracts into a directory of its own (.clearance-restore-…, beside the data dir, or in it when it exists) " +
			"and puts the files in place only once the database checks out: a restore that fails or is interrupted " +
			"(SIGINT, SIGTERM, SIGHUP) leaves nothing behind, and one killed outright leaves only that directory. " +
			"Then start the verifier on the dir with the same settings.\n\n" +
			"  clearance-verifier restore --from clearance-2024-05-01.tar.gz \\\n    --data-dir /var/lib/clearance-restored",
		Footer: config.SharedFooter,
		Flags: func(fs *cli.FlagSet) cli.Action {
			b := config.Bind(fs, "data-dir")
			fs.Group("Restore")
			from := fs.String("from", "", "the archive to restore (`path`), as 'backup' wrote it")
			return func(ctx context.Context, _ []string) error {
				if *from == "" {
					return cli.Usagef("--from is required: the archive 'backup' wrote")
				}
				cfg, err := a.resolveDataDir(b)
				if err != nil {
					return err
				}
				ctx, stop := interruptible(ctx)
				defer stop()
				return a.restore(ctx, *from, cfg.DataDir)
			}
		},
	}
}

func (a *app) restore(ctx context.Context, from, dataDir string) (err error) {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	if st, err := in.Stat(); err != nil {
		return err
	} else if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", from)
	}

	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	parent, err := trustedParent("directory of the data dir", filepath.Dir(abs))
	if err != nil {
		return err
	}
	dir := filepath.Join(parent, filepath.Base(abs))
	exists, err := emptyDataDir(dir)
	if err != nil {
		return err
	}

	// 1. Extract into a directory of its own, so that a restore cut short,
	// even by SIGKILL, leaves no half data dir at dir: beside it, or in
	// it when it exists (it may be a mount point, which a rename cannot
	// replace).
	stageIn := parent
	if exists {
		stageIn = dir
	}
	stage, err := os.MkdirTemp(stageIn, stagePrefix+"*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("restore interrupted: nothing was restored into %s", dir)
		}
	}()
	free, ok := freeSpace(stage)
	lim := backup.Limits{Database: max(free-restoreHeadroom, 0)}
	if !ok {
		lim.Database = 1<<63 - 1
	}
	res, err := backup.Extract(ctx, in, stage, lim)
	if err != nil {
		return fmt.Errorf("restoring %s: %w", from, err)
	}

	// 2. Check the database before it is put in place.
	var sum sqlite.Summary
	if res.Has(datadir.SQLiteFile) {
		sum, err = sqlite.Inspect(ctx, filepath.Join(stage, datadir.SQLiteFile))
		if err != nil {
			return fmt.Errorf("restoring %s: the database: %w", from, err)
		}
	}

	// 3. Put it in place.
	if err := promote(stage, dir, exists, res.Files); err != nil {
		return fmt.Errorf("restoring %s: putting the data dir in place: %w", from, err)
	}

	fmt.Fprintf(a.stdout, "restored %d files (%d bytes) into %s\n", len(res.Files), res.Bytes, dir)
	if res.Has(datadir.SQLiteFile) {
		fmt.Fprintf(a.stdout, "database: SQLite, integrity_check and schema ok: %d devices, %d decisions\n", sum.Devices, sum.Decisions)
	} else {
		fmt.Fprintf(a.stdout, "database: not in the archive: restore %s with pg_restore before starting the verifier\n", datadir.Label(res.Database))
	}
	fmt.Fprintf(a.stderr, "Start the verifier on %s with the settings it had (clearance-verifier serve --data-dir %s …).\n", dir, dir)
	return nil
}

// stagePrefix starts the name of the directory a restore extracts into
// before it becomes the data dir; one is left only by a restore killed
// outright.
const stagePrefix = ".clearance-restore-"

// promote makes stage, whose files are names, the data dir dir: a rename,
// or, into an empty dir that exists, one rename a file (undone if one
// fails).
func promote(stage, dir string, exists bool, names []string) (err error) {
	if !exists {
		if err := os.Rename(stage, dir); err != nil {
			return err
		}
		return backup.SyncDir(filepath.Dir(dir))
	}
	var moved []string
	defer func() {
		if err != nil {
			for _, name := range moved {
				os.Remove(filepath.Join(dir, name))
			}
		}
	}()
	for _, name := range names {
		if err := os.Rename(filepath.Join(stage, name), filepath.Join(dir, name)); err != nil {
			return err
		}
		moved = append(moved, name)
	}
	if err := os.Remove(stage); err != nil {
		return err
	}
	return backup.SyncDir(dir)
}

// trustedParent resolves the directory a data dir is restored into, or a
// backup written into, and refuses one another user could change (and so
// swap what is written there by name while it is written): owned by
// neither root nor this user, or writable by group or others, unless it
// is sticky like /tmp. what names it in the error.
func trustedParent(what, dir string) (string, error) {
	// Every directory on the way too: one another user controls could
	// move dir, and what is made in it, away between this check and the
	// writes, which name it by path.
	resolved, err := owner.Resolve("directory above the "+what, dir)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(resolved)
	if err != nil {
		return "", err
	}
	deny := fs.FileMode(0o022)
	if st.Mode()&fs.ModeSticky != 0 {
		deny = 0
	}
	if err := owner.Check(what, resolved, st, deny); err != nil {
		return "", err
	}
	return resolved, nil
}

// emptyDataDir checks that dir does not exist, or is an empty directory
// no one else may write (datadir.Check's rules); exists says which.
func emptyDataDir(dir string) (exists bool, err error) {
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !st.IsDir() {
		return true, fmt.Errorf("%s exists and is not a directory: restore into a new or empty data dir", dir)
	}
	if err := owner.Check("data dir", dir, st, 0o022); err != nil {
		return true, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return true, err
	}
	if len(ents) > 0 {
		var names []string
		for i, e := range ents {
			if i == 3 {
				names = append(names, "…")
				break
			}
			names = append(names, e.Name())
		}
		return true, fmt.Errorf("data dir %s is not empty (it holds %s): restore only into a new or empty dir, so that nothing of another verifier is mixed in", dir, strings.Join(names, ", "))
	}
	return true, nil
}
