// Package backup owns the verifier's backup archive: a tar file (gzipped
// or not) of the data dir's files (datadir.Files) with a snapshot of the
// SQLite database in the place of the live one. Write makes one; Extract
// restores one into an empty directory, trusting nothing in it: only the
// data dir's file names, regular files, bounded sizes.
package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/clearance/clearance/verifier/datadir"
	"github.com/clearance/clearance/verifier/secretfile"
)

// MaxFileSize bounds each file of the archive but the database: keys,
// certificates, tokens and serve.json are a few KiB.
const MaxFileSize = 1 << 20

// Written is what Write put in the archive.
type Written struct {
	// Files are the names archived, in datadir.Files order; the
	// database's snapshot, when there is one, is the last.
	Files []string
	// Skipped are the entries of the data dir that are not its files
	// (nor the live database's), left out.
	Skipped []string
}

// Compressed reports whether an archive called name is gzipped: .tar.gz
// or .tgz. Names that end otherwise but in .tar are refused by
// CheckName.
func Compressed(name string) bool {
	return strings.HasSuffix(name, ".tar.gz") || strings.HasSuffix(name, ".tgz")
}

// CheckName refuses an archive name that does not say what it is.
func CheckName(name string) error {
	if Compressed(name) || strings.HasSuffix(name, ".tar") {
		return nil
	}
	return fmt.Errorf("%s: the archive's name must end in .tar, .tar.gz or .tgz (gzipped)", name)
}

// Write writes an archive of dir's files to w, gzipped when compress is
// set, with the database snapshot at snapshot ("" when the database is not
// SQLite in the data dir) as datadir.SQLiteFile. Secret files are read as
// the verifier reads them (secretfile: no links, no foreign owner, no
// group or other access), the others without following a link.
func Write(w io.Writer, dir, snapshot string, compress bool, now time.Time) (Written, error) {
	var out Written
	var zw *gzip.Writer
	if compress {
		zw = gzip.NewWriter(w)
		w = zw
	}
	tw := tar.NewWriter(w)
	known := map[string]bool{datadir.SQLiteFile + "-wal": true, datadir.SQLiteFile + "-shm": true, datadir.SQLiteFile + "-journal": true}
	for _, f := range datadir.Files {
		known[f.Name] = true
		if f.Name == datadir.SQLiteFile {
			continue
		}
		data, err := readFile(filepath.Join(dir, f.Name), f.Secret())
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Written{}, err
		}
		if err := add(tw, f, int64(len(data)), bytes.NewReader(data), now); err != nil {
			return Written{}, err
		}
		out.Files = append(out.Files, f.Name)
	}
	if snapshot != "" {
		f, err := os.Open(snapshot)
		if err != nil {
			return Written{}, err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return Written{}, err
		}
		db, _ := datadir.Lookup(datadir.SQLiteFile)
		if err := add(tw, db, st.Size(), f, now); err != nil {
			return Written{}, err
		}
		out.Files = append(out.Files, db.Name)
	}
	if err := tw.Close(); err != nil {
		return Written{}, err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return Written{}, err
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return Written{}, err
	}
	for _, e := range ents {
		// atomicfile's temporary files start with a dot.
		if !known[e.Name()] && !strings.HasPrefix(e.Name(), ".") {
			out.Skipped = append(out.Skipped, e.Name())
		}
	}
	return out, nil
}

func add(tw *tar.Writer, f datadir.File, size int64, r io.Reader, now time.Time) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.Name, Mode: int64(f.Mode), Size: size, ModTime: now.Truncate(time.Second), Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("archiving %s: %w", f.Name, err)
	}
	if n, err := io.Copy(tw, r); err != nil {
		return fmt.Errorf("archiving %s: %w", f.Name, err)
	} else if n != size {
		return fmt.Errorf("archiving %s: it changed size while being read", f.Name)
	}
	return nil
}

// readFile reads one of the data dir's files: a secret one as the
// verifier does, another refusing a link and anything not regular.
func readFile(path string, secret bool) ([]byte, error) {
	if secret {
		return secretfile.Read(path)
	}
	lst, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !lst.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s): a data dir's files are the files themselves", path, lst.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !os.SameFile(lst, st) {
		return nil, fmt.Errorf("%s changed while being read", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes, which no file of a data dir is", path, MaxFileSize)
	}
	return data, nil
}
