package backup

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/clearance/clearance/verifier/datadir"
)

// Limits bound what Extract writes.
type Limits struct {
	// Database bounds the database snapshot's size: the room the target's
	// file system has for it.
	Database int64
}

// What an archive may hold beyond its files' bytes. tar reads some
// headers itself (a GNU long name, a PAX record of up to 1 MiB each, any
// number of them), so this is counted under it, on the bytes it reads.
const (
	// maxEntryOverhead is one entry's: its header block, an extended
	// (PAX or GNU) header with its own blocks for a few records, and
	// the padding of its data to a whole block.
	maxEntryOverhead = 8 << 10
	// maxTrailer is the end of the archive: two zero blocks, the padding
	// to a whole record (GNU tar's are 10 KiB) and, gzipped, what
	// follows the tar in the stream.
	maxTrailer = 32 << 10
)

// MaxOverhead is the most an archive may hold beyond its files' bytes:
// one entry's overhead for each data dir file, and the trailer.
var MaxOverhead = int64(len(datadir.Files))*maxEntryOverhead + maxTrailer

// MaxInput is the most Extract reads (after gzip) of an archive: every
// data dir file but the database at MaxFileSize, the database at
// l.Database, and MaxOverhead. Past that it stops, and past MaxOverhead
// of bytes that are not the files' own.
func (l Limits) MaxInput() int64 {
	return int64(len(datadir.Files)-1)*MaxFileSize + l.Database + MaxOverhead
}

// budgetReader reads r while ctx lasts and no more than allowed bytes:
// MaxOverhead, raised by each entry's size as Extract accepts it.
type budgetReader struct {
	ctx     context.Context
	r       io.Reader
	read    int64
	allowed int64
}

// errOverBudget is what budgetReader returns past its bound.
var errOverBudget = fmt.Errorf("the archive holds more than a backup can: over %d bytes of headers, padding or trailing data beyond its files' own; refused", MaxOverhead)

func (b *budgetReader) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	if b.read >= b.allowed {
		return 0, errOverBudget
	}
	if rest := b.allowed - b.read; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := b.r.Read(p)
	b.read += int64(n)
	return n, err
}

// Restored is what Extract wrote.
type Restored struct {
	// Files are the names written, in the archive's order.
	Files []string
	// Database is the record's database: datadir.SQLite, or a PostgreSQL
	// URL without its password ("" for an archive without serve.json).
	Database string
	// Bytes is how much was written in all.
	Bytes int64
}

// Has reports whether name was restored.
func (r Restored) Has(name string) bool { return slices.Contains(r.Files, name) }

// Extract restores the archive r (gzipped or not: it looks at the first
// bytes) into dir, an empty directory the caller made. It writes only the
// data dir's files, each with its mode, each only once, and refuses any
// other entry with an error that names it: absolute or leaving the
// directory, a link, a device or other special file, an unknown name, one
// larger than MaxFileSize (the database: lim.Database), or a truncated
// archive. It insists on datadir.Required and, unless serve.json names
// PostgreSQL, on the database. It reads no more than lim.MaxInput (after
// gzip), reads a gzip stream to its end so that its checksum is checked,
// and stops when ctx ends. On error it removes every file it wrote.
func Extract(ctx context.Context, r io.Reader, dir string, lim Limits) (res Restored, err error) {
	defer func() {
		if err != nil {
			for _, name := range res.Files {
				os.Remove(filepath.Join(dir, name))
			}
			res = Restored{}
		}
	}()
	br := bufio.NewReader(r)
	var src io.Reader = br
	var zr *gzip.Reader
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err = gzip.NewReader(br)
		if err != nil {
			return res, fmt.Errorf("not a backup archive: %w", err)
		}
		defer zr.Close()
		zr.Multistream(false)
		src = zr
	}
	in := &budgetReader{ctx: ctx, r: src, allowed: MaxOverhead}
	tr := tar.NewReader(in)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, readError(err)
		}
		f, err := checkEntry(hdr, res, lim)
		if err != nil {
			return res, err
		}
		// The name is on the list (so it is one plain name), and the
		// directory the caller's own: O_EXCL makes sure it is a new file.
		out, err := os.OpenFile(filepath.Join(dir, f.Name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.Mode)
		if err != nil {
			return res, err
		}
		in.allowed += hdr.Size // checkEntry bounded it
		res.Files = append(res.Files, f.Name)
		n, err := io.Copy(out, tr)
		if err == nil {
			err = out.Chmod(f.Mode) // the umask narrowed 0644
		}
		if err == nil {
			err = out.Sync()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		res.Bytes += n
		if err != nil {
			return res, readError(err)
		}
	}
	if zr != nil {
		// gzip checks its checksum at the stream's end, past the tar's:
		// read on to it, within the budget (the trailer's padding).
		if _, err := io.Copy(io.Discard, in); err != nil {
			return res, readError(err)
		}
	}
	if err := checkComplete(dir, &res); err != nil {
		return res, err
	}
	return res, SyncDir(dir)
}

// checkEntry says which data dir file hdr is, or why it is refused.
func checkEntry(hdr *tar.Header, done Restored, lim Limits) (datadir.File, error) {
	name := hdr.Name
	q := fmt.Sprintf("%q", name)
	if len(name) > 100 {
		q = fmt.Sprintf("%q…", name[:100])
	}
	switch {
	case strings.HasPrefix(name, "/") || filepath.IsAbs(name) || (len(name) > 1 && name[1] == ':'):
		return datadir.File{}, fmt.Errorf("archive entry %s is an absolute path: a backup holds only names inside the data dir", q)
	case slices.Contains(strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '\\' }), ".."):
		return datadir.File{}, fmt.Errorf("archive entry %s leaves the directory (..): refused", q)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // TypeRegA is how old tars mark files
	case tar.TypeSymlink, tar.TypeLink:
		return datadir.File{}, fmt.Errorf("archive entry %s is a link (to %q): a backup holds only regular files", q, hdr.Linkname)
	default:
		return datadir.File{}, fmt.Errorf("archive entry %s is not a regular file (type %q): a backup holds only regular files", q, hdr.Typeflag)
	}
	f, ok := datadir.Lookup(path.Clean(strings.TrimPrefix(name, "./")))
	if !ok || strings.Contains(name, "\\") {
		return datadir.File{}, fmt.Errorf("archive entry %s is not a file of a data dir", q)
	}
	if done.Has(f.Name) {
		return datadir.File{}, fmt.Errorf("archive entry %s appears twice", q)
	}
	limit := int64(MaxFileSize)
	if f.Name == datadir.SQLiteFile {
		limit = lim.Database
	}
	if hdr.Size < 0 || hdr.Size > limit {
		if f.Name == datadir.SQLiteFile {
			return datadir.File{}, fmt.Errorf("the archive's database is %d bytes, more than the %d there is room for in the target's file system", hdr.Size, limit)
		}
		return datadir.File{}, fmt.Errorf("archive entry %s is %d bytes; no file of a data dir but the database is larger than %d", q, hdr.Size, limit)
	}
	return f, nil
}

// checkComplete refuses an archive that lacks a file the verifier needs,
// and reads what serve.json says.
func checkComplete(dir string, res *Restored) error {
	var missing []string
	for _, name := range datadir.Required {
		if !res.Has(name) {
			missing = append(missing, name)
		}
	}
	if res.Has(datadir.RecordFile) {
		rec, err := datadir.Read(dir)
		if err != nil {
			return fmt.Errorf("the archive's %s: %w", datadir.RecordFile, err)
		}
		res.Database = rec.Database
	}
	if res.Database != "" && res.Database != datadir.SQLite {
		if res.Has(datadir.SQLiteFile) {
			return fmt.Errorf("the archive holds %s, but its %s says the verifier uses %s", datadir.SQLiteFile, datadir.RecordFile, datadir.Label(res.Database))
		}
	} else if !res.Has(datadir.SQLiteFile) {
		missing = append(missing, datadir.SQLiteFile)
	}
	if len(missing) > 0 {
		return fmt.Errorf("the archive is not a whole backup: it has no %s", strings.Join(missing, ", "))
	}
	return nil
}

// readError says what a tar or gzip error means for the archive.
func readError(err error) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errors.New("the archive is truncated: it ends inside a file")
	case errors.Is(err, tar.ErrHeader), errors.Is(err, gzip.ErrHeader), errors.Is(err, gzip.ErrChecksum):
		return fmt.Errorf("not a backup archive, or a damaged one: %w", err)
	}
	return err
}

// SyncDir makes a directory's entries durable (a no-op where the system
// cannot sync a directory).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
